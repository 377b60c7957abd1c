"""`gem run` end to end offline on the bundled sample texts; the pipeline graph; the engine's isolation."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import RunConfig
from gem_agents.ingest import read_documents
from gem_agents.run.context import open_run
from gem_agents.run.document import process_document
from gem_agents.run.engine import run_documents
from gem_agents.run.lock import RunDirBusy, run_dir_lock
from gem_agents.run.store import RunStore
from graphs.pipeline import PipelineStages
from tests.gem_agents.run.test_pipeline_paths import Killed, _counting
from tools_runtime.records import Document

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def sample_docs() -> list[Document]:
    docs, problems = read_documents(SAMPLES)
    assert not problems
    return docs


def test_gem_run_offline_on_the_bundled_texts(tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "log.jsonl"
    res = runner.invoke(app, ["run", str(REPO / "configs" / "offline.yaml"), "--input", str(SAMPLES),
                              "--out", str(out), "--json-log", str(log), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["this_run"]["processed"] == 5
    store = RunStore(out, readonly=True)
    docs = {d["doc_id"]: d for d in store.documents()}
    trajs = list(store.trajectories())
    store.close()
    assert set(docs) == {p.name for p in SAMPLES.glob("*.md")}
    # The essay is no procedure: the filter rejects it before any extraction.
    assert docs["garden_notes.md"]["status"] == "rejected" and docs["garden_notes.md"]["stage"] == "filter"
    assert docs["garden_notes.md"]["reasons"][0].startswith("not multi-step")
    kept = [d for d in docs.values() if d["status"] == "kept"]
    assert len(kept) >= 3
    for d in kept:
        assert d["workflow"]["execution_graph"] and d["relevance"]["multi_step"]
    verified = [t for t in trajs if t.verdict.passed]
    assert len(verified) >= 2 * len(kept) - 1
    assert all(t.id.startswith(t.provenance.doc_id) for t in trajs)
    assert len({t.id for t in trajs}) == len(trajs)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"start", "stage", "doc", "end"} <= kinds
    assert sum(1 for e in events if e["event"] == "doc") == 5
    assert (out / "report.html").is_file()
    # The same command again: everything is already done, nothing is redone.
    again = runner.invoke(app, ["run", str(REPO / "configs" / "offline.yaml"), "--input", str(SAMPLES),
                                "--out", str(out), "--json", "--no-report"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["this_run"]["processed"] == 0 and second["this_run"]["skipped"] == 5
    assert second["totals"] == summary["totals"]


def test_gem_demo_prints_where_results_are(tmp_path):
    res = runner.invoke(app, ["demo", "--offline", "--out", str(tmp_path / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "report.html" in text and "run.sqlite" in text and "offline (every role scripted" in text
    lines = (tmp_path / "demo" / "export" / "openai.jsonl").read_text().splitlines()
    assert lines and all("messages" in json.loads(x) for x in lines)


def _run(cfg: RunConfig, out: Path, docs: list[Document], wrap=None):
    async def go():
        async with open_run(cfg, out) as ctx:
            if wrap is not None:
                ctx.stages = wrap(ctx.stages)
            summary = await run_documents(ctx, docs)
            return summary, {d["doc_id"]: d for d in ctx.store.documents()}

    return asyncio.run(go())


def test_a_failing_and_a_hanging_document_never_stall_the_others(tmp_path):
    docs = sample_docs()
    cfg = RunConfig.model_validate({"rollouts": 1, "refine_rounds": 0, "concurrency": {"documents": 2},
                                    "limits": {"doc_timeout_s": 1.5}})

    def wrap(stages: PipelineStages) -> PipelineStages:
        async def bad_filter(doc):
            if doc.id == "share_a_printer.md":
                raise RuntimeError("the endpoint is gone")
            if doc.id == "book_a_meeting_room.md":
                await asyncio.sleep(3600)
            return await stages.filter(doc)

        return replace(stages, filter=bad_filter)

    summary, docs_by = _run(cfg, tmp_path / "run", docs, wrap)
    assert summary.processed == 5
    assert docs_by["share_a_printer.md"]["status"] == "failed"
    assert "the endpoint is gone" in docs_by["share_a_printer.md"]["error"]
    assert docs_by["book_a_meeting_room.md"]["status"] == "failed"
    assert "timed out" in docs_by["book_a_meeting_room.md"]["error"]
    assert docs_by["set_up_email_forwarding.md"]["status"] == "kept"


def test_a_document_resumes_at_the_stage_it_had_reached(tmp_path):
    """A kill during simulate leaves a checkpointed thread; the next run does not redo filter/extract."""
    doc = next(d for d in sample_docs() if d.id == "share_a_printer.md")
    cfg = RunConfig.model_validate({"rollouts": 2, "refine_rounds": 0})
    calls = {"filter": 0, "extract": 0, "simulate": 0}

    def counting(stages: PipelineStages, die: bool) -> PipelineStages:
        return _counting(stages, calls, die)

    async def attempt(die: bool):
        async with open_run(cfg, tmp_path / "run") as ctx:
            ctx.stages = counting(ctx.stages, die)
            return await process_document(doc, ctx)

    with pytest.raises(Killed):
        asyncio.run(attempt(True))
    outcome = asyncio.run(attempt(False))
    assert calls == {"filter": 1, "extract": 1, "simulate": 2}
    assert outcome.status == "kept" and len(outcome.trajectories) == 2


def test_one_writer_per_run_directory(tmp_path):
    with run_dir_lock(tmp_path):
        with pytest.raises(RunDirBusy):
            with run_dir_lock(tmp_path):
                pass
    with run_dir_lock(tmp_path):  # released with its holder
        pass


def test_unknown_pipeline_module_is_a_clear_error(tmp_path, monkeypatch):
    from gem_agents import registry

    registry.names("pipeline")  # the built-ins are registered; then this installation loses one
    monkeypatch.delitem(registry._REGISTRY["pipeline"], "synthesizer")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("pipeline: synthesizer\n")
    res = runner.invoke(app, ["run", str(cfg_path), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2
    assert "pipeline 'synthesizer' is not available" in " ".join(res.output.split())
