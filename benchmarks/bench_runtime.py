"""Tool-runtime speed: executor vs bare backend calls, and execution-graph checks at 10/100/1000 nodes.

    .venv/bin/python benchmarks/bench_runtime.py [--rounds N]

Prints tool executions per second through `execute_call` (validate → dispatch → record, with the
state diff) and through a bare loop calling the same backend's `execute` with the same arguments,
and their ratio; then the time to parse + validate + order-check graphs of 10, 100 and 1000 nodes
(it should grow about linearly).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools_runtime.exec_graph import check_order, parse_graph, reference_order, validate_graph  # noqa: E402
from tools_runtime.executor import execute_call, make_backend  # noqa: E402
from tools_runtime.scenario import build_scenario  # noqa: E402
from tools_runtime.workflow_io import load_workflow  # noqa: E402


def _backends(scenario, n: int) -> list:
    return [make_backend(scenario.workflow, copy.deepcopy(scenario.initial_state)) for _ in range(n)]


def bench_executor(rounds: int) -> None:
    """Executions per second, executor vs bare loop, over every example workflow's reference plan."""
    print(f"executor vs bare backend loop ({rounds} rounds of each example's reference plan)")
    print(f"  {'workflow':<24}{'calls':>7}{'executor/s':>13}{'bare/s':>11}{'ratio':>8}")
    total_e = total_b = total_calls = 0.0
    for path in sorted((REPO / "examples" / "workflows").glob("*.json")):
        wf = load_workflow(path)
        sc = build_scenario(wf, seed=0)
        tools = {t.name: t for t in wf.tools}
        calls = [(c.tool, c.arguments) for c in sc.plan]
        bes = _backends(sc, rounds)
        t0 = time.perf_counter()
        for be in bes:
            for name, args in calls:
                execute_call(be, tools, name, args)
        te = time.perf_counter() - t0
        bes = _backends(sc, rounds)
        t0 = time.perf_counter()
        for be in bes:
            for name, args in calls:
                be.execute(name, dict(args))
        tb = time.perf_counter() - t0
        n = rounds * len(calls)
        total_e, total_b, total_calls = total_e + te, total_b + tb, total_calls + n
        print(f"  {path.stem:<24}{len(calls):>7}{n / te:>13,.0f}{n / tb:>11,.0f}{te / tb:>8.2f}")
    print(f"  {'all':<24}{'':>7}{total_calls / total_e:>13,.0f}{total_calls / total_b:>11,.0f}"
          f"{total_e / total_b:>8.2f}   (ratio = executor time / bare time)")


def staged_graph(n: int, width: int = 2) -> tuple[str, list[str]]:
    """A chain of stages with `width` nodes each, `n` nodes in all, and its node names."""
    names = [f"tool_{i}" for i in range(n)]
    stages = [names[i:i + width] for i in range(0, n, width)]
    return "->".join("(" + ", ".join(s) + ")" for s in stages), names


def bench_graphs(repeat: int = 20) -> None:
    """Parse + validate + order-check time for graphs of 10, 100, 1000 nodes."""
    print("\nexecution-graph check (parse + validate + reference order + order check)")
    print(f"  {'nodes':>6}{'ms/check':>10}{'µs/node':>10}")
    for n in (10, 100, 1000):
        text, names = staged_graph(n)
        t0 = time.perf_counter()
        for _ in range(repeat):
            g = parse_graph(text)
            assert not validate_graph(g, names)
            order = reference_order(g)
            assert check_order(g, order).ok
        dt = (time.perf_counter() - t0) / repeat
        print(f"  {n:>6}{dt * 1e3:>10.2f}{dt / n * 1e6:>10.1f}")


def main() -> None:
    """Run both benchmarks and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    bench_executor(args.rounds)
    bench_graphs()


if __name__ == "__main__":
    main()
