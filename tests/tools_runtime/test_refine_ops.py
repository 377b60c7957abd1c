"""Refinement operators: each keeps a reference plan whose scripted rollout verifies, and adds what it claims."""

from __future__ import annotations

import random

import pytest

from gem_agents.user.dialogue_text import humanize
from tests.helpers import example, rollout
from tools_runtime.records import Goal, PlannedError
from tools_runtime.refine_ops import (
    DEFAULT_OPS,
    OPS,
    RefineOpError,
    add_tools,
    apply_ops,
    batch_sizes,
    chain_goals,
    check_scenario,
    plan_errors,
    related_tools,
    unique_text,
    withhold_info,
)
from tools_runtime.scenario import build_scenario, replay_plan
from tools_runtime.state import canonical_json

NAMES = ["shop_return", "bank_transfer", "support_ticket", "router_wifi_password", "print_booklet",
         "calendar_booking"]
_BASE: dict[tuple[str, int], tuple] = {}


def base(name: str, seed: int = 0):
    """Scenario and scripted trajectory of an example (cached: several tests share them)."""
    if (name, seed) not in _BASE:
        sc = build_scenario(example(name), seed)
        _BASE[(name, seed)] = (sc, rollout(sc))
    return _BASE[(name, seed)]


def refined_by(op: str, name: str, seed: int = 0, **kw):
    sc, before = base(name, seed)
    try:
        out = OPS[op](sc, random.Random(seed), **kw)
    except RefineOpError as exc:
        pytest.fail(f"{op} does not apply to {name}: {exc}")
    assert out is not sc
    assert check_scenario(out) == [], check_scenario(out)
    replay_plan(out)  # the reference plan runs on the initial state
    after = rollout(out, max_user_turns=60)
    assert after.verdict.passed, (op, name, after.verdict.failures)
    return sc, before, out, after


@pytest.mark.parametrize("name", NAMES)
def test_chain_goals_adds_goals_turns_and_calls(name):
    sc, before, out, after = refined_by("chain_goals", name, count=2)
    assert len(out.goals) == len(sc.goals) + 2
    assert {c.goal for c in out.plan} == set(range(len(out.goals)))
    assert after.stats.user_turns >= before.stats.user_turns + 2
    assert after.stats.tool_calls > before.stats.tool_calls
    # Follow-ups talk about other records: a later goal's facts carry the goal suffix.
    assert any("@" in k for k in out.known_info) or len(out.plan) > len(sc.plan)


@pytest.mark.parametrize("name", NAMES)
def test_add_tools_raises_tool_types_and_leaves_distractors_alone(name):
    sc, before, out, after = refined_by("add_tools", name)
    added = {t.name for t in out.tools} - {t.name for t in sc.tools}
    assert added and set(out.distractors) <= added
    called = {c["function"]["name"] for m in after.messages for c in m.get("tool_calls", [])}
    assert not called & set(out.distractors)
    assert after.stats.tool_types > before.stats.tool_types
    assert called & (added - set(out.distractors))


@pytest.mark.parametrize("name", NAMES)
def test_withheld_facts_are_asked_for(name):
    sc, before, out, after = refined_by("withhold_info", name)
    withheld = set(sc.goals[0].volunteer) - set(out.goals[0].volunteer)
    assert withheld
    first_user = after.messages[0]["content"]
    assert not any(f"- {humanize(k)}:" in first_user for k in withheld)
    # The scripted assistant words its questions in several ways; any question of it counts.
    asks = " ".join(m["content"] for m in after.messages
                    if m["role"] == "assistant" and not m.get("tool_calls") and "?" in (m["content"] or ""))
    assert all(humanize(k) in asks for k in withheld), (withheld, asks)
    assert after.stats.messages >= before.stats.messages


@pytest.mark.parametrize("name", NAMES)
def test_planned_errors_are_recovered(name):
    sc, before, out, after = refined_by("plan_errors", name)
    assert out.planned_errors
    errors = [m for m in after.messages if m["role"] == "tool" and '"error"' in m["content"]]
    assert len(errors) == len(out.planned_errors)
    assert after.stats.errors_recovered == len(out.planned_errors)
    assert after.stats.tool_calls == before.stats.tool_calls + len(out.planned_errors) + sum(
        1 for e in out.planned_errors if e.kind == "permission")  # a re-login per expired session


def test_every_error_kind_can_be_planned_and_recovered():
    seen = {}
    for kind in ("transient", "permission", "not_found", "invalid_value"):
        for name in NAMES:
            sc, _ = base(name)
            try:
                out = plan_errors(sc, random.Random(1), kinds=[kind])
            except RefineOpError:
                continue
            assert [e.kind for e in out.planned_errors] == [kind]
            traj = rollout(out)
            assert traj.verdict.passed, (kind, name, traj.verdict.failures)
            assert traj.stats.errors_recovered == 1
            seen[kind] = name
            break
    assert sorted(seen) == ["invalid_value", "not_found", "permission", "transient"], seen


