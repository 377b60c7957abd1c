"""Issue 16, one test per case: data never runs code, secrets never reach disk, bad bytes never hang a run.

Each test drives the real entry point (the CLI where there is one) and checks the message, the exit
code and what is left on disk. `tests/project/test_fuzz_inputs.py` throws generated inputs at the same paths.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import sys
from pathlib import Path

import ormsgpack
import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.config import ConfigError, RunConfig, load_config
from gem_agents.ingest import read_documents
from gem_agents.io import (
    InputError,
    OutputError,
    check_output,
    load_yaml,
    looks_like_credential,
    redact,
    register_secret_env,
)
from gem_agents.run.store import DocOutcome, RunStore, StoreWriteError
from graphs.serde import UnsafeCheckpoint, strict_serde
from tests.helpers import EXAMPLES, scripted

SAMPLE = (Path(__file__).resolve().parents[2] / "gem_agents" / "samples" / "share_a_printer.md").read_text()
WORKFLOW = str(EXAMPLES / "shop_return.json")
OK_CONFIG = "seed: 0\nrollouts: 1\nrefine_rounds: 0\n"
runner = CliRunner()


def gem(*argv: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in argv])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"crashed: {res.exception!r}\n{res.output}") from res.exception
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def _trajectory(**extra) -> dict:
    _, traj = scripted("shop_return")
    data = json.loads(traj.model_dump_json())
    data.update(extra)
    return data


# ---- security ---------------------------------------------------------------------------------------------


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """A module whose import leaves a marker file: importing it is what must never happen."""
    marker = tmp_path / "IMPORTED"
    (tmp_path / "evil_backend_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Api:\n    def run(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "evil_backend_mod:Api", marker
    sys.modules.pop("evil_backend_mod", None)


def _python_backend_line(classes: list[str]) -> str:
    data = _trajectory()
    data["scenario"]["workflow"]["backend"] = {"kind": "python", "classes": classes, "initial_config": {}}
    return json.dumps(data)


def test_a_trajectory_naming_a_python_backend_is_refused_by_replay(tmp_path, evil_module):
    path, marker = evil_module
    (tmp_path / "t.jsonl").write_text(_python_backend_line([path, "code:InteractiveInterpreter"]) + "\n")
    code, out = gem("replay", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    assert code == 2 and "Python backend" in out and "refused" in out, out
    assert not marker.exists()


def test_a_trajectory_naming_a_python_backend_is_skipped_by_verify(tmp_path, evil_module):
    path, marker = evil_module
    good = json.dumps(_trajectory())
    (tmp_path / "t.jsonl").write_text(_python_backend_line([path]) + "\n" + good + "\n")
    code, out = gem("verify", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    assert code == 1 and "t.jsonl:1: skipped" in out and "Python backend" in out and "1/2 passed" in out, out
    assert not marker.exists()


def test_a_python_backend_from_data_is_never_imported_at_the_root(evil_module):
    from tools_runtime.python_backend import PythonBackend, UntrustedBackend

    path, marker = evil_module
    with pytest.raises(UntrustedBackend, match="comes from data"):
        PythonBackend([path])
    assert not marker.exists()


def _evil_checkpoint(marker: Path) -> bytes:
    call = ormsgpack.Ext(1, ormsgpack.packb(["os", "system", [f"touch {marker}"]]))
    return ormsgpack.packb({"v": 4, "id": "x", "ts": "", "channel_values": {"messages": call},
                            "channel_versions": {}, "versions_seen": {}})


def test_a_crafted_checkpoint_entry_is_refused_by_gem_debug(tmp_path):
    ck = tmp_path / "ck.sqlite"
    (tmp_path / "s.txt").write_text("step\nquit\n")
    code, out = gem("debug", WORKFLOW, "--script", tmp_path / "s.txt", "--checkpoints", ck)
    assert code == 0, out
    marker = tmp_path / "PWNED"
    db = sqlite3.connect(ck)
    n = db.execute("UPDATE checkpoints SET type = 'msgpack', checkpoint = ?", (_evil_checkpoint(marker),)).rowcount
    db.commit()
    db.close()
    assert n > 0
    code, out = gem("debug", WORKFLOW, "--script", tmp_path / "s.txt", "--checkpoints", ck)
    assert code == 2 and "os.system" in out and "not an allowed type" in out, out
    assert not marker.exists()


def test_the_pipeline_checkpointer_refuses_a_crafted_entry(tmp_path):
    from gem_agents.run.checkpointer import open_checkpointer

    marker = tmp_path / "PWNED"
    with open_checkpointer(tmp_path / "checkpoints.sqlite") as saver:
        saver.conn.execute("INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, type, checkpoint, "
                           "metadata) VALUES ('doc', '', '1', 'msgpack', ?, ?)",
                           (_evil_checkpoint(marker), b"{}"))
        with pytest.raises(UnsafeCheckpoint, match="os.system"):
            saver.get_tuple({"configurable": {"thread_id": "doc", "checkpoint_ns": ""}})
    assert not marker.exists()


def test_the_strict_serializer_keeps_our_own_records():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from tools_runtime.records import Document

    data = JsonPlusSerializer().dumps_typed({"doc": Document(id="x", text="t"), "n": {1, 2}})
    assert strict_serde().loads_typed(data) == {"doc": Document(id="x", text="t"), "n": {1, 2}}
    with pytest.raises(UnsafeCheckpoint, match="pickle"):
        strict_serde().loads_typed(("pickle", b"cos\nsystem\n."))


SECRET = "sk-test-" + "Zq8" * 12


def test_the_key_never_reaches_disk_or_output(tmp_path, monkeypatch):
    """An endpoint whose error body echoes the Authorization header: the key is redacted everywhere."""
    from gem_agents.testing.fake_openai import FakeOpenAIServer, HttpError, Reply

    monkeypatch.setenv("GEM_TEST_SECRET", SECRET)

    def echo_header(body: dict) -> Reply:
        return Reply(error=HttpError(400, {"error": {"message": f"bad request; you sent Authorization: Bearer "
                                                                f"{SECRET}", "type": "invalid_request_error"}}))

    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "d1", "text": SAMPLE + f"\nmy key is {SECRET}\n"}) + "\n")
    with FakeOpenAIServer(echo_header) as srv:
        role = (f"{{provider: openai, model: fake-model, base_url: '{srv.base_url}', api_key_env: GEM_TEST_SECRET, "
                "max_retries: 0}")
        (tmp_path / "c.yaml").write_text(OK_CONFIG + f"prefilter: false\nroles:\n  filter: {role}\n")
        code, out = gem("run", tmp_path / "c.yaml", "--input", tmp_path / "d.jsonl", "--out", tmp_path / "run",
                        "--json-log", tmp_path / "log.jsonl", "--json")
    assert code == 0, out
    assert SECRET not in out
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written)
    for p in written:
        if p.name not in ("c.yaml", "d.jsonl"):
            assert SECRET.encode() not in p.read_bytes(), p
    store = RunStore(tmp_path / "run", readonly=True)
    try:
        errors = " ".join(str(d["error"]) + " ".join(d["reasons"]) for d in store.documents())
    finally:
        store.close()
    assert "[redacted]" in errors, errors


def test_redact_replaces_every_configured_value(monkeypatch):
    monkeypatch.setenv("GEM_TEST_OTHER_KEY", "abcdef123456")
    register_secret_env(["GEM_TEST_OTHER_KEY"])
    assert redact("x abcdef123456 y abcdef123456") == "x [redacted] y [redacted]"


@pytest.mark.parametrize("value", ["hf_AbCdEfGhIjKlMnOpQrStUvWx", "sk-proj-abc123", "ghp_0123456789abcdefABCDEF0123",
                                   "AKIAIOSFODNN7EXAMPLE", "xoxb-1234-5678-abcdef", "Zk3Lq9Xv2Nw8Rt4Yp6Hs1Jm5Bc7Df0Ga"])
def test_an_api_key_env_that_looks_like_a_token_is_refused_without_echo(tmp_path, value):
    assert looks_like_credential(value)
    (tmp_path / "c.yaml").write_text(f"roles:\n  user: {{provider: openai, model: m, api_key_env: {value}}}\n")
    (tmp_path / "d.md").write_text(SAMPLE)
    code, out = gem("run", tmp_path / "c.yaml", "--input", tmp_path / "d.md", "--out", tmp_path / "run")
    assert code == 2 and "looks like a key" in out and value not in out, out


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "GEM_TEST_KEY", "MY_VERY_LONG_PROVIDER_API_KEY_NAME_2"])
def test_variable_names_are_not_mistaken_for_tokens(name):
    assert not looks_like_credential(name)


# ---- data loss --------------------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path) -> Path:
    (tmp_path / "ok.yaml").write_text(OK_CONFIG)
    (tmp_path / "d.md").write_text(SAMPLE)
    code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d.md", "--out", tmp_path / "run",
                    "--no-report")
    assert code == 0, out
    return tmp_path / "run"


def test_export_never_writes_over_the_run_or_a_special_file(run_dir, tmp_path):
    before = (run_dir / "run.sqlite").read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    cases = [(run_dir / "run.sqlite", "run directory's own files"), (run_dir / "checkpoints.sqlite", "own files"),
             (run_dir / "run.sqlite-wal", "own files"), (Path("/dev/full"), "device"), (fifo, "device, pipe"),
             (link, "symbolic link"), (tmp_path, "is a folder")]
    for target, says in cases:
        code, out = gem("export", run_dir, "--format", "openai", "--out", target)
        assert code == 2 and says in out, (target, out)
    code, out = gem("export", run_dir, "--format", "synthesizer", "--out", run_dir)
    assert code == 2 and "is a run directory" in out, out
    assert (run_dir / "run.sqlite").read_bytes() == before
    assert Path("/dev/full").is_char_device() and not (tmp_path / "elsewhere.jsonl").exists()


def test_check_output_refuses_a_folder_where_a_file_goes_and_back(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output(tmp_path / "f.txt", folder=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path)


@pytest.mark.parametrize("order", ["segmented-first", "real-first"])
def test_a_segment_id_clash_is_reported_not_merged(tmp_path, order):
    long_text = "\n\n".join(f"# Part {i}\n" + "Click the button and wait. " * 90 for i in range(4))
    rows = [{"id": "doc", "text": long_text}, {"id": "doc#s1", "text": SAMPLE}]
    if order == "real-first":
        rows.reverse()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs, problems = read_documents(tmp_path / "d.jsonl")
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids)), ids
    assert any("doc#s1" in p.reason and "already taken" in p.reason for p in problems), problems


# ---- hangs and crashes ------------------------------------------------------------------------------------


def test_a_full_disk_stops_the_store_with_the_real_reason(tmp_path):
    store = RunStore(tmp_path)
    store._db.execute("PRAGMA max_page_count = 8")  # a real SQLITE_FULL on the next big write
    big = DocOutcome(doc_id="d", status="failed", stage="x", text="x" * 200_000)
    with pytest.raises(StoreWriteError, match="full") as info:
        store.finish(big)
    assert "no transaction is active" not in str(info.value)
    store.close()


def _engine_run(tmp_path: Path, patch_store=None) -> object:
    from gem_agents.run.context import open_run
    from gem_agents.run.engine import run_documents
    from tools_runtime.records import Document

    cfg = RunConfig(rollouts=1, refine_rounds=0)
    docs = [Document(id=f"d{i}", text=SAMPLE) for i in range(6)]

    async def go():
        async with open_run(cfg, tmp_path / "run") as ctx:
            if patch_store:
                patch_store(ctx.store)
            # A deadlock would hang here; the bound turns it into a failure instead of a stuck suite.
            return await asyncio.wait_for(run_documents(ctx, docs), 300)

    return asyncio.run(go())


def test_a_failed_store_write_stops_the_local_engine_without_deadlock(tmp_path):
    def full(store):
        def finish_many(outcomes):
            raise StoreWriteError(f"{store.path}: cannot write the run store: database or disk is full")
        store.finish_many = finish_many

    with pytest.raises(StoreWriteError, match="disk is full"):
        _engine_run(tmp_path, full)


def test_a_record_that_cannot_be_stored_fails_only_its_document(tmp_path):
    def one_bad(store):
        real = store.finish_many

        def finish_many(outcomes):
            if any(o.doc_id == "d2" and o.status != "failed" for o in outcomes):
                raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
            return real(outcomes)
        store.finish_many = finish_many

    summary = _engine_run(tmp_path, one_bad)
    store = RunStore(tmp_path / "run", readonly=True)
    try:
        docs = {d["doc_id"]: d for d in store.documents()}
    finally:
        store.close()
    assert summary.processed == 6 and len(docs) == 6
    assert docs["d2"]["status"] == "failed" and "could not store its records" in docs["d2"]["error"]


def test_a_lone_surrogate_is_rejected_at_ingest(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "bad", "text": "a \ud800 b"}) + "\n"
                                      + json.dumps({"id": "good", "text": SAMPLE}) + "\n")
    docs, problems = read_documents(tmp_path / "d.jsonl")
    assert [d.id for d in docs] == ["good"]
    assert problems[0].line == 1 and "surrogate" in problems[0].reason


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    lines = ["roles:", "  user:", "    provider: openai", "    model: m", "    base_url: http://localhost:1/v1",
             "    extra_body:", '      a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 12):
        lines.append(f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    (tmp_path / "c.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="over"):
        load_yaml("a: " + "x" * 2_000_000, "big.yaml")
    assert load_yaml("a: &x [1, 2]\nb: *x\n", "ok.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_gem_run_checks_the_config_only_under_the_lock(tmp_path):
    from gem_agents.run.lock import run_dir_lock

    (tmp_path / "ok.yaml").write_text(OK_CONFIG)
    (tmp_path / "d.md").write_text(SAMPLE)
    run = tmp_path / "run"
    run.mkdir()
    sqlite3.connect(run / "run.sqlite").close()  # created by another run, its tables not yet
    with run_dir_lock(run):
        code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d.md", "--out", run, "--no-report")
    assert code == 2 and "another gem run" in out and "no such table" not in out, out
    code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d.md", "--out", run, "--no-report")
    assert code == 0, out


BAD_TRAJECTORY_LINES = {
    "huge seed": {"messages": [], "provenance": {"seed": 10**40}},
    "messages that are strings": {"messages": ["hi", "there"]},
    "provenance that is a list": {"messages": [], "provenance": [1, 2]},
    "steps that hold non-objects": {"messages": [], "steps": [1, "x"]},
    "scenario with a huge seed": _trajectory(scenario={**_trajectory()["scenario"], "seed": 10**40}),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAJECTORY_LINES))
def test_bad_trajectory_values_get_messages_in_verify_and_replay(tmp_path, case):
    line = json.dumps(BAD_TRAJECTORY_LINES[case])
    (tmp_path / "t.jsonl").write_text(line + "\n")
    code, out = gem("verify", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    # 2 when the line is skipped: a file with no usable trajectory is a usage error, as in every command.
    assert code in (0, 1, 2) and ("t.jsonl:1" in out or "passed" in out), out
    code, out = gem("replay", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    assert code in (0, 1, 2), out


def test_deeply_nested_json_lines_in_verify_and_replay(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"messages": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
    code, out = gem("verify", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    assert code == 2 and "nested too deeply" in out, out
    code, out = gem("replay", tmp_path / "t.jsonl", "--workflow", WORKFLOW)
    assert code == 2 and "nested too deeply" in out, out


def test_a_huge_document_id_is_just_an_id(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK_CONFIG)
    (tmp_path / "d.jsonl").write_text('{"id": ' + "9" * 3000 + ', "text": ' + json.dumps(SAMPLE) + "}\n")
    code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d.jsonl", "--out", tmp_path / "run",
                    "--no-report", "-q")
    assert code == 0, out


def test_out_that_is_an_existing_file(tmp_path):
    (tmp_path / "f").write_text("keep me")
    code, out = gem("simulate", WORKFLOW, "-n", "1", "--out", tmp_path / "f")
    assert code == 2 and "is a file" in out, out
    assert (tmp_path / "f").read_text() == "keep me"


def test_gem_debug_save_rewind_and_set_errors_keep_the_session(tmp_path):
    (tmp_path / "dir").mkdir()
    for command, says in [(f"save {tmp_path / 'dir'}", "is a folder"), ("rewind ²", "usage: rewind N"),
                          ("set message.content " + "[" * 5000 + "]" * 5000, "nested more than")]:
        (tmp_path / "s.txt").write_text(f"step\n{command}\nquit\n")
        code, out = gem("debug", WORKFLOW, "--script", tmp_path / "s.txt")
        assert code == 2 and "s.txt:2" in out and says in out, (command, out)


def test_gem_debug_interactive_session_survives_a_failing_save(tmp_path):
    from rich.console import Console

    from gem_agents.cli.cmd_debug import DebugSession
    from graphs.stepper import DialogueStepper, StepperError
    from tests.helpers import SCRIPTED

    sc, _ = scripted("shop_return")

    async def go():
        session = DebugSession(DialogueStepper(sc, SCRIPTED), Console(file=open(os.devnull, "w")))  # noqa: SIM115
        await session.stepper.start()
        with pytest.raises(StepperError, match="is a folder"):
            await session.run(f"save {tmp_path}")
        assert await session.run(f"save {tmp_path / 'ok.json'}")  # the same session goes on

    asyncio.run(go())
    assert "messages" in json.loads((tmp_path / "ok.json").read_text())


@pytest.mark.parametrize("name", ["run.sqlite", "checkpoints.sqlite", "model_cache.sqlite"])
def test_corrupt_or_truncated_databases_give_clear_errors(run_dir, tmp_path, name):
    target = run_dir / name
    data = target.read_bytes() if target.exists() else b""
    target.write_bytes(data[: len(data) // 3] if name == "run.sqlite" and data else b"this is not a database" * 50)
    for suffix in ("-wal", "-shm"):
        (run_dir / (name + suffix)).unlink(missing_ok=True)
    (tmp_path / "d2.md").write_text(SAMPLE.replace("printer", "scanner"))
    code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d2.md", "--out", run_dir, "--no-report")
    assert code == 2 and name in out, out
    if name == "run.sqlite":
        for argv in (["export", run_dir, "--out", tmp_path / "o.jsonl"], ["report", run_dir]):
            code, out = gem(*argv)
            assert code == 2 and "run.sqlite" in out, out


def test_a_read_only_folder_gives_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "ok.yaml").write_text(OK_CONFIG)
    (tmp_path / "d.md").write_text(SAMPLE)
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "ro" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, out = gem("run", tmp_path / "ok.yaml", "--input", tmp_path / "d.md", "--out", tmp_path / "ro" / "run")
    assert code == 2 and "Read-only file system" in out and "ro" in out, out
    code, out = gem("simulate", WORKFLOW, "-n", "1", "--out", tmp_path / "ro" / "sim")
    assert code == 2 and "Read-only file system" in out, out


def test_gem_filter_on_empty_input_exits_2_like_gem_run(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    for argv in (["filter", tmp_path / "empty.jsonl", "--out", tmp_path / "o.jsonl"],
                 ["extract", tmp_path / "empty.jsonl", "--out", tmp_path / "o.jsonl", "--offline"],
                 ["run", "--input", tmp_path / "empty.jsonl", "--out", tmp_path / "run"]):
        if argv[0] == "run":
            (tmp_path / "ok.yaml").write_text(OK_CONFIG)
            argv.insert(1, tmp_path / "ok.yaml")
        code, out = gem(*argv)
        assert code == 2 and "holds no documents" in out, (argv[0], out)


def test_an_unexpected_error_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr("gem_agents.cli.cmd_replay.step_replay", boom)
    (tmp_path / "t.json").write_text(json.dumps(_trajectory()))
    code, out = gem("replay", tmp_path / "t.json", "--workflow", WORKFLOW)
    assert code == 1 and "unexpected KeyError" in out and "GEM_DEBUG" in out, out


def test_every_console_line_is_redacted(tmp_path, monkeypatch):
    """A key pasted into a debug script is echoed and named in the error: both redacted."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    (tmp_path / "s.txt").write_text(f"state {SECRET}\nquit\n")
    code, out = gem("debug", WORKFLOW, "--script", tmp_path / "s.txt")
    assert code == 2 and "s.txt:1" in out and "[redacted]" in out and SECRET not in out, out
