"""Measure stage 4 (complexity refinement) with the scripted roles, in the shape of the paper's table.

For every bundled example workflow and every workflow the offline extractor gets from the dev corpus
(those whose scripted reference rollout verifies), simulate one dialogue per seed, refine it with the
offline operators (`gem_agents.stages.refine.refine`: refine → re-simulate → verify, dropping what
does not verify), re-verify every exported trajectory independently, and print mean messages, user
turns, tool types, tool calls and errors recovered before and after, next to the paper's figures.

    .venv/bin/python benchmarks/measure_refinement.py [CORPUS.jsonl] [--seeds N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import InputConfig  # noqa: E402
from gem_agents.ingest import read_documents  # noqa: E402
from gem_agents.roles_factory import make_roles  # noqa: E402
from gem_agents.stages.extract import check_simulatable  # noqa: E402
from gem_agents.stages.offline_extractor import extract_offline  # noqa: E402
from gem_agents.stages.refine import refine  # noqa: E402
from graphs.rollouts import run_dialogue  # noqa: E402
from tools_runtime.records import Workflow  # noqa: E402
from tools_runtime.scenario import build_scenario  # noqa: E402
from tools_runtime.stats import mean_stats  # noqa: E402
from tools_runtime.verify import verify  # noqa: E402
from tools_runtime.workflow_io import load_workflows  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
PAPER = {"before": {"messages": 30.0, "tool_types": 5.0, "tool_calls": 7.8},
         "after": {"messages": 46.0, "tool_types": 8.6, "tool_calls": 16.3}}
COLUMNS = ("messages", "user_turns", "tool_types", "tool_calls", "errors_recovered")


async def corpus_workflows(path: Path) -> list[Workflow]:
    """Workflows the offline extractor gets from the corpus whose scripted reference rollout verifies."""
    docs, _ = read_documents(path, InputConfig())
    out = []
    for doc in docs:
        res = extract_offline(doc)
        if res.workflow is not None and not await check_simulatable(res.workflow, seed=0):
            out.append(res.workflow)
    return out


async def measure(workflows: list[Workflow], seeds: int, rounds: int) -> dict:
    """Before/after means over one dialogue per (workflow, seed); after = exported (verified) refinements."""
    roles = make_roles(None)
    before, after, reasons = [], [], {}
    originals = exported = reverified = dropped = 0
    ops_used: dict[str, int] = {}
    for wf in workflows:
        for seed in range(seeds):
            sc = build_scenario(wf, seed)
            traj = await run_dialogue(sc, roles)
            if not (traj.verdict and traj.verdict.passed):
                continue
            originals += 1
            before.append(traj.stats)
            res = await refine(sc, roles, rounds=rounds, seed=seed, trajectory=traj)
            if res.trajectory is None:
                dropped += 1
                reasons[f"{wf.id}:s{seed}"] = res.rejected[:2]
                continue
            exported += 1
            after.append(res.trajectory.stats)
            reverified += verify(res.trajectory.messages, res.trajectory.scenario)[0].passed
            for o in res.ops:
                ops_used[o] = ops_used.get(o, 0) + 1
    return {"workflows": len(workflows), "originals": originals, "exported": exported, "dropped": dropped,
            "exported_verified": reverified, "before": mean_stats(before), "after": mean_stats(after),
            "ops": ops_used, "dropped_reasons": reasons}


def print_table(name: str, m: dict) -> None:
    """One block of the paper-shaped table."""
    head = f"  {'':<22}" + "".join(f"{c:>18}" for c in COLUMNS)
    print(f"{name}: {m['workflows']} workflows, {m['originals']} verified originals, {m['exported']} refined and "
          f"exported, {m['dropped']} dropped; exported re-verified {m['exported_verified']}/{m['exported']}")
    print(head)
    for label in ("before", "after"):
        print(f"  {label + ' (ours)':<22}" + "".join(f"{m[label][c]:>18.2f}" for c in COLUMNS))
        print(f"  {label + ' (paper)':<22}" + "".join(
            f"{PAPER[label][c]:>18.2f}" if c in PAPER[label] else f"{'-':>18}" for c in COLUMNS))
    print("  operators applied: " + ", ".join(f"{k} {v}" for k, v in sorted(m["ops"].items())))
    for key, why in list(m["dropped_reasons"].items())[:5]:
        print(f"  ✗ {key}: {why[0][:140] if why else '?'}")


def main(argv: list[str] | None = None) -> int:
    """Print the tables; exit 2 when the corpus is missing (the examples are still measured)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--seeds", type=int, default=2, help="scenario seeds per workflow (default 2)")
    ap.add_argument("--rounds", type=int, default=1, help="refinement rounds (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    examples = load_workflows(REPO / "examples" / "workflows")
    t0 = time.perf_counter()
    results = {"examples": asyncio.run(measure(examples, args.seeds, args.rounds))}
    t1 = time.perf_counter()
    missing = not args.corpus.exists()
    if not missing:
        wfs = asyncio.run(corpus_workflows(args.corpus))
        results["corpus"] = asyncio.run(measure(wfs, args.seeds, args.rounds))
    t2 = time.perf_counter()
    if args.json:
        print(json.dumps(results | {"seconds": {"examples": t1 - t0, "corpus": t2 - t1}}, indent=2))
    else:
        print(f"stage 4 refinement, scripted roles, seeds 0..{args.seeds - 1}, rounds {args.rounds}\n")
        print_table("examples/workflows", results["examples"])
        print(f"  ({t1 - t0:.1f} s)\n")
        if "corpus" in results:
            print_table(f"offline-extracted from {args.corpus.name}", results["corpus"])
            print(f"  ({t2 - t1:.1f} s)")
        else:
            print(f"corpus not found: {args.corpus} (examples only)", file=sys.stderr)
    return 2 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
