"""Fuzz every command's file inputs with malformed, huge, deeply nested and hostile values (issue 16).

Each example writes its inputs into a fresh folder, runs the real CLI there and asserts the house
rules for bad input:

* the exit code is 0, 1 or 2 — never an exception, never another code;
* no traceback in the output;
* no hang: every invocation runs in a watchdog thread that fails the example when it has not
  returned after HANG_S seconds (a bound on a hang, not a speed assertion);
* nothing is written outside the command's output path, and the inputs are left as they were;
* the value of a key variable (OPENAI_API_KEY, planted into the inputs too) never appears in the
  output or in any file the command wrote.

Examples per target: GEM_FUZZ_EXAMPLES (default 12, so the suite stays quick on two cores); the
counts each target tried are printed (`pytest -s`) and summed in FUZZ_COUNTS.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gem_agents.cli import app
from tests.helpers import EXAMPLES, scripted

pytestmark = pytest.mark.slow

EXAMPLES_PER_TARGET = int(os.environ.get("GEM_FUZZ_EXAMPLES", "12"))
HANG_S = 240
SECRET = "sk-fuzz-" + "Q7w" * 10
SAMPLE = (Path(__file__).resolve().parents[2] / "gem_agents" / "samples" / "share_a_printer.md").read_text()
WORKFLOW_PATH = EXAMPLES / "shop_return.json"
FUZZ_COUNTS: Counter[str] = Counter()
FINDINGS: list[str] = []

SETTINGS = settings(max_examples=EXAMPLES_PER_TARGET, deadline=None, database=None,
                    derandomize=os.environ.get("GEM_FUZZ_RANDOM", "") in ("", "0"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GEM_FUZZ_KEY", SECRET)


# ---- hostile values -------------------------------------------------------------------------------------

HOSTILE_STRINGS = st.sampled_from([
    "", " ", "\x00", "\ud800", "a\udfffb", "\u2028\u2029", "../../../etc/passwd", "/dev/full", "run.sqlite",
    "x" * 100_000, "[" * 5000, "{" * 5000, "NaN", "Infinity", SECRET, f"Authorization: Bearer {SECRET}",
    "${HOME}", "{{7*7}}", "<script>alert(1)</script>", "code:InteractiveInterpreter", "os:system",
    "ﬁ", "é" * 50, "\r\n\r\n", "%s%n", "--help", "-", "'; DROP TABLE documents; --",
])
HOSTILE_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**40, 10**400, 1e308, -0.0, 0.5,
                                   float("inf"), float("nan")])
SCALARS = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, st.integers(), st.floats(allow_nan=True),
                    HOSTILE_STRINGS, st.text(max_size=40))
JSON_VALUES = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                           max_leaves=12)


DEEP = re.compile(r'"__DEEP_(\d+)__"')


def _deep_text(n: int) -> str:
    """JSON nested `n` levels (arrays and objects in turn), built as text: no Python object that deep."""
    opens = "".join('{"k": ' if i % 2 else "[" for i in range(n))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(n)))
    return opens + "1" + closes


# A placeholder string that `dump` replaces by JSON nested that deep (50 to 3000 levels).
HOSTILE_VALUES = st.one_of(JSON_VALUES, st.integers(50, 3000).map(lambda n: f"__DEEP_{n}__"))


def dump(value: Any) -> str:
    """JSON text of any value (NaN, Infinity, lone surrogates and deep nesting included: readers must cope)."""
    return DEEP.sub(lambda m: _deep_text(int(m.group(1))), json.dumps(value, ensure_ascii=False, allow_nan=True))


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (for mutating one place of a valid record)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:6]):
            out += paths_of(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: Callable, base: Any) -> Any:
    """`base` with 1-3 places replaced by hostile values, deleted, or its type changed."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(value)
        path = draw(st.sampled_from(paths))
        new = draw(HOSTILE_VALUES)
        if not path:
            value = new
            continue
        holder = value
        for key in path[:-1]:
            holder = holder[key]
        if draw(st.booleans()) and isinstance(holder, dict):
            holder.pop(path[-1], None)
        else:
            holder[path[-1]] = new
    return value


@st.composite
def corrupted_bytes(draw: Callable, base: bytes) -> bytes:
    """`base` truncated, bit-flipped, spliced with junk, or replaced by random bytes."""
    how = draw(st.sampled_from(["truncate", "flip", "splice", "random", "empty", "bom", "nul"]))
    if how == "truncate":
        return base[: draw(st.integers(0, max(0, len(base) - 1)))]
    if how == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            if data:
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if how == "splice":
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.binary(min_size=1, max_size=64)) + base[at:]
    if how == "random":
        return draw(st.binary(max_size=2048))
    if how == "bom":
        return b"\xef\xbb\xbf" + base
    if how == "nul":
        return base + b"\x00" * 16
    return b""


