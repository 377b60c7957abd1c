"""A stage is one registered object: `gem run` and the per-stage commands use the same one, and refuse the same way."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import ROLE_NAMES, RunConfig
from gem_agents.registry import get, names
from gem_agents.run.store import RunStore
from gem_agents.stages.base import Stage
from gem_agents.stages.refine import RefineOutcome, RefineResult
from tools_runtime.records import Relevance
from tools_runtime.refine_ops import OPS
from tools_runtime.refine_tasks import TASK_OPS

REPO = Path(__file__).resolve().parents[3]
OFFLINE = REPO / "configs" / "offline.yaml"
WF = REPO / "examples" / "workflows" / "shop_return.json"
runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines anywhere


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_an_unknown_refine_operator_is_refused_the_same_way_by_gem_run_and_gem_refine(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("refine_ops: [chain_goals, chain_goalz]\n", encoding="utf-8")
    message = f"refine_ops: unknown refine operator(s): chain_goalz; known: {', '.join([*OPS, *TASK_OPS])}"
    run = runner.invoke(app, ["run", str(cfg), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q"])
    # The trajectory file does not exist: the operators are checked before any input is read.
    refine = runner.invoke(app, ["refine", str(tmp_path / "none.jsonl"), "--workflows", str(WF), "--out",
                                 str(tmp_path / "ref"), "--ops", "chain_goals,chain_goalz", "-q"])
    assert run.exit_code == refine.exit_code == 2, (run.output, refine.output)
    assert message in flat(run.output) and message in flat(refine.output)
    assert str(cfg) in flat(run.output)  # gem run names the config file too
    assert not (tmp_path / "r").exists() and not (tmp_path / "ref").exists()  # refused before any work


@pytest.mark.parametrize("command", ["filter", "extract", "run", "refine", "verify"])
def test_empty_input_is_the_same_usage_error_for_every_command(tmp_path, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    out = tmp_path / "out"
    args = {"run": ["run", str(OFFLINE), "--input", str(empty), "--out", str(out)],
            "refine": ["refine", str(empty), "--workflows", str(WF), "--out", str(out)],
            "verify": ["verify", str(empty), "--workflow", str(WF)]}.get(
        command, [command, str(empty), "--out", str(out / "o.jsonl"), "--offline"])
    res = runner.invoke(app, [*args, "-q"] if command != "verify" else args)
    assert res.exit_code == 2, res.output
    assert "no trajectories" in flat(res.output) if command in ("refine", "verify") else \
        "holds no documents" in flat(res.output)


def test_a_trajectory_file_with_no_usable_line_is_a_usage_error(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text("{oops\n[]\n", encoding="utf-8")
    res = runner.invoke(app, ["refine", str(bad), "--workflows", str(WF), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and "no usable trajectories (2 lines skipped" in flat(res.output), res.output
    res = runner.invoke(app, ["verify", str(bad), "--workflow", str(WF)])
    assert res.exit_code == 2 and "no trajectories to verify" in flat(res.output), res.output


def test_every_registered_stage_has_roles_preflight_and_an_async_run_step():
    stages = names("stage")
    assert {"filter", "extract", "tasks", "simulate", "refine", "oneshot", "verify_oneshot"} <= set(stages)
    default = RunConfig()
    for name in stages:
        stage = get("stage", name)
        assert isinstance(stage, Stage) and stage.name == name
        assert inspect.iscoroutinefunction(stage.run), name
        assert stage.roles and set(stage.roles) <= set(ROLE_NAMES), name
        assert isinstance(stage.preflight(default), list), name
        for path in stage.reads:  # every config key a stage says it reads exists
            value: object = default
            for part in path.split("."):
                value = getattr(value, part)
    # The one-shot stages need a model; the offline default config has none.
    assert "roles.synthesizer" in get("stage", "oneshot").preflight(default)[0]
    assert get("stage", "refine").preflight(RunConfig(refine_ops=["branch", "nope"]))[0].startswith(
        "refine_ops: unknown refine operator(s): nope;")


def test_pipelines_name_registered_stages_and_run_refine_only_when_asked():
    assert {"full", "synthesizer"} <= set(names("pipeline"))
    for name in names("pipeline"):
        pipeline = get("pipeline", name)
        assert all(get("stage", s) is not None for s in pipeline.slots.values())
    full = get("pipeline", "full")
    assert set(full.stages(RunConfig())) == {"filter", "extract", "tasks", "simulate", "refine"}
    assert "refine" not in full.stages(RunConfig(refine_rounds=0))
    assert full.stages(RunConfig())["filter"] is get("pipeline", "synthesizer").stages(RunConfig())["filter"]


def test_gem_filter_and_gem_run_call_the_same_filter_stage(tmp_path, monkeypatch):
    stage = get("stage", "filter")
    seen: list[str] = []

    async def patched(env, doc):
        seen.append(doc.id)
        return Relevance(multi_step=False, summary="patched", decided_by="prefilter")

    monkeypatch.setattr(stage, "run", patched)
    res = runner.invoke(app, ["filter", str(SAMPLES), "--out", str(tmp_path / "rel.jsonl"), "--offline", "-q"])
    assert res.exit_code == 0, res.output
    assert {r["summary"] for r in read_jsonl(tmp_path / "rel.jsonl")} == {"patched"}
    n = len(seen)
    assert n == len(list(SAMPLES.glob("*.md")))
    res = runner.invoke(app, ["run", str(OFFLINE), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q",
                              "--no-report"])
    assert res.exit_code == 0, res.output
    assert len(seen) == 2 * n  # every document went through the patched stage in gem run too
    store = RunStore(tmp_path / "r", readonly=True)
    try:
        assert {d["status"] for d in store.documents()} == {"rejected"}
    finally:
        store.close()


def test_gem_refine_and_gem_run_call_the_same_refine_stage(tmp_path, monkeypatch):
    sim = runner.invoke(app, ["simulate", str(WF), "--rollouts", "1", "--out", str(tmp_path / "sim"), "-q"])
    assert sim.exit_code == 0, sim.output
    stage = get("stage", "refine")
    calls: list[int] = []

    async def patched(env, jobs, on_done=None):
        calls.append(len(jobs))
        outcomes = [RefineOutcome(job, RefineResult(rejected=["patched refiner"])) for job in jobs]
        for o in outcomes:
            if on_done is not None:
                on_done(o)
        return outcomes

    monkeypatch.setattr(stage, "run", patched)
    out = tmp_path / "ref"
    res = runner.invoke(app, ["refine", str(tmp_path / "sim" / "trajectories.jsonl"), "--workflows", str(WF),
                              "--out", str(out), "-q"])
    assert res.exit_code == 1, res.output  # nothing refined
    assert calls == [1] and read_jsonl(out / "rejected.jsonl")[0]["reasons"] == ["patched refiner"]
    res = runner.invoke(app, ["run", str(OFFLINE), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q",
                              "--no-report"])
    assert res.exit_code == 0, res.output
    assert len(calls) > 1 and all(n > 0 for n in calls[1:])
    store = RunStore(tmp_path / "r", readonly=True)
    try:
        assert store.counts()["trajectories"].get("refined", {}).get("verified", 0) == 0
        assert any("patched refiner" in r for d in store.documents() for r in d["reasons"])
    finally:
        store.close()


def test_a_pipeline_registered_at_run_time_is_chosen_by_name_from_the_config(tmp_path, monkeypatch):
    from gem_agents import registry
    from gem_agents.stages.pipelines import Pipeline

    names("pipeline")  # the built-ins are loaded first; the new one is removed again at teardown
    monkeypatch.setitem(registry._REGISTRY["pipeline"], "no_refine", Pipeline(
        name="no_refine", slots={"filter": "filter", "extract": "extract", "tasks": "tasks", "simulate": "simulate"}))
    cfg = tmp_path / "c.yaml"
    text = OFFLINE.read_text(encoding="utf-8")
    assert "pipeline: full\n" in text
    cfg.write_text(text.replace("pipeline: full\n", "pipeline: no_refine\n"), encoding="utf-8")
    res = runner.invoke(app, ["run", str(cfg), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q",
                              "--no-report", "--json"])
    assert res.exit_code == 0, res.output
    totals = json.loads(res.stdout.strip().splitlines()[-1])["totals"]["trajectories"]
    assert totals["original"]["verified"] > 0 and "refined" not in totals
