"""One home for the files `gem` reads and writes: input readers, bounded JSON, safe YAML, atomic writes,
and the redaction every outgoing text passes through.

Why one module: each command used to read JSON lines, decode UTF-8 and write its output its own way,
so the same bad input got a different answer (or a traceback) depending on the command. Everything
here raises `InputError` (an input cannot be used) or `OutputError` (an output target is refused), and
the CLI's one error handler turns both into exit 2 with the message.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

# Bounds on data read from files: deeper or bigger values are refused with a message, never a crash.
MAX_JSON_DEPTH = 200
MAX_INPUT_BYTES = 512 * 1024**2
MAX_CONFIG_BYTES = 1024**2
MAX_YAML_NODES = 100_000  # after alias expansion: a "billion laughs" document is refused, not expanded

# The files of a run directory (`gem run`): nothing else may be written over them.
RUN_FILES = frozenset({"run.sqlite", "checkpoints.sqlite", "model_cache.sqlite", ".lock"})
_SQLITE_SIDE = ("-wal", "-shm", "-journal")


class InputError(ValueError):
    """An input file that cannot be used; the message names the file (and line) and why."""


class OutputError(ValueError):
    """An output target that is refused (a device, a FIFO, a symlink, a run directory's own file…)."""


# ---------------------------------------------------------------------------------------------------------
# secrets


_SECRET_ENV: set[str] = set()
# Read even when no config names them: the usual variables of hosted endpoints.
_DEFAULT_SECRET_ENV = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ANTHROPIC_API_KEY")
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words; no real key is that short
REDACTED = "[redacted]"


def register_secret_env(names: Iterable[str | None]) -> None:
    """Remember environment variables that hold keys; their values are redacted from all output."""
    _SECRET_ENV.update(n for n in names if n)


def secret_values() -> list[str]:
    """The values of every configured key variable that is set (longest first)."""
    values = {os.environ.get(n, "") for n in (*_SECRET_ENV, *_DEFAULT_SECRET_ENV)}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every configured key value replaced by `[redacted]`."""
    if not isinstance(text, str):
        return text
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


_CREDENTIAL_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox",
                        "AKIA", "ASIA", "AIza", "glpat-", "pk_live_", "rk_live_", "sk_live_", "eyJ")


def looks_like_credential(value: str) -> bool:
    """True when `value` looks like a pasted key or token rather than the name of a variable."""
    if any(value.startswith(p) for p in _CREDENTIAL_PREFIXES):
        return True
    if len(value) < 24 or re.fullmatch(r"[A-Z0-9]+(_[A-Z0-9]+)+", value):
        return False  # short, or UPPER_SNAKE_CASE: the shape of a variable name
    # A long mixed-case/digit string with high entropy is a token; variable names are short UPPER_SNAKE.
    counts = {c: value.count(c) for c in set(value)}
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return entropy > 3.5 and (mixed or len(value) >= 32)


# ---------------------------------------------------------------------------------------------------------
# reading


def read_bytes(path: str | Path, what: str = "input", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """A regular file's bytes, or InputError naming it (missing, a folder, a device, unreadable, too big)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a folder; give a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file (a device or a pipe); give a {what} file")
    if st.st_size > max_bytes:
        raise InputError(f"{p}: {st.st_size} bytes, over the limit of {max_bytes} for a {what} file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None


def decode_utf8(data: bytes, where: str) -> str:
    """UTF-8 text (a BOM is dropped), or InputError naming the line and byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{where}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") \
            from None


def read_text(path: str | Path, what: str = "input", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """A UTF-8 file's text, or InputError naming the file and why."""
    return decode_utf8(read_bytes(path, what, max_bytes), str(path))


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in a JSON text (strings ignored), without recursion."""
    brackets = _NOT_BRACKET.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in `value` holds a lone UTF-16 surrogate (valid JSON, not storable text)."""
    if isinstance(value, str):
        return bool(_LONE_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_MAX_INT_DIGITS = 4000  # Python refuses to turn longer digit strings into int; say so in our words


class _JsonProblem(Exception):
    def __init__(self, msg: str, lineno: int | None = None, colno: int | None = None):
        super().__init__(msg)
        self.msg, self.lineno, self.colno = msg, lineno, colno


def _decode(text: str, max_depth: int) -> Any:
    if json_depth(text) > max_depth:
        raise _JsonProblem(f"JSON nested too deeply (over {max_depth} levels)")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _JsonProblem(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise _JsonProblem("JSON nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with more digits than Python converts
        raise _JsonProblem(f"invalid JSON: {exc}") from None
    if has_lone_surrogate(value):
        raise _JsonProblem("holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    return value


def loads(text: str, where: str, *, max_depth: int = MAX_JSON_DEPTH, one_line: bool = False) -> Any:
    """Parse JSON with bounds (depth, no NaN/Infinity, no lone surrogates); InputError names where and why.

    `where` names the file (or `file:line` with `one_line`, when only the column is added).
    """
    try:
        return _decode(text, max_depth)
    except _JsonProblem as exc:
        at = where
        if exc.colno is not None:
            at = f"{where}:{exc.colno}" if one_line else f"{where}:{exc.lineno}:{exc.colno}"
        raise InputError(f"{at}: {exc.msg}") from None


@dataclass
class JsonLine:
    """One non-blank line of a JSON-lines file: its value, or why it could not be used."""

    line: int
    value: Any = None
    reason: str | None = None
    column: int | None = None

    @property
    def error(self) -> str | None:
        """Why the line is unusable (with its column when known), or None."""
        if self.reason is None:
            return None
        return self.reason + (f" (column {self.column})" if self.column is not None else "")


def iter_json_lines(path: str | Path, what: str = "JSON lines", *, max_depth: int = MAX_JSON_DEPTH,
                    max_line_chars: int | None = None) -> Iterator[JsonLine]:
    """Each non-blank line of a JSON-lines file, parsed with bounds; a bad line is an error, not a stop.

    Streams the file (a corpus may be larger than memory). Raises InputError only when the file
    itself cannot be read.
    """
    p = Path(path)
    if not p.is_file():
        read_bytes(p, what)  # raises the message for a missing path, a folder or a device
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    with fh:
        # Lines end at b"\n" only: JSON strings may hold U+2028 and other characters splitlines() breaks at.
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield JsonLine(n, reason=f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}")
                continue
            if max_line_chars is not None and len(line) > max_line_chars:
                yield JsonLine(n, reason=f"line has {len(line)} characters, over {max_line_chars}")
                continue
            try:
                yield JsonLine(n, _decode(line, max_depth))
            except _JsonProblem as exc:
                yield JsonLine(n, reason=exc.msg, column=exc.colno)


def load_json_file(path: str | Path, what: str = "JSON", *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One JSON document from a file, with the same bounds as `loads`."""
    return loads(read_text(path, what), str(path), max_depth=max_depth)


def trajectory_rows(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Trajectories of a .json (one object or a list of messages) or .jsonl file, and the lines skipped.

    A row is (line number, object with a `messages` list of objects); every other line is named in
    the second list with its reason, so one bad line never hides the good ones.
    """
    p = Path(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    skipped: list[str] = []
    if p.suffix == ".jsonl":
        items: list[JsonLine] = list(iter_json_lines(p, "trajectory"))
    else:
        items = [JsonLine(1, load_json_file(p, "trajectory"))]
    for item in items:
        if item.error is not None:
            skipped.append(f"{p}:{item.line}: skipped, {item.error}")
            continue
        data = item.value
        if isinstance(data, list) and p.suffix != ".jsonl":  # a .json file may be a bare list of messages
            data = {"messages": data}
        problem = trajectory_problem(data)
        if problem:
            skipped.append(f"{p}:{item.line}: skipped, {problem}")
            continue
        rows.append((item.line, data))
    return rows, skipped


def trajectory_problem(data: Any) -> str | None:
    """Why `data` is not a trajectory object we can verify, or None."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return "not an object with a 'messages' list"
    bad = next((i for i, m in enumerate(data["messages"]) if not isinstance(m, dict)), None)
    if bad is not None:
        return f"messages[{bad}] is not an object"
    if "steps" in data and data["steps"] is not None and (
            not isinstance(data["steps"], list) or any(not isinstance(s, dict) for s in data["steps"])):
        return "'steps' must be a list of objects"
    for key in ("provenance", "scenario"):
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            return f"'{key}' must be an object, got {type(data[key]).__name__}"
    return None


# ---------------------------------------------------------------------------------------------------------
# YAML


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose alias expansion would exceed MAX_YAML_NODES nodes."""

    def compose_document(self) -> Any:  # noqa: D102 — see yaml.composer.Composer
        node = super().compose_document()
        if node is not None and _expanded_size(node) > MAX_YAML_NODES:
            raise InputError(f"the document expands to more than {MAX_YAML_NODES} values "
                             "(aliases referring to aliases); write the values out")
        return node


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes `root` stands for once every alias is expanded (memoised: aliases share nodes)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if children_done:
            on_path.discard(key)
            sizes[key] = min(1 + sum(sizes.get(id(k), 1) for k in kids), MAX_YAML_NODES + 1)
            continue
        if key in on_path:  # a recursive alias: infinite once expanded
            return MAX_YAML_NODES + 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str, where: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """One YAML document (safe types only) with bounded size and alias expansion; InputError on failure."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InputError(f"{where}: over {max_bytes} bytes; a config is a few hundred lines")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 — a SafeLoader subclass
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{where}{at}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise InputError(f"{where}: unusable YAML value ({type(exc).__name__})") from None


# ---------------------------------------------------------------------------------------------------------
# writing


def check_output(path: str | Path, *, folder: bool = False) -> Path:
    """Refuse an output target that would destroy something: return the path when it is safe to replace.

    Refused: a symlink; an existing device, FIFO or socket; an existing file of the other kind (a folder
    where a file is written, or a file where a folder is); a run directory's own files (run.sqlite …).
    """
    p = Path(path)
    if p.is_symlink():
        raise OutputError(f"{p}: is a symbolic link; give the real path")
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{p}: cannot be used as output ({exc.strerror or exc})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode) and not folder:
            raise OutputError(f"{p}: is a folder; give a file path")
        if stat.S_ISREG(st.st_mode) and folder:
            raise OutputError(f"{p}: is a file; give a folder path")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise OutputError(f"{p}: is a device, pipe or socket, not a file")
    name = p.name
    base = next((name[: -len(s)] for s in _SQLITE_SIDE if name.endswith(s)), name)
    if base in RUN_FILES and (p.parent / "run.sqlite").exists():
        raise OutputError(f"{p}: is one of the run directory's own files; write the output elsewhere")
    if folder and (p / "run.sqlite").exists():
        raise OutputError(f"{p}: is a run directory; write the output elsewhere")
    return p


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """A file handle whose content replaces `path` only when the block ends without an error.

    Temp file in the same folder, fsync, rename: a reader (or a kill) never sees half a file. The
    target is checked first (`check_output`); text written is not redacted here — use `write_text`.
    """
    p = check_output(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write ({exc.strerror or exc})") from None
    try:
        fh: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; the output gets the mode a plain open() would have given it.
        os.chmod(tmp, stat.S_IMODE(p.stat().st_mode) if p.exists() else 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"{p}: cannot write ({exc.strerror or exc})") from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (redacted) to `path` atomically; returns the path."""
    with atomic_writer(path) as fh:
        fh.write(redact(text))
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_writer(path, binary=True) as fh:
        fh.write(data)
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write one JSON object per line (redacted) atomically; returns how many."""
    n = 0
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(redact(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
            n += 1
    return n
