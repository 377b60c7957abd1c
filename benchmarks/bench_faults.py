"""`gem run` under injected faults: how many documents end kept, rejected or failed, and why.

The corpus is the bundled sample texts copied with distinct titles (5 texts x --copies); a scripted
run extracts their workflows, then the user and the assistant are played by `RoleResponder` behind
the fake OpenAI-compatible server, which injects faults at --rate (spread evenly over HTTP 500,
429 with Retry-After, timeouts, dropped connections, malformed bodies, empty choices, invalid
tool-call JSON and calls to unknown tools; keyed by request so a seed reproduces). Prints the
faults the server injected, the documents by outcome, the trajectories by verdict, the most common
reasons, and every broken promise (a document lost, stored twice, or ended without a reason — the
last line must say 0).

    .venv/bin/python benchmarks/bench_faults.py [--rate 0.10] [--copies 4] [--retries 3] [--seed 7]
                                                [--engine local|ray] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.testing.fake_openai import FakeOpenAIServer, Faults  # noqa: E402
from gem_agents.testing.fault_run import (  # noqa: E402
    check_run,
    reference_scenarios,
    run,
    run_counts,
    variant_corpus,
    write_config,
)
from gem_agents.testing.role_responder import RoleResponder  # noqa: E402


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=0.10, help="probability that a request meets a fault")
    ap.add_argument("--copies", type=int, default=4, help="copies of each sample text")
    ap.add_argument("--retries", type=int, default=3, help="max_retries of the model roles")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "docs.jsonl"
        ids = variant_corpus(corpus, copies=args.copies)
        code, _, err = run(write_config(tmp / "scripted.yaml"), corpus, tmp / "reference")
        if code != 0:
            sys.exit(f"the scripted reference run failed: {err}")
        scenarios = reference_scenarios(tmp / "reference")
        faults = Faults.at_rate(args.rate, seed=args.seed, keyed=True, retry_after_s=0.05, timeout_s=3.0)
        t0 = time.perf_counter()
        with FakeOpenAIServer(RoleResponder(scenarios), faults=faults) as srv:
            cfg = write_config(tmp / "model.yaml", srv.base_url, max_retries=args.retries, timeout_s=0.5)
            code, summary, err = run(cfg, corpus, tmp / "run", "--engine", args.engine)
            served = srv.summary()
        seconds = time.perf_counter() - t0
        broken = check_run(tmp / "run", ids) if code == 0 else [f"gem run exited {code}: {err[-500:]}"]
        counts = run_counts(tmp / "run") if code == 0 else {}

    result = {"engine": args.engine, "rate": args.rate, "retries": args.retries, "seed": args.seed,
              "documents": len(ids), "procedural": len(scenarios), "seconds": round(seconds, 2),
              "server": served, **counts, "broken_promises": broken}
    if args.json:
        print(json.dumps(result))
        return
    print(f"gem run --engine {args.engine} at {args.rate:.0%} injected faults, max_retries={args.retries}, "
          f"seed {args.seed}: {len(ids)} documents ({len(scenarios)} procedural), {seconds:.1f} s")
    print(f"  requests {served['requests']}, with a fault {served['faulted_requests']} "
          f"({served['faulted_requests'] / max(1, served['requests']):.1%})")
    for kind, n in sorted(served["faults"].items()):
        print(f"    {kind:<18} {n}")
    print(f"  documents: {counts.get('documents')}")
    print(f"  trajectories: {counts.get('trajectories')}")
    for reason, n in (counts.get("reasons") or {}).items():
        print(f"    reason  {n:>3}  {reason}")
    for code_, n in (counts.get("failure_codes") or {}).items():
        print(f"    failure {n:>3}  {code_}")
    print(f"  broken promises (lost, duplicated, no reason): {len(broken)}")
    for b in broken[:20]:
        print(f"    {b}")


if __name__ == "__main__":
    main()
