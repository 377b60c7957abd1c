"""`gem simulate` (N rollouts of one workflow) and `gem verify` (re-verify trajectories from a file)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from gem_agents.cli.common import (
    DIALOGUE_ROLES,
    console,
    embedded_scenario,
    fail,
    load_run_config,
    open_hub,
    print_json,
)
from gem_agents.cli.progress import make_progress
from gem_agents.config import RunConfig
from gem_agents.io import InputError, atomic_writer, check_output, redact, trajectory_rows
from gem_agents.roles_factory import make_roles
from graphs.dialogue import build_dialogue_graph
from graphs.rollouts import simulate
from graphs.stepper import open_checkpointer
from tools_runtime.python_backend import trust_classes
from tools_runtime.records import Scenario, Trajectory, Workflow
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.stats import compute_stats, mean_stats
from tools_runtime.verification.verify import proposals_from_steps, verify
from tools_runtime.workflow_io import WorkflowError, load_workflow


def _load_workflow(path: Path) -> Workflow:
    """The workflow file the user passed; its Python backend classes (if any) are theirs to trust."""
    try:
        wf = load_workflow(path)
    except WorkflowError as exc:
        fail(str(exc), 2)
    if wf.backend.kind == "python":
        trust_classes(wf.backend.classes)
    return wf


def _config(path: Path | None, policy: str) -> RunConfig:
    cfg = load_run_config(path)
    if policy == "model" and cfg.roles.assistant.provider == "scripted" and cfg.roles.user.provider == "scripted":
        fail("--policy model needs a --config whose roles.user or roles.assistant names a model provider", 2)
    return cfg


def simulate_cmd(
    workflow: Path = typer.Argument(..., help="Workflow JSON file."),
    rollouts: int = typer.Option(4, "--rollouts", "-n", min=1, help="Dialogues to simulate (one seed each)."),
    policy: str = typer.Option("scripted", help="scripted | model (roles from --config)."),
    config: Path | None = typer.Option(None, help="Run config YAML (model endpoints, limits)."),
    out: Path = typer.Option(..., "--out", help="Output folder; trajectories.jsonl is written there."),
    seed: int = typer.Option(0, help="First seed; rollout i uses seed+i."),
    concurrency: int = typer.Option(8, min=1, help="Dialogues in flight at once."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="SQLite file keeping every rollout's checkpoints (thread per rollout)."),
) -> None:
    """Simulate N rollouts of a workflow and verify each one."""
    if policy not in ("scripted", "model"):
        fail("--policy must be 'scripted' or 'model'", 2)
    wf = _load_workflow(workflow)
    cfg = _config(config, policy)
    scenarios: list[Scenario] = []
    for i in range(rollouts):
        try:
            scenarios.append(build_scenario(wf, seed + i))
        except ScenarioError as exc:
            fail(f"{workflow}: cannot build a scenario (seed {seed + i}): {exc}", 1)
    check_output(out, folder=True)
    target = check_output(out / "trajectories.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    hub = open_hub(cfg, str(config), DIALOGUE_ROLES, out / "model_cache.sqlite") if policy == "model" else None
    roles = make_roles(hub)
    results: list[Trajectory] = []
    with atomic_writer(target) as fh, make_progress(quiet or as_json) as progress:
        task = progress.add_task("simulate", total=len(scenarios))

        def done(traj: Trajectory) -> None:
            fh.write(redact(traj.model_dump_json()) + "\n")
            fh.flush()
            results.append(traj)
            progress.advance(task)

        try:
            asyncio.run(_simulate_all(scenarios, roles, checkpoints, concurrency=concurrency, on_done=done,
                                      max_user_turns=cfg.limits.max_user_turns,
                                      max_tool_rounds=cfg.limits.max_tool_rounds))
        finally:
            if hub is not None:
                hub.close()
    passed = [t for t in results if t.verdict and t.verdict.passed]
    summary: dict[str, Any] = {"workflow": wf.id, "rollouts": len(results), "verified": len(passed),
                               "failed": len(results) - len(passed), "out": str(target),
                               "stats": mean_stats(t.stats for t in passed)}
    codes: dict[str, int] = {}
    for t in results:
        for f in (t.verdict.failures if t.verdict else []):
            codes[f.code] = codes.get(f.code, 0) + 1
    summary["failure_codes"] = codes
    if as_json:
        print_json(summary)
    else:
        console.print(f"[bold]{wf.id}[/]: {len(passed)}/{len(results)} verified → {target}")
        for code, n in sorted(codes.items()):
            console.print(f"  {code}: {n}")


async def _simulate_all(scenarios: list[Scenario], roles: Any, checkpoints: Path | None,
                        **kwargs: Any) -> list[Trajectory]:
    """Run the rollouts; with a checkpoint file, through a graph compiled with an async SQLite saver."""
    if checkpoints is None:
        # Bulk generation keeps no history: no checkpointer is the fastest path (docs/design.md §5.4).
        return await simulate(scenarios, lambda sc: roles, **kwargs)
    # The sync SqliteSaver refuses async graphs; an async saver with the strict serializer.
    async with open_checkpointer(checkpoints) as saver:
        graph = build_dialogue_graph(checkpointer=saver)
        return await simulate(scenarios, lambda sc: roles, graph=graph, **kwargs)


def _read_trajectories(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows, skipped = trajectory_rows(path)
    for message in skipped:
        console.print(f"[yellow]{escape(message)}[/]", highlight=False)
    return rows


def verify_cmd(
    trajectories: Path = typer.Argument(..., help="JSONL of trajectories (ours, or OpenAI {messages, tools})."),
    workflow: Path = typer.Option(..., "--workflow", help="The workflow they were simulated from."),
    seed: int = typer.Option(0, help="Seed of the scenario for lines that carry none."),
    no_results: bool = typer.Option(False, "--no-results", help="Do not compare tool results (third-party data)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per trajectory, then a summary."),
) -> None:
    """Re-verify trajectories from a file against the workflow's simulated backend."""
    wf = _load_workflow(workflow)
    rows = _read_trajectories(trajectories)
    if not rows:
        fail(f"{trajectories}: no trajectories to verify", 2)  # an input with nothing usable: a usage error
    table = Table("line", "id", "verdict", "failures")
    passed = 0
    for n, data in rows:
        scenario = None
        if isinstance(data.get("scenario"), dict):
            try:
                scenario = embedded_scenario(data["scenario"], f"{trajectories}:{n}")
            except InputError as exc:  # one bad line is reported and skipped; the rest go on
                head, _, rest = str(exc).partition(": ")
                console.print(f"[yellow]{escape(head)}: skipped, {escape(rest)}[/]", highlight=False)
                continue
        else:
            prov_seed = (data.get("provenance") or {}).get("seed", seed)
            if isinstance(prov_seed, bool) or not isinstance(prov_seed, int) or not 0 <= prov_seed < 2**63:
                console.print(f"[yellow]{escape(str(trajectories))}:{n}: skipped, provenance.seed is not an "
                              f"integer from 0 to 2**63-1: {escape(repr(prov_seed)[:60])}[/]", highlight=False)
                continue
            try:
                scenario = build_scenario(wf, int(prov_seed))
            except ScenarioError as exc:
                fail(f"{workflow}: cannot build a scenario: {exc}", 1)
        verdict, _, recovered = verify(data["messages"], scenario, check_results=not no_results,
                                       proposals=proposals_from_steps(data.get("steps") or []))
        passed += verdict.passed
        tid = str(data.get("id") or f"line{n}")
        if as_json:
            print_json({"line": n, "id": tid, "passed": verdict.passed,
                        "failures": [f.model_dump() for f in verdict.failures],
                        "stats": compute_stats(data["messages"], recovered).model_dump()})
        else:
            reasons = "\n".join(f"{f.code}: {f.reason}" for f in verdict.failures[:6])
            table.add_row(str(n), tid, "[green]passed[/]" if verdict.passed else "[red]failed[/]", reasons)
    if as_json:
        print_json({"trajectories": len(rows), "passed": passed, "failed": len(rows) - passed})
    else:
        console.print(table)
        console.print(f"{passed}/{len(rows)} passed")
    if passed < len(rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `simulate` and `verify`."""
    app.command("simulate")(simulate_cmd)
    app.command("verify")(verify_cmd)
