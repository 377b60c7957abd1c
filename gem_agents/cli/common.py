"""Small helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from gem_agents.config import ConfigError, RunConfig, load_config
from gem_agents.models.hub import ModelHub
from gem_agents.run.preflight import endpoint_problems

# soft_wrap: a message naming a long path stays one line (greppable, and the same at any terminal width).
console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error for a person and exit with `code`."""
    # Escaped: messages carry paths and names ("docs.json[1]", "gem-agents[ray]") that rich would eat as markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """Write one JSON object to stdout (machine-readable output of `--json`)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def load_run_config(path: Path | None) -> RunConfig:
    """The run config (None → the built-in defaults), or exit 2 with the error naming file and key."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), 2)


def read_input_text(path: Path) -> str:
    """A UTF-8 input file's text; a missing or undecodable file exits 2 with a message naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        fail(f"{path}: no such file", 2)
    except UnicodeDecodeError as exc:
        fail(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", 2)


DIALOGUE_ROLES = ("user", "assistant", "tool_env")


def open_hub(cfg: RunConfig, source: str, roles: Iterable[str], cache_path: Path | None = None,
             **kwargs: Any) -> ModelHub:
    """A ModelHub whose model `roles` can start, or exit 2 naming the role and why.

    A missing API key, a provider extra that is not installed or weights not found are config
    errors: said once, before any work, instead of a traceback or a failure per document.
    """
    roles = list(roles)
    problems = [p for p in endpoint_problems(cfg, source) if any(f"roles.{r}:" in p or f"roles.{r}." in p
                                                                 for r in roles)]
    if problems:
        fail("\n".join(problems), 2)
    hub = ModelHub(cfg, cache_path, **kwargs)
    for role in roles:
        try:
            hub.client(role)
        except (ValueError, ImportError) as exc:
            hub.close()
            fail(f"{source}: roles.{role}: {exc}", 2)
    return hub