# ---- the harness -----------------------------------------------------------------------------------------

runner = CliRunner()


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st_ = p.stat()
            out[p.relative_to(root).as_posix()] = (st_.st_size, st_.st_mtime_ns)
    return out


def run_cli(target: str, root: Path, argv: list[str], outputs: tuple[str, ...]) -> tuple[int, str]:
    """Run `gem argv` in `root` and check the house rules; returns (exit code, output)."""
    FUZZ_COUNTS[target] += 1
    before = _tree(root)
    result: dict[str, Any] = {}
    cwd = os.getcwd()

    def go() -> None:
        result["r"] = runner.invoke(app, argv)

    os.chdir(root)
    try:
        worker = threading.Thread(target=go, daemon=True)
        worker.start()
        worker.join(HANG_S)
    finally:
        os.chdir(cwd)
    assert not worker.is_alive(), f"{target}: gem {' '.join(argv)[:300]} still running after {HANG_S} s (a hang)"
    res = result["r"]
    out = res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        FINDINGS.append(f"{target}: {res.exception!r}")
        raise AssertionError(f"{target}: crashed with {res.exception!r}\n{out[-2000:]}") from res.exception
    assert res.exit_code in (0, 1, 2), f"{target}: exit {res.exit_code}\n{out[-2000:]}"
    assert "Traceback" not in out, f"{target}: traceback\n{out[-3000:]}"
    assert SECRET not in out, f"{target}: the key was printed\n{out[-2000:]}"
    after = _tree(root)
    for rel, stamp in after.items():
        if before.get(rel) == stamp:
            continue
        assert any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in outputs), \
            f"{target}: wrote {rel} outside its output {outputs}"
        data = (root / rel).read_bytes()
        assert SECRET.encode() not in data, f"{target}: the key reached {rel}"
    for rel in before:
        assert rel in after or any(rel.startswith(o.rstrip("/") + "/") or rel == o for o in outputs), \
            f"{target}: deleted input {rel}"
    return res.exit_code, out


def fresh() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="gem-fuzz-")


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    return path


OK_CONFIG = "seed: 0\nrollouts: 1\nrefine_rounds: 0\nconcurrency: {documents: 2}\n"


def _trajectory() -> dict[str, Any]:
    _, traj = scripted("shop_return")
    return json.loads(traj.model_dump_json())


TRAJECTORY = _trajectory()
WORKFLOW = json.loads(WORKFLOW_PATH.read_text())
CONFIG = {"seed": 0, "rollouts": 1, "refine_rounds": 0, "input": {"max_chars": 50_000},
          "roles": {"user": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                             "api_key_env": "GEM_FUZZ_KEY", "extra_body": {"a": 1}}}}


# ---- corpora ---------------------------------------------------------------------------------------------

