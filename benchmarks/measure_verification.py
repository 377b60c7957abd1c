"""How fair and how strict verification is: benign variants that verify, harmful ones that fail.

Over every example workflow (scripted gold dialogues, seeds 0..S-1), the example environments' tasks
(played by the gold player of `gem eval`), and BFCL multi-turn base ground truth (first N tasks), every
variant of tools_runtime/verification/perturbations.py is applied where it fits. Prints, per variant and in total:
the share of benign variants that verify (after = `verify`, before = `verify_legacy`, the imitation
verdict of git revision 7f9bd46 kept beside it) and the share of harmful ones that fail in the
component the variant names.

    PYTHONPATH=. .venv/bin/python benchmarks/measure_verification.py [--seeds 3] [--bfcl 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import example_names, rollout, scripted  # noqa: E402
from tools_runtime.records import Scenario  # noqa: E402
from tools_runtime.verification.perturbations import ALL, NotApplicable, failed_components  # noqa: E402
from tools_runtime.verification.verify import verify, verify_legacy  # noqa: E402

BFCL = REPO.parent / "shared" / "data" / "bench" / "bfcl" / "data"


def _gold_roles():
    from gem_agents.eval.gold_player import gold_player
    from gem_agents.user.scripted import scripted_user
    from graphs.roles import Roles

    return Roles(user=scripted_user, assistant=gold_player)


GOLD = _gold_roles()


def gold_dialogues(seeds: int, bfcl: int) -> list[tuple[str, Scenario, list[dict]]]:
    """(source, scenario, gold messages) for every gold dialogue that verifies."""
    out = []
    for name in example_names():
        for seed in range(seeds):
            sc, traj = scripted(name, seed)
            out.append(("workflows", sc, traj.messages))
    from tools_runtime.tasks import Task, TaskRejected, scenario_from_task
    from tools_runtime.workflow_io import load_workflow

    for env in sorted((REPO / "examples" / "environments").glob("*.json")):
        wf = load_workflow(env)
        for line in env.with_suffix(".tasks.jsonl").read_text().splitlines():
            try:
                sc = scenario_from_task(wf, Task.model_validate_json(line), 0)
            except TaskRejected:
                continue
            traj = rollout(sc, GOLD)
            out.append(("environments", sc, traj.messages))
    if bfcl and BFCL.is_dir():
        try:
            from tools_runtime.adapters.bfcl import (
                load_func_docs,
                load_tasks,
                task_scenario,
                transcript_from_plan,
            )
            docs = load_func_docs(BFCL)
            for task, answer in load_tasks(BFCL)[:bfcl]:
                sc = task_scenario(task, answer, docs)
                if sc.plan:
                    out.append(("bfcl", sc, transcript_from_plan(sc, sc.plan)[0]))
        except ImportError:
            print("bfcl-eval is not installed: BFCL skipped", file=sys.stderr)
    return [(src, sc, m) for src, sc, m in out if verify(m, sc)[0].passed]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bfcl", type=int, default=40, help="BFCL tasks (0: none)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    golds = gold_dialogues(args.seeds, args.bfcl)
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for src, sc, messages in golds:
        for p in ALL:
            try:
                sc2, m2 = p.apply(sc, messages)
            except NotApplicable:
                continue
            v = verify(m2, sc2)[0]
            r = rows[p.name]
            r["n"] += 1
            r[f"n_{src}"] += 1
            if p.benign:
                r["ok"] += v.passed
                r["before"] += verify_legacy(m2, sc2)[0].passed
            else:
                r["ok"] += (not v.passed) and bool(failed_components(v) & p.components)
                r["before"] += not verify_legacy(m2, sc2)[0].passed
    benign = {p.name for p in ALL if p.benign}
    tot = {k: {"n": 0, "ok": 0, "before": 0} for k in ("benign", "harmful")}
    for name, r in rows.items():
        t = tot["benign" if name in benign else "harmful"]
        for k in ("n", "ok", "before"):
            t[k] += r[k]
    summary = {
        "gold_dialogues": {s: sum(1 for g in golds if g[0] == s) for s in ("workflows", "environments", "bfcl")},
        "benign_pass_rate": tot["benign"]["ok"] / max(1, tot["benign"]["n"]),
        "benign_pass_rate_before": tot["benign"]["before"] / max(1, tot["benign"]["n"]),
        "harmful_caught_rate": tot["harmful"]["ok"] / max(1, tot["harmful"]["n"]),
        "harmful_failed_before": tot["harmful"]["before"] / max(1, tot["harmful"]["n"]),
        "variants": {k: dict(v) for k, v in sorted(rows.items())},
        "totals": tot,
        "seconds": round(time.time() - t0, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"gold dialogues: {summary['gold_dialogues']}")
    print(f"{'variant':26s} {'kind':8s} {'n':>5s} {'after':>7s} {'before':>7s}")
    for name, r in sorted(rows.items(), key=lambda kv: (kv[0] not in benign, kv[0])):
        kind = "benign" if name in benign else "harmful"
        print(f"{name:26s} {kind:8s} {r['n']:5d} {r['ok'] / r['n']:7.1%} {r['before'] / r['n']:7.1%}")
    print(f"benign variants that verify:           after {summary['benign_pass_rate']:.1%}  "
          f"before {summary['benign_pass_rate_before']:.1%}  (n={tot['benign']['n']})")
    print(f"harmful variants failed (right component): after {summary['harmful_caught_rate']:.1%}  "
          f"(failed at all before: {summary['harmful_failed_before']:.1%}, n={tot['harmful']['n']})")
    print(f"{summary['seconds']} s")


if __name__ == "__main__":
    main()
