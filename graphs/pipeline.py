"""The per-document pipeline as a LangGraph graph: filter → extract → tasks → simulate → refine → decide.

    START → filter ─┬→ extract ─┬→ tasks ─┬→ simulate ─┬→ refine → decide → END
                    └───────────┴─────────┴────────────┴──────────→ decide

The `tasks` node runs only when the stages provide a task writer; without one (the synthesizer
pipeline) extract goes straight to simulate, which then gets the workflow alone.
Each node runs one stage and writes its result into the state; with a checkpointer and the
document id as thread id, a document's progress is a checkpointed thread, so a killed run picks
a half-done document up at the stage it had reached. The stage functions are injected through
the run context (`PipelineContext`), so this module knows nothing of models or roles. State
values are plain JSON (records dumped with `model_dump(mode="json")`) so checkpoints need no
custom serializer.

Bulk runs walk the very same nodes and routes with a plain loop (`run_pipeline_plain`): LangGraph's
per-step machinery and its checkpoint of the whole state after every step were ~15-20 % of the
engine's CPU (docs/throughput.md). The caller saves the state at each stage boundary through a
callback instead. Both paths are pinned to store identical outcomes (tests/gem_agents/run/test_pipeline_paths.py).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from tools_runtime.records import Document, Relevance, Trajectory, Workflow
from tools_runtime.tasks import Task, TaskRejection

STAGES = ("filter", "extract", "tasks", "simulate", "refine")

FilterFn = Callable[[Document], Awaitable[Relevance]]
ExtractFn = Callable[[Document, Relevance], Awaitable[tuple[Workflow | None, list[str]]]]
TasksFn = Callable[[Document, Workflow], Awaitable[tuple[list[Task], list[TaskRejection]]]]
# simulate(workflow) without a task writer; simulate(workflow, tasks) with one.
SimulateFn = Callable[..., Awaitable[tuple[list[Trajectory], list[str]]]]
# Refinement gets the document from the checkpointed state: a thread resumed in another process has no other copy.
RefineFn = Callable[[Workflow, list[Trajectory], Document], Awaitable[tuple[list[Trajectory], list[str]]]]


@dataclass(frozen=True)
class PipelineStages:
    """The stage functions one pipeline runs; `tasks=None` simulates the workflow itself, `refine=None` skips refinement."""

    filter: FilterFn
    extract: ExtractFn
    simulate: SimulateFn
    refine: RefineFn | None = None
    tasks: TasksFn | None = None


@dataclass
class PipelineContext:
    """Per-run dependencies of the pipeline graph (not checkpointed)."""

    stages: PipelineStages


class PipelineState(TypedDict, total=False):
    """The checkpointed state of one document."""

    doc: dict[str, Any]
    relevance: dict[str, Any] | None
    workflow: dict[str, Any] | None
    tasks: list[dict[str, Any]]
    task_rejections: list[dict[str, Any]]
    trajectories: list[dict[str, Any]]
    refined: list[dict[str, Any]]
    reasons: list[str]
    status: str
    stage: str
    route: str
    error: str | None
    timings: dict[str, float]


def initial_pipeline_state(doc: Document) -> PipelineState:
    """The state a document starts from."""
    return {"doc": doc.model_dump(mode="json"), "relevance": None, "workflow": None, "tasks": [],
            "task_rejections": [], "trajectories": [],
            "refined": [], "reasons": [], "status": "", "stage": "", "route": "filter", "error": None,
            "timings": {}}


def _failed(state: PipelineState, stage: str, exc: BaseException, started: float) -> dict[str, Any]:
    # A stage that raises ends its document as `failed` with the error, never the whole run.
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno})" if where else ""
    return {"status": "failed", "stage": stage, "route": "decide", "error": f"{type(exc).__name__}: {exc}{at}",
            "timings": {**state.get("timings", {}), stage: round(time.perf_counter() - started, 4)}}


def _timed(state: PipelineState, stage: str, started: float) -> dict[str, float]:
    return {**state.get("timings", {}), stage: round(time.perf_counter() - started, 4)}


async def filter_node(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Stage 1: is this a multi-step procedure?"""
    t0 = time.perf_counter()
    try:
        rel = await runtime.context.stages.filter(Document.model_validate(state["doc"]))
    except Exception as exc:  # noqa: BLE001 — recorded as the document's error
        return _failed(state, "filter", exc, t0)
    update: dict[str, Any] = {"relevance": rel.model_dump(mode="json"), "stage": "filter",
                              "timings": _timed(state, "filter", t0)}
    if rel.multi_step:
        return update | {"route": "extract"}
    return update | {"route": "decide", "reasons": [f"not multi-step (decided by {rel.decided_by})"]}


