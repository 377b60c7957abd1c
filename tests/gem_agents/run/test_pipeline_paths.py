"""The plain pipeline loop against the LangGraph pipeline graph: the same stored bytes, and resume on either path.

`gem run` takes the plain loop by default and the graph under GEM_PIPELINE=graph. On the bundled
samples (every role scripted) and on the recorded GNOME pages (every model role on the fake
OpenAI-compatible server) both must store byte-identical records — documents (all but their timing
columns), trajectories and tasks — and emit the same stage events in the same order per document.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import RunConfig
from gem_agents.ingest import read_documents
from gem_agents.run.context import CHECKPOINTS_NAME, open_run
from gem_agents.run.document import process_document
from gem_agents.testing.fake_openai import FakeOpenAIServer, Faults, RecordedResponder
from graphs.pipeline import PipelineStages

REPO = Path(__file__).resolve().parents[3]
RECORDED = REPO / "tests" / "data" / "recorded"
runner = CliRunner()


_CALL_ID = re.compile(r"call_[0-9a-f]+_\d+")


def opaque_ids(record: str) -> str:
    """A record with its tool-call ids numbered in order of appearance. The fake server names ids after the
    request body and how often it saw it; two rollouts that send the same body at once can swap those
    occurrences, which says nothing about either path."""
    seen: dict[str, str] = {}
    return _CALL_ID.sub(lambda m: seen.setdefault(m.group(0), f"call_{len(seen)}"), record)


def stored(out: Path) -> dict[str, list[tuple]]:
    """Every stored row but the timing columns (`seconds`, `finished`), in a stable order."""
    db = sqlite3.connect(out / "run.sqlite")
    try:
        return {
            "documents": db.execute("SELECT doc_id, source, text, status, stage, relevance, workflow, reasons, error "
                                    "FROM documents ORDER BY doc_id").fetchall(),
            "trajectories": [(*row[:4], opaque_ids(row[4])) for row in db.execute(
                "SELECT id, doc_id, kind, passed, record FROM trajectories ORDER BY id")],
            "tasks": db.execute("SELECT * FROM tasks ORDER BY doc_id, task_id").fetchall(),
        }
    finally:
        db.close()


def stage_events(log: Path) -> dict[str, list[tuple]]:
    """Per document, its stage events in order (node, route, status), without their timings."""
    out: dict[str, list[tuple]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        if e["event"] == "stage":
            out.setdefault(e["doc"], []).append((e["stage"], e["route"], e["status"]))
    return out


def run_both(cfg_for: Callable[[str], Path], inp: Path, root: Path, monkeypatch) -> tuple[dict, dict, dict, dict]:
    """`gem run` on the plain loop, then on the graph: (stored, events) of each; `cfg_for(path)` gives the config."""
    results = []
    for path in ("plain", "graph"):
        if path == "graph":
            monkeypatch.setenv("GEM_PIPELINE", "graph")
        else:
            monkeypatch.delenv("GEM_PIPELINE", raising=False)
        out, log = root / path, root / f"{path}.jsonl"
        res = runner.invoke(app, ["run", str(cfg_for(path)), "--input", str(inp), "--out", str(out), "--quiet",
                                  "--no-report", "--json-log", str(log)])
        assert res.exit_code == 0, res.output
        results += [stored(out), stage_events(log)]
    monkeypatch.delenv("GEM_PIPELINE", raising=False)
    return results[0], results[1], results[2], results[3]


def test_plain_loop_and_graph_store_the_same_bytes_on_the_samples(tmp_path, monkeypatch):
    plain, plain_ev, graph, graph_ev = run_both(lambda _: REPO / "configs" / "offline.yaml", SAMPLES, tmp_path,
                                                monkeypatch)
    assert len(plain["documents"]) == 5 and {d[3] for d in plain["documents"]} >= {"kept", "rejected"}
    assert any(t[2] == "refined" for t in plain["trajectories"])  # refinement ran, so every stage is compared
    assert plain == graph
    assert plain_ev == graph_ev and set(plain_ev) == {d[0] for d in plain["documents"]}


def test_plain_loop_and_graph_store_the_same_bytes_on_the_recorded_pages(corpus_path, tmp_path, monkeypatch):
    if not corpus_path.is_file():
        pytest.skip("../shared/data is absent")
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((RECORDED / "docs").glob("*.json"))]
    ids = {r["doc_id"] for r in records}
    lines = [line for line in corpus_path.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in ids]
    inp = tmp_path / "docs.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with ExitStack() as servers:

        def cfg_for(path: str) -> Path:
            # A fresh server per run, keyed: tool-call ids follow from each request (not from arrival order or
            # from an earlier run's requests), so two runs can match byte for byte.
            srv = servers.enter_context(FakeOpenAIServer(RecordedResponder(records), faults=Faults(keyed=True)))
            role = {"provider": "openai", "base_url": srv.base_url, "model": "recorded-replies", "max_retries": 0}
            cfg = tmp_path / f"recorded-{path}.yaml"
            cfg.write_text(yaml.safe_dump({
                "pipeline": "full", "seed": 0, "rollouts": 1, "tasks_per_env": 2, "refine_rounds": 0,
                "prefilter": False, "cache": False,
                "roles": {"filter": role, "extract": role, "task": role, "user": role, "assistant": role,
                          "tool_env": {"provider": "scripted"}, "refine": {"provider": "scripted"}}}),
                encoding="utf-8")
            return cfg

        plain, plain_ev, graph, graph_ev = run_both(cfg_for, inp, tmp_path, monkeypatch)
    assert sum(1 for d in plain["documents"] if d[3] == "kept") >= 10
    assert plain["tasks"]  # the task stage ran and stored its tasks
    assert plain == graph
    assert plain_ev == graph_ev


class Killed(BaseException):
    """Stands in for the process dying mid-stage (not an Exception, so no node catches it)."""


def _counting(stages: PipelineStages, calls: dict[str, int], die: bool) -> PipelineStages:
    async def f(d):
        calls["filter"] += 1
        return await stages.filter(d)

    async def e(d, r):
        calls["extract"] += 1
        return await stages.extract(d, r)

    async def s(w):
        calls["simulate"] += 1
        if die:
            raise Killed()
        return await stages.simulate(w)

    return PipelineStages(filter=f, extract=e, simulate=s, refine=None)


def _share_printer():
    docs, problems = read_documents(SAMPLES)
    assert not problems
    return next(d for d in docs if d.id == "share_a_printer.md")


@pytest.mark.parametrize("killed_on", ["plain", "graph"])
def test_a_thread_resumes_on_the_path_that_began_it(tmp_path, monkeypatch, killed_on):
    """Killed during simulate on one path, resumed by default: filter and extract are not redone either way."""
    doc = _share_printer()
    cfg = RunConfig.model_validate({"rollouts": 2, "refine_rounds": 0})
    calls = {"filter": 0, "extract": 0, "simulate": 0}

    async def attempt(die: bool):
        async with open_run(cfg, tmp_path / "run") as ctx:
            ctx.stages = _counting(ctx.stages, calls, die)
            return await process_document(doc, ctx)

    if killed_on == "graph":
        monkeypatch.setenv("GEM_PIPELINE", "graph")
    with pytest.raises(Killed):
        asyncio.run(attempt(True))
    monkeypatch.delenv("GEM_PIPELINE", raising=False)
    db = sqlite3.connect(tmp_path / "run" / CHECKPOINTS_NAME)
    rows = db.execute("SELECT next FROM pipeline_stages").fetchall()
    graph_rows = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    db.close()
    if killed_on == "plain":
        assert rows == [("simulate",)] and graph_rows == 0  # one row, replaced per stage; no LangGraph checkpoint
    else:
        assert rows == [] and graph_rows > 0
    outcome = asyncio.run(attempt(False))
    assert calls == {"filter": 1, "extract": 1, "simulate": 2}
    assert outcome.status == "kept" and len(outcome.trajectories) == 2


@pytest.mark.parametrize("damage", ["text changed", "torn row"])
def test_a_stage_row_that_does_not_match_starts_the_document_over(tmp_path, damage):
    doc = _share_printer()
    cfg = RunConfig.model_validate({"rollouts": 1, "refine_rounds": 0})
    calls = {"filter": 0, "extract": 0, "simulate": 0}

    async def attempt(die: bool, d=doc):
        async with open_run(cfg, tmp_path / "run") as ctx:
            ctx.stages = _counting(ctx.stages, calls, die)
            return await process_document(d, ctx)

    with pytest.raises(Killed):
        asyncio.run(attempt(True))
    if damage == "torn row":
        db = sqlite3.connect(tmp_path / "run" / CHECKPOINTS_NAME)
        db.execute("UPDATE pipeline_stages SET state = substr(state, 1, 40)")
        db.commit()
        db.close()
        outcome = asyncio.run(attempt(False))
    else:
        outcome = asyncio.run(attempt(False, doc.model_copy(update={"text": doc.text + "\n\nOne more line."})))
    assert calls == {"filter": 2, "extract": 2, "simulate": 2}
    assert outcome.status == "kept"
