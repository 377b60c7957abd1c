"""The `gem` command line. Each `cmd_*.py` module beside this file registers its commands."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import typer
from typer.core import TyperGroup

from gem_agents import __version__


class GemGroup(TyperGroup):
    """The `gem` group: one place where an exception from any command becomes a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; map known errors to exit 2, anything else to exit 1, never a traceback."""
        from gem_agents.cli.common import debug_tracebacks, error_exit, fail

        try:
            return super().invoke(ctx)
        # Usage errors (typer's own click: TyperException), exits and interrupts keep their meaning.
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit, KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 — the one top-level handler of the CLI
            if debug_tracebacks():
                raise
            code, message = error_exit(exc)
            fail(message, code)


app = typer.Typer(
    cls=GemGroup,
    name="gem",
    help="Turn how-to text into execution-verified, multi-turn tool-use trajectories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gem-agents {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """gem-agents: text → workflows → simulated, verified tool-use dialogues."""


def _register_commands() -> None:
    # Discovery keeps each command in its own module so adding one never edits a shared file.
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
