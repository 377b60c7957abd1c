"""Small helpers shared by the CLI command modules."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from gem_agents.config import ConfigError, RunConfig, load_config
from gem_agents.io import InputError, OutputError, read_text, redact
from gem_agents.models.hub import ModelHub
from gem_agents.run.preflight import endpoint_problems
from tools_runtime.python_backend import is_trusted
from tools_runtime.records import Document, Scenario

if TYPE_CHECKING:
    from gem_agents.ingest import IngestProblem
    from gem_agents.stages.base import Stage

class _RedactingStream:
    """stdout or stderr as it is at each write (test runners swap them), with configured keys redacted."""

    def __init__(self, stderr: bool):
        self._stderr = stderr

    @property
    def _stream(self) -> Any:
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        """Write `text` with every configured key value replaced."""
        return self._stream.write(redact(text))

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal (rich decides on colours and live bars by it)."""
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        """The underlying stream's descriptor."""
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        """The underlying stream's encoding."""
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


def make_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A rich Console whose every line passes through `redact` (no key is ever printed)."""
    return Console(file=_RedactingStream(stderr), **kwargs)  # type: ignore[arg-type]


# soft_wrap: a message naming a long path stays one line (greppable, and the same at any terminal width).
console = make_console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error for a person and exit with `code`."""
    # Escaped: messages carry paths and names ("docs.json[1]", "gem-agents[ray]") that rich would eat as markup.
    console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """Write one JSON object to stdout (machine-readable output of `--json`)."""
    sys.stdout.write(redact(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")


# Exceptions that mean "this input, output or run directory cannot be used": exit 2 with the message.
USAGE_ERRORS: tuple[type[BaseException], ...] = (InputError, OutputError, ConfigError)


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{where}no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{exc.strerror or 'permission denied'} (a read-only or protected location?)"
    return f"{where}{exc.strerror or exc}"


def error_exit(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-paragraph message for an exception that reached the command line.

    Every command ends here instead of in a traceback: known input/output problems exit 2 naming
    the file; anything else exits 1 naming the error (GEM_DEBUG=1 re-raises it for a traceback).
    """
    from gem_agents.run.store import StoreWriteError
    from graphs.serde import UnsafeCheckpoint
    from tools_runtime.python_backend import UntrustedBackend
    from tools_runtime.workflow_io import WorkflowError

    if isinstance(exc, USAGE_ERRORS + (WorkflowError, UntrustedBackend, UnsafeCheckpoint, StoreWriteError)):
        return 2, str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        return 2, f"a run or cache database cannot be used ({exc}); is the file corrupt or truncated?"
    if isinstance(exc, OSError):
        return 2, _os_message(exc)
    if isinstance(exc, RecursionError):
        return 2, "an input is nested too deeply"
    if isinstance(exc, UnicodeError):
        return 2, f"an input holds text that is not valid UTF-8 ({exc.__class__.__name__})"
    if isinstance(exc, MemoryError):
        return 2, "an input is too large to hold in memory"
    return 1, f"unexpected {type(exc).__name__}: {exc} (set GEM_DEBUG=1 to see where)"


def debug_tracebacks() -> bool:
    """True when GEM_DEBUG asks for tracebacks instead of messages."""
    return os.environ.get("GEM_DEBUG", "") not in ("", "0")


def load_run_config(path: Path | None) -> RunConfig:
    """The run config (None → the built-in defaults), or exit 2 with the error naming file and key."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), 2)


def read_input_text(path: Path) -> str:
    """A UTF-8 input file's text; a missing or undecodable file exits 2 with a message naming it."""
    try:
        return read_text(path)
    except InputError as exc:
        fail(str(exc), 2)


def embedded_scenario(data: dict[str, Any], where: str) -> Scenario:
    """The scenario a trajectory carries, validated; InputError names the line and field when it is not usable.

    A Python backend named only by the trajectory is refused: data never imports code. The same classes
    are accepted when the workflow file passed on the command line names them (it trusted them first).
    """
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{where}: its 'scenario' is not valid: scenario.{loc}: {err['msg']}") from None
    backend = scenario.workflow.backend
    if backend.kind == "python" and not is_trusted(backend.classes):
        raise InputError(f"{where}: its scenario names a Python backend ({', '.join(backend.classes[:3])}); "
                         "refused: a Python backend is only loaded from the workflow file you pass (--workflow)")
    return scenario


def read_corpus(path: Path, cfg: RunConfig, show: Callable[[list[IngestProblem]], None]) -> tuple[
        list[Document], list[IngestProblem]]:
    """Every document of a corpus (segmented) and its problems, shown by `show`; the same exit 2 for every
    command when the path cannot be read or holds no usable document."""
    from gem_agents.ingest import IngestError, IngestProblem, iter_documents

    docs: list[Document] = []
    problems: list[IngestProblem] = []
    try:
        for item in iter_documents(path, cfg.input, max_segments=cfg.limits.max_segments):
            if isinstance(item, IngestProblem):
                problems.append(item)
            else:
                docs.append(item)
    except (IngestError, InputError) as exc:
        fail(str(exc), 2)
    show(problems)
    if not docs:  # nothing to run is a usage error, not an empty success (named even under --quiet)
        first = "; ".join(str(p) for p in problems[:3])
        fail(f"{path}: no usable documents ({len(problems)} input problems: {first})" if problems
             else f"{path}: holds no documents", 2)
    return docs, problems


DIALOGUE_ROLES = ("user", "assistant", "tool_env")


def stage_for(name: str, cfg: RunConfig) -> Stage:
    """The registered stage `name` (the object `gem run` uses too); exit 2 with its preflight's problems."""
    from gem_agents.registry import get

    stage = get("stage", name)
    if problems := stage.preflight(cfg):
        fail("\n".join(problems), 2)
    return stage


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
