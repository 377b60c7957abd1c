"""`gem replay`: step an existing trajectory against a fresh backend and show where it diverges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from gem_agents.cli.cmd_simulate import _load_workflow
from gem_agents.cli.common import embedded_scenario, fail, make_console, print_json
from gem_agents.cli.render_dialogue import message_panel, short, verdict_panel
from gem_agents.io import InputError, iter_json_lines, load_json_file, trajectory_problem
from tools_runtime.executor import tool_message_content
from tools_runtime.records import Scenario, Workflow
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.verification.divergence import CallStep, Divergence, step_replay
from tools_runtime.verification.verify import proposals_from_steps, verify

AGAINST = {"dialogue": "the dialogue graph", "schema": "the tool schemas", "order": "the execution graph",
           "execution": "the backend state", "state": "the backend state"}


def read_trajectory(path: Path, line: int) -> dict[str, Any]:
    """One trajectory from a .json file (object, or bare list of messages) or line `line` of a .jsonl file."""
    where = str(path)
    if path.suffix == ".jsonl":
        items = list(iter_json_lines(path, "trajectory"))
        chosen = [i for i in items if i.line == line]
        if not chosen:
            fail(f"{path}: no trajectory on line {line} (non-empty lines: "
                 f"{', '.join(str(i.line) for i in items[:10])})", 2)
        where = f"{path}:{line}"
        if chosen[0].reason is not None:
            col = f":{chosen[0].column}" if chosen[0].column is not None else ""
            fail(f"{where}{col}: {chosen[0].reason}", 2)
        data = chosen[0].value
    else:
        data = load_json_file(path, "trajectory")
    if isinstance(data, list):
        data = {"messages": data}
    problem = trajectory_problem(data)
    if problem:
        fail(f"{where}: {problem} (expected an object with a 'messages' list, OpenAI chat format)", 2)
    return data


def scenario_for(data: dict[str, Any], wf: Workflow, seed: int | None, where: str) -> Scenario:
    """The trajectory's own scenario when it carries one (ours), else one built from the workflow."""
    if isinstance(data.get("scenario"), dict) and seed is None:
        try:
            return embedded_scenario(data["scenario"], where)
        except InputError as exc:
            fail(f"{exc} (pass --seed to build one from the workflow instead)", 2)
    prov = found if isinstance(found := data.get("provenance"), dict) else {}
    use = seed if seed is not None else prov.get("seed", 0)
    if isinstance(use, bool) or not isinstance(use, int) or not 0 <= use < 2**63:
        fail(f"{where}: provenance.seed is not an integer from 0 to 2**63-1: {short(repr(use), 60)} (pass --seed)", 2)
    try:
        return build_scenario(wf, use)
    except ScenarioError as exc:
        fail(f"{where}: cannot build a scenario (seed {use}): {exc}", 1)


def _call_table(step: CallStep, check_results: bool) -> Table:
    rec = step.record
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("call", escape(f"{rec.name}({short(rec.arguments, 200)})"))
    table.add_row("graph", escape(f"done: {', '.join(step.graph_done) or '-'} · allowed now: "
                                  f"{', '.join(step.graph_allowed) or '-'}"))
    table.add_row("backend", escape(short(tool_message_content(rec), 240)))
    if step.answered_at is None:
        table.add_row("transcript", "[red]no tool message answers this call[/]")
    else:
        mark = "[green]✓ same[/]" if step.matches else "[red]✗ differs[/]"
        if not check_results:
            mark = "[dim](not compared)[/]"
        table.add_row("transcript", f"{escape(short(step.recorded, 240))} {mark}")
    if rec.state_diff:
        table.add_row("state diff", escape("; ".join(f"{d['op']} {d['path']}" for d in rec.state_diff[:6])))
    return table


def replay_cmd(
    trajectory: Path = typer.Argument(..., help="Trajectory: .json (ours, or OpenAI {messages, tools}) or .jsonl."),
    workflow: Path = typer.Option(..., "--workflow", help="The workflow whose tools and backend to replay on."),
    line: int = typer.Option(1, "--line", min=1, help="Which line of a .jsonl file."),
    seed: int | None = typer.Option(None, help="Scenario seed (default: the trajectory's own scenario or seed)."),
    no_results: bool = typer.Option(False, "--no-results",
                                    help="Do not compare tool results (third-party data from another backend)."),
    show_all: bool = typer.Option(False, "--all", help="Keep going past the first divergence."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the step view."),
) -> None:
    """Step a trajectory's tool calls against a fresh backend; stop where it diverges."""
    wf = _load_workflow(workflow)
    data = read_trajectory(trajectory, line)
    scenario = scenario_for(data, wf, seed, str(trajectory))
    messages = data["messages"]
    proposals = proposals_from_steps(data.get("steps") or [])
    result = step_replay(messages, scenario, check_results=not no_results, proposals=proposals)
    div = result.divergence
    verdict = verify(messages, scenario, check_results=not no_results, proposals=proposals)[0]
    if as_json:
        print_json({"trajectory": str(trajectory), "messages": len(messages), "calls": len(result.calls),
                    "divergence": None if div is None else {**div.__dict__, "against": AGAINST.get(div.check)},
                    "verdict": verdict.model_dump()})
    else:
        _render(make_console(highlight=False), messages, result.calls, div, verdict, show_all, not no_results)
    if div is not None or not verdict.passed:
        raise typer.Exit(1)


def _render(console: Console, messages: list[dict[str, Any]], calls: list[CallStep], div: Divergence | None,
            verdict: Any, show_all: bool, check_results: bool) -> None:
    stop = len(messages) - 1 if (div is None or show_all) else min(div.index, len(messages) - 1)
    by_message: dict[int, list[CallStep]] = {}
    for step in calls:
        by_message.setdefault(step.message_index, []).append(step)
    for i in range(stop + 1):
        console.print(message_panel(messages[i], i))
        for step in by_message.get(i, []):
            console.print(Panel(_call_table(step, check_results), title=f"replayed · {escape(step.record.name)}",
                                title_align="left", border_style="green" if step.matches else "red"))
    if div is not None:
        console.print(Panel(f"[bold red]{escape(div.code)}[/] at message {div.index}: {escape(div.reason)}",
                            title=f"diverges from {AGAINST.get(div.check, div.check)}", title_align="left",
                            border_style="red"))
        if not show_all and stop < len(messages) - 1:
            console.print(f"stopped at message {stop} of {len(messages)} (use --all to go on)")
    else:
        console.print(f"[green]no divergence:[/] all {len(calls)} tool calls replay as recorded")
    console.print(verdict_panel(verdict))


def register(app: typer.Typer) -> None:
    """Add `replay`."""
    app.command("replay")(replay_cmd)
