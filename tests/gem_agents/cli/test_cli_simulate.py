"""`gem simulate` and `gem verify`: files, summaries, exit codes, checkpoints, third-party trajectories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from gem_agents.cli import app
from tools_runtime.verification import mutations

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / "examples" / "workflows" / "shop_return.json"
runner = CliRunner()


def simulate(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    out = tmp_path / "sim"
    res = runner.invoke(app, ["simulate", str(WORKFLOW), "--rollouts", "3", "--out", str(out), "--json", *extra])
    assert res.exit_code == 0, res.output
    return out / "trajectories.jsonl", json.loads(res.output.strip().splitlines()[-1])


def test_simulate_writes_every_trajectory_with_its_verdict(tmp_path):
    path, summary = simulate(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == summary["rollouts"] == 3 and summary["verified"] == 3
    assert {r["provenance"]["seed"] for r in rows} == {0, 1, 2}
    assert all(r["verdict"]["passed"] and r["tools"] and r["stats"]["tool_calls"] > 0 for r in rows)
    assert summary["stats"]["tool_calls"] == sum(r["stats"]["tool_calls"] for r in rows) / 3


def test_verify_passes_ours_and_rejects_a_mutated_one(tmp_path):
    path, _ = simulate(tmp_path)
    res = runner.invoke(app, ["verify", str(path), "--workflow", str(WORKFLOW), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1]) == {"trajectories": 3, "passed": 3, "failed": 0}
    row = json.loads(path.read_text().splitlines()[0])
    row["messages"] = mutations.drop_call(row["messages"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    res = runner.invoke(app, ["verify", str(bad), "--workflow", str(WORKFLOW), "--json"])
    assert res.exit_code == 1
    verdict = json.loads(res.output.strip().splitlines()[0])
    assert not verdict["passed"] and "missing_required_call" in {f["code"] for f in verdict["failures"]}


def test_verify_reads_third_party_openai_format(tmp_path):
    path, _ = simulate(tmp_path)
    row = json.loads(path.read_text().splitlines()[1])
    plain = {"messages": row["messages"], "tools": row["tools"]}  # no scenario, no provenance
    f = tmp_path / "third_party.jsonl"
    f.write_text(json.dumps(plain) + "\n")
    # Without provenance the seed must be given: the trajectory was simulated with seed 1.
    assert runner.invoke(app, ["verify", str(f), "--workflow", str(WORKFLOW), "--seed", "1"]).exit_code == 0
    assert runner.invoke(app, ["verify", str(f), "--workflow", str(WORKFLOW), "--seed", "0"]).exit_code == 1


def test_checkpoints_file_keeps_a_thread_per_rollout(tmp_path):
    db = tmp_path / "ckpt.sqlite"
    _, summary = simulate(tmp_path, "--checkpoints", str(db))
    assert summary["verified"] == 3
    with sqlite3.connect(db) as con:
        threads = {r[0] for r in con.execute("SELECT DISTINCT thread_id FROM checkpoints")}
        per_thread = con.execute("SELECT COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall()
    assert len(threads) == 3 and all(n > 5 for (n,) in per_thread)


def test_simulate_bad_workflow_exits_2_and_names_the_file(tmp_path):
    bad = tmp_path / "wf.json"
    bad.write_text('{"id": "x", "execution_graph": "(a)->(b)", "tools": [')
    res = runner.invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "wf.json" in res.output


def test_model_commands_without_their_api_key_exit_2_naming_the_role(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = str(REPO / "configs" / "openai.yaml")
    docs = tmp_path / "d.jsonl"
    docs.write_text('{"id": "a", "text": "1. Open Settings.\\n2. Click Wi-Fi.\\n3. Turn it off."}\n')
    commands = [
        ["simulate", str(WORKFLOW), "--policy", "model", "--config", cfg, "--out", str(tmp_path / "s")],
        ["debug", str(WORKFLOW), "--policy", "model", "--config", cfg, "--script", str(docs)],
        ["extract", str(docs), "--config", cfg, "--out", str(tmp_path / "e.jsonl")],
        ["filter", str(docs), "--config", cfg, "--out", str(tmp_path / "f.jsonl")],
    ]
    for args in commands:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args[0], res.output)
        assert "OPENAI_API_KEY is not set" in res.output and "roles." in res.output, (args[0], res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), (args[0], res.exception)


def test_a_folder_given_as_the_workflow_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["simulate", str(WORKFLOW.parent), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is a folder" in res.output, res.output
