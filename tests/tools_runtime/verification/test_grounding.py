"""The grounding component and `request_unanswered` (tools_runtime/verification/components.py) and their blame."""

from __future__ import annotations

import copy
import json

from tests.helpers import scripted
from tools_runtime.verification.components import closing_index
from tools_runtime.verification.perturbations import closed_with_request_open, reground, unsaid_value
from tools_runtime.verification.verify import FAILURE_CODES, verify


def _with_write_value(messages: list[dict], tool: str, key: str, value: str) -> list[dict]:
    """The transcript with one write's argument replaced (its tool result left for the verifier to redo)."""
    out = copy.deepcopy(messages)
    for m in out:
        for call in m.get("tool_calls") or []:
            if call["function"]["name"] == tool:
                args = json.loads(call["function"]["arguments"])
                args[key] = value
                call["function"]["arguments"] = json.dumps(args)
    return out


def test_a_gold_dialogue_is_grounded_and_answers_every_request():
    sc, traj = scripted("shop_return", 0)
    v = verify(traj.messages, sc)[0]
    assert v.passed and v.components["grounding"].passed and v.components["dialogue"].passed
    assert FAILURE_CODES["ungrounded_argument"] == "grounding" and FAILURE_CODES["request_unanswered"] == "dialogue"


def test_a_value_nobody_said_fails_grounding_and_blames_the_assistant():
    sc, traj = scripted("shop_return", 0)
    messages = reground(_with_write_value(traj.messages, "create_return", "reason", "damaged"), sc)
    v = verify(messages, sc)[0]
    assert not v.passed and not v.components["grounding"].passed
    codes = {f.code for f in v.components["grounding"].failures}
    assert codes == {"ungrounded_argument"} and "'damaged'" in v.components["grounding"].reason
    assert v.blame == "assistant"


def test_the_hidden_task_value_written_after_the_user_said_another_blames_the_user():
    """The user was told one value and said another; the assistant wrote the task's value anyway."""
    sc, traj = scripted("support_ticket", 0)
    sc2, m2 = unsaid_value(sc, traj.messages)
    v = verify(m2, sc2)[0]
    assert not v.passed and not v.components["grounding"].passed
    # state and actions still pass: only grounding sees that the value came from nowhere.
    assert v.components["state"].passed and v.components["actions"].passed
    assert v.blame == "user" and "instruction says" in v.blame_reason


def test_values_from_tool_results_are_grounded():
    """`order_id` and `return_id` come from earlier results, never from the user."""
    sc, traj = scripted("shop_return", 0)
    assert not any("ORD-" in str(m.get("content")) for m in traj.messages if m["role"] == "user")
    assert verify(traj.messages, sc)[0].components["grounding"].passed


def test_closing_before_the_request_is_done_fails_the_dialogue():
    sc, traj = scripted("shop_return", 0)
    sc2, m2 = closed_with_request_open(sc, traj.messages)
    close = closing_index(m2)
    assert close is not None and m2[close]["content"].startswith("Glad I could help")
    v = verify(m2, sc2)[0]
    assert not v.passed and [f.code for f in v.components["dialogue"].failures] == ["request_unanswered"]
    assert v.components["state"].passed and v.blame == "assistant"


def test_the_first_farewell_is_the_close_and_a_question_is_not():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Done. Anything else? Take care!"},
            {"role": "user", "content": "no"}, {"role": "assistant", "content": "You're welcome, goodbye."},
            {"role": "user", "content": "bye"}, {"role": "assistant", "content": "Bye!"}]
    assert closing_index(msgs) == 3
    assert closing_index(msgs[:2]) == 1  # no farewell: the last text reply closes


def test_a_user_that_never_asks_for_its_second_request_is_blamed():
    from tools_runtime.records import Goal

    sc, traj = scripted("shop_return", 0)
    extra = Goal(description="Also please change the refund method to store credit afterwards.")
    plan = [*sc.plan[:-1], sc.plan[-1].model_copy(update={"goal": 1})]
    sc2 = sc.model_copy(update={"goals": [*sc.goals, extra], "plan": plan})
    # The dialogue as if the user stopped after the first request: the refund write never ran.
    cut = next(i for i, m in enumerate(traj.messages) for c in m.get("tool_calls") or []
               if c["function"]["name"] == "update_refund_method")
    messages = [*traj.messages[:cut], {"role": "assistant", "content": "Your return is created. Anything else?"},
                {"role": "user", "content": "No, thanks, that's all."},
                {"role": "assistant", "content": "You're welcome, goodbye!"}]
    v = verify(messages, sc2, ended_by="user")[0]
    assert "request_unanswered" in {f.code for f in v.components["dialogue"].failures}
    assert v.blame == "user" and "without ever asking for request 2" in v.blame_reason
