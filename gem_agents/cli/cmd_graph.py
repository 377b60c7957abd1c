"""`gem graph check`: parse and validate an execution graph, and check a call order against it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gem_agents.cli.common import console, fail, make_console, print_json
from tools_runtime import toolspec
from tools_runtime.exec_graph import (
    GraphSyntaxError,
    OrderReport,
    check_order,
    format_graph,
    parse_graph,
    reference_order,
    stages,
    validate_graph,
)
from tools_runtime.toolspec import SpecIssue

graph_app = typer.Typer(
    help="Execution graphs in the `(login)->(search, cart)->(update)` notation.",
    no_args_is_help=True,
)


def _split_names(value: str | None) -> list[str] | None:
    """`a, b,c` → ['a', 'b', 'c']; None stays None (option not given)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _issue_json(issue: SpecIssue) -> dict[str, Any]:
    """A tool-file issue as JSON."""
    return issue.model_dump()


def _load_tool_names(path: Path) -> tuple[list[str], list[SpecIssue]]:
    """Tool names from a tool file, plus the loader's issues."""
    try:
        specs, issues = toolspec.load_tool_file(path)
    except (OSError, ValueError) as exc:
        fail(f"cannot load tools from {path}: {exc}", 2)
    return [spec.name for spec in specs], list(issues)


def _print_summary(
    text: str,
    ordered: list[list[str]] | None,
    ref: list[str] | None,
    issues: list[Any],
    order: OrderReport | None,
    tool_issues: list[Any],
    ok: bool,
) -> None:
    """The human-readable report on stdout."""
    out = make_console()
    out.print(f"[bold]graph[/] {escape(text)}", highlight=False)
    if ordered is not None:
        table = Table("stage", "nodes (any order)", title="topological stages", title_justify="left")
        for i, gen in enumerate(ordered, 1):
            table.add_row(str(i), escape(", ".join(gen)))
        out.print(table)
        out.print(f"[bold]reference order[/] {escape(' → '.join(ref or []))}", highlight=False)
    for issue in tool_issues:
        out.print(f"[yellow]tool file:[/] {escape(str(issue))}", highlight=False)
    for issue in issues:
        out.print(f"[red]✗ {issue.code}[/] {escape(issue.message)}", highlight=False)
    if order is not None:
        for v in order.violations:
            out.print(
                f"[red]✗ order[/] call #{v.position} {escape(v.node)!r} before "
                f"{escape(', '.join(v.missing_predecessors))}",
                highlight=False,
            )
        if order.missing:
            out.print(f"[red]✗ missing[/] never called: {escape(', '.join(order.missing))}", highlight=False)
    out.print("[bold green]OK[/]" if ok else "[bold red]FAILED[/]")


@graph_app.command("check")
def check(
    graph: str = typer.Argument(
        ..., help="The graph text, e.g. '(login)->(search, cart)->(update)'; '-' reads stdin."
    ),
    tools: Path | None = typer.Option(
        None,
        "--tools",
        exists=True,
        dir_okay=False,
        help="Tool file; every graph node must name a tool in it.",
    ),
    calls: str | None = typer.Option(
        None, "--calls", help="Comma-separated names of the successful calls, in order, to check."
    ),
    required: str | None = typer.Option(
        None, "--required", help="With --calls: comma-separated nodes that must be called (default: all)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a summary."),
) -> None:
    """Parse and validate an execution graph; with --calls, check the order of those calls."""
    text = sys.stdin.read() if graph == "-" else graph
    try:
        parsed = parse_graph(text)
    except GraphSyntaxError as exc:
        if json_out:
            error = {"message": exc.reason, "position": exc.position, "line": exc.line, "column": exc.column}
            print_json({"ok": False, "error": error})
        # Not fail(): soft_wrap keeps a long source line unwrapped so the caret stays under its column.
        console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None

    tool_names, tool_issues = (None, []) if tools is None else _load_tool_names(tools)
    issues = validate_graph(parsed, tool_names)
    # Stages and a reference order exist only for an acyclic graph.
    acyclic = not any(issue.code == "cycle" for issue in issues)
    ordered = stages(parsed) if acyclic else None
    ref = reference_order(parsed) if acyclic else None
    call_list = _split_names(calls)
    order = None if call_list is None else check_order(parsed, call_list, _split_names(required))
    ok = not issues and (order is None or order.ok)

    if json_out:
        result: dict[str, Any] = {
            "ok": ok,
            "graph": format_graph(parsed),
            "stages": ordered,
            "reference_order": ref,
            "issues": [issue.model_dump() for issue in issues],
            "order": None if order is None else order.model_dump(),
        }
        if tool_issues:
            result["tool_issues"] = [_issue_json(i) for i in tool_issues]
        print_json(result)
    else:
        _print_summary(format_graph(parsed), ordered, ref, issues, order, tool_issues, ok)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `graph` command group to the `gem` app."""
    app.add_typer(graph_app, name="graph")


__all__ = ["check", "graph_app", "register"]
