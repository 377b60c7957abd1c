"""Exports of verified trajectories, one module per format: `fmt_<name>.py` exposing `export(run_dir, out)`.

Formats are discovered from the module names, so adding a format is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any


def available_formats() -> list[str]:
    """Names of the export formats installed (the `fmt_*` modules beside this file)."""
    return sorted(m.name[4:] for m in pkgutil.iter_modules(__path__) if m.name.startswith("fmt_"))


def format_module(name: str) -> ModuleType:
    """The module of one format; ValueError naming the known formats when it does not exist."""
    if name not in available_formats():
        raise ValueError(f"unknown export format {name!r}; available: {', '.join(available_formats())}")
    return importlib.import_module(f"{__name__}.fmt_{name}")


def export_run(run_dir: str | Path, fmt: str, out: str | Path, *, include_offline: bool = False,
               min_judge: float | None = None) -> dict[str, Any]:
    """Export a run's verified trajectories in format `fmt` to `out`; returns the format's summary counts.

    Trajectories written by the offline stand-ins are left out (and counted as `offline_left_out`)
    unless `include_offline`; with `min_judge`, so are those the judge scored below it or did not score.
    """
    module = format_module(fmt)
    from gem_agents.export.records import MIN_JUDGE, judge_passes, verified_trajectories

    token = MIN_JUDGE.set(min_judge)
    try:
        summary = module.export(Path(run_dir), Path(out), include_offline=include_offline)
    finally:
        MIN_JUDGE.reset(token)
    if min_judge is not None:  # `--min-judge`: what the gate kept out (unscored counts as below)
        summary["judge_left_out"] = sum(1 for _, t in verified_trajectories(run_dir, include_offline=include_offline)
                                        if not judge_passes(t, min_judge))
    if not include_offline:
        from gem_agents.export.records import offline_verified

        summary["offline_left_out"] = offline_verified(run_dir)
    return summary


__all__ = ["available_formats", "export_run", "format_module"]
