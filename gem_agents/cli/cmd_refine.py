"""`gem refine`: stage 4 on a file of trajectories — harder scenarios, simulated again, verified."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gem_agents.cli.common import (
    DIALOGUE_ROLES,
    console,
    fail,
    load_run_config,
    open_hub,
    print_json,
)
from gem_agents.cli.progress import make_progress
from gem_agents.io import check_output, iter_json_lines, write_jsonl, write_text
from gem_agents.models.client import ModelCallError
from gem_agents.roles_factory import make_roles
from gem_agents.stages.refine import REFINE_ROLES, RefineResult, as_refine_result, refine, refine_to_tasks
from tools_runtime.records import Scenario, Stats, Trajectory, Workflow
from tools_runtime.refine_ops import OPS
from tools_runtime.refine_tasks import TASK_OPS
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.stats import STAT_FIELDS, mean_stats
from tools_runtime.workflow_io import WorkflowError, load_workflows

REFINE_HELP = "\n\n".join([
    "Stage 4: refine verified trajectories into harder scenarios, simulate them again and keep only "
    "the refined dialogues that verify.",
    f"Operators (--ops, comma-separated or repeated): {', '.join(OPS)}; for trajectories of grounded tasks "
    f"{', '.join(TASK_OPS)}. Offline operators are used "
    "unless --config names a model for roles.refine; the user and assistant roles come from --config too "
    "(scripted by default).",
    "Writes DIR/refined.jsonl (verified refined trajectories), DIR/rejected.jsonl (one line per "
    "trajectory that was skipped or whose refinement was dropped, with reasons) and DIR/report.json "
    "(mean messages, user turns, tool types, tool calls, errors recovered before and after; the same per "
    "trajectory). Exit 0 when "
    "the input was usable, 1 when nothing could be refined, 2 when an input file is missing or unreadable.",
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
    if not values:
        return None
    out = [o.strip() for v in values for o in v.split(",") if o.strip()]
    unknown = [o for o in out if o not in OPS and o not in TASK_OPS]
    if unknown:
        fail(f"unknown operator(s) in --ops: {', '.join(unknown)}; known: {', '.join([*OPS, *TASK_OPS])}", 2)
    return out


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
    ops: list[str] | None = typer.Option(None, "--ops", help="Operators to apply (default: all)."),
    config: Path | None = typer.Option(None, help="Run config YAML (roles.refine for a model refiner)."),
    seed: int = typer.Option(0, help="Seed of the operators' choices."),
    concurrency: int = typer.Option(8, min=1, help="Refinements in flight at once."),
    include_failed: bool = typer.Option(False, "--include-failed", help="Also refine trajectories that did "
                                                                       "not verify."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Refine trajectories into harder, verified ones."""
    wanted = _ops(ops)
    cfg = load_run_config(config)
    try:
        wf_list = load_workflows(workflows)
    except (WorkflowError, FileNotFoundError, ValueError) as exc:
        fail(f"{workflows}: {exc}", 2)
    wf_by_id = {w.id: w for w in wf_list}
    rows = read_trajectories(trajectories)
    if not rows:
        fail(f"{trajectories}: no trajectories", 1)
    check_output(out, folder=True)
    out.mkdir(parents=True, exist_ok=True)
    hub = open_hub(cfg, str(config), (*DIALOGUE_ROLES, *REFINE_ROLES), out / "model_cache.sqlite") if any(
        getattr(cfg.roles, r).provider != "scripted" for r in ("user", "assistant", *REFINE_ROLES)) else None
    roles = make_roles(hub)
    client = hub.client("refine") if hub is not None else None

    rejected: list[dict[str, Any]] = []
    jobs: list[tuple[int, Trajectory, Scenario]] = []
    for n, traj, problem in rows:
        if traj is None:
            rejected.append({"line": n, "id": None, "reasons": [problem]})
            continue
        if not include_failed and not (traj.verdict and traj.verdict.passed):
            rejected.append({"line": n, "id": traj.id, "reasons": ["the input trajectory did not verify"]})
            continue
        sc, why = scenario_for(traj, wf_by_id)
        if sc is None:
            rejected.append({"line": n, "id": traj.id, "reasons": [why]})
            continue
        jobs.append((n, traj, sc))

    results: list[tuple[int, Trajectory, RefineResult]] = []
    target, rej_path = out / "refined.jsonl", out / "rejected.jsonl"

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)

        siblings = [sc.task for _, _, sc in jobs if sc.task is not None]

        async def one(n: int, traj: Trajectory, sc: Scenario) -> tuple[int, Trajectory, RefineResult]:
            async with sem:
                try:
                    if sc.task is not None and sc.workflow.effects:
                        # A grounded task refines into new tasks (issue 17); the best verified one is kept.
                        res = as_refine_result(await refine_to_tasks(
                            sc.workflow, traj.model_copy(update={"scenario": sc}), roles, siblings=siblings,
                            ops=[o for o in wanted or [] if o in TASK_OPS] or None, seed=seed, client=client,
                            judge=hub.client("judge") if hub is not None else None))
                        return n, traj, res
                    res = await refine(sc, roles, rounds=rounds, ops=wanted, seed=seed, client=client,
                                       trajectory=traj)
                except ModelCallError as exc:
                    # An endpoint that gives up costs this trajectory only; the others are still written.
                    res = RefineResult(rejected=[f"model call failed: {exc}"])
                return n, traj, res

        with make_progress(quiet or as_json) as progress:
            task = progress.add_task("refine", total=len(jobs))
            for fut in asyncio.as_completed([one(*j) for j in jobs]):
                results.append(await fut)
                progress.advance(task)

    try:
        asyncio.run(run_all())
    finally:
        if hub is not None:
            hub.close()
    results.sort(key=lambda r: r[0])
    for n, traj, res in results:
        if res.trajectory is None:
            rejected.append({"line": n, "id": traj.id, "reasons": res.rejected})
    write_jsonl(target, [res.trajectory.model_dump_json() for _, _, res in results if res.trajectory is not None])
    rejected.sort(key=lambda r: r["line"])
    write_jsonl(rej_path, rejected)
    refined = [(traj, res) for _, traj, res in results if res.trajectory is not None]
    table = stats_table([t.stats for t, _ in refined], [r.trajectory.stats for _, r in refined if r.trajectory])
    ops_count: dict[str, int] = {}
    for _, res in refined:
        for o in res.ops:
            ops_count[o] = ops_count.get(o, 0) + 1
    summary = {"trajectories": len(rows), "refined": len(refined), "rejected": len(rejected),
               "verified_exported": sum(1 for _, r in refined if r.trajectory and r.trajectory.verdict
                                        and r.trajectory.verdict.passed),
               "ops": ops_count, "stats": table, "out": str(target)}
    per_trajectory = [{"id": traj.id, "refined_id": res.trajectory.id, "ops": res.ops,
                       "before": traj.stats.model_dump(), "after": res.trajectory.stats.model_dump()}
                      for traj, res in refined if res.trajectory is not None]
    report = summary | {"per_trajectory": per_trajectory}
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    if as_json:
        print_json(summary)
    else:
        grid = Table("", *STAT_FIELDS)
        for label in ("before", "after"):
            grid.add_row(label, *(f"{table[label][f]:.2f}" for f in STAT_FIELDS))
        console.print(grid)
        console.print(f"{len(refined)}/{len(rows)} refined and verified → {target}; "
                      f"{len(rejected)} rejected → {rej_path}")
    if not refined:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `refine`."""
    app.command("refine", help=REFINE_HELP)(refine_cmd)
