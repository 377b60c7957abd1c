"""`gem export` leaves trajectories written by the offline stand-ins out unless --include-offline."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.export import export_run
from gem_agents.run.store import DocOutcome, RunStore
from tests.gem_agents.test_audit import build_run
from tools_runtime.records import Provenance, Trajectory, Verdict

runner = CliRunner()


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_offline_trajectories_are_left_out_unless_asked_for(tmp_path):
    run = build_run(tmp_path / "run", offline=True)  # two verified trajectories, both offline
    store = RunStore(run)
    model_made = Trajectory(id="m:r0", messages=[{"role": "system", "content": "rules"},
                                                 {"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "hello"}],
                            verdict=Verdict(passed=True), provenance=Provenance(offline=False))
    store.finish(DocOutcome(doc_id="m", status="kept", stage="simulate", trajectories=[("original", model_made)]))
    store.close()

    out = tmp_path / "default.jsonl"
    res = runner.invoke(app, ["export", str(run), "--format", "openai", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["trajectories"] == 1 and summary["offline_left_out"] == 2
    assert [r["messages"][-1]["content"] for r in _lines(out)] == ["hello"]

    everything = tmp_path / "all.jsonl"
    res = runner.invoke(app, ["export", str(run), "--format", "openai", "--out", str(everything),
                              "--include-offline", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["trajectories"] == 3 and len(_lines(everything)) == 3
    assert "offline_left_out" not in json.loads(res.stdout)


def test_every_format_honours_the_offline_filter(tmp_path):
    run = build_run(tmp_path / "run", offline=True)
    assert export_run(run, "sharegpt", tmp_path / "s.json")["trajectories"] == 0
    assert export_run(run, "sharegpt", tmp_path / "s2.json", include_offline=True)["trajectories"] == 2
    syn = export_run(run, "synthesizer", tmp_path / "pairs")
    assert syn["trajectories"] == 0 and syn["offline_left_out"] == 2
