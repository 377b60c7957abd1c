"""`gem refine` runs the judge when the config has roles.judge: through the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.config import RunConfig
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.stages.judge import judge_hash
from gem_agents.stages.refine import TaskRefinement, refine_to_tasks
from gem_agents.testing.fake_openai import FakeOpenAIServer, text
from graphs.rollouts import run_dialogue
from tools_runtime.records import Trajectory
from tools_runtime.tasks import Task, scenario_from_task
from tools_runtime.workflow_io import load_workflow

REPO = Path(__file__).resolve().parents[3]
ENVS = REPO / "examples" / "environments"
ENV = ENVS / "support_ticket.json"
runner = CliRunner()


class AssertionJudge:
    """A judge double: reads the ASSERTIONS block of the judge prompt and decides each one as told."""

    def __init__(self, passed: bool = True) -> None:
        self.passed = passed
        self.prompts: list[str] = []

    def __call__(self, body: dict[str, Any]) -> Any:
        prompt = str(body["messages"][0]["content"])
        self.prompts.append(prompt)
        block = prompt.split("ASSERTIONS:\n", 1)[1].split("\n\nVERIFICATION:", 1)[0]
        assertions = [line[2:] for line in block.splitlines() if line.startswith("- ")]
        return text(json.dumps({
            "scores": {c: {"score": 4, "reason": f"{c}: fine"} for c in
                       ("grounded_in_text", "natural_user", "helpful_assistant", "policy_followed")},
            "nl_assertions": [{"assertion": a, "passed": self.passed, "reason": "turn 3"} for a in assertions],
            "blame": None if self.passed else "assistant", "blame_reason": ""}))


def env_tasks(env: Path) -> list[Task]:
    return [Task.model_validate_json(x) for x in env.with_suffix(".tasks.jsonl").read_text().splitlines() if x.strip()]


def dialogue(env: Path, task_id: str) -> Trajectory:
    """A verified original dialogue of an example environment's task (scripted roles)."""
    task = next(t for t in env_tasks(env) if t.id == task_id)
    traj = asyncio.run(run_dialogue(scenario_from_task(load_workflow(env), task, 0), make_roles(None)))
    assert traj.verdict is not None and traj.verdict.passed
    return traj


def original(tmp_path: Path, task_id: str = "report-laptop") -> Path:
    """One verified original dialogue, as `gem refine` reads it."""
    traj = dialogue(ENV, task_id)
    path = tmp_path / "orig.jsonl"
    path.write_text(traj.model_dump_json() + "\n", encoding="utf-8")
    return path


def judge_config(tmp_path: Path, base_url: str) -> Path:
    cfg = tmp_path / "cfg.yaml"
    role = {"provider": "openai", "base_url": base_url, "model": "fake-judge", "structured_output": "tagged",
            "max_retries": 0}
    cfg.write_text(yaml.safe_dump({"cache": False, "roles": {"judge": role}}), encoding="utf-8")
    return cfg


def refine(tmp_path: Path, src: Path, *extra: str) -> tuple[dict, list[dict], list[dict]]:
    out = tmp_path / f"ref{len(list(tmp_path.glob('ref*')))}"
    res = runner.invoke(app, ["refine", str(src), "--workflows", str(ENV), "--out", str(out), "--json", "-q", *extra])
    assert res.exit_code in (0, 1), res.output
    rows = [json.loads(x) for x in (out / "refined.jsonl").read_text().splitlines() if x.strip()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines() if x.strip()]
    return json.loads(res.stdout.strip().splitlines()[-1]), rows, rejected


def test_gem_refine_judges_refined_dialogues_and_records_it(tmp_path):
    src = original(tmp_path)
    judge = AssertionJudge(passed=True)
    with FakeOpenAIServer(judge) as srv:
        summary, rows, _ = refine(tmp_path, src, "--config", str(judge_config(tmp_path, srv.base_url)))
    assert summary["refined"] == 1 and len(rows) == 1
    prov = rows[0]["provenance"]
    assert prov["stage"] == "refine" and prov["judge"]["model"] == "fake-judge"
    assert prov["judge"]["prompts_hash"] == judge_hash() and prov["judge"]["score"] == 0.75
    # The judge read the text, the refined task and its dialogue, and decided the refined task's assertions.
    assert judge.prompts and all("DIALOGUE:\n[0]" in p for p in judge.prompts)
    task = rows[0]["scenario"]["task"]
    # Three requests at least (the original's and two refinements'; a request that reads its ticket back leaves
    # long context, which would read it again, out).
    assert len(task["meta"]["requests"]) >= 3 and task["meta"]["composed"]
    assert any(task["meta"]["requests"][-1]["instruction"][:40] in p for p in judge.prompts)
    assert prov["judge"]["nl_assertions"] == [] == task["nl_assertions"]


def judge_hub(base_url: str) -> ModelHub:
    return ModelHub(RunConfig.model_validate({"cache": False, "roles": {"judge": {
        "provider": "openai", "base_url": base_url, "model": "fake-judge", "structured_output": "tagged",
        "max_retries": 0}}}))


def test_a_refusal_verifies_only_when_the_judge_sees_it():
    env = ENVS / "shop_return.json"
    wf, orig, tasks = load_workflow(env), dialogue(env, "refund-after-fee"), env_tasks(env)

    def go(judge_client) -> TaskRefinement:
        return asyncio.run(refine_to_tasks(wf, orig, make_roles(None), siblings=tasks, ops=["policy_refusal"],
                                           singles=True, compose=False, judge=judge_client))

    # Without a judge the refusal's assertion stays pending: dropped, never exported.
    res = go(None)
    assert len(res.tasks) == 1 and res.tasks[0].meta["branches"][0].startswith("refuse:")
    assert not res.trajectories and [d.code for d in res.drops] == ["unverified"]
    assert "judge_required" in res.drops[0].reason
    for passed in (True, False):
        with FakeOpenAIServer(AssertionJudge(passed=passed)) as srv:
            hub = judge_hub(srv.base_url)
            try:
                res = go(hub.client("judge"))
            finally:
                hub.close()
        assert len(res.trajectories) == int(passed), res.drops
        if passed:
            traj = res.trajectories[0]
            assert traj.verdict.passed and traj.provenance.judge["nl_assertions"][0]["passed"]
            assert "refuses" in traj.provenance.judge["nl_assertions"][0]["assertion"]
