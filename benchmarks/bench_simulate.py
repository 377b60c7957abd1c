"""Dialogue simulation speed and memory with the scripted policies.

    .venv/bin/python benchmarks/bench_simulate.py [--rollouts N]

1. Simulated steps (node executions: user, assistant, tools, verify) per second through the
   compiled LangGraph dialogue graph vs `graphs.dialogue.run_plain`, the plain loop over the very
   same node functions that bulk runs take — the ratio is LangGraph's per-step overhead, which the
   plain loop saves.
2. Memory per in-flight rollout (tracemalloc peak / N) with 1, 100 and 1000 rollouts in flight at
   once (`simulate(..., concurrency=N)`, the plain loop).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.policies.scripted_assistant import scripted_assistant  # noqa: E402
from gem_agents.user.scripted import scripted_user  # noqa: E402
from graphs.dialogue import SimContext, initial_state, run_plain  # noqa: E402
from graphs.roles import Roles  # noqa: E402
from graphs.rollouts import default_graph, recursion_limit, simulate  # noqa: E402
from tools_runtime.scenario import build_scenario  # noqa: E402
from tools_runtime.workflow_io import load_workflow  # noqa: E402

ROLES = Roles(user=scripted_user, assistant=scripted_assistant)


def scenarios(n: int) -> list:
    """`n` scenarios cycling over the example workflows and seeds."""
    wfs = [load_workflow(p) for p in sorted((REPO / "examples" / "workflows").glob("*.json"))]
    return [build_scenario(wfs[i % len(wfs)], seed=i // len(wfs)) for i in range(n)]


async def bare_dialogue(scenario: Any) -> dict[str, Any]:
    """The dialogue through the plain loop (`run_plain`); returns its final state."""
    ctx = SimContext(scenario=scenario, roles=ROLES)
    return dict(await run_plain(initial_state(scenario), ctx, recursion_limit(ctx.max_user_turns, ctx.max_tool_rounds)))


async def graph_dialogue(scenario: Any, graph: Any) -> tuple[dict[str, Any], int]:
    """The same dialogue through the compiled graph; steps counted from the streamed updates."""
    ctx = SimContext(scenario=scenario, roles=ROLES)
    steps, final = 0, None
    cfg = {"recursion_limit": recursion_limit(ctx.max_user_turns, ctx.max_tool_rounds)}
    async for chunk in graph.astream(initial_state(scenario), cfg, context=ctx, stream_mode="updates"):
        steps += 1
        final = chunk
    return final, steps


async def bench_speed(n: int) -> None:
    """Steps per second, graph (`ainvoke`, as bulk runs used it) vs plain loop, over the same scenarios
    (sequential, one at a time); the final states must be equal."""
    scs = scenarios(n)
    graph = default_graph()
    await graph_dialogue(scs[0], graph)  # warm-up: compile caches, imports
    steps = 0
    for sc in scs:  # counted once, untimed: streaming costs more than ainvoke
        steps += (await graph_dialogue(sc, graph))[1]
    ctxs = [SimContext(scenario=sc, roles=ROLES) for sc in scs]
    limit = recursion_limit(ctxs[0].max_user_turns, ctxs[0].max_tool_rounds)
    t0 = time.perf_counter()
    g_states = [await graph.ainvoke(initial_state(sc), {"recursion_limit": limit}, context=ctx)
                for sc, ctx in zip(scs, ctxs, strict=True)]
    tg = time.perf_counter() - t0
    t0 = time.perf_counter()
    b_states = [await bare_dialogue(sc) for sc in scs]
    tb = time.perf_counter() - t0
    assert [s["messages"] for s in g_states] == [s["messages"] for s in b_states]
    passed = sum(bool(s["verdict"]["passed"]) for s in b_states)
    print(f"speed over {n} scripted dialogues ({steps} steps, {passed}/{n} verified, same transcripts on both paths)")
    print(f"  LangGraph graph : {steps / tg:>9,.0f} steps/s  ({tg:.2f} s)")
    print(f"  plain loop      : {steps / tb:>9,.0f} steps/s  ({tb:.2f} s)")
    print(f"  ratio graph/plain time: {tg / tb:.2f}")


async def bench_memory() -> None:
    """tracemalloc peak per in-flight rollout at 1, 100, 1000 concurrent rollouts."""
    print("\nmemory per in-flight rollout (tracemalloc peak during simulate(concurrency=N))")
    print(f"  {'N':>5}{'peak MiB':>10}{'KiB/rollout':>13}{'s':>7}")
    for n in (1, 100, 1000):
        scs = scenarios(n)
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        trajs = await simulate(scs, lambda sc: ROLES, concurrency=n)
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ok = sum(t.verdict.passed for t in trajs)
        print(f"  {n:>5}{peak / 2**20:>10.1f}{peak / n / 1024:>13.1f}{dt:>7.1f}   ({ok}/{n} verified)")
        del trajs


def main() -> None:
    """Run the speed and the memory benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=60)
    args = ap.parse_args()
    asyncio.run(bench_speed(args.rollouts))
    asyncio.run(bench_memory())


if __name__ == "__main__":
    main()
