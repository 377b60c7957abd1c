"""The judge role: rubric scores with reasons, nl_assertions and blame decided, provenance, `--min-judge`."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.config import RunConfig
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.run.store import DocOutcome, RunStore
from gem_agents.stages.judge import (
    JudgeError,
    apply_judge,
    judge_all,
    judge_hash,
    judge_prompt,
    judge_trajectory,
    parse_judge,
)
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text
from graphs.rollouts import run_dialogue
from tests.gem_agents.test_audit import build_run
from tools_runtime.tasks import Task, scenario_from_task
from tools_runtime.workflow_io import load_workflow

ENV = "examples/environments/shop_return.json"
ASSERTION = "The assistant tells the user how much they get back."


def run(coro):
    return asyncio.run(coro)


def fee_trajectory(nl: list[str] | None = None):
    wf = load_workflow(ENV)
    line = next(line for line in open("examples/environments/shop_return.tasks.jsonl") if "refund-after-fee" in line)
    task = Task.model_validate_json(line)
    if nl is not None:
        task = task.model_copy(update={"nl_assertions": nl})
    traj = run(run_dialogue(scenario_from_task(wf, task, 0), make_roles(None)))
    return wf, traj


def answer(passed: bool = True, blame=None, low: bool = False) -> str:
    score = 2 if low else 5
    return json.dumps({"scores": {c: {"score": score, "reason": f"{c} looks right at turn 2"} for c in
                                  ("grounded_in_text", "natural_user", "helpful_assistant", "policy_followed")},
                       "nl_assertions": [{"assertion": ASSERTION, "passed": passed,
                                          "reason": "turn 5 says 44.91" if passed else "no amount is said"}],
                       "blame": blame, "blame_reason": "the assistant never said the amount" if blame else ""})


def judge_hub(base_url: str) -> ModelHub:
    cfg = RunConfig.model_validate({"cache": False, "roles": {"judge": {
        "provider": "openai", "base_url": base_url, "model": "fake-judge", "structured_output": "tagged",
        "max_retries": 0}}})
    return ModelHub(cfg)


def test_judge_prompt_holds_text_environment_task_dialogue_and_rubric():
    wf, traj = fee_trajectory([ASSERTION])
    prompt = judge_prompt(traj, wf, "Opened electronics carry a 10% restocking fee.")
    assert "10% restocking fee" in prompt and "calculate_refund" in prompt and ASSERTION in prompt
    assert "natural_user" in prompt and "policy_followed" in prompt and "PASSED" in prompt
    assert "[1] user:" in prompt


def test_judge_through_the_fake_server_decides_assertions_and_is_recorded():
    wf, traj = fee_trajectory([ASSERTION])
    # Without a judge the assertion is pending (not part of the reward basis by default).
    assert traj.verdict.components["nl_assertions"].pending
    bad = "not json at all"
    with FakeOpenAIServer(ScriptedResponder([text(bad), text("```json\n" + answer(True) + "\n```")])) as srv:
        hub = judge_hub(srv.base_url)
        try:
            ans = run(judge_trajectory(hub.client("judge"), traj, wf))
        finally:
            hub.close()
        assert srv.count == 2  # the unusable first answer went back once
        assert "could not be used" in srv.bodies[1]["messages"][-1]["content"]
    assert ans.overall() == 1.0 and ans.scores["natural_user"].reason
    judged = apply_judge(traj, ans, model="fake-judge")
    comp = judged.verdict.components["nl_assertions"]
    assert judged.verdict.passed and comp.passed and not comp.pending
    prov = judged.provenance.judge
    assert prov["score"] == 1.0 and prov["model"] == "fake-judge" and prov["prompts_hash"] == judge_hash()
    assert prov["scores"]["policy_followed"]["score"] == 5 and prov["nl_assertions"][0]["passed"]


def test_a_failed_assertion_fails_the_verdict_and_the_judge_can_blame():
    wf, traj = fee_trajectory([ASSERTION])
    judged = apply_judge(traj, parse_judge(answer(False, blame="assistant", low=True)))
    assert not judged.verdict.passed
    assert "nl_assertion_failed" in judged.verdict.codes()
    assert judged.verdict.blame == "assistant" and judged.provenance.judge["score"] == 0.25


def test_unusable_answers_are_refused_with_the_reason():
    with pytest.raises(JudgeError, match="scores"):
        parse_judge(json.dumps({"scores": {"natural_user": {"score": 9, "reason": "x"}}}))
    with pytest.raises(JudgeError, match="missing"):
        parse_judge(json.dumps({"scores": {"natural_user": {"score": 3, "reason": "x"}}, "nl_assertions": []}))


def test_judge_all_keeps_a_trajectory_the_judge_cannot_answer():
    wf, traj = fee_trajectory()
    with FakeOpenAIServer(ScriptedResponder([text("nope"), text("still nope")])) as srv:
        hub = judge_hub(srv.base_url)
        try:
            out, reasons = run(judge_all(hub.client("judge"), [traj], wf))
        finally:
            hub.close()
    assert out[0].verdict.passed and not out[0].provenance.judge
    assert reasons and "judge answer unusable" in reasons[0]


def test_export_min_judge_gates_on_the_judge_score(tmp_path):
    wf, traj = fee_trajectory([ASSERTION])
    good = apply_judge(traj, parse_judge(answer(True)), model="m").model_copy(update={"id": "good"})
    low = apply_judge(traj, parse_judge(answer(True, low=True)), model="m").model_copy(update={"id": "low"})
    unscored = traj.model_copy(update={"id": "unscored"})
    run_dir = build_run(tmp_path / "run", offline=False)
    store = RunStore(run_dir)
    for t in (good, low, unscored):
        t = t.model_copy(update={"provenance": t.provenance.model_copy(update={"offline": False})})
        store.finish(DocOutcome(doc_id=t.id, status="kept", stage="simulate", trajectories=[("original", t)]))
    store.close()
    runner = CliRunner()
    everything = runner.invoke(app, ["export", str(run_dir), "-f", "openai", "-o", str(tmp_path / "a.jsonl"), "--json"])
    assert everything.exit_code == 0, everything.output
    total = json.loads(everything.stdout)["trajectories"]
    res = runner.invoke(app, ["export", str(run_dir), "-f", "openai", "-o", str(tmp_path / "g.jsonl"),
                              "--min-judge", "0.8", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["trajectories"] == 1 and summary["judge_left_out"] == total - 1
    assert len((tmp_path / "g.jsonl").read_text().splitlines()) == 1


def test_gem_run_with_a_judge_role_scores_originals_and_refinements(tmp_path):
    from gem_agents.run.context import open_run
    from gem_agents.run.engine import run_documents
    from tests.gem_agents.run.test_run import sample_docs

    doc = next(d for d in sample_docs() if d.id == "set_up_email_forwarding.md")
    with FakeOpenAIServer(ScriptedResponder([text(answer(True))], cycle=True)) as srv:
        cfg = RunConfig.model_validate({"rollouts": 1, "refine_rounds": 1, "cache": False, "roles": {"judge": {
            "provider": "openai", "base_url": srv.base_url, "model": "fake-judge", "structured_output": "tagged",
            "max_retries": 0}}})

        async def go():
            async with open_run(cfg, tmp_path / "run") as ctx:
                await run_documents(ctx, [doc])
                return list(ctx.store.trajectories())

        trajs = run(go())
        judged_requests = srv.count
    assert trajs and judged_requests >= len([t for t in trajs if t.messages])
    assert all(t.provenance.judge.get("model") == "fake-judge" for t in trajs if t.messages)
    assert {t.provenance.stage for t in trajs} >= {"refine"}, "refined trajectories are judged too"
