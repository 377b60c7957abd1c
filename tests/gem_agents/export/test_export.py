"""Exports: only verified trajectories, round trips of every format, and the Qwen3 chat template renders them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import RunConfig
from gem_agents.export import available_formats, export_run
from gem_agents.export.chat_template import load_template, render_chat
from gem_agents.export.fmt_sharegpt import from_sharegpt, to_sharegpt
from gem_agents.export.records import openai_record
from gem_agents.ingest import read_documents
from gem_agents.run.context import open_run
from gem_agents.run.engine import run_documents
from gem_agents.run.store import DocOutcome, RunStore
from tools_runtime.records import Failure, Trajectory, Verdict

runner = CliRunner()

PARALLEL = [
    {"role": "system", "content": "You help with the office portal."},
    {"role": "user", "content": "Find rooms in building A and B."},
    {"role": "assistant", "content": "Let me look both up.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "search_rooms", "arguments": "{\"building\": \"A\"}"}},
        {"id": "c2", "type": "function", "function": {"name": "search_rooms", "arguments": "{\"building\": \"B\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "search_rooms", "content": "{\"count\": 1}"},
    {"role": "tool", "tool_call_id": "c2", "name": "search_rooms", "content": "{\"count\": 2}"},
    {"role": "assistant", "content": "Building A has 1 room, building B has 2."},
]
TOOLS = [{"type": "function", "function": {"name": "search_rooms", "description": "Search rooms.",
                                            "parameters": {"type": "object",
                                                           "properties": {"building": {"type": "string"}},
                                                           "required": ["building"]}}}]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An offline run on the samples, plus a hand-made verified trajectory with parallel calls and a failed one."""
    out = tmp_path_factory.mktemp("export") / "run"
    docs, _ = read_documents(SAMPLES)

    async def go():
        async with open_run(RunConfig(), out) as ctx:
            await run_documents(ctx, docs)

    asyncio.run(go())
    store = RunStore(out)
    good = Trajectory(id="manual:parallel", messages=PARALLEL, tools=TOOLS, verdict=Verdict(passed=True))
    bad = Trajectory(id="manual:failed", messages=PARALLEL[:3], tools=TOOLS,
                     verdict=Verdict(passed=False, failures=[Failure(code="unanswered_call", reason="x")]))
    store.finish(DocOutcome(doc_id="manual", status="kept", stage="simulate",
                            trajectories=[("original", good), ("original", bad)]))
    store.close()
    return out


def verified(run_dir: Path) -> list[Trajectory]:
    store = RunStore(run_dir, readonly=True)
    try:
        return list(store.trajectories(verified_only=True))
    finally:
        store.close()


def test_formats_are_discovered():
    assert {"openai", "sharegpt", "hf"} <= set(available_formats())
    with pytest.raises(ValueError, match="available: "):
        export_run(".", "nope", "x")


def test_openai_jsonl_round_trip_only_verified(run_dir, tmp_path):
    out = tmp_path / "o.jsonl"
    summary = export_run(run_dir, "openai", out, include_offline=True)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    want = verified(run_dir)
    assert summary["trajectories"] == len(lines) == len(want) >= 7
    assert lines == [openai_record(t) for t in want]
    assert all(set(rec) == {"messages", "tools"} for rec in lines)
    assert not any(rec["messages"] == PARALLEL[:3] for rec in lines)  # the failed one stayed out
    for rec in lines:
        for m in rec["messages"]:
            assert m["role"] in ("system", "user", "assistant", "tool")
            assert isinstance(m["content"], str)
            for c in m.get("tool_calls", []):
                json.loads(c["function"]["arguments"])


def test_sharegpt_as_llama_factory_reads_it(run_dir, tmp_path, shared_dir):
    out = tmp_path / "s.json"
    summary = export_run(run_dir, "sharegpt", out, include_offline=True)
    records = json.loads(out.read_text())
    reference = json.loads((shared_dir / "data/bench/formats/glaive_toolcall_en_demo_first50.json").read_text())
    ref_keys = set().union(*(set(r) for r in reference))
    ref_roles = {t["from"] for r in reference for t in r["conversations"]}
    assert summary["trajectories"] == len(records) == len(verified(run_dir))
    for rec in records:
        assert set(rec) - {"system"} <= ref_keys
        assert isinstance(rec["tools"], str)
        for tool in json.loads(rec["tools"]):
            assert set(tool) >= {"name", "description", "parameters"}
        turns = rec["conversations"]
        assert {t["from"] for t in turns} <= ref_roles
        assert len(turns) % 2 == 0
        for i, t in enumerate(turns):  # LLaMA-Factory's alternation rule
            assert (t["from"] in ("human", "observation")) == (i % 2 == 0)
            assert isinstance(t["value"], str)
    parallel = next(r for r in records if r.get("system") == PARALLEL[0]["content"])
    calls = json.loads(parallel["conversations"][1]["value"])
    assert [c["arguments"] for c in calls] == [{"building": "A"}, {"building": "B"}]
    assert json.loads(parallel["conversations"][2]["value"]) == [{"count": 1}, {"count": 2}]
    assert summary["dropped_texts"] >= 1  # the parallel record's "Let me look both up."


