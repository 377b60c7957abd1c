"""`gem refine`: stage 4 on a file of trajectories — harder scenarios, simulated again, verified."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gem_agents.cli.common import (
    console,
    fail,
    load_run_config,
    open_hub,
    print_json,
    stage_for,
)
from gem_agents.cli.progress import make_progress
from gem_agents.config import RunConfig
from gem_agents.io import check_output, iter_json_lines, write_jsonl, write_text
from gem_agents.roles_factory import make_roles
from gem_agents.stages.base import Stage, StageEnv
from gem_agents.stages.refine import RefineJob, RefineOutcome, RefineResult
from gem_agents.stages.refine_operators import scenario_operators, task_operators
from tools_runtime.records import Scenario, Stats, Trajectory, Workflow
from tools_runtime.refine_ops import DEFAULT_OPS
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.stats import STAT_FIELDS, mean_stats
from tools_runtime.workflow_io import WorkflowError, load_workflows

REFINE_HELP = "\n\n".join([
    "Stage 4: refine verified trajectories into harder scenarios, simulate them again and keep only "
    "the refined dialogues that verify.",
    f"Operators (--ops, comma-separated or repeated): {', '.join(scenario_operators())}; for trajectories of "
    f"grounded tasks {', '.join(task_operators())}. Offline operators are used "
    "unless --config names a model for roles.refine; the user and assistant roles come from --config too "
    "(scripted by default).",
    "Writes DIR/refined.jsonl (verified refined trajectories), DIR/rejected.jsonl (one line per "
    "trajectory that was skipped or whose refinement was dropped, with reasons) and DIR/report.json "
    "(mean messages, user turns, tool types, tool calls, errors recovered before and after; the same per "
    "trajectory). Exit 0 when "
    "the input was usable, 1 when nothing could be refined, 2 when an input file is missing, unreadable or "
    "holds no usable trajectory, or an operator is unknown.",
])


def read_trajectories(path: Path) -> list[tuple[int, Trajectory | None, str]]:
    """(line, trajectory, problem) per non-blank line; bad lines keep their reason instead of a trajectory."""
    rows: list[tuple[int, Trajectory | None, str]] = []
    for item in iter_json_lines(path, "trajectory"):  # the one bounded JSON-lines reader
        n = item.line
        if item.error is not None:
            rows.append((n, None, f"{path}:{n}: not a trajectory record: {item.error}"))
            continue
        try:
            # Through JSON again: the record's JSON-mode validation (enums, dates) as `gem simulate` wrote it.
            rows.append((n, Trajectory.model_validate_json(json.dumps(item.value, ensure_ascii=False)), ""))
        except ValueError as exc:
            first = str(exc).splitlines()
            rows.append((n, None, f"{path}:{n}: not a trajectory record: {' '.join(first[:3])[:300]}"))
    return rows


def scenario_for(traj: Trajectory, workflows: dict[str, Workflow]) -> tuple[Scenario | None, str]:
    """The scenario a trajectory ran: the one it carries, else rebuilt from its workflow and seed."""
    if traj.scenario is not None:
        return traj.scenario, ""
    wf = workflows.get(traj.workflow_id) or (next(iter(workflows.values())) if len(workflows) == 1 else None)
    if wf is None:
        return None, f"no workflow {traj.workflow_id!r} in --workflows"
    try:
        return build_scenario(wf, traj.provenance.seed), ""
    except ScenarioError as exc:
        return None, f"cannot rebuild the scenario: {exc}"


def _ops(values: list[str] | None) -> list[str] | None:
    """The operator names of --ops (comma-separated or repeated); None when not given (all operators)."""
    if not values:
        return None
    return [o.strip() for v in values for o in v.split(",") if o.strip()]


def stats_table(before: list[Stats], after: list[Stats]) -> dict[str, Any]:
    """The paper-shaped table: mean of each figure before and after refinement."""
    return {"before": mean_stats(before), "after": mean_stats(after)}


def refine_cmd(
    trajectories: Path = typer.Argument(..., help="JSONL of trajectories (as `gem simulate` writes them)."),
    workflows: Path = typer.Option(..., "--workflows", help="Workflow JSON, JSONL or folder (for lines "
                                                            "that carry no scenario)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    rounds: int = typer.Option(1, "--rounds", min=1, max=5, help="Refinement rounds (each refines the last "
                                                                "verified result again)."),
    ops: list[str] | None = typer.Option(None, "--ops", help="Operators to apply (default: all); sets refine_ops."),
    config: Path | None = typer.Option(None, help="Run config YAML (roles.refine for a model refiner)."),
    seed: int = typer.Option(0, help="Seed of the operators' choices."),
    concurrency: int = typer.Option(8, min=1, help="Refinements in flight at once."),
    include_failed: bool = typer.Option(False, "--include-failed", help="Also refine trajectories that did "
                                                                       "not verify."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Refine trajectories into harder, verified ones (see REFINE_HELP)."""
    cfg = _refine_config(load_run_config(config), rounds, _ops(ops), seed)
    stage = stage_for("refine", cfg)  # the same stage object as `gem run`'s refine node; exit 2 on its preflight
    wf_by_id = _load_workflows(workflows)
    rows = read_trajectories(trajectories)
    if not any(traj is not None for _, traj, _ in rows):  # nothing to refine is a usage error, as in gem run
        first = "; ".join(problem for _, _, problem in rows[:3])
        fail(f"{trajectories}: no usable trajectories ({len(rows)} lines skipped: {first})" if rows
             else f"{trajectories}: holds no trajectories", 2)
    check_output(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    jobs, rejected = _jobs(rows, wf_by_id, include_failed=include_failed, seed=seed)
    outcomes = _run_stage(stage, cfg, config, out, jobs, concurrency=concurrency, quiet=quiet or as_json)
    refined = _write_results(out, outcomes, rejected)
    summary = _summary(out, len(rows), refined, len(rejected))
    if as_json:
        print_json(summary)
    else:
        _print_table(summary, len(rows), len(rejected), out)
    if not refined:
        raise typer.Exit(1)


def _refine_config(cfg: RunConfig, rounds: int, ops: list[str] | None, seed: int) -> RunConfig:
    """The run config the refine stage reads, with the command's --rounds, --ops and --seed in it."""
    return cfg.model_copy(update={"refine_rounds": rounds, "seed": seed,
                                  "refine_ops": list(ops) if ops is not None else list(DEFAULT_OPS)})


def _load_workflows(path: Path) -> dict[str, Workflow]:
    """The workflows of --workflows by id; exit 2 when the file cannot be read."""
    try:
        return {w.id: w for w in load_workflows(path)}
    except (WorkflowError, FileNotFoundError, ValueError) as exc:
        fail(f"{path}: {exc}", 2)


def _jobs(rows: list[tuple[int, Trajectory | None, str]], workflows: dict[str, Workflow], *,
          include_failed: bool, seed: int) -> tuple[list[tuple[int, RefineJob]], list[dict[str, Any]]]:
    """A refine job per usable input line (with its line number), and a rejection for every other line."""
    rejected: list[dict[str, Any]] = []
    usable: list[tuple[int, Trajectory, Scenario]] = []
    for n, traj, problem in rows:
        if traj is None:
            rejected.append({"line": n, "id": None, "reasons": [problem]})
            continue
        if not include_failed and not (traj.verdict and traj.verdict.passed):
            rejected.append({"line": n, "id": traj.id, "reasons": ["the input trajectory did not verify"]})
            continue
        sc, why = scenario_for(traj, workflows)
        if sc is None:
            rejected.append({"line": n, "id": traj.id, "reasons": [why]})
            continue
        usable.append((n, traj, sc))
    # A grounded task may be composed with the other tasks of the file (multi-goal refinement).
    siblings = [sc.task for _, _, sc in usable if sc.task is not None]
    # One tool-use count per environment: its composed tasks spread over its capabilities (refine_tasks.multi_goal).
    use: dict[str, Counter[str]] = {}
    jobs = [(n, RefineJob(sc.workflow, traj.model_copy(update={"scenario": sc}), seed=seed, siblings=siblings,
                          show_dialogue=True, tool_use=use.setdefault(sc.workflow.id, Counter())))
            for n, traj, sc in usable]
    return jobs, rejected


def _run_stage(stage: Stage, cfg: RunConfig, config: Path | None, out: Path, jobs: list[tuple[int, RefineJob]],
               *, concurrency: int, quiet: bool) -> list[tuple[int, RefineOutcome]]:
    """Run the refine stage over the jobs with a progress bar; a hub only when the config names a model."""
    models = [r for r in stage.roles if getattr(cfg.roles, r).provider != "scripted"]
    hub = open_hub(cfg, str(config), stage.roles, out / "model_cache.sqlite") if models else None
    env = StageEnv(config=cfg, hub=hub, roles=make_roles(hub), rollout_sem=asyncio.Semaphore(concurrency))

    async def run_all() -> list[RefineOutcome]:
        with make_progress(quiet) as progress:
            task = progress.add_task("refine", total=len(jobs))
            return await stage.run(env, [job for _, job in jobs], on_done=lambda _: progress.advance(task))

    try:
        outcomes = asyncio.run(run_all())
    finally:
        if hub is not None:
            hub.close()
    return [(n, o) for (n, _), o in zip(jobs, outcomes, strict=True)]


Refined = list[tuple[Trajectory, RefineResult]]


def _write_results(out: Path, outcomes: list[tuple[int, RefineOutcome]], rejected: list[dict[str, Any]]) -> Refined:
    """Write refined.jsonl and rejected.jsonl (in input line order); returns (original, result) per refinement."""
    refined: Refined = []
    for n, outcome in outcomes:
        traj, res = outcome.job.trajectory, outcome.best()
        if res.trajectory is None:
            rejected.append({"line": n, "id": traj.id, "reasons": res.rejected})
        else:
            refined.append((traj, res))
    write_jsonl(out / "refined.jsonl", [res.trajectory.model_dump_json() for _, res in refined if res.trajectory])
    rejected.sort(key=lambda r: r["line"])
    write_jsonl(out / "rejected.jsonl", rejected)
    return refined


def _summary(out: Path, total: int, refined: Refined, n_rejected: int) -> dict[str, Any]:
    """The summary (printed) and report.json (the summary plus before/after per trajectory)."""
    table = stats_table([t.stats for t, _ in refined], [r.trajectory.stats for _, r in refined if r.trajectory])
    ops_count: dict[str, int] = {}
    for _, res in refined:
        for o in res.ops:
            ops_count[o] = ops_count.get(o, 0) + 1
    summary = {"trajectories": total, "refined": len(refined), "rejected": n_rejected,
               "verified_exported": sum(1 for _, r in refined if r.trajectory and r.trajectory.verdict
                                        and r.trajectory.verdict.passed),
               "ops": ops_count, "stats": table, "out": str(out / "refined.jsonl")}
    per_trajectory = [{"id": traj.id, "refined_id": res.trajectory.id, "ops": res.ops,
                       "before": traj.stats.model_dump(), "after": res.trajectory.stats.model_dump()}
                      for traj, res in refined if res.trajectory is not None]
    write_text(out / "report.json", json.dumps(summary | {"per_trajectory": per_trajectory}, indent=2) + "\n")
    return summary


def _print_table(summary: dict[str, Any], total: int, n_rejected: int, out: Path) -> None:
    grid = Table("", *STAT_FIELDS)
    for label in ("before", "after"):
        grid.add_row(label, *(f"{summary['stats'][label][f]:.2f}" for f in STAT_FIELDS))
    console.print(grid)
    console.print(f"{summary['refined']}/{total} refined and verified → {summary['out']}; "
                  f"{n_rejected} rejected → {out / 'rejected.jsonl'}")


def register(app: typer.Typer) -> None:
    """Add `refine`."""
    app.command("refine", help=REFINE_HELP)(refine_cmd)
