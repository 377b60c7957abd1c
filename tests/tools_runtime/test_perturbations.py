"""Benign variants of a gold dialogue verify, harmful ones fail in the right component (docs/verification.md).

Over every example workflow (scripted gold dialogues) and BFCL multi-turn ground truth.
"""

from __future__ import annotations

import pytest

from tests.helpers import EXAMPLES, example_names, scripted
from tools_runtime.records import Scenario
from tools_runtime.verification.perturbations import (
    BENIGN,
    HARMFUL,
    NotApplicable,
    Perturbation,
    failed_components,
)
from tools_runtime.verification.verify import verify, verify_legacy


def _check(p: Perturbation, sc: Scenario, messages: list[dict]) -> tuple[bool, str] | None:
    """(verdict as required, detail), or None when the variant does not apply."""
    try:
        sc2, m2 = p.apply(sc, messages)
    except NotApplicable:
        return None
    v = verify(m2, sc2)[0]
    if p.benign:
        return v.passed, f"{[f.code + ': ' + f.reason for f in v.failures][:3]}"
    hit = bool(failed_components(v) & p.components)
    return (not v.passed and hit and v.blame is not None,
            f"passed={v.passed} failed={sorted(failed_components(v))} want one of {sorted(p.components)}")


@pytest.fixture(scope="module")
def gold_examples():
    return [scripted(name, seed) for name in example_names() for seed in (0, 1)]


def test_there_are_at_least_ten_of_each_kind():
    assert len(BENIGN) >= 10 and len(HARMFUL) >= 10
    assert {"extra_read", "repeated_read", "ask_again", "reorder_independent", "equivalent_spelling",
            "polite_extra_message", "retried_transient_error", "skipped_gesture", "repeated_press"} <= {
        p.name for p in BENIGN}
    assert {"wrong_record", "missing_write", "extra_write", "wrong_value", "invented_tool_result",
            "contradicting_claim", "forbidden_call", "skipped_confirmation", "unsaid_value",
            "closed_with_request_open"} <= {p.name for p in HARMFUL}


@pytest.mark.parametrize("p", BENIGN + HARMFUL, ids=lambda p: p.name)
def test_variant_on_every_example(p, gold_examples):
    applied = 0
    for sc, traj in gold_examples:
        assert verify(traj.messages, sc)[0].passed
        res = _check(p, sc, traj.messages)
        if res is None:
            continue
        applied += 1
        ok, detail = res
        assert ok, (sc.id, p.name, detail)
    assert applied >= 1, f"{p.name} applies to no example workflow"


def test_benign_variants_that_failed_before_now_pass(gold_examples):
    """Repeated presses and skipped gestures no longer fail (the legacy verdict rejected them)."""
    before = after = total = 0
    for p in BENIGN:
        for sc, traj in gold_examples:
            try:
                sc2, m2 = p.apply(sc, traj.messages)
            except NotApplicable:
                continue
            total += 1
            before += verify_legacy(m2, sc2)[0].passed
            after += verify(m2, sc2)[0].passed
    assert after == total and before < total


def test_example_environment_task_variants():
    """The example environments' tasks (declared effects, policies), played by the gold player."""
    from gem_agents.eval.gold_player import gold_player
    from gem_agents.user.scripted import scripted_user
    from graphs.roles import Roles
    from tests.helpers import rollout
    from tools_runtime.tasks import Task, scenario_from_task
    from tools_runtime.workflow_io import load_workflow

    roles = Roles(user=scripted_user, assistant=gold_player)
    applied = {"benign": 0, "harmful": 0}
    for env in sorted((EXAMPLES.parent / "environments").glob("*.json")):
        wf = load_workflow(env)
        for line in env.with_suffix(".tasks.jsonl").read_text().splitlines():
            sc = scenario_from_task(wf, Task.model_validate_json(line), 0)
            traj = rollout(sc, roles)
            assert traj.verdict.passed, (sc.id, traj.verdict.failures)
            for p in BENIGN + HARMFUL:
                res = _check(p, sc, traj.messages)
                if res is None:
                    continue
                applied["benign" if p.benign else "harmful"] += 1
                assert res[0], (sc.id, p.name, res[1])
    assert applied["benign"] >= 50 and applied["harmful"] >= 50, applied


def test_bfcl_ground_truth_variants(bfcl_dir):
    pytest.importorskip("bfcl_eval")
    from tools_runtime.adapters.bfcl import load_func_docs, load_tasks, task_scenario, transcript_from_plan

    docs = load_func_docs(bfcl_dir)
    applied = {"benign": 0, "harmful": 0}
    for task, answer in load_tasks(bfcl_dir)[:10]:
        sc = task_scenario(task, answer, docs)
        messages, _ = transcript_from_plan(sc, sc.plan)
        assert verify(messages, sc)[0].passed, sc.id
        for p in BENIGN + HARMFUL:
            res = _check(p, sc, messages)
            if res is None:
                continue
            applied["benign" if p.benign else "harmful"] += 1
            assert res[0], (sc.id, p.name, res[1])
    assert applied["benign"] >= 50 and applied["harmful"] >= 50
