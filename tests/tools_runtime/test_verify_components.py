"""Verdict components, normalisation, criteria and blame rules (tools_runtime/verification/components.py, blame.py)."""

from __future__ import annotations

import copy
import json

from tests.helpers import scripted
from tools_runtime.tasks import Action, Task
from tools_runtime.verification.components import args_match, effective_diff, norm_value, project_state
from tools_runtime.verification.perturbations import (
    invented_tool_result,
    reground,
    task_from_plan,
    wrong_value,
)
from tools_runtime.verification.verify import verify

STRUCTURE = {"task", "dialogue", "schema", "execution"}
OUTCOME = {"state", "actions", "communicate", "claims", "policy", "nl_assertions", "grounding"}


def test_a_gold_dialogue_passes_every_component():
    sc, traj = scripted("shop_return", 0)
    v = verify(traj.messages, sc)[0]
    assert v.passed and v.blame is None
    assert set(v.components) == STRUCTURE | OUTCOME
    assert all(c.passed and c.reason for c in v.components.values())


def test_normalisation_of_arguments():
    assert not args_match({"title": "Important Meeting"}, {"title": "  important   meeting "})
    assert not args_match({"copies": 2}, {"copies": "2"})
    assert not args_match({"method": "store_credit"}, {"method": "Store-Credit"})
    assert not args_match({"enabled": True}, {"enabled": "yes"})
    assert args_match({"copies": 2}, {"copies": 3}) == ["copies"]
    assert args_match({"title": "a"}, {}) == ["title"]
    assert norm_value("1,250.00") == 1250.0


def test_bookkeeping_is_no_outcome():
    pressed_once = {"collections": {"router": {"default": {"last_action": "restart", "times": 1}},
                                    "doc": {"a.pdf": {"file_name": "a.pdf", "times": 1}}}}
    pressed_twice = copy.deepcopy(pressed_once)
    pressed_twice["collections"]["doc"]["a.pdf"]["times"] = 2
    assert project_state(pressed_once) == project_state(pressed_twice)
    assert project_state({"collections": {}}) != project_state(pressed_once)  # the document is an outcome
    assert effective_diff([{"op": "replace", "path": "/collections/doc/a.pdf/times", "old": 1, "new": 2}]) == []
    assert effective_diff([{"op": "add", "path": "/collections/router/default",
                            "new": {"last_action": "restart", "times": 1}}]) == []


def test_a_task_without_criteria_fails_fast():
    sc, traj = scripted("support_ticket", 0)
    empty = Task(id="t", env_id=sc.workflow.id, instruction="do something")
    v = verify(traj.messages, sc.model_copy(update={"task": empty}))[0]
    assert not v.passed and v.codes() == ["empty_criteria"] and v.blame == "task"


def test_task_gold_replaces_the_plan_and_unreachable_gold_blames_the_task():
    sc, traj = scripted("support_ticket", 0)
    assert verify(traj.messages, sc.model_copy(update={"task": task_from_plan(sc)}))[0].passed
    broken = task_from_plan(sc, gold_actions=[Action(tool="get_ticket", arguments={"ticket_id": "NOPE-1"})])
    v = verify(traj.messages, sc.model_copy(update={"task": broken}))[0]
    assert not v.passed and "gold_unreachable" in v.codes() and v.blame == "task"


def test_inconsistent_criteria_blame_the_task():
    sc, traj = scripted("support_ticket", 0)
    bad = task_from_plan(sc, forbidden_tools=[sc.plan[0].tool])
    v = verify(traj.messages, sc.model_copy(update={"task": bad}))[0]
    assert "inconsistent_criteria" in v.codes() and v.blame == "task"


def test_nl_assertions_are_pending_without_a_judge_and_decided_with_one():
    sc, traj = scripted("support_ticket", 0)
    task = task_from_plan(sc, nl_assertions=["The assistant was polite"])
    v = verify(traj.messages, sc.model_copy(update={"task": task}))[0]
    assert v.passed and v.components["nl_assertions"].pending  # not in the reward basis
    judged = task.model_copy(update={"reward_basis": [*task.reward_basis, "nl_assertions"]})
    sc2 = sc.model_copy(update={"task": judged})
    v = verify(traj.messages, sc2)[0]
    assert not v.passed and "judge_required" in v.codes()
    calls = []

    def judge(kind, ctx):
        calls.append(kind)
        return {"passed": kind == "nl_assertion" and "polite" in ctx["assertion"], "reason": "checked"}

    assert verify(traj.messages, sc2, judge=judge)[0].passed and calls == ["nl_assertion"]
    no = verify(traj.messages, sc2, judge=lambda kind, ctx: {"passed": False, "reason": "rude"})[0]
    assert not no.passed and "nl_assertion_failed" in no.codes()


