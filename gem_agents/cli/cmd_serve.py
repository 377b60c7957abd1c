"""`gem serve`: one environment's tools as an MCP server (stdio or streamable HTTP), with reset and verify."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from gem_agents.cli.common import fail


def serve_cmd(
    target: Path = typer.Argument(..., help="An environment or workflow JSON, or a tasks JSONL (X.tasks.jsonl "
                                            "beside X.json) to serve one task of."),
    task: str | None = typer.Option(None, "--task", help="Task id in a tasks JSONL (default: the first)."),
    seed: int = typer.Option(0, help="Seed of the first scenario (`reset` can change it)."),
    stdio: bool = typer.Option(False, "--stdio", help="Serve over stdin/stdout."),
    http: str | None = typer.Option(None, "--http", help="Serve streamable HTTP at HOST:PORT (e.g. 127.0.0.1:8765)."),
) -> None:
    """Serve an environment over MCP: its tools on the stateful backend, plus `reset(seed)` and `verify`."""
    if stdio == bool(http):
        fail("give exactly one of --stdio or --http HOST:PORT", 2)
    try:
        import mcp  # noqa: F401
    except ImportError:
        fail("gem serve needs the `serve` extra: pip install 'gem-agents[serve]'", 2)
    from gem_agents.serve import EnvSession, load_target, serve_http, serve_stdio

    try:
        workflow, chosen = load_target(target, task, seed)
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)
    session = EnvSession(workflow=workflow, task=chosen, seed=seed)
    session.reset(seed)
    if stdio:
        asyncio.run(serve_stdio(session))
        return
    host, _, port = str(http).rpartition(":")
    if not host or not port.isdigit():
        fail(f"--http wants HOST:PORT, got {http!r}", 2)
    serve_http(session, host, int(port))


def register(app: typer.Typer) -> None:
    """Add `gem serve` to the CLI."""
    app.command("serve")(serve_cmd)