def _comparable(record: dict) -> list[tuple]:
    out = []
    for m in record["messages"]:
        calls = tuple((c["function"]["name"], json.loads(c["function"]["arguments"])) for c in m.get("tool_calls", []))
        content = "" if m.get("tool_calls") else m["content"]
        out.append((m["role"], content, json.dumps(calls, sort_keys=True), m.get("name", "")))
    return out


def test_sharegpt_round_trip(run_dir):
    for t in verified(run_dir):
        rec = openai_record(t)
        sg, _ = to_sharegpt(rec)
        assert sg is not None
        back = from_sharegpt(sg)
        assert back["tools"] == rec["tools"]
        msgs = rec["messages"]
        while msgs and msgs[-1]["role"] == "user":  # a record ends on the model's side
            msgs = msgs[:-1]
        assert _comparable(back) == _comparable({"messages": msgs})


def test_hf_dataset_round_trip(run_dir, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the 'export' extra (datasets) is not installed")
    out = tmp_path / "hf"
    summary = export_run(run_dir, "hf", out, include_offline=True)
    ds = datasets.load_from_disk(str(out))
    want = verified(run_dir)
    assert summary["trajectories"] == len(ds) == len(want)
    assert set(ds.column_names) == {"id", "kind", "messages", "tools"}
    for row, t in zip(ds, want, strict=True):
        rec = openai_record(t)
        messages, tools = row["messages"], row["tools"]
        if summary["encoding"] == "json_string":
            messages, tools = json.loads(messages), json.loads(tools)
        assert row["id"] == t.id
        assert messages == rec["messages"] and tools == rec["tools"]


def test_every_export_renders_through_the_qwen3_template(run_dir, tmp_path, shared_dir):
    template = load_template(shared_dir / "data/bench/chat_templates/qwen3_tokenizer_config.json")
    out = tmp_path / "o.jsonl"
    export_run(run_dir, "openai", out, include_offline=True)
    n = 0
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        text = render_chat(template, rec["messages"], rec["tools"])
        calls = sum(len(m.get("tool_calls", [])) for m in rec["messages"])
        results = sum(1 for m in rec["messages"] if m["role"] == "tool")
        dialogue = text.split("<|im_end|>", 1)[1]  # after the system turn, which explains the tags
        assert dialogue.count("<tool_call>") == calls
        assert dialogue.count("<tool_response>") == results
        assert text.count("<|im_start|>assistant") == sum(1 for m in rec["messages"] if m["role"] == "assistant")
        system = text.split("<|im_end|>", 1)[0]
        assert all(f'"name": "{t["function"]["name"]}"' in system for t in rec["tools"])  # schemas in the system turn
        n += 1
    assert n >= 7


def test_gem_export_cli(run_dir, tmp_path):
    out = tmp_path / "x.jsonl"
    res = runner.invoke(app, ["export", str(run_dir), "--format", "openai", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["trajectories"] == len(out.read_text().splitlines())
    bad = runner.invoke(app, ["export", str(run_dir), "--format", "csv", "--out", str(out)])
    assert bad.exit_code == 2 and "available: " in " ".join(bad.output.split())
    missing = runner.invoke(app, ["export", str(tmp_path / "none"), "--out", str(out)])
    assert missing.exit_code == 2 and "not a run directory" in " ".join(missing.output.split())
    folder = tmp_path / "a_folder"
    folder.mkdir()
    res = runner.invoke(app, ["export", str(run_dir), "--format", "openai", "--out", str(folder)])
    assert res.exit_code == 2 and "is a folder" in res.output, res.output
    assert not list(tmp_path.glob("*.part")) and list(folder.iterdir()) == []
