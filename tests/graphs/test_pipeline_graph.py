"""The per-document pipeline graph on its own, with injected stage functions (no models, no roles)."""

from __future__ import annotations

import asyncio

from graphs.pipeline import PipelineContext, PipelineStages, build_pipeline_graph, initial_pipeline_state
from tests.helpers import example
from tools_runtime.records import Document, Failure, Relevance, Trajectory, Verdict

DOC = Document(id="d1", text="1. Log in. 2. Search. 3. Update.")
WF = example("shop_return")


def traj(i: int, passed: bool) -> Trajectory:
    fails = [] if passed else [Failure(code="state_mismatch", reason="differs")]
    return Trajectory(id=f"t{i}", messages=[], verdict=Verdict(passed=passed, failures=fails))


def run(stages: PipelineStages) -> dict:
    graph = build_pipeline_graph()
    return asyncio.run(graph.ainvoke(initial_pipeline_state(DOC), context=PipelineContext(stages=stages)))


async def yes(doc):
    return Relevance(multi_step=True)


async def extract_ok(doc, rel):
    return WF, []


def test_kept_when_a_rollout_verifies_and_refine_runs():
    seen = []

    async def sim(wf):
        return [traj(0, True), traj(1, False)], []

    async def refine(wf, originals, doc):
        # The document comes from the state, so a thread resumed at refinement in a new process has it too.
        seen.append(([t.id for t in originals], doc.text))
        return [traj(9, True)], ["one op skipped"]

    state = run(PipelineStages(filter=yes, extract=extract_ok, simulate=sim, refine=refine))
    assert state["status"] == "kept" and state["stage"] == "refine"
    assert seen == [(["t0", "t1"], DOC.text)]
    assert [t["id"] for t in state["refined"]] == ["t9"]
    assert "refinement: one op skipped" in state["reasons"]
    assert set(state["timings"]) == {"filter", "extract", "simulate", "refine"}


def test_rejected_when_no_rollout_verifies_and_refine_is_skipped():
    async def sim(wf):
        return [traj(0, False), traj(1, False)], []

    async def refine(wf, originals, doc):  # pragma: no cover - must not run
        raise AssertionError("refine ran without a verified rollout")

    state = run(PipelineStages(filter=yes, extract=extract_ok, simulate=sim, refine=refine))
    assert state["status"] == "rejected" and state["stage"] == "simulate"
    assert state["reasons"][-1] == "no rollout verified: state_mismatch ×2"


def test_filter_and_extract_rejections_skip_later_stages():
    async def no(doc):
        return Relevance(multi_step=False, decided_by="prefilter")

    async def never(*a):  # pragma: no cover - must not run
        raise AssertionError("a later stage ran")

    state = run(PipelineStages(filter=no, extract=never, simulate=never))
    assert state["status"] == "rejected" and state["reasons"] == ["not multi-step (decided by prefilter)"]

    async def bad_extract(doc, rel):
        return None, ["graph: unknown node x"]

    state = run(PipelineStages(filter=yes, extract=bad_extract, simulate=never))
    assert state["status"] == "rejected" and state["stage"] == "extract"
    assert state["reasons"] == ["extraction rejected: graph: unknown node x"]


def test_a_raising_stage_fails_the_document_with_where():
    async def boom(wf):
        raise ConnectionError("endpoint refused")

    state = run(PipelineStages(filter=yes, extract=extract_ok, simulate=boom))
    assert state["status"] == "failed" and state["stage"] == "simulate"
    assert state["error"].startswith("ConnectionError: endpoint refused (at test_pipeline_graph.py:")
