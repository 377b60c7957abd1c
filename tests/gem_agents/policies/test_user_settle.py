"""A model-played user held to its task (gem_agents/policies/chat.py, user part) and the scripted assistant that
asks for what nobody gave it (gem_agents/policies/scripted_assistant.py)."""

from __future__ import annotations

import asyncio
import json

from gem_agents.policies.chat import (
    THANKS,
    asked_facts,
    chat_user,
    requests_brought_up,
    resends_facts,
    settle_user_reply,
)
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.user.scripted import scripted_user
from graphs.roles import STOP_TOKEN, Roles, RoleView
from tests.gem_agents.stages.test_draft_revise import fake_client
from tests.helpers import rollout, scripted
from tools_runtime.records import ArgSource, Goal


def _two_requests():
    sc, _ = scripted("shop_return", 0)
    second = Goal(description="Also change the refund method to store credit afterwards.", volunteer=["method"])
    return sc.model_copy(update={"goals": [sc.goals[0], second]})


OPENING = "Hi, I need to return an item. My username is faridl81 and the query is large router."


def test_a_user_that_says_done_with_a_request_unsaid_brings_it_up_instead():
    sc = _two_requests()
    history = [{"role": "assistant", "content": OPENING},
               {"role": "user", "content": "Your return is created. Anything else?"}]
    text, done = settle_user_reply(sc, history, "Thanks, bye!", True)
    assert not done and text.startswith("Also change the refund method to store credit")
    assert requests_brought_up(sc, [OPENING]) == 1 and requests_brought_up(sc, [OPENING, text]) == 2


def test_a_user_that_re_sends_facts_after_the_work_is_done_thanks_and_ends():
    sc, _ = scripted("shop_return", 0)
    history = [{"role": "assistant", "content": OPENING},
               {"role": "user", "content": "All set: your return is created. Is there anything else?"}]
    assert resends_facts(sc, "My username is faridl81.", [OPENING])
    assert not resends_facts(sc, "My password is Secret-1350.", [OPENING])
    assert settle_user_reply(sc, history, "My username is faridl81.", False) == (THANKS, True)
    # While the assistant is still asking for something, the reply is left alone.
    asking = [*history[:1], {"role": "user", "content": "What is the password, please?"}]
    assert settle_user_reply(sc, asking, "My password is Secret-1350.", False) == ("My password is Secret-1350.", False)


def test_a_report_that_names_a_fact_is_no_question_and_a_re_sent_fact_after_it_ends_the_dialogue():
    sc, _ = scripted("shop_return", 0)
    report = "That's finished: I created the return. It now reads username: faridl81. Anything else I can help with?"
    assert asked_facts(sc, report) == {}
    assert asked_facts(sc, "Thanks. Could you tell me your username?") == {"username": "faridl81"}
    history = [{"role": "assistant", "content": OPENING}, {"role": "user", "content": report}]
    assert settle_user_reply(sc, history, "My username is faridl81.", False) == (THANKS, True)


def test_the_structured_model_user_is_settled_too():
    sc = _two_requests()
    client, _ = fake_client([json.dumps({"reply": "Great, thanks!", "done": True})], role="user")
    history = [{"role": "assistant", "content": OPENING},
               {"role": "user", "content": "Done — your return is created. Anything else?"}]
    out = asyncio.run(chat_user(client)(RoleView(role="user", messages=history, scenario=sc)))
    assert STOP_TOKEN not in out["content"] and "store credit" in out["content"]


def test_the_scripted_assistant_asks_for_a_literal_nobody_gave_and_never_invents_it():
    sc, _ = scripted("shop_return", 0)
    plan = [c.model_copy(update={"sources": {**c.sources, "reason": ArgSource(kind="const")}})
            if c.tool == "create_return" else c for c in sc.plan]
    known = {k: v for k, v in sc.known_info.items() if k != "reason"}
    sc = sc.model_copy(update={"plan": plan, "known_info": known,
                               "goals": [sc.goals[0].model_copy(update={"volunteer": list(known)})]})
    traj = rollout(sc, Roles(user=scripted_user, assistant=scripted_assistant))
    asks = [m["content"] for m in traj.messages if m["role"] == "assistant" and "reason" in str(m.get("content"))]
    assert asks and "?" in asks[0] and any("can't do that without the reason" in a for a in asks)
    made = [c["function"]["name"] for m in traj.messages for c in m.get("tool_calls") or []]
    assert "create_return" not in made  # the hidden value was never written
    assert not traj.verdict.passed


def test_the_scripted_assistant_says_goodbye_only_to_a_user_who_is_done():
    sc, traj = scripted("shop_return", 0)
    done = [m for m in traj.messages if m["role"] != "system"][:-2]  # up to the summary of the finished work
    again = [*done, {"role": "user", "content": "I want to return the large router."}]
    reply = asyncio.run(scripted_assistant(RoleView(role="assistant", messages=again, scenario=sc)))
    assert "?" in reply["content"] and "bye" not in reply["content"].lower()
    thanks = [*done, {"role": "user", "content": "Thanks, that's all I needed!"}]
    bye = asyncio.run(scripted_assistant(RoleView(role="assistant", messages=thanks, scenario=sc)))
    assert "?" not in bye["content"]
