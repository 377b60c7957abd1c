"""Rollouts: run the dialogue graph for scenarios, N at a time, and turn each into a Trajectory.

This is where a trajectory is born: `run_dialogue` drives one dialogue through the dialogue's nodes
and packs the final state (transcript, verdict, stats, executed steps) into a `Trajectory` record.
Without a graph or a config it takes the plain loop (`graphs.dialogue.run_plain`, no per-step
LangGraph cost); given a graph (a checkpointer, breakpoints) or a config, the compiled graph.
GEM_DIALOGUE=graph forces the graph everywhere (to compare the two, or to rule the loop out).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from langgraph.errors import GraphRecursionError

from graphs.dialogue import SimContext, build_dialogue_graph, initial_state, run_plain
from graphs.roles import Roles
from tools_runtime.records import ExecRecord, Failure, Provenance, Scenario, Stats, Trajectory, Verdict

_DEFAULT_GRAPH = None


def default_graph() -> Any:
    """The dialogue graph compiled once without a checkpointer (bulk generation needs no history)."""
    global _DEFAULT_GRAPH
    if _DEFAULT_GRAPH is None:
        _DEFAULT_GRAPH = build_dialogue_graph()
    return _DEFAULT_GRAPH


def trajectory_from_state(state: dict[str, Any], scenario: Scenario, roles: Roles, *, rollout: int = 0,
                          trajectory_id: str | None = None, stage: str = "simulate") -> Trajectory:
    """Pack a finished (or interrupted) dialogue state into a Trajectory."""
    verdict = Verdict.model_validate(state["verdict"]) if state.get("verdict") else None
    stats = Stats.model_validate(state["stats"]) if state.get("stats") else Stats()
    return Trajectory(
        id=trajectory_id or f"{scenario.id}:r{rollout}",
        scenario_id=scenario.id,
        workflow_id=scenario.workflow.id,
        messages=list(state.get("messages", [])),
        tools=[t.to_openai() for t in scenario.tools],
        verdict=verdict,
        stats=stats,
        provenance=Provenance(stage=stage, policy=roles.name, model=roles.model, seed=scenario.seed,
                              rollout=rollout, doc_id=scenario.workflow.doc_id, prompts_hash=roles.prompts_hash),
        steps=[ExecRecord.model_validate(s) for s in state.get("steps", [])],
        scenario=scenario,
    )


def recursion_limit(max_user_turns: int, max_tool_rounds: int) -> int:
    """A step bound that a well-behaved dialogue can never reach (each turn costs a few steps)."""
    return 8 + max_user_turns * (2 * max_tool_rounds + 4)


async def run_dialogue(scenario: Scenario, roles: Roles, *, rollout: int = 0, graph: Any = None,
                       config: dict[str, Any] | None = None, max_user_turns: int = 24,
                       max_tool_rounds: int = 16, stage: str = "simulate") -> Trajectory:
    """Run one dialogue to the end and return it as a verified Trajectory."""
    ctx = SimContext(scenario=scenario, roles=roles, max_user_turns=max_user_turns,
                     max_tool_rounds=max_tool_rounds)
    cfg = dict(config or {})
    cfg.setdefault("recursion_limit", recursion_limit(max_user_turns, max_tool_rounds))
    start = initial_state(scenario, roles.system_message(scenario))
    plain = graph is None and config is None and os.environ.get("GEM_DIALOGUE") != "graph"
    graph = graph or (None if plain else default_graph())
    if graph is not None and graph.checkpointer is not None:
        cfg.setdefault("configurable", {}).setdefault("thread_id", f"{scenario.id}:r{rollout}:{uuid.uuid4().hex[:8]}")
    try:
        if graph is None:
            state: dict[str, Any] = dict(await run_plain(start, ctx, cfg["recursion_limit"]))
        else:
            state = await graph.ainvoke(start, cfg, context=ctx)
    except GraphRecursionError:
        state = {"messages": [], "verdict": Verdict(passed=False, failures=[Failure(
            code="turn_budget_exhausted", reason="the dialogue exceeded its step budget")]).model_dump()}
    return trajectory_from_state(state, scenario, roles, rollout=rollout, stage=stage)


async def simulate(scenarios: Iterable[Scenario], roles_for: Callable[[Scenario], Roles], *,
                   concurrency: int = 8, on_done: Callable[[Trajectory], None] | None = None,
                   **kwargs: Any) -> list[Trajectory]:
    """Run one dialogue per scenario, at most `concurrency` at a time, results in input order.

    A dialogue that raises (a model endpoint gone for good, say) becomes a failed trajectory with
    the error as its reason, so one bad rollout never sinks the others.
    """
    scenarios = list(scenarios)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, sc: Scenario) -> Trajectory:
        async with sem:
            roles = roles_for(sc)
            try:
                traj = await run_dialogue(sc, roles, rollout=i, **kwargs)
            except Exception as exc:  # noqa: BLE001 — recorded, never swallowed silently
                traj = Trajectory(id=f"{sc.id}:r{i}", scenario_id=sc.id, workflow_id=sc.workflow.id, messages=[],
                                  verdict=Verdict(passed=False, failures=[Failure(
                                      code="rollout_error", reason=f"{type(exc).__name__}: {exc}")]),
                                  provenance=Provenance(policy=roles.name, model=roles.model, seed=sc.seed,
                                                        rollout=i, doc_id=sc.workflow.doc_id))
            if on_done is not None:
                on_done(traj)
            return traj

    return list(await asyncio.gather(*(one(i, sc) for i, sc in enumerate(scenarios))))
