"""`gem export RUN_DIR --format NAME --out PATH`: verified trajectories in a format trainers read."""

from __future__ import annotations

from pathlib import Path

import typer

from gem_agents.cli.common import console, fail, print_json
from gem_agents.export import available_formats, export_run
from gem_agents.io import check_output

FOLDER_FORMATS = ("hf", "synthesizer")  # formats whose output is a folder


def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `gem run`."),
    fmt: str = typer.Option("openai", "--format", "-f", help="Export format: " + " | ".join(available_formats())),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (openai: .jsonl, sharegpt: .json) or folder (hf)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    include_offline: bool = typer.Option(False, "--include-offline", help="Also export trajectories the offline "
                                         "stand-ins wrote (provenance.offline; left out by default)."),
    min_judge: float | None = typer.Option(None, "--min-judge", min=0.0, max=1.0, help="Only trajectories the "
                                           "judge role scored at least this (0-1; unscored ones are left out)."),
) -> None:
    """Export only the verified trajectories of a run."""
    if fmt not in available_formats():
        fail(f"unknown --format {fmt!r}; available: {', '.join(available_formats())}", 2)
    if not (run_dir / "run.sqlite").exists():
        fail(f"{run_dir}: not a run directory (no run.sqlite)", 2)
    # The target is checked before anything is read: a run's own files, devices, FIFOs, symlinks are refused.
    check_output(out, folder=fmt in FOLDER_FORMATS)
    try:
        summary = export_run(run_dir, fmt, out, include_offline=include_offline, min_judge=min_judge)
    except (RuntimeError, ValueError) as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"{out}: cannot write ({exc.strerror or exc})", 2)
    if as_json:
        print_json(summary)
    else:
        console.print(f"[bold]gem export[/] {fmt}: {summary.get('trajectories', 0)} verified trajectories → {out}")
        for key, value in summary.items():
            if key not in ("format", "out", "trajectories"):
                console.print(f"  {key}: {value}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `gem export`."""
    app.command("export")(export_cmd)
