"""Score a `gem eval` output folder from its trajectories: after a verifier change, or when the run was cut short.

`gem eval` writes summary.json only when every trial is done; its trajectories (`trajectories.jsonl`, or
the `.part` file of a run still going) already hold each dialogue and its scenario. This prints the same
summary (pass^1, pass^k over the trials present, components, blame) from them, either with the verdicts
recorded at run time or re-verified with the current verifier (`--reverify`: the before/after of a
verification fix on the very same dialogues). Several folders are merged (one evaluation's trials split
between processes); a (task, seed) seen twice counts once, the first folder's. Tasks with fewer trials
than the most are reported apart.

    PYTHONPATH=. .venv/bin/python benchmarks/rescore_eval.py DIR [DIR ...] [--reverify] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from math import comb
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.eval.runner import EvalItem, result_row, summarise  # noqa: E402
from tools_runtime.records import Trajectory  # noqa: E402
from tools_runtime.verification.components import STRUCTURAL as STRUCTURAL_NAMES  # noqa: E402
from tools_runtime.verification.replay import tool_calls_of  # noqa: E402
from tools_runtime.verification.verify import proposals_from_steps, verify  # noqa: E402


def _ended_by(traj: Trajectory) -> str:
    """What ended the dialogue, as the graph's verify node decided (it is not stored on the trajectory)."""
    if traj.verdict and any(f.code == "turn_budget_exhausted" for f in traj.verdict.failures):
        return "turn_budget"
    return "tool_budget" if traj.messages and tool_calls_of(traj.messages[-1]) else "user"


def trajectories(folder: Path) -> list[Trajectory]:
    """The dialogues of an eval folder: the finished file, else the newest partial one."""
    path = folder / "trajectories.jsonl"
    if not path.exists():
        parts = sorted(folder.glob(".trajectories.jsonl.*.part"), key=lambda p: p.stat().st_mtime)
        if not parts:
            raise SystemExit(f"{folder}: no trajectories")
        path = parts[-1]
    return [Trajectory.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def rows(trajs: list[Trajectory], reverify: bool) -> list[dict[str, Any]]:
    """results.jsonl rows of the dialogues, their verdicts recomputed when `reverify`."""
    out = []
    for traj in trajs:
        sc = traj.scenario
        assert sc is not None, f"{traj.id}: no scenario in the trajectory"
        if reverify:
            verdict = verify(traj.messages, sc, ended_by=_ended_by(traj), proposals=proposals_from_steps(traj.steps))[0]
            traj = traj.model_copy(update={"verdict": verdict})
        task_id = sc.task.id if sc.task is not None else sc.id
        out.append(result_row(EvalItem(f"{sc.workflow.id}/{task_id}", sc, "rescore"), sc.seed, traj))
    return out


def main() -> None:
    """Print the summary of an eval folder's dialogues."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--reverify", action="store_true", help="Re-verify every dialogue with the current verifier.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seen: set[tuple[str, int]] = set()
    trajs = []
    for folder in args.folders:
        for traj in trajectories(folder):
            key = (traj.scenario_id, traj.scenario.seed if traj.scenario else 0)
            if key not in seen:
                seen.add(key)
                trajs.append(traj)
    all_rows = rows(trajs, args.reverify)
    summary = score(all_rows)
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    n = summary["trials_per_task"]
    print(f"{summary['tasks']} tasks, {summary['dialogues']} dialogues, trials per task {min(n.values())}–{max(n.values())}: "
          + ", ".join(f"pass^{k} {v:.3f}" for k, v in summary["pass_hat_k"].items()))
    print("components: " + ", ".join(f"{c} {v:.2f}" for c, v in summary["components"].items()))
    print("blame: " + ", ".join(f"{b} {c}" for b, c in sorted(summary["blame"].items())))
    print("failure codes (dialogues): " + ", ".join(f"{c} {k}" for c, k in summary["failures"].items()))
    print(f"outcome reached, failed only in structural components: {summary['outcome_only_structural']}")


def score(all_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """summarise() over tasks with unequal trial counts: pass^k per task is C(c,k)/C(n,k) with its own n.

    pass^1 is over every task; pass^k (k = the fewest trials any task has) over every task too.
    """
    per_task: dict[str, list[int]] = {}
    for r in all_rows:
        per_task.setdefault(r["task_id"], []).append(int(r["passed"]))
    k = min(len(v) for v in per_task.values())
    summary = summarise(all_rows, k, skipped=[], tokens={}, wall_s=0.0, pins={})
    summary["pass_hat_k"] = {str(j): round(sum(comb(sum(v), j) / comb(len(v), j) for v in per_task.values())
                                           / len(per_task), 4) for j in sorted({1, k})}
    summary["trials_per_task"] = {t: len(v) for t, v in per_task.items()}
    summary["dialogues"] = len(all_rows)
    summary["failures"] = _failure_counts(all_rows)
    summary["outcome_only_structural"] = dict(Counter(
        "+".join(sorted({f for f in r["failures"]})) for r in all_rows
        if not r["passed"] and all(c["passed"] or c["pending"] or name in STRUCTURAL_NAMES
                                   for name, c in r["components"].items())))
    return summary


def _failure_counts(rs: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rs:
        for code in set(r["failures"]):
            counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    main()
