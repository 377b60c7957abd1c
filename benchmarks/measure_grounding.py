"""Grounding audit of the dev corpus: `gem run` offline and through the fake server with recorded replies.

Two runs, each followed by `gem audit` (grounding, no-op tools, compute correctness, system prompts,
template diversity, funnel, blame) and relevance precision/recall against `machine_procedure`:

1. offline: `gem run configs/offline.yaml` on the whole of `corpus_dev.jsonl` — the offline
   stand-ins (pre-filter, rule-based extractor and task writer, scripted user and assistant); its
   relevance figures are the pre-filter's.
2. recorded: the documents of `tests/data/recorded/` (11 GNOME Help task pages, 3 negatives) with
   every model role on the fake OpenAI-compatible server serving hand-written replies. Those replies
   are examples of what a strong model answers, for tests only: its figures check that the pipeline
   carries such answers to verified, grounded trajectories, never a model's quality (its relevance
   P/R is 1.0 by construction).

    .venv/bin/python benchmarks/measure_grounding.py [--corpus PATH] [--out DIR] [--only offline|recorded]
                                                     [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from gem_agents.audit import audit_run, headline, read_labels  # noqa: E402
from gem_agents.testing.fake_openai import FakeOpenAIServer, RecordedResponder  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
RECORDED = REPO / "tests" / "data" / "recorded" / "docs"
GEM = Path(sys.executable).parent / "gem"


def gem_run(config: Path, src: Path, out: Path) -> float:
    """`gem run CONFIG --input SRC --out OUT` as a user runs it; its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(GEM), "run", str(config), "--input", str(src), "--out", str(out), "--quiet", "--json"],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gem run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def recorded_config(base_url: str) -> dict[str, Any]:
    """Every model role on the fake server; the backend executes the tools; one rollout per task."""
    role = {"provider": "openai", "base_url": base_url, "model": "recorded-replies", "max_retries": 0}
    return {"pipeline": "full", "seed": 0, "rollouts": 1, "tasks_per_env": 2, "refine_rounds": 0,
            "prefilter": False, "cache": False,
            "roles": {"filter": role, "extract": role, "task": role, "user": role, "assistant": role,
                      "tool_env": {"provider": "scripted"}, "refine": {"provider": "scripted"}}}


def measure_offline(corpus: Path, out: Path, labels: dict[str, Any]) -> dict[str, Any]:
    """The offline run on the whole corpus and its audit."""
    seconds = gem_run(REPO / "configs" / "offline.yaml", corpus, out)
    return {"run": "offline", "command": f"gem run configs/offline.yaml --input {corpus} --out {out}",
            "seconds": round(seconds, 1), **audit_run(out, labels)}


def measure_recorded(corpus: Path, out: Path, labels: dict[str, Any]) -> dict[str, Any]:
    """The recorded-replies run (model path, fake server) on the recorded documents and its audit."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RECORDED.glob("*.json"))]
    ids = {r["doc_id"] for r in records}
    out.mkdir(parents=True, exist_ok=True)
    src = out.parent / f"{out.name}_input.jsonl"
    src.write_text("".join(line + "\n" for line in corpus.read_text(encoding="utf-8").splitlines()
                           if line.strip() and json.loads(line)["id"] in ids), encoding="utf-8")
    responder = RecordedResponder(records)
    with FakeOpenAIServer(responder) as srv:
        cfg = out.parent / f"{out.name}_config.yaml"
        cfg.write_text(yaml.safe_dump(recorded_config(srv.base_url)), encoding="utf-8")
        seconds = gem_run(cfg, src, out / "run")
        requests = srv.count
    result = audit_run(out / "run", labels)
    return {"run": "recorded", "command": f"gem run {cfg.name} --input {src.name} (fake server, recorded replies)",
            "seconds": round(seconds, 1), "requests": requests, "unmatched_requests": responder.misses, **result}


def summary_row(res: dict[str, Any]) -> dict[str, Any]:
    """The figures docs/grounding.md reports for one run."""
    rel = res.get("relevance") or {}
    f = res["funnel"]
    return {**headline(res), "compute_calls": res["compute_correct"]["calls"],
            "relevance_precision": rel.get("precision"), "relevance_recall": rel.get("recall"),
            "funnel": f"{f['documents']} → {f['relevant']} → {f['environment_valid']} → {f['tasks_valid']} tasks "
                      f"(rejected {f['tasks_rejected']}) → {f['rollouts_verified']}/{f['rollouts']} rollouts verified",
            "blame": res["blame"], "seconds": res["seconds"]}


def main() -> None:
    """Run both measurements and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=None, help="keep the run directories here (default: a temp dir)")
    ap.add_argument("--only", choices=("offline", "recorded"), default=None)
    ap.add_argument("--json", action="store_true", help="print the full audits as one JSON object")
    args = ap.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: not found (the dev corpus lives in ../shared/data/texts)")
    labels = read_labels(args.corpus, "machine_procedure")
    with tempfile.TemporaryDirectory(prefix="gem-grounding-") as tmp:
        root = args.out or Path(tmp)
        results = []
        if args.only in (None, "offline"):
            results.append(measure_offline(args.corpus, root / "offline", labels))
        if args.only in (None, "recorded"):
            results.append(measure_recorded(args.corpus, root / "recorded", labels))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        if args.json:
            print(json.dumps({"commit": commit, "corpus": str(args.corpus), "runs": results}, ensure_ascii=False,
                             default=str))
            return
        print(f"commit {commit}, corpus {args.corpus}")
        for res in results:
            print(f"\n== {res['run']}: {res['command']}")
            for key, value in summary_row(res).items():
                print(f"  {key}: {value}")
            for stage, reasons in res["funnel"]["drops"].items():
                if reasons:
                    print(f"  drops.{stage}: " + "; ".join(f"{k} ×{v}" for k, v in list(reasons.items())[:5]))
            if res.get("unmatched_requests"):
                print(f"  unmatched requests: {res['unmatched_requests'][:3]}")


if __name__ == "__main__":
    main()
