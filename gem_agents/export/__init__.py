"""Exports of verified trajectories, one module per format, each registering its `export(run_dir, out)`.

A format is an `export_format` in the registry (gem_agents/registry.py): a built-in one is a
`fmt_<name>.py` beside this file, named in `BUILTIN_MODULES["export_format"]`; a plugin's comes
through the `gem_agents.plugins` entry points. See README.md here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gem_agents import registry

Exporter = Callable[..., dict[str, Any]]  # (run_dir: Path, out: Path, *, include_offline: bool) -> summary


def available_formats() -> list[str]:
    """Names of the registered export formats (built-in and from plugins)."""
    return registry.names("export_format")


def exporter(name: str) -> Exporter:
    """The export function of one format; ValueError naming the known formats when it does not exist."""
    return registry.get("export_format", name)


def export_run(run_dir: str | Path, fmt: str, out: str | Path, *, include_offline: bool = False,
               min_judge: float | None = None) -> dict[str, Any]:
    """Export a run's verified trajectories in format `fmt` to `out`; returns the format's summary counts.

    Trajectories written by the offline stand-ins are left out (and counted as `offline_left_out`)
    unless `include_offline`; with `min_judge`, so are those the judge scored below it or did not score.
    """
    export = exporter(fmt)
    from gem_agents.export.records import MIN_JUDGE, judge_passes, verified_trajectories

    token = MIN_JUDGE.set(min_judge)
    try:
        summary = export(Path(run_dir), Path(out), include_offline=include_offline)
    finally:
        MIN_JUDGE.reset(token)
    if min_judge is not None:  # `--min-judge`: what the gate kept out (unscored counts as below)
        summary["judge_left_out"] = sum(1 for _, t in verified_trajectories(run_dir, include_offline=include_offline)
                                        if not judge_passes(t, min_judge))
    if not include_offline:
        from gem_agents.export.records import offline_verified

        summary["offline_left_out"] = offline_verified(run_dir)
    return summary


__all__ = ["Exporter", "available_formats", "export_run", "exporter"]
