"""`gem tools …`: check files of tool specifications (OpenAI, MCP, BFCL or bare shapes)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from gem_agents.cli.common import console, make_console, print_json
from tools_runtime.toolspec import SpecIssue, read_tool_file

tools_app = typer.Typer(help="Check tool specifications.", no_args_is_help=True)


class ToolFormat(StrEnum):
    """The shapes `--format` accepts (auto detects each tool's own)."""

    auto = "auto"
    openai = "openai"
    mcp = "mcp"
    bfcl = "bfcl"
    bare = "bare"


@tools_app.command("validate")
def validate(
    file: Path = typer.Argument(
        ..., help="A JSON list of tools, an object with a 'tools' list, or JSON lines."
    ),
    fmt: ToolFormat = typer.Option(ToolFormat.auto, "--format", "-f", help="The tools' shape."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a summary."),
) -> None:
    """Normalize and validate a file of tool specs; exit 1 if any tool is invalid, 2 if unreadable."""
    try:
        report = read_tool_file(file, fmt.value)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if as_json:
            print_json(
                {"tools": 0, "valid": 0, "errors": [{"tool": "", "path": str(file), "message": reason}]}
            )
            raise typer.Exit(2) from None
        console.print(f"[bold red]error:[/] cannot read {file}: {reason}", highlight=False)
        raise typer.Exit(2) from None
    issues = report.issues
    if as_json:
        errors = [{"tool": i.tool, "path": i.path, "message": i.message} for i in issues]
        print_json({"tools": report.items, "valid": len(report.specs), "errors": errors})
    else:
        _print_summary(file, report.items, len(report.specs), issues)
    if issues:
        raise typer.Exit(1)


def _print_summary(file: Path, total: int, valid: int, issues: list[SpecIssue]) -> None:
    out = make_console(highlight=False)
    colour = "green" if not issues else "red"
    out.print(f"[bold]{file}[/]: {total} tools, [{colour}]{valid} valid[/]", soft_wrap=True)
    if not issues:
        return
    table = Table(header_style="bold")
    table.add_column("tool")
    table.add_column("path", overflow="fold")  # a cut path is useless: wrap it instead
    table.add_column("problem", overflow="fold")
    for issue in issues:
        table.add_row(issue.tool or "-", issue.path, issue.message)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add the `tools` command group to the `gem` app."""
    app.add_typer(tools_app, name="tools")
