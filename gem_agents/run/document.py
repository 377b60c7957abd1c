"""One document through the pipeline (plain loop or graph), as a checkpointed thread, ending in a DocOutcome.

`process_document` is the per-document entry point every engine calls (the local asyncio engine
here, a Ray worker elsewhere). With a checkpointer the document's thread id is its id: a thread
left half-done by a killed run continues from its last finished stage instead of starting over.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from gem_agents.run.context import RunContext
from gem_agents.run.store import DocOutcome, Kind, Status
from graphs.pipeline import PipelineContext, PipelineStages, initial_pipeline_state, run_pipeline_plain
from tools_runtime.records import Document, Relevance, Trajectory, Workflow
from tools_runtime.tasks import Task, TaskRejection

StageEvent = Callable[[str, str, dict[str, Any]], None]


def _unique_ids(doc_id: str, rows: list[tuple[Kind, Trajectory]]) -> list[tuple[Kind, Trajectory]]:
    """Trajectory ids unique across the whole run: prefixed by the document id, de-duplicated."""
    seen: set[str] = set()
    out = []
    for kind, t in rows:
        tid = t.id if t.id.startswith(doc_id) else f"{doc_id}:{t.id}"
        base, n = tid, 1
        while tid in seen:
            n += 1
            tid = f"{base}#{n}"
        seen.add(tid)
        out.append((kind, t if tid == t.id else t.model_copy(update={"id": tid})))
    return out


def outcome_from_state(doc: Document, state: dict[str, Any], seconds: float = 0.0) -> DocOutcome:
    """The DocOutcome of a finished pipeline state."""
    rows: list[tuple[Kind, Trajectory]] = [("original", Trajectory.model_validate(t))
                                           for t in state.get("trajectories", [])]
    rows += [("refined", Trajectory.model_validate(t)) for t in state.get("refined", [])]
    status: Status = state.get("status") or "failed"  # checked just below
    error = state.get("error")
    if status not in ("kept", "rejected", "failed"):
        status, error = "failed", error or "the pipeline ended without a decision"
    return DocOutcome(
        doc_id=doc.id, source=doc.source, text=doc.text, status=status, stage=state.get("stage") or "filter",
        relevance=Relevance.model_validate(state["relevance"]) if state.get("relevance") else None,
        workflow=Workflow.model_validate(state["workflow"]) if state.get("workflow") else None,
        reasons=list(state.get("reasons", [])), error=error,
        seconds=round(seconds or sum(state.get("timings", {}).values()), 4),
        trajectories=_unique_ids(doc.id, rows),
        tasks=[Task.model_validate(t) for t in state.get("tasks") or []],
        task_rejections=[TaskRejection.model_validate(r) for r in state.get("task_rejections") or []])


def use_graph() -> bool:
    """GEM_PIPELINE=graph runs new documents through the LangGraph pipeline graph (to compare, or rule the loop out)."""
    return os.environ.get("GEM_PIPELINE") == "graph"


async def process_document(doc: Document, ctx: RunContext, on_stage: StageEvent | None = None, *,
                           resume: bool = True) -> DocOutcome:
    """Run (or resume) one document's pipeline thread and return its outcome; the caller stores it.

    `resume=False` tells it the document has no thread yet (saves a checkpoint read per document).
    A new document takes the plain loop (or the graph under GEM_PIPELINE=graph); a thread left by a
    killed run continues on the path that began it.
    """
    stages = ctx.stages
    if ctx.graph is None or stages is None:
        raise RuntimeError("the run context has no pipeline graph; build it with open_run")
    t0 = time.perf_counter()
    saver = ctx.checkpointer
    plain_rows = saver is not None and hasattr(saver, "put_stage")
    if saver is not None and resume and plain_rows:
        row = saver.get_stage(doc.id)
        if row is not None:
            state, node = row
            if (state.get("doc") or {}).get("text") == doc.text:
                return await _plain(doc, ctx, stages, on_stage, t0, state, node)
            await saver.adelete_thread(doc.id)  # the text changed (or the row is unusable): start over
    if use_graph() or (saver is not None and not plain_rows):
        return await _graph(doc, ctx, stages, on_stage, t0, resume)
    if saver is not None and resume:
        snap = await ctx.graph.aget_state({"configurable": {"thread_id": doc.id}})
        if snap.values:  # a LangGraph thread (GEM_PIPELINE=graph, or a run from before the plain loop)
            return await _graph(doc, ctx, stages, on_stage, t0, resume)
    return await _plain(doc, ctx, stages, on_stage, t0, dict(initial_pipeline_state(doc)), "filter")


async def _plain(doc: Document, ctx: RunContext, stages: PipelineStages, on_stage: StageEvent | None, t0: float,
                 state: dict[str, Any], node: str) -> DocOutcome:
    """The document through `run_pipeline_plain`, its state saved after each stage when the run checkpoints."""
    saver = ctx.checkpointer

    async def save(cur: dict[str, Any], _done: str, nxt: str) -> None:
        saver.put_stage(doc.id, nxt, cur)

    def on_update(node: str, update: dict[str, Any]) -> None:
        if on_stage is not None:
            on_stage(doc.id, node, update)

    final = await run_pipeline_plain(state, stages, node=node, on_update=on_update,  # type: ignore[arg-type]
                                     save=save if saver is not None else None)
    return outcome_from_state(doc, dict(final), time.perf_counter() - t0)


async def _graph(doc: Document, ctx: RunContext, stages: PipelineStages, on_stage: StageEvent | None, t0: float,
                 resume: bool) -> DocOutcome:
    """The document through the compiled pipeline graph, a checkpointed LangGraph thread when the run checkpoints."""
    cfg: dict[str, Any] = {"configurable": {"thread_id": doc.id}}
    inp: dict[str, Any] | None = dict(initial_pipeline_state(doc))
    if ctx.checkpointer is not None and resume:
        snap = await ctx.graph.aget_state(cfg)
        same_doc = bool(snap.values) and (snap.values.get("doc") or {}).get("text") == doc.text
        if same_doc and not snap.next:
            return outcome_from_state(doc, snap.values)  # finished before a kill, not yet stored
        if same_doc:
            inp = None  # resume from the last checkpoint
        elif snap.values:
            await ctx.checkpointer.adelete_thread(doc.id)  # the text changed: start over
    final: dict[str, Any] = {}
    # durability without a checkpointer fails inside LangGraph 1.2 (open_run(checkpoint=False), Ray workers).
    durability = "sync" if ctx.checkpointer is not None else None
    async for mode, chunk in ctx.graph.astream(inp, cfg, context=PipelineContext(stages=stages),
                                               stream_mode=["updates", "values"], durability=durability):
        if mode == "values":
            final = chunk
        elif on_stage is not None:
            for node, update in chunk.items():
                on_stage(doc.id, node, update or {})
    return outcome_from_state(doc, final, time.perf_counter() - t0)
