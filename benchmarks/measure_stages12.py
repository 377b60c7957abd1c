"""Measure stages 1 and 2 offline on the real dev corpus (no model, no network).

Prints
  1. the pre-filter's precision and recall of "keep" against label_hint, for positives =
     label_hint "procedural" and for positives = every procedural label (procedural,
     procedural_reference, mixed_procedural); negatives are always "non_procedural";
  2. the offline extractor's success rate: a document succeeds when one of its segments (as
     `gem extract` ingests it, default config) gives a workflow that validates, builds a scenario and
     whose scripted reference rollout verifies — on label_hint=procedural, on all positives, and on
     every document the pre-filter keeps.

    .venv/bin/python benchmarks/measure_stages12.py [CORPUS.jsonl] [--json] [--seeds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import InputConfig  # noqa: E402
from gem_agents.ingest import read_documents  # noqa: E402
from gem_agents.stages.extract import check_simulatable  # noqa: E402
from gem_agents.stages.offline_extractor import extract_offline  # noqa: E402
from gem_agents.stages.prefilter import POSITIVE_LABELS, precision_recall, prefilter  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"


def load_labels(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """label_hint and text per document id."""
    labels, texts = {}, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            labels[row["id"]] = row["label_hint"]
            texts[row["id"]] = row["text"]
    return labels, texts


def prefilter_table(labels: dict[str, str], texts: dict[str, str]) -> dict[str, dict]:
    """Precision/recall of keep for the two positive definitions, plus keep rates per label."""
    kept = {doc_id: prefilter(text).keep for doc_id, text in texts.items()}
    out: dict[str, dict] = {}
    for name, positives in (("procedural", {"procedural"}), ("all_positives", set(POSITIVE_LABELS))):
        pairs = [(kept[d], labels[d] in positives) for d in texts
                 if labels[d] in positives or labels[d] == "non_procedural"]
        out[name] = precision_recall(pairs)
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d, label in labels.items():
        per_label[label][0] += kept[d]
        per_label[label][1] += 1
    out["keep_by_label"] = {label: {"kept": k, "total": n} for label, (k, n) in sorted(per_label.items())}
    out["dropped_positives"] = sorted(d for d in texts if labels[d] in POSITIVE_LABELS and not kept[d])
    return out


async def extraction_rates(path: Path, labels: dict[str, str], texts: dict[str, str], seeds: int) -> dict:
    """Offline extraction + simulation success per document (any segment), by group."""
    docs, problems = read_documents(path, InputConfig())
    ok_doc: dict[str, bool] = defaultdict(bool)
    reasons: dict[str, list[str]] = defaultdict(list)
    segments = Counter()
    for doc in docs:
        parent = str(doc.meta.get("parent") or doc.id)
        segments["total"] += 1
        result = extract_offline(doc)
        if result.workflow is None:
            reasons[parent].extend(result.rejected)
            continue
        errors: list[str] = []
        for seed in range(seeds):
            errors = await check_simulatable(result.workflow, seed=seed)
            if errors:
                break
        if errors:
            reasons[parent].extend(errors)
            continue
        segments["ok"] += 1
        ok_doc[parent] = True
    kept = {d for d, t in texts.items() if prefilter(t).keep}
    groups = {
        "procedural": [d for d in texts if labels[d] == "procedural"],
        "all_positives": [d for d in texts if labels[d] in POSITIVE_LABELS],
        "prefilter_kept": sorted(kept),
    }
    rates = {name: {"ok": sum(ok_doc[d] for d in ids), "total": len(ids)} for name, ids in groups.items()}
    failed = {d: reasons[d][:1] for d in groups["all_positives"] + groups["prefilter_kept"] if not ok_doc[d]}
    return {"rates": rates, "segments": dict(segments), "failed": failed, "input_problems": len(problems)}


def main(argv: list[str] | None = None) -> int:
    """Print the tables; exit 2 when the corpus is missing."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seeds", type=int, default=1, help="scenario seeds each workflow must pass (default 1)")
    args = ap.parse_args(argv)
    if not args.corpus.exists():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    labels, texts = load_labels(args.corpus)
    t0 = time.perf_counter()
    pf = prefilter_table(labels, texts)
    t1 = time.perf_counter()
    ex = asyncio.run(extraction_rates(args.corpus, labels, texts, max(1, args.seeds)))
    t2 = time.perf_counter()
    if args.json:
        print(json.dumps({"prefilter": pf, "extraction": ex, "seconds": {"prefilter": t1 - t0,
                                                                          "extraction": t2 - t1}}, indent=2))
        return 0
    print(f"corpus: {args.corpus} ({len(texts)} documents)\n")
    print("pre-filter: keep = passes to stage 1 (negatives: label_hint=non_procedural)")
    print(f"  {'positives':<16}{'precision':>10}{'recall':>8}{'tp':>5}{'fp':>5}{'fn':>5}{'tn':>5}")
    for name in ("procedural", "all_positives"):
        m = pf[name]
        print(f"  {name:<16}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['tp']:>5}{m['fp']:>5}{m['fn']:>5}{m['tn']:>5}")
    print("  kept by label: " + ", ".join(f"{k} {v['kept']}/{v['total']}" for k, v in pf["keep_by_label"].items()))
    if pf["dropped_positives"]:
        print("  dropped positives: " + ", ".join(pf["dropped_positives"]))
    print(f"  ({t1 - t0:.2f} s)\n")
    seeds = max(1, args.seeds)
    print(f"offline extractor: valid workflow + scenario + scripted rollout verified (seeds 0..{seeds - 1})")
    for name, r in ex["rates"].items():
        rate = r["ok"] / r["total"] if r["total"] else 0.0
        print(f"  {name:<16}{r['ok']:>4}/{r['total']:<4} {rate:6.1%}")
    print(f"  segments: {ex['segments'].get('ok', 0)}/{ex['segments'].get('total', 0)} gave a simulatable workflow")
    for doc_id, why in sorted(ex["failed"].items()):
        print(f"  ✗ {doc_id} [{labels[doc_id]}]: {why[0][:150] if why else '?'}")
    print(f"  ({t2 - t1:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