def test_communicate_info_must_reach_the_user():
    sc, traj = scripted("shop_return", 0)
    rid = next(s.result["return_id"] for s in traj.steps if isinstance(s.result, dict) and "return_id" in s.result)
    ok = task_from_plan(sc, communicate_info=[rid])
    assert verify(traj.messages, sc.model_copy(update={"task": ok}))[0].passed
    missing = task_from_plan(sc, communicate_info=["RET-0000"])
    v = verify(traj.messages, sc.model_copy(update={"task": missing}))[0]
    assert not v.passed and v.codes() == ["communicate_missing"] and v.blame == "assistant"
    # Not in the basis: reported, not deciding.
    lax = missing.model_copy(update={"reward_basis": ["state", "actions"]})
    v = verify(traj.messages, sc.model_copy(update={"task": lax}))[0]
    assert v.passed and not v.components["communicate"].passed


def test_blame_environment_for_an_invented_result_unless_the_assistant_wrote_it():
    sc, traj = scripted("shop_return", 0)
    sc2, bad = invented_tool_result(sc, traj.messages)
    assert verify(bad, sc2)[0].blame == "environment"
    assert verify(bad, sc2, tool_results_by="assistant")[0].blame == "assistant"


def _user_said_other_value(sc, messages):
    """The user states a value for a write argument that their facts do not hold; the assistant uses it."""
    out = copy.deepcopy(messages)
    for m in out:
        for call in m.get("tool_calls", []):
            args = json.loads(call["function"]["arguments"])
            if call["function"]["name"] == "create_return":
                old = args["reason"]
                new = next(r for r in ("damaged", "wrong_size", "changed_mind") if r != old)
                args["reason"] = new
                call["function"]["arguments"] = json.dumps(args)
                for u in out:
                    if u["role"] == "user" and old in u["content"]:
                        u["content"] = u["content"].replace(old, new)
                        return reground(out, sc)
    raise AssertionError("no create_return whose reason the user stated")


def test_blame_user_when_the_simulator_gives_a_value_it_was_not_given():
    sc, traj = scripted("shop_return", 0)
    v = verify(_user_said_other_value(sc, traj.messages), sc)[0]
    assert not v.passed and "wrong_arguments" in v.codes()
    assert v.blame == "user", v.blame_reason


def test_blame_user_who_ends_while_the_assistant_still_asks():
    sc, traj = scripted("shop_return", 0)
    last_write = max(i for i, m in enumerate(traj.messages)
                     for c in m.get("tool_calls", []) if c["function"]["name"] == "update_refund_method")
    cut = traj.messages[:last_write] + [{"role": "assistant", "content": "Which refund method would you like?"}]
    v = verify(cut, sc, ended_by="user")[0]
    assert "missing_required_call" in v.codes() and v.blame == "user"
    assert verify(cut, sc, ended_by="")[0].blame == "assistant"


def test_the_judge_decides_what_no_rule_does():
    sc, traj = scripted("support_ticket", 0)
    sc2, bad = wrong_value(sc, traj.messages)
    assert verify(bad, sc2)[0].blame == "assistant"
    v = verify(bad, sc2, judge=lambda kind, ctx: {"blame": "environment", "reason": "judge"})[0]
    assert v.blame == "environment" and v.blame_reason == "judge"


def test_a_crashed_rollout_blames_the_role_whose_call_failed():
    from tools_runtime.verification.blame import blame_for_rollout_error

    assert blame_for_rollout_error("ModelCallError: user (openai:fake-model): 500") == "user"
    assert blame_for_rollout_error("ModelCallError: assistant (openai:m): timeout") == "assistant"
    assert blame_for_rollout_error("RuntimeError: backend gone") == "environment"