CORPUS_LINES = st.one_of(
    st.builds(lambda v: dump(v), HOSTILE_VALUES),
    st.builds(lambda i, t: dump({"id": i, "text": t}), HOSTILE_VALUES, st.one_of(HOSTILE_STRINGS, st.just(SAMPLE))),
    st.builds(lambda v: dump(v), mutated({"id": "doc", "text": SAMPLE, "source": "s", "meta": {"a": 1}})),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@SETTINGS
@given(lines=st.lists(CORPUS_LINES, min_size=0, max_size=5), command=st.sampled_from(["run", "filter", "extract"]),
       suffix=st.sampled_from([".jsonl", ".json", ".md"]))
def test_fuzz_corpora(lines, command, suffix):
    with fresh() as d:
        root = Path(d)
        write(root, "ok.yaml", OK_CONFIG)
        write(root, f"docs{suffix}", "\n".join(lines) + "\n")
        argv = {"run": ["run", "ok.yaml", "--input", f"docs{suffix}", "--out", "out/run", "--no-report", "-q"],
                "filter": ["filter", f"docs{suffix}", "--out", "out/o.jsonl", "--offline", "-q"],
                "extract": ["extract", f"docs{suffix}", "--out", "out/o.jsonl", "--offline", "-q"]}[command]
        run_cli("corpus", root, argv, ("out",))


@SETTINGS
@given(data=st.one_of(st.binary(max_size=3000), st.lists(st.binary(max_size=200), max_size=4)
                      .map(lambda parts: b"\n".join(parts))))
def test_fuzz_corpus_folders(data):
    with fresh() as d:
        root = Path(d)
        write(root, "ok.yaml", OK_CONFIG)
        write(root, "in/a.md", SAMPLE)
        write(root, "in/b.txt", data)
        run_cli("corpus", root, ["run", "ok.yaml", "--input", "in", "--out", "out/run", "--no-report", "-q"],
                ("out",))


# ---- configs ---------------------------------------------------------------------------------------------


def _yaml(value: Any) -> str:
    try:
        text = yaml.safe_dump(value, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return dump(value)
    return re.sub(r"'?__DEEP_(\d+)__'?", lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)


CONFIG_TEXTS = st.one_of(
    mutated(CONFIG).map(_yaml),
    st.builds(lambda v: _yaml({"seed": 0, "roles": {"user": {"provider": "openai", "model": "m",
                                                             "base_url": "http://127.0.0.1:9/v1",
                                                             "api_key_env": v}}}), HOSTILE_STRINGS),
    st.text(max_size=300),
    st.builds(lambda n: "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 8) + "]\n" for i in range(n)),
        st.integers(1, 9)),
    st.sampled_from(["!!python/object/apply:os.system ['touch PWNED']\n", "a: !!python/name:os.system\n",
                     "- [" * 3000, "seed: 1" + "0" * 5000 + "\n", "? [a, b]\n: c\n", "a: *undefined\n",
                     f"roles: {{user: {{provider: openai, model: m, api_key_env: {SECRET}}}}}\n"]),
)


@SETTINGS
@given(text=CONFIG_TEXTS, command=st.sampled_from(["run", "filter", "simulate"]))
def test_fuzz_configs(text, command):
    with fresh() as d:
        root = Path(d)
        write(root, "c.yaml", text)
        write(root, "d.md", SAMPLE)
        argv = {"run": ["run", "c.yaml", "--input", "d.md", "--out", "out/run", "--no-report", "-q"],
                "filter": ["filter", "d.md", "--config", "c.yaml", "--out", "out/o.jsonl", "-q"],
                "simulate": ["simulate", str(WORKFLOW_PATH), "-n", "1", "--config", "c.yaml", "--out", "out/sim",
                             "-q"]}[command]
        run_cli("config", root, argv, ("out",))
        assert not (root / "PWNED").exists()


# ---- workflows and tool specs ------------------------------------------------------------------------------


@SETTINGS
@given(wf=st.one_of(mutated(WORKFLOW).map(dump), st.text(max_size=200),
                    corrupted_bytes(WORKFLOW_PATH.read_bytes())),
       command=st.sampled_from(["simulate", "debug", "verify", "tools"]))
def test_fuzz_workflows(wf, command):
    with fresh() as d:
        root = Path(d)
        write(root, "wf.json", wf)
        write(root, "t.jsonl", dump(TRAJECTORY) + "\n")
        write(root, "s.txt", "step\nstep\nquit\n")
        argv = {"simulate": ["simulate", "wf.json", "-n", "1", "--out", "out/sim", "-q"],
                "debug": ["debug", "wf.json", "--script", "s.txt"],
                "verify": ["verify", "t.jsonl", "--workflow", "wf.json"],
                "tools": ["tools", "validate", "wf.json"]}[command]
        run_cli("workflow", root, argv, ("out",))


# ---- trajectories ----------------------------------------------------------------------------------------

TRAJECTORY_LINES = st.one_of(mutated(TRAJECTORY).map(dump), st.builds(dump, HOSTILE_VALUES),
                             st.just(dump(TRAJECTORY)), st.text(max_size=100))


@SETTINGS
@given(lines=st.lists(TRAJECTORY_LINES, min_size=1, max_size=3),
       command=st.sampled_from(["verify", "replay", "replay-json", "refine"]))
def test_fuzz_trajectories(lines, command):
    with fresh() as d:
        root = Path(d)
        write(root, "t.jsonl", "\n".join(lines) + "\n")
        write(root, "t.json", lines[0])
        wf = str(WORKFLOW_PATH)
        argv = {"verify": ["verify", "t.jsonl", "--workflow", wf, "--json"],
                "replay": ["replay", "t.jsonl", "--workflow", wf, "--all"],
                "replay-json": ["replay", "t.json", "--workflow", wf, "--json"],
                "refine": ["refine", "t.jsonl", "--workflows", wf, "--out", "out/ref", "-q"]}[command]
        run_cli("trajectory", root, argv, ("out",))


# ---- debug scripts ---------------------------------------------------------------------------------------

DEBUG_LINES = st.one_of(
    st.sampled_from(["step", "s", "c", "continue", "finish", "history", "h", "help", "?", "state",
                     "rewind 0", "rewind 1", "rewind -1", "rewind ²", "rewind 99999999999999999999",
                     "save out/t.json", "save out", "save /dev/full", "save out/run.sqlite", "state message",
                     "state messages.0", "set message.content hello", "set message.tool_calls.0.function.name x"]),
    st.builds(lambda p, v: f"set {p} {dump(v)}", st.sampled_from(["message.content", "orders", "message.x.y",
                                                                  "backend", "", "message.tool_calls.0.arguments"]),
              HOSTILE_VALUES),
    st.builds(lambda c, a: f"{c} {a}", st.sampled_from(["state", "rewind", "save", "set", "zap"]),
              HOSTILE_STRINGS.map(lambda s: s.replace("\n", " ")[:3000])),
)


@SETTINGS
@given(lines=st.lists(DEBUG_LINES, min_size=1, max_size=6))
def test_fuzz_debug_scripts(lines):
    with fresh() as d:
        root = Path(d)
        (root / "out").mkdir()
        write(root, "s.txt", "\n".join(lines) + "\nquit\n")
        # `save FILE` writes where the script says: those files are this command's outputs too.
        saved = tuple(line.split(maxsplit=1)[1].strip() for line in lines
                      if line.startswith("save ") and len(line.split(maxsplit=1)) == 2)
        run_cli("debug-script", root, ["debug", str(WORKFLOW_PATH), "--script", "s.txt"], ("out", *saved))


# ---- run directories ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base-run")
    write(root, "ok.yaml", OK_CONFIG)
    write(root, "d.md", SAMPLE)
    res = runner.invoke(app, ["run", str(root / "ok.yaml"), "--input", str(root / "d.md"), "--out",
                              str(root / "run"), "--no-report", "-q"])
    assert res.exit_code == 0, res.output
    db = sqlite3.connect(root / "run" / "run.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return root / "run"


@SETTINGS
@given(data=st.data(), name=st.sampled_from(["run.sqlite", "checkpoints.sqlite", "model_cache.sqlite", ".lock"]),
       command=st.sampled_from(["run", "export", "report", "export-hf-like"]))
def test_fuzz_run_directories(base_run, data, name, command):
    with fresh() as d:
        root = Path(d)
        run = root / "run"
        shutil.copytree(base_run, run)
        target = run / name
        original = target.read_bytes() if target.is_file() else b"SQLite format 3\x00" + b"\x00" * 100
        how = data.draw(st.sampled_from(["bytes", "folder", "sql"]))
        if how == "folder":
            target.unlink(missing_ok=True)
            target.mkdir()
        elif how == "sql" and name == "run.sqlite":
            db = sqlite3.connect(target)
            value = data.draw(st.builds(dump, HOSTILE_VALUES))
            column = data.draw(st.sampled_from(["relevance", "workflow", "reasons", "error"]))
            db.execute(f"UPDATE documents SET {column} = ?", (value,))
            db.execute("UPDATE trajectories SET record = ?", (value,))
            db.execute("UPDATE meta SET value = ?", (value,))
            db.commit()
            db.close()
        else:
            target.write_bytes(data.draw(corrupted_bytes(original)))
        write(root, "ok.yaml", OK_CONFIG)
        write(root, "d.md", SAMPLE.replace("printer", "scanner"))
        argv = {"run": ["run", "ok.yaml", "--input", "d.md", "--out", "run", "-q"],
                "export": ["export", "run", "--out", "out/o.jsonl"],
                "report": ["report", "run"],
                "export-hf-like": ["export", "run", "--format", "sharegpt", "--out", "out/o.json"]}[command]
        # A reader of a WAL database may create SQLite's shared-memory index beside it; nothing else.
        outputs = ("out", "run") if command in ("run", "report") else ("out", "run/run.sqlite-shm",
                                                                      "run/run.sqlite-wal")
        run_cli("run-dir", root, argv, outputs)


def test_fuzz_counts_are_recorded():
    """The targets above ran (in this session) the number of inputs they were asked to."""
    ran = {k: v for k, v in FUZZ_COUNTS.items()}
    print(f"fuzz totals: {sum(ran.values())} inputs {ran}; findings: {FINDINGS or 'none'}")
    if ran:  # run alone (-k), this test has nothing to count
        assert all(v >= 1 for v in ran.values()) and not FINDINGS
