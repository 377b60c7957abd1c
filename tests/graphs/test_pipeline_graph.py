"""The per-document pipeline on its own, with injected stage functions (no models, no roles).

Every scenario runs on both paths: the compiled LangGraph graph and the plain loop over its nodes.
"""

from __future__ import annotations

import asyncio

import pytest

from graphs.pipeline import (
    PipelineContext,
    PipelineStages,
    build_pipeline_graph,
    initial_pipeline_state,
    run_pipeline_plain,
)
from tests.helpers import example
from tools_runtime.records import Document, Failure, Relevance, Trajectory, Verdict

DOC = Document(id="d1", text="1. Log in. 2. Search. 3. Update.")
WF = example("shop_return")


def traj(i: int, passed: bool) -> Trajectory:
    fails = [] if passed else [Failure(code="state_mismatch", reason="differs")]
    return Trajectory(id=f"t{i}", messages=[], verdict=Verdict(passed=passed, failures=fails))


PATH = {"name": "graph"}


@pytest.fixture(params=["graph", "plain"], autouse=True)
def pipeline_path(request):
    PATH["name"] = request.param
    yield request.param
    PATH["name"] = "graph"


def run(stages: PipelineStages) -> dict:
    if PATH["name"] == "plain":
        return dict(asyncio.run(run_pipeline_plain(initial_pipeline_state(DOC), stages)))
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


def test_the_plain_loop_saves_after_every_stage_and_resumes_at_the_saved_node():
    async def sim(wf):
        return [traj(0, True)], []

    async def refine(wf, originals, doc):
        return [traj(9, True)], []

    stages = PipelineStages(filter=yes, extract=extract_ok, simulate=sim, refine=refine)
    saved: list[tuple[str, str, dict]] = []
    updates: list[str] = []

    async def save(state, done, nxt):
        saved.append((done, nxt, dict(state)))

    final = asyncio.run(run_pipeline_plain(initial_pipeline_state(DOC), stages, save=save,
                                           on_update=lambda node, update: updates.append(node)))
    # Never saved after decide: its outcome is stored at once.
    assert [(d, n) for d, n, _ in saved] == [("filter", "extract"), ("extract", "simulate"),
                                            ("simulate", "refine"), ("refine", "decide")]
    assert updates == ["filter", "extract", "simulate", "refine", "decide"]
    assert final["status"] == "kept"

    async def never(*a):  # pragma: no cover - must not run
        raise AssertionError("a finished stage ran again")

    # From the state saved before refine, only refine and decide run.
    resumed = asyncio.run(run_pipeline_plain(saved[2][2], PipelineStages(filter=never, extract=never,
                                                                         simulate=never, refine=refine),
                                             node="refine"))
    assert {k: v for k, v in resumed.items() if k != "timings"} == {k: v for k, v in final.items() if k != "timings"}


def test_the_plain_loop_refuses_a_route_the_graph_has_no_edge_for(monkeypatch):
    import graphs.pipeline as pipeline

    async def filter_to_refine(state, runtime):  # a node that routes where the graph has no edge
        return {"route": "refine", "stage": "filter"}

    async def bad_save(state, done, nxt):  # pragma: no cover - the route is refused first
        raise AssertionError("saved an impossible route")

    monkeypatch.setitem(pipeline.STAGE_NODES, "filter", filter_to_refine)
    stages = PipelineStages(filter=yes, extract=extract_ok, simulate=extract_ok)
    with pytest.raises(ValueError, match="routed to 'refine'"):
        asyncio.run(run_pipeline_plain(initial_pipeline_state(DOC), stages, save=bad_save))
    with pytest.raises(ValueError, match="no node 'nowhere'"):
        asyncio.run(run_pipeline_plain(initial_pipeline_state(DOC), stages, node="nowhere"))
