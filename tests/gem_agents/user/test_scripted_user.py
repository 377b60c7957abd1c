"""The scripted user (gem_agents/user/scripted.py): states each request once, never re-sends a fact it gave."""

from __future__ import annotations

import asyncio

from gem_agents.user.scripted import goal_message, scripted_user
from graphs.roles import STOP_TOKEN, RoleView
from tests.helpers import scripted
from tools_runtime.records import Goal


def _two_requests():
    sc, _ = scripted("shop_return", 0)
    second = Goal(description="Also, could you check the order again for me?", volunteer=["query", "reason"])
    return sc.model_copy(update={"goals": [sc.goals[0], second]})


def test_a_later_request_does_not_repeat_facts_already_said():
    sc = _two_requests()
    first = goal_message(sc, 0, [])
    assert "large router" in first and "not_as_described" in first
    second = goal_message(sc, 1, [first])
    assert second == "Also, could you check the order again for me?"


def test_a_request_with_one_switch_does_not_answer_itself():
    sc, _ = scripted("shop_return", 0)
    goal = Goal(description="Could you toggle Hot Corner on or off?", volunteer=["hot_corner"])
    sc = sc.model_copy(update={"goals": [goal], "known_info": {"hot_corner": False}, "seed": 0})
    text = goal_message(sc, 0, [])
    assert text.endswith("Turn hot corner off.") and "Yes" not in text


def test_it_ends_only_after_its_last_request():
    sc = _two_requests()
    first = goal_message(sc, 0, [])
    messages = [{"role": "assistant", "content": first}, {"role": "user", "content": "Done. Anything else?"}]
    out = asyncio.run(scripted_user(RoleView(role="user", scenario=sc, messages=messages)))
    assert out["content"].startswith("Also, could you check") and not out.get("stop")
    messages += [{"role": "assistant", "content": out["content"]},
                 {"role": "user", "content": "Checked it. Anything else?"}]
    last = asyncio.run(scripted_user(RoleView(role="user", scenario=sc, messages=messages)))
    assert last.get("stop") and last["content"].endswith(STOP_TOKEN)