async def extract_node(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Stage 2: steps, execution graph and tools."""
    t0 = time.perf_counter()
    try:
        wf, reasons = await runtime.context.stages.extract(Document.model_validate(state["doc"]),
                                                           Relevance.model_validate(state["relevance"]))
    except Exception as exc:  # noqa: BLE001
        return _failed(state, "extract", exc, t0)
    update: dict[str, Any] = {"stage": "extract", "timings": _timed(state, "extract", t0)}
    if wf is None:
        return update | {"route": "decide", "reasons": [f"extraction rejected: {r}" for r in reasons]
                         or ["extraction rejected"]}
    route = "tasks" if runtime.context.stages.tasks is not None else "simulate"
    return update | {"route": route, "workflow": wf.model_dump(mode="json")}


async def tasks_node(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Stage 3a: K tasks for the environment; each validated and its gold executed, or rejected."""
    t0 = time.perf_counter()
    write_tasks = runtime.context.stages.tasks
    try:
        if write_tasks is None:  # the graph routes here only when a task stage is wired
            raise RuntimeError("no task stage is wired into the pipeline")
        tasks, rejected = await write_tasks(
            Document.model_validate(state["doc"]), Workflow.model_validate(state["workflow"]))
    except Exception as exc:  # noqa: BLE001
        return _failed(state, "tasks", exc, t0)
    update: dict[str, Any] = {"stage": "tasks", "timings": _timed(state, "tasks", t0),
                              "tasks": [t.model_dump(mode="json") for t in tasks],
                              "task_rejections": [r.model_dump(mode="json") for r in rejected]}
    reasons = [f"task rejected: {r.code}: {r.reason}" for r in rejected]
    if not tasks:
        return update | {"route": "decide", "reasons": [*state.get("reasons", []), "no valid task", *reasons]}
    return update | {"route": "simulate", "reasons": [*state.get("reasons", []), *reasons]}


async def simulate_node(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Stage 3: N rollouts of the workflow, each verified."""
    t0 = time.perf_counter()
    try:
        wf = Workflow.model_validate(state["workflow"])
        if runtime.context.stages.tasks is not None:
            tasks = [Task.model_validate(t) for t in state.get("tasks") or []]
            trajs, reasons = await runtime.context.stages.simulate(wf, tasks)
        else:
            trajs, reasons = await runtime.context.stages.simulate(wf)
    except Exception as exc:  # noqa: BLE001
        return _failed(state, "simulate", exc, t0)
    passed = [t for t in trajs if t.verdict and t.verdict.passed]
    route = "refine" if passed and runtime.context.stages.refine is not None else "decide"
    return {"stage": "simulate", "route": route, "timings": _timed(state, "simulate", t0),
            "trajectories": [t.model_dump(mode="json") for t in trajs],
            "reasons": [*state.get("reasons", []), *reasons]}


async def refine_node(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Stage 4: harder scenarios, simulated and verified again."""
    t0 = time.perf_counter()
    refine = runtime.context.stages.refine
    try:
        if refine is None:  # the graph routes here only when a refine stage is wired
            raise RuntimeError("no refine stage is wired into the pipeline")
        originals = [Trajectory.model_validate(t) for t in state.get("trajectories", [])]
        refined, reasons = await refine(Workflow.model_validate(state["workflow"]), originals,
                                        Document.model_validate(state["doc"]))
    except Exception as exc:  # noqa: BLE001
        return _failed(state, "refine", exc, t0)
    return {"stage": "refine", "route": "decide", "timings": _timed(state, "refine", t0),
            "refined": [t.model_dump(mode="json") for t in refined],
            "reasons": [*state.get("reasons", []), *(f"refinement: {r}" for r in reasons)]}


def _verified(rows: list[dict[str, Any]]) -> int:
    return sum(1 for t in rows if (t.get("verdict") or {}).get("passed"))


def decide_node(state: PipelineState) -> dict[str, Any]:
    """Export decision: kept when at least one trajectory verified, else rejected with reasons."""
    if state.get("status") == "failed":
        return {"route": "end"}
    reasons = list(state.get("reasons", []))
    if _verified(state.get("trajectories", [])) + _verified(state.get("refined", [])) > 0:
        return {"status": "kept", "route": "end", "stage": state.get("stage") or "simulate"}
    if state.get("trajectories"):
        codes: dict[str, int] = {}
        for t in state["trajectories"]:
            for f in (t.get("verdict") or {}).get("failures", []):
                codes[f["code"]] = codes.get(f["code"], 0) + 1
        reasons.append("no rollout verified" + (": " + ", ".join(f"{c} ×{n}" for c, n in sorted(codes.items()))
                                                if codes else ""))
    return {"status": "rejected", "route": "end", "reasons": reasons or ["rejected"]}


def _route(state: PipelineState) -> str:
    return state.get("route") or "decide"


# The graph's edges as data: where each node may go next (the plain loop checks every route against them).
EDGES: dict[str, tuple[str, ...]] = {"filter": ("extract", "decide"), "extract": ("tasks", "simulate", "decide"),
                                     "tasks": ("simulate", "decide"), "simulate": ("refine", "decide"),
                                     "refine": ("decide",)}
STAGE_NODES = {"filter": filter_node, "extract": extract_node, "tasks": tasks_node, "simulate": simulate_node,
               "refine": refine_node}
# on_update(node, update): a node finished; save(state, node, next): the state after a stage, before `next`.
UpdateFn = Callable[[str, dict[str, Any]], None]
SaveFn = Callable[[dict[str, Any], str, str], Awaitable[None]]


async def run_pipeline_plain(state: PipelineState, stages: PipelineStages, *, node: str = "filter",
                             on_update: UpdateFn | None = None, save: SaveFn | None = None) -> PipelineState:
    """Run a document from `state` at `node` to the end without LangGraph: the same nodes and routes.

    `save` is awaited after every stage (never after `decide`, whose outcome the caller stores at once),
    so a run killed mid-stage resumes at that stage with `node` = the saved next node.
    """
    runtime: Runtime[PipelineContext] = Runtime(context=PipelineContext(stages=stages))
    cur: dict[str, Any] = dict(state)
    while True:
        if node == "decide":
            update = decide_node(cur)  # type: ignore[arg-type]
        elif node in STAGE_NODES:
            update = await STAGE_NODES[node](cur, runtime)  # type: ignore[arg-type]
        else:
            raise ValueError(f"the pipeline has no node {node!r}")
        cur.update(update)  # no reducers in PipelineState: every key is replaced, as in the graph
        if on_update is not None:
            on_update(node, update)
        if node == "decide":
            return cur  # type: ignore[return-value]
        nxt = EDGES[node][0] if len(EDGES[node]) == 1 else _route(cur)  # type: ignore[arg-type]
        if nxt not in EDGES[node]:
            raise ValueError(f"the {node} node routed to {nxt!r}, not one of {EDGES[node]}")
        if save is not None:
            await save(cur, node, nxt)
        node = nxt


def build_pipeline_graph(checkpointer: Any = None) -> Any:
    """The compiled per-document pipeline graph (pass a checkpointer to make progress resumable)."""
    g = StateGraph(PipelineState, context_schema=PipelineContext)
    g.add_node("filter", filter_node)
    g.add_node("extract", extract_node)
    g.add_node("tasks", tasks_node)
    g.add_node("simulate", simulate_node)
    g.add_node("refine", refine_node)
    g.add_node("decide", decide_node)
    g.add_edge(START, "filter")
    g.add_conditional_edges("filter", _route, ["extract", "decide"])
    g.add_conditional_edges("extract", _route, ["tasks", "simulate", "decide"])
    g.add_conditional_edges("tasks", _route, ["simulate", "decide"])
    g.add_conditional_edges("simulate", _route, ["refine", "decide"])
    g.add_edge("refine", "decide")
    g.add_edge("decide", END)
    return g.compile(checkpointer=checkpointer)


