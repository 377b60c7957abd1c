"""`gem audit RUN_DIR [--json] [--labels FILE]`: grounding, no-op tools, compute correctness, system
prompts, template diversity, the funnel and blame counts of a finished (or running) run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gem_agents.cli.common import console, fail, print_json

AUDIT_HELP = "\n\n".join([
    "Measure how grounded a run's output is (read-only; the run may still be writing).",
    "grounding: share of initial-state, gold-argument and user known-info values whose provenance is a "
    "span of the text. noop_tool_share: tools with no effect on state and no returned data. "
    "compute_correct: compute results equal to their formula. system_prompt_share: verified trajectories "
    "that open with a system message. template_diversity: distinct assistant-message templates per "
    "assistant message. refinement: repetition_share, new_capability_share, the complexity of verified "
    "refined trajectories beside the paper's, and per operator produced / simulated / verified / dropped. funnel: documents → relevant → environment valid → tasks valid → rollouts verified, "
    "with the reasons at each drop. blame: failed rollouts by who failed.",
    "With --labels FILE (the input JSONL), relevance precision and recall against --label-field "
    "(default machine_procedure; records whose label is null are left out).",
])


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_human(result: dict[str, Any]) -> None:
    if result.get("offline"):
        console.print("[bold yellow]offline run[/]: written by the offline stand-ins, not by a model")
    table = Table(title=f"gem audit {result['run_dir']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail")
    g = result["grounding"]
    table.add_row("grounding", _fmt(g["value"]), f"{g['grounded']}/{g['total']} values; " + ", ".join(
        f"{k} {_fmt(v['share'])} ({v['grounded']}/{v['total']})" for k, v in g["parts"].items())
        + f"; original tasks only {_fmt(g['originals']['value'])}")
    n = result["noop_tool_share"]
    table.add_row("noop_tool_share", _fmt(n["value"]), f"{n['noop']}/{n['tools']} tools")
    c = result["compute_correct"]
    table.add_row("compute_correct", _fmt(c["value"]), f"{c['correct']}/{c['calls']} compute calls")
    s = result["system_prompt_share"]
    table.add_row("system_prompt_share", _fmt(s["value"]), f"{s['with_system']}/{s['trajectories']} verified")
    t = result["template_diversity"]
    table.add_row("template_diversity", _fmt(t["value"]),
                  f"{t['templates']} templates / {t['assistant_messages']} assistant messages")
    if "relevance" in result:
        r = result["relevance"]
        table.add_row("relevance", f"P {_fmt(r['precision'])} R {_fmt(r['recall'])}",
                      f"tp {r['tp']} fp {r['fp']} fn {r['fn']} tn {r['tn']}; {r['left_out']} unlabelled left out")
    console.print(table)
    f = result["funnel"]
    console.print(f"funnel: documents {f['documents']} → relevant {f['relevant']} → environment valid "
                  f"{f['environment_valid']} → tasks valid {f['tasks_valid']} (rejected {f['tasks_rejected']}) → "
                  f"rollouts verified {f['rollouts_verified']}/{f['rollouts']}", highlight=False)
    for stage, reasons in f["drops"].items():
        if reasons:
            console.print(f"  {stage}: " + "; ".join(f"{k} ×{v}" for k, v in list(reasons.items())[:6]),
                          highlight=False)
    if result["blame"]:
        console.print("blame: " + ", ".join(f"{k} {v}" for k, v in result["blame"].items()), highlight=False)
    _print_refinement(result.get("refinement") or {})


def _print_refinement(r: dict[str, Any]) -> None:
    """Stage 4's figures: repetition, new capabilities, complexity beside the paper's, each operator's funnel."""
    if not r.get("refined") and not r.get("operators"):
        return
    c, cc, p, ceil = r["complexity"], r["complexity_composed"], r["paper"], r["tool_ceiling"]
    console.print(f"refinement: {r['verified']}/{r['refined']} refined trajectories verified; repetition_share "
                  f"{_fmt(r['repetition_share'])} (composed {_fmt(r['repetition_share_composed'])}; target ≤ 0.2); "
                  f"new_capability_share {_fmt(r['new_capability_share'])}", highlight=False)
    for label, m in (("refined, verified", c), ("composed, verified", cc)):
        console.print(f"  {label} (n={m['n']}): messages {m['messages']:.2f}, tool types {m['tool_types']:.2f}, "
                      f"tool calls {m['tool_calls']:.2f}  (paper {p['messages']:g} / {p['tool_types']:g} / "
                      f"{p['tool_calls']:g})", highlight=False)
    console.print(f"  tool ceiling: {ceil['environments']} environments with {_fmt(ceil['mean'])} tools on average; "
                  f"{ceil['below_paper']} have fewer tools than the paper's {p['tool_types']:g} tool types",
                  highlight=False)
    for op, row in r["operators"].items():
        codes = ", ".join(f"{k} {v}" for k, v in sorted(row["drop_codes"].items(), key=lambda kv: -kv[1]))
        console.print(f"  {op}: produced {row['produced']}, simulated {row['simulated']}, verified {row['verified']}, "
                      f"dropped {row['dropped']}" + (f" ({codes})" if codes else "")
                      + (f"; in {row['in_composed']} verified composed" if row.get("in_composed") else ""),
                      highlight=False)


def audit_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `gem run`."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as one JSON object on stdout."),
    labels: Path | None = typer.Option(None, "--labels", help="Input JSONL whose records carry a relevance label."),
    label_field: str = typer.Option("machine_procedure", "--label-field", help="The label field of --labels."),
) -> None:
    """Audit a run (see AUDIT_HELP)."""
    from gem_agents.audit import audit_run, read_labels

    if not (run_dir / "run.sqlite").is_file():
        fail(f"{run_dir}: not a run directory (no run.sqlite)", 2)
    label_map = None
    if labels is not None:
        try:
            label_map = read_labels(labels, label_field)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{labels}: cannot read labels ({exc})", 2)
        if not label_map:
            fail(f"{labels}: no record carries the field {label_field!r}", 2)
    result = audit_run(run_dir, label_map)
    if as_json:
        print_json(result)
    else:
        _print_human(result)


def register(app: typer.Typer) -> None:
    """Add `gem audit`."""
    app.command("audit", help=AUDIT_HELP)(audit_cmd)
