"""Gather a run's figures from its store and render the static report page (no network, no scripts).

The page shows counts per stage with rejection reasons, complexity stats before and after
refinement, token use per stage, and for each trajectory a chat view (user, assistant, tool
call, tool result with its state diff) beside its execution graph drawn as SVG.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from gem_agents.audit import audit_data, headline, run_data, stored_tasks
from gem_agents.io import write_text
from gem_agents.report.svg_graph import render_graph_svg
from gem_agents.run.store import RunStore
from tools_runtime.records import Trajectory
from tools_runtime.stats import STAT_FIELDS, mean_stats

REPORT_NAME = "report.html"
# A report of a huge run stays loadable: chats beyond this many are summarized only.
MAX_CHATS = 200


def reason_key(reason: str) -> str:
    """A grouping key for a rejection reason: its text up to the first detail, numbers masked."""
    head = re.split(r"[:(]", reason, maxsplit=2)
    key = head[0].strip()
    if key in ("extraction rejected", "refinement", "no rollout verified") and len(head) > 1:
        key = f"{key}: {head[1].strip()}"
    return re.sub(r"\d+", "N", key)[:90] or "unknown"


def _stage_counts(docs: list[dict[str, Any]], trajs: list[tuple[str, Trajectory]]) -> list[dict[str, Any]]:
    total = len(docs)
    multi = sum(1 for d in docs if (d["relevance"] or {}).get("multi_step"))
    extracted = sum(1 for d in docs if d["workflow"])
    originals = [t for k, t in trajs if k == "original"]
    refined = [t for k, t in trajs if k == "refined"]  # only verified refinements are kept by stage 4
    ok = sum(1 for t in originals if t.verdict and t.verdict.passed)
    ok_ref = sum(1 for t in refined if t.verdict and t.verdict.passed)
    kept = sum(1 for d in docs if d["status"] == "kept")
    return [
        {"stage": "filter", "label": "documents in → multi-step", "in": total, "out": multi},
        {"stage": "extract", "label": "multi-step → workflow extracted", "in": multi, "out": extracted},
        {"stage": "simulate", "label": "rollouts → verified", "in": len(originals), "out": ok},
        {"stage": "refine", "label": "verified rollouts → refined and verified again", "in": ok, "out": ok_ref},
        {"stage": "export", "label": "documents kept (≥1 verified trajectory)", "in": total, "out": kept},
    ]


def _reasons(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for d in docs:
        if d["status"] == "failed":
            counts[(d["status"], d["stage"], reason_key(d["error"] or "error"))] += 1
        elif d["status"] == "rejected":
            for r in d["reasons"][:1] or ["rejected"]:
                counts[(d["status"], d["stage"], reason_key(r))] += 1
    return [{"status": s, "stage": st, "reason": r, "count": n} for (s, st, r), n in counts.most_common()]


def _called(traj: Trajectory) -> dict[str, str]:
    out: dict[str, str] = {}
    for step in traj.steps:
        if step.ok:
            out[step.name] = "ok"
        else:
            out.setdefault(step.name, "error")
    return out


def _pretty(text: Any) -> str:
    if isinstance(text, str):
        try:
            return json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        except (ValueError, TypeError):
            return text
    return json.dumps(text, indent=1, ensure_ascii=False, default=str)


def chat_turns(traj: Trajectory) -> list[dict[str, Any]]:
    """The transcript as display rows: user / assistant / tool call / tool result (+ state diff)."""
    diffs = {s.tool_call_id: s.state_diff for s in traj.steps if s.tool_call_id}
    rows: list[dict[str, Any]] = []
    for m in traj.messages:
        role = m.get("role")
        content = m.get("content") or ""
        if role == "system":
            rows.append({"kind": "system", "text": content})
        elif role == "user":
            rows.append({"kind": "user", "text": content})
        elif role == "assistant":
            if str(content).strip():
                rows.append({"kind": "assistant", "text": content})
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                rows.append({"kind": "call", "name": fn.get("name", "?"), "text": _pretty(fn.get("arguments", ""))})
        elif role == "tool":
            diff = diffs.get(m.get("tool_call_id") or "", [])
            rows.append({"kind": "result", "name": m.get("name", ""), "text": _pretty(content),
                         "diff": [json.dumps(d, ensure_ascii=False, default=str) for d in diff]})
    return rows


def _task_line(traj: Trajectory) -> str:
    """The instruction of the task a trajectory played ('' for scenarios built from a bare workflow)."""
    task = traj.scenario.task if traj.scenario else None
    return task.instruction if task is not None else ""


def _system_message(traj: Trajectory) -> str:
    """The system message the dialogue opened with ('' when it had none)."""
    first = traj.messages[0] if traj.messages else {}
    return str(first.get("content") or "") if first.get("role") == "system" else ""


def report_data(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report page shows, as plain data."""
    store = RunStore(run_dir, readonly=True)
    try:
        docs = store.documents()
        kinds = store.trajectory_kinds()
        trajs = [(kinds.get(t.id, "original"), t) for t in store.trajectories()]
        usage = store.get_meta("usage", {}) or {}
        config = store.get_meta("config", {}) or {}
        problems = store.get_meta("input_problems", []) or []
        counts = store.counts()
        tasks, rejections = stored_tasks(store)
    finally:
        store.close()
    audit = audit_data(run_data(docs, trajs, tasks, rejections))
    workflows = {d["doc_id"]: d["workflow"] for d in docs if d["workflow"]}
    verified = {k: [t.stats for kk, t in trajs if kk == k and t.verdict and t.verdict.passed]
                for k in ("original", "refined")}
    chats = []
    for kind, t in trajs[:MAX_CHATS]:
        wf = workflows.get(t.provenance.doc_id) or (t.scenario.workflow.model_dump() if t.scenario else None)
        graph = (wf or {}).get("execution_graph", "")
        chats.append({"id": t.id, "kind": kind, "doc_id": t.provenance.doc_id, "passed": bool(t.verdict and
                                                                                         t.verdict.passed),
                      "failures": [f"{f.code}: {f.reason}" for f in (t.verdict.failures if t.verdict else [])],
                      "stats": t.stats.model_dump(), "graph_text": graph,
                      "svg": render_graph_svg(graph, _called(t)) if graph else "",
                      "turns": chat_turns(t), "refinements": list(t.scenario.refinements) if t.scenario else [],
                      "task": _task_line(t), "system": _system_message(t), "offline": t.provenance.offline,
                      "blame": (t.verdict.blame or "") if t.verdict and not t.verdict.passed else ""})
    totals = {f: sum(int(row.get(f, 0)) for row in usage.values())
              for f in ("calls", "cached_calls", "input_tokens", "output_tokens", "saved_tokens")}
    return {
        "run_dir": str(run_dir),
        "offline": audit["offline"],
        "audit": audit,
        "audit_headline": headline(audit),
        "blame": audit["blame"],
        "documents": len(docs),
        "status": counts["documents"],
        "stages": _stage_counts(docs, trajs),
        "reasons": _reasons(docs),
        "stats_fields": STAT_FIELDS,
        "stats_before": mean_stats(verified["original"]),
        "stats_after": mean_stats(verified["refined"]),
        "usage": usage,
        "usage_totals": totals,
        "chats": chats,
        "chats_omitted": max(0, len(trajs) - MAX_CHATS),
        "trajectories": len(trajs),
        "input_problems": len(problems),
        "config": json.dumps(config, indent=1, ensure_ascii=False),
        "docs": [{"doc_id": d["doc_id"], "status": d["status"], "stage": d["stage"],
                  "why": (d["error"] or "; ".join(d["reasons"][:2]))[:240], "seconds": d["seconds"]} for d in docs],
    }


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_report(data: dict[str, Any]) -> str:
    """The report page's HTML."""
    env = Environment(loader=PackageLoader("gem_agents.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(fmt=_fmt, **data)


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    html = render_report(report_data(run_dir))
    return write_text(run_dir / REPORT_NAME, html)  # atomic, and redacted like every output