@pytest.mark.parametrize("name", ["shop_return", "router_wifi_password", "support_ticket", "bank_transfer"])
def test_change_mind_adds_a_goal_that_changes_or_cancels(name):
    sc, before, out, after = refined_by("change_mind", name)
    assert len(out.goals) > len(sc.goals)
    assert after.stats.user_turns > before.stats.user_turns
    assert after.stats.tool_calls > before.stats.tool_calls
    assert any(t.startswith("change_mind:") for t in out.refinements)
    # The final state differs from the unrefined one: the change of mind really changed something.
    assert replay_plan(out).backend.state_hash() != replay_plan(sc).backend.state_hash()


@pytest.mark.parametrize("name", ["shop_return", "bank_transfer", "support_ticket", "calendar_booking"])
def test_state_dependency_reads_an_early_result_late(name):
    sc, before, out, after = refined_by("state_dependency", name)
    last = out.plan[-1]
    sources = [s for s in last.sources.values() if s.kind == "result"]
    assert sources and sources[0].call is not None and sources[0].call < len(sc.plan) // 2 + 1
    assert last.goal == len(out.goals) - 1 and after.stats.tool_calls == before.stats.tool_calls + 1


@pytest.mark.parametrize("name", NAMES)
def test_all_operators_compose_and_verify(name):
    sc, before = base(name, 1)
    out, applied, skipped = apply_ops(sc, seed=1)
    assert len(applied) >= 4, skipped
    assert check_scenario(out) == []
    traj = rollout(out, max_user_turns=60)
    assert traj.verdict.passed, traj.verdict.failures
    for field in ("messages", "user_turns", "tool_calls"):
        assert getattr(traj.stats, field) > getattr(before.stats, field), field
    assert traj.stats.tool_types >= before.stats.tool_types


def test_operators_are_deterministic_given_the_seed():
    sc, _ = base("bank_transfer")
    a = apply_ops(sc, seed=3)[0]
    b = apply_ops(sc, seed=3)[0]
    assert canonical_json(a.model_dump()) == canonical_json(b.model_dump())
    assert DEFAULT_OPS[0] == "chain_goals" and set(DEFAULT_OPS) == set(OPS)


def test_unknown_operator_is_refused():
    sc, _ = base("shop_return")
    with pytest.raises(RefineOpError, match="unknown operator"):
        apply_ops(sc, ["chain_goals", "shuffle"])


def test_inapplicable_operator_says_why():
    sc, _ = base("shop_return")
    with pytest.raises(RefineOpError, match="cannot withhold nope"):
        withhold_info(sc, random.Random(0), keys=["nope"])
    with pytest.raises(RefineOpError, match="no call can carry"):
        plan_errors(sc, random.Random(0), kinds=["transient"], tools=["not_a_tool"])


def test_check_scenario_names_what_breaks_the_plan():
    sc, _ = base("shop_return")
    out = chain_goals(sc, random.Random(0), count=1)
    broken_call = out.plan[-1].model_copy(update={"arguments": {**out.plan[-1].arguments, "return_id": "RET-0"}})
    broken = out.model_copy(update={
        "plan": [*out.plan[:-1], broken_call],
        "distractors": [out.plan[0].tool],
        "goals": out.goals[:1],
        "planned_errors": [PlannedError(kind="transient", tool="no_such_tool")],
    })
    problems = " | ".join(check_scenario(broken))
    assert "fails" in problems and "RET-0" in problems
    assert "distractor" in problems
    assert "belongs to goal 1, but only 1 goals exist" in problems
    assert "no_such_tool" in problems


def test_planned_errors_only_on_calls_sent_alone():
    sc, _ = base("bank_transfer")
    sizes = batch_sizes(sc)
    assert max(sizes) >= 2  # the example has a parallel stage
    out = plan_errors(sc, random.Random(0))
    index = {c.tool: i for i, c in enumerate(sc.plan)}
    assert all(sizes[index[e.tool]] == 1 for e in out.planned_errors)


def test_goal_texts_never_contain_each_other():
    goals = [Goal(description="Do it again.")]
    text = unique_text("Do it again.", goals)
    assert text != "Do it again." and "Do it again." not in text
    goals.append(Goal(description=text))
    third = unique_text("Do it again.", goals)
    assert all(third not in g.description and g.description not in third for g in goals)


def test_add_tools_refuses_a_tool_proposed_twice():
    sc = build_scenario(example("shop_return"), seed=0)
    tool = related_tools(sc, 1)[0]
    with pytest.raises(RefineOpError, match="more than once"):
        add_tools(sc, random.Random(0), tools=[tool, tool], distractors=[])
