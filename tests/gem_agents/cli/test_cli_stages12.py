"""`gem filter` and `gem extract`: records, summaries, exit codes, atomic output, a model endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text
from tests.gem_agents.stages.test_extract import tagged
from tools_runtime.workflow_io import load_workflows

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()

PROCEDURE = ("# Disconnect a Bluetooth device\n1. Open the Activities overview and start typing Bluetooth.\n"
             "2. Click on Bluetooth to open the panel.\n3. Select the device which you want to disconnect.\n"
             "4. Switch the Connection switch to off.\n")
PROSE = "The Academy Award for Best Production Design recognizes achievement for art direction in film."


def write_input(tmp_path: Path, *extra: str) -> Path:
    f = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": "proc", "text": PROCEDURE}), json.dumps({"id": "prose", "text": PROSE}), *extra]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_filter_offline(tmp_path):
    src = write_input(tmp_path, "{broken json")
    out = tmp_path / "out" / "rel.jsonl"
    res = runner.invoke(app, ["filter", str(src), "--out", str(out), "--offline", "--quiet"])
    assert res.exit_code == 0, res.output
    recs = read_jsonl(out)
    assert [r["id"] for r in recs] == ["proc", "prose"]
    assert set(recs[0]) == {"id", "multi_step", "summary", "domain", "platform", "task", "decided_by"}
    assert recs[0]["multi_step"] is True and recs[0]["decided_by"] == "prefilter"
    assert recs[0]["summary"] == "Disconnect a Bluetooth device"
    assert recs[1]["multi_step"] is False
    assert f"{src}:3" in res.stderr and "invalid JSON" in res.stderr  # problems by file:line
    assert "kept" in res.stderr and "not multi-step (prefilter)" in res.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["rel.jsonl"]  # no temp file left behind


def test_extract_offline_records_round_trip(tmp_path):
    src = write_input(tmp_path)
    out = tmp_path / "wf.jsonl"
    res = runner.invoke(app, ["extract", str(src), "--out", str(out), "--offline", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kept"] == 1 and summary["reasons"] == {"not multi-step": 1}
    recs = read_jsonl(out)
    assert set(recs[0]["workflow"]) >= {"steps", "execution_graph", "tools"}
    assert recs[1]["rejected"] == ["not multi-step (decided by prefilter)"]
    workflows = load_workflows(out)  # the output is readable by the rest of the pipeline
    # The page's open/click steps fold into its capability: a device list and set_connection.
    assert [w.id for w in workflows] == ["proc"] and [t.name for t in workflows[0].tools] == ["list_devices",
                                                                                            "set_connection"]
    assert workflows[0].effects["set_connection"].kind == "update"


def test_extract_no_filter_and_given_relevance(tmp_path):
    src = tmp_path / "joined.jsonl"
    src.write_text(json.dumps({"id": "j", "text": PROCEDURE, "multi_step": False}) + "\n"
                   + json.dumps({"id": "p", "text": PROSE}) + "\n", encoding="utf-8")
    out = tmp_path / "wf.jsonl"
    assert runner.invoke(app, ["extract", str(src), "--out", str(out), "--offline", "-q"]).exit_code == 0
    recs = read_jsonl(out)
    assert recs[0]["rejected"] == ["not multi-step (decided by input)"]
    assert runner.invoke(app, ["extract", str(src), "--out", str(out), "--offline", "--no-filter", "-q"]).exit_code == 0
    recs = read_jsonl(out)
    assert "fewer than 2 steps" in recs[1]["rejected"][0]


@pytest.mark.parametrize("cmd", ["filter", "extract"])
def test_missing_or_unusable_input_exits_2(tmp_path, cmd):
    res = runner.invoke(app, [cmd, str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--offline"])
    assert res.exit_code == 2 and "no such file" in res.stderr
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x00\x01\x02" * 50)
    res = runner.invoke(app, [cmd, str(binary), "--out", str(tmp_path / "o.jsonl"), "--offline"])
    assert res.exit_code == 2 and "binary file" in res.stderr
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("limits: {repair_rounds: -1}\n", encoding="utf-8")
    res = runner.invoke(app, [cmd, str(write_input(tmp_path)), "--out", str(tmp_path / "o.jsonl"),
                              "--config", str(bad_cfg)])
    assert res.exit_code == 2 and "repair_rounds" in res.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_a_crash_never_leaves_a_torn_file(tmp_path, monkeypatch):
    src = write_input(tmp_path)
    out = tmp_path / "wf.jsonl"
    out.write_text("previous complete output\n", encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("crash in the middle")

    monkeypatch.setattr("gem_agents.stages.extract.extract_offline", boom)  # the stage the command calls
    res = runner.invoke(app, ["extract", str(src), "--out", str(out), "--offline", "-q"])
    # The CLI's one error handler: exit 1 with the error named, never a traceback.
    assert res.exit_code == 1 and "crash in the middle" in res.output and "Traceback" not in res.output
    assert out.read_text(encoding="utf-8") == "previous complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "wf.jsonl"]


def test_filter_and_extract_with_a_model_endpoint(tmp_path):
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"id": "proc", "text": PROCEDURE}) + "\n", encoding="utf-8")
    replies = [text("<multi_step>True</multi_step><summary>Print.</summary><domain>computers</domain>"
                    "<platform>computer</platform><task>printing</task>"),
               text(tagged(graph="(open_document)->(select_printer)->(print_it)")), text(tagged())]
    with FakeOpenAIServer(ScriptedResponder(replies)) as srv:
        role = {"provider": "openai", "base_url": srv.base_url, "model": "fake", "structured_output": "tagged",
                "max_retries": 0}
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({"cache": False, "roles": {"filter": role, "extract": role}}), encoding="utf-8")
        out = tmp_path / "wf.jsonl"
        res = runner.invoke(app, ["extract", str(src), "--out", str(out), "--config", str(cfg), "-q"])
        assert res.exit_code == 0, res.output
        assert srv.count == 3
    rec = read_jsonl(out)[0]
    assert rec["decided_by"] == "model" and rec["rounds"] == 2
    assert rec["workflow"]["platform"] == "computer"
    assert [t["name"] for t in rec["workflow"]["tools"]] == ["open_document", "select_printer", "print_document"]


def test_subprocess_gem_extract_offline_on_corpus_lines(corpus_path, tmp_path):
    lines = corpus_path.read_text(encoding="utf-8").splitlines()[:4]
    src = tmp_path / "few.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "wf.jsonl"
    gem = Path(sys.executable).parent / "gem"
    proc = subprocess.run([str(gem), "extract", str(src), "--out", str(out), "--offline"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    assert [r["id"] for r in recs] == [json.loads(line)["id"] for line in lines]
    assert any("workflow" in r for r in recs)
    assert "gem extract" in proc.stderr and "kept" in proc.stderr
