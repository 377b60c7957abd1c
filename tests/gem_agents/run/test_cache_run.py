"""The model-call cache across runs: a second run makes zero endpoint calls (counted at the fake server)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.ingest import read_documents
from gem_agents.run.store import RunStore
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.tasks import write_tasks_offline
from gem_agents.testing.fake_openai import FakeOpenAIServer
from gem_agents.testing.role_responder import RoleResponder
from tools_runtime.tasks import scenario_from_task

runner = CliRunner()


def sample_scenarios():
    """The scenarios the run will simulate (rule-based environment, offline tasks, seed 0), for the responder."""
    docs, _ = read_documents(SAMPLES)
    out = []
    for doc in docs:
        res = extract_offline(doc, max_tools=12)
        if res.workflow is not None:
            tasks, _ = write_tasks_offline(res.workflow, doc.text, k=3, seed=0)
            out += [scenario_from_task(res.workflow, t, 0) for t in tasks]
    return out


def config_for(base_url: str, path: Path) -> Path:
    role = {"provider": "openai", "model": "fake-model", "base_url": base_url, "max_retries": 0, "concurrency": 4}
    path.write_text(json.dumps({"rollouts": 1, "refine_rounds": 0, "roles": {"user": role, "assistant": role}}))
    return path


def run(cfg: Path, out: Path, cache: Path) -> dict:
    res = runner.invoke(app, ["run", str(cfg), "--input", str(SAMPLES), "--out", str(out), "--cache", str(cache),
                              "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def stored(out: Path) -> tuple[dict, dict]:
    store = RunStore(out, readonly=True)
    try:
        # commit order follows completion order, which concurrency makes vary: compare by id
        return ({t.id: t.messages for t in store.trajectories()}, store.get_meta("usage"))
    finally:
        store.close()


def test_second_run_spends_nothing(tmp_path):
    cache = tmp_path / "calls.sqlite"
    with FakeOpenAIServer(RoleResponder(sample_scenarios())) as srv:
        cfg = config_for(srv.base_url, tmp_path / "run.yaml")
        first = run(cfg, tmp_path / "a", cache)
        n = srv.count
        second = run(cfg, tmp_path / "b", cache)
        assert srv.count == n  # zero endpoint calls the second time
    assert n > 0
    assert first["totals"] == second["totals"]
    assert first["totals"]["trajectories"]["original"]["verified"] >= 3
    msgs_a, usage_a = stored(tmp_path / "a")
    msgs_b, usage_b = stored(tmp_path / "b")
    assert msgs_a == msgs_b
    # Tokens are counted per stage: spent in the first run, saved (served from the cache) in the second.
    assert usage_a["assistant"]["calls"] > 0 and usage_a["assistant"]["input_tokens"] > 0
    assert usage_a["user"]["calls"] > 0
    assert sum(u["calls"] for u in usage_b.values()) == 0
    assert usage_b["assistant"]["cached_calls"] == usage_a["assistant"]["calls"]
    assert usage_b["assistant"]["saved_tokens"] == usage_a["assistant"]["input_tokens"] + \
        usage_a["assistant"]["output_tokens"]
