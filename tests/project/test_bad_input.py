"""Bad input, driven through the real CLI: every case gets a clear error naming where, a non-zero exit
when the whole input is unusable, and keeps every good record when only part of it is bad.

The table below is the one in README `<!-- section: scale -->`: each row is a case, the command it
runs, the exit code it must get and what its message must say. Paths are relative (the test runs in
a temporary folder) so a message names the file the way a person typed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.run.store import RunStore
from tests.helpers import EXAMPLES, scripted

SAMPLE = (Path(__file__).resolve().parents[2] / "gem_agents" / "samples" / "share_a_printer.md").read_text()
OK_CONFIG = "seed: 0\nrollouts: 1\nrefine_rounds: 0\n"
WORKFLOW = str(EXAMPLES / "shop_return.json")
TOOL = {"type": "function", "function": {"name": "get_item", "description": "Get an item.",
                                          "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}}


@dataclass
class Case:
    """One row of the table: files to write, the command, the exit code and the words it must print."""

    id: str
    files: dict[str, str | bytes]
    argv: list[str]
    code: int
    says: list[str]
    kept: list[str] = field(default_factory=list)  # doc ids a partly bad corpus must still store
    check: Callable[[Path, str], None] | None = None


def line(obj: Any) -> str:
    return json.dumps(obj) + "\n"


def good(doc_id: str = "good") -> str:
    return line({"id": doc_id, "text": SAMPLE})


def run_argv(inp: str, config: str = "ok.yaml") -> list[str]:
    return ["run", config, "--input", inp, "--out", "run", "--no-report"]


def tools_file(tools: list[dict[str, Any]]) -> str:
    return json.dumps(tools)


def tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"{name}.", "parameters": parameters}}


def _trajectory(mutate: Callable[[list[dict[str, Any]]], None], keep_scenario: bool = True) -> str:
    _, traj = scripted("shop_return")
    data = json.loads(traj.model_dump_json())
    mutate(data["messages"])
    if not keep_scenario:
        data.pop("scenario", None)
    return json.dumps(data)


def _unknown_role(msgs: list[dict[str, Any]]) -> None:
    msgs.insert(1, {"role": "wizard", "content": "abracadabra"})


def _orphan_tool_result(msgs: list[dict[str, Any]]) -> None:
    msgs.insert(1, {"role": "tool", "tool_call_id": "call_nowhere", "name": "get_order", "content": "{}"})


def _non_json_arguments(msgs: list[dict[str, Any]]) -> None:
    for m in msgs:
        if m.get("tool_calls"):
            m["tool_calls"][0]["function"]["arguments"] = '{"order_id": '
            return


EVIL = "^(a+)+$"  # nested quantifiers: exponential backtracking on "aaa…a!" in a backtracking engine


def _regex_trajectory() -> str:
    """A trajectory whose tools carry a catastrophic pattern, called with the string that triggers it."""
    data = json.loads(_trajectory(lambda m: None))
    for t in data["scenario"]["workflow"]["tools"]:
        for prop in (t["parameters"].get("properties") or {}).values():
            if prop.get("type") == "string":
                prop["pattern"] = EVIL
    for m in data["messages"]:
        for call in m.get("tool_calls") or []:
            args = json.loads(call["function"]["arguments"])
            call["function"]["arguments"] = json.dumps({k: "a" * 64 + "!" for k in args})
    return json.dumps(data)


def _stored(run_dir: Path) -> set[str]:
    store = RunStore(run_dir, readonly=True)
    try:
        return {d["doc_id"] for d in store.documents()}
    finally:
        store.close()


def _json_verdict_lines(expect_ids: int) -> Callable[[Path, str], None]:
    def check(tmp: Path, output: str) -> None:
        objs = [json.loads(s) for s in output.splitlines() if s.startswith("{")]
        assert sum(1 for o in objs if "line" in o) == expect_ids, output

    return check


BIG_TOOLS = [tool(f"get_thing_{i}", {"type": "object", "properties": {"id": {"type": "string"}}})
             for i in range(10_000)]

CASES: list[Case] = [
    # ---- corpus files (gem run) ---------------------------------------------------------------------------
    Case("corpus-binary", {"docs.jsonl": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8},
         run_argv("docs.jsonl"), 2, ["docs.jsonl", "binary file", "no usable documents"]),
    Case("corpus-binary-file-beside-good-ones", {"in/a.md": SAMPLE, "in/b.txt": b"\x00\x01\x02" * 100},
         run_argv("in"), 0, ["in/b.txt", "binary file"], kept=["a.md"]),
    Case("corpus-wrong-encoding-line", {"docs.jsonl": good().encode() + b'{"id": "x", "text": "caf\xe9"}\n'},
         run_argv("docs.jsonl"), 0, ['"line":2', "not UTF-8", "0xe9"], kept=["good"]),
    Case("corpus-wrong-encoding-file", {"doc.txt": SAMPLE.replace("Click", "Cliqu\u00e9").encode("latin-1")},
         run_argv("doc.txt"), 2, ["doc.txt", "not UTF-8", "no usable documents"]),
    Case("corpus-utf16-file", {"doc.md": SAMPLE.encode("utf-16")}, run_argv("doc.md"), 2,
         ["doc.md", "binary file"]),
    Case("corpus-huge-line", {"docs.jsonl": line({"id": "huge", "text": "word " * 60_000}) + good()},
         run_argv("docs.jsonl"), 0, ['"line":1', "300000 characters", "input.max_chars"], kept=["good"]),
    Case("corpus-empty-file", {"docs.jsonl": ""}, run_argv("docs.jsonl"), 2, ["docs.jsonl", "no documents"]),
    Case("corpus-json-not-an-object", {"docs.jsonl": good() + "[1, 2]\n" + '"just text"\n'},
         run_argv("docs.jsonl"), 0, ['"line":2', "expected a JSON object, got list", '"line":3', "got str"],
         kept=["good"]),
    Case("corpus-no-line-is-an-object", {"docs.jsonl": "[1]\n2\nnull\n"}, run_argv("docs.jsonl"), 2,
         ["docs.jsonl", "expected a JSON object", "no usable documents"]),
    Case("corpus-missing-text-field", {"docs.jsonl": line({"id": "t1", "body": "x"}) + good()},
         run_argv("docs.jsonl"), 0, ['"line":1', "text field 'text' is missing"], kept=["good"]),
    Case("corpus-text-not-a-string", {"docs.jsonl": good() + line({"id": "t2", "text": 42})},
         run_argv("docs.jsonl"), 0, ['"line":2', "not a string (int)"], kept=["good"]),
    Case("corpus-invalid-json-line", {"docs.jsonl": '{"id": "t3", "text": "unterminated\n' + good()},
         run_argv("docs.jsonl"), 0, ['"line":1', "invalid JSON"], kept=["good"]),
    Case("corpus-duplicate-id", {"docs.jsonl": good("dup") + good("dup")}, run_argv("docs.jsonl"), 0,
         ['"line":2', "duplicate id 'dup'"], kept=["dup"]),
    Case("corpus-nested-too-deeply", {"docs.jsonl": "[" * 100_000 + "\n" + good()}, run_argv("docs.jsonl"), 0,
         ['"line":1', "nested too deeply"], kept=["good"]),
    Case("corpus-missing-path", {}, run_argv("nowhere.jsonl"), 2, ["nowhere.jsonl", "no such file"]),
    Case("corpus-folder-without-texts", {"in/data.csv": "a,b\n"}, run_argv("in"), 2, ["in", "no .txt/.md"]),
    Case("corpus-json-array-bad-item", {"docs.json": json.dumps([{"id": "good", "text": SAMPLE}, 7])},
         run_argv("docs.json"), 0, ["docs.json[1]", "expected a JSON object, got int"], kept=["good"]),
    Case("corpus-json-array-nothing-usable", {"docs.json": json.dumps([7, {"id": "x"}])}, run_argv("docs.json"), 2,
         ["docs.json[0]", "docs.json[1]", "no usable documents"]),
    # ---- configs (gem run) -------------------------------------------------------------------------------
    Case("config-unknown-key", {"c.yaml": "rollouts: 1\nroles:\n  assistant:\n    temprature: 0.2\n",
                                "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml", "roles.assistant.temprature", "unknown key"]),
    Case("config-wrong-type", {"c.yaml": "rollouts: many\n", "d.md": SAMPLE}, run_argv("d.md", "c.yaml"), 2,
         ["c.yaml", "rollouts", "valid integer"]),
    Case("config-out-of-range", {"c.yaml": "roles:\n  user:\n    temperature: 9\n", "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml", "roles.user.temperature", "less than or equal to 2"]),
    Case("config-missing-model", {"c.yaml": "roles:\n  assistant:\n    provider: openai\n", "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml", "roles.assistant", "needs a 'model'"]),
    Case("config-missing-endpoint", {"c.yaml": "roles:\n  assistant:\n    provider: openai\n    model: gpt-4o\n",
                                     "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml", "roles.assistant", "base_url", "api_key_env"]),
    Case("config-key-variable-unset", {"c.yaml": "roles:\n  user:\n    provider: openai\n    model: m\n"
                                                 "    base_url: http://127.0.0.1:9/v1\n"
                                                 "    api_key_env: GEM_TEST_UNSET_KEY_VAR\n", "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml", "roles.user", "GEM_TEST_UNSET_KEY_VAR", "not set"]),
    Case("config-invalid-yaml", {"c.yaml": "rollouts: 1\nroles: [unclosed\n", "d.md": SAMPLE},
         run_argv("d.md", "c.yaml"), 2, ["c.yaml:3:1", "invalid YAML"]),
    Case("config-not-a-mapping", {"c.yaml": "- rollouts\n- 2\n", "d.md": SAMPLE}, run_argv("d.md", "c.yaml"), 2,
         ["c.yaml", "top level must be a mapping"]),
    Case("config-missing-file", {"d.md": SAMPLE}, run_argv("d.md", "nope.yaml"), 2,
         ["nope.yaml", "no such config file"]),
    Case("config-not-utf8", {"c.yaml": b"seed: 0\n# caf\xe9\n", "d.md": SAMPLE}, run_argv("d.md", "c.yaml"), 2,
         ["c.yaml", "not UTF-8"]),
    # ---- tool specs (gem tools validate) -------------------------------------------------------------------
    Case("tools-invalid-schema", {"t.json": tools_file([tool("get_item", {"type": "object", "properties": {
        "id": {"type": "strng"}}})])}, ["tools", "validate", "t.json", "--json"], 1,
         ["get_item", "parameters.properties.id.type", "unknown type 'strng'"]),
    Case("tools-remote-ref", {"t.json": tools_file([tool("fetch", {"type": "object", "properties": {
        "x": {"$ref": "https://schemas.example.com/x.json"}}})])}, ["tools", "validate", "t.json", "--json"], 1,
         ["fetch", "properties.x.$ref", "remote $ref refused", "https://schemas.example.com/x.json"]),
    Case("tools-recursive-ref", {"t.json": tools_file([tool("loop", {"type": "object", "properties": {
        "x": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"$ref": "#/$defs/a"}}})])},
         ["tools", "validate", "t.json", "--json"], 1, ["loop", "$defs"]),
    Case("tools-catastrophic-regex", {"t.jsonl": _regex_trajectory() + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW, "--json"], 1, [EVIL, "invalid_arguments", '"passed": false']),
    Case("tools-ten-thousand", {"t.json": tools_file(BIG_TOOLS)}, ["tools", "validate", "t.json", "--json"], 0,
         ['"tools": 10000', '"valid": 10000']),
    Case("tools-duplicate-names", {"t.json": tools_file([TOOL, TOOL])}, ["tools", "validate", "t.json", "--json"],
         1, ["get_item", "duplicate"]),
    Case("tools-not-json", {"t.json": '[{"type": "function",'}, ["tools", "validate", "t.json", "--json"], 1,
         ["t.json", "line 1"]),
    Case("tools-missing-file", {}, ["tools", "validate", "nope.json"], 2, ["nope.json"]),
    Case("tools-bad-name", {"t.json": tools_file([tool("book a room", {"type": "object"})])},
         ["tools", "validate", "t.json", "--json"], 1, ["book a room", "name"]),
    # ---- execution graphs (gem graph check, gem simulate) -------------------------------------------------
    Case("graph-cycle", {}, ["graph", "check", "(a)->(b)->(a)"], 1, ["cycle"]),
    Case("graph-unknown-node", {"t.json": tools_file([TOOL])},
         ["graph", "check", "(get_item)->(delete_item)", "--tools", "t.json"], 1, ["delete_item"]),
    Case("graph-unbalanced-parentheses", {}, ["graph", "check", "(login->(search)"], 2, ["column", "("]),
    Case("graph-empty", {}, ["graph", "check", ""], 2, ["empty"]),
    Case("graph-cycle-in-workflow-file", {"wf.json": json.dumps({**json.loads(Path(WORKFLOW).read_text()),
                                                               "execution_graph": "(login)->(get_order_details)->(login)"})},
         ["simulate", "wf.json", "-n", "1", "--out", "sim"], 2, ["wf.json", "execution_graph", "cycle"]),
    # ---- trajectories (gem verify, gem replay) ---------------------------------------------------------
    Case("verify-unknown-role", {"t.jsonl": _trajectory(_unknown_role) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW], 1, ["wizard"]),
    Case("verify-tool-result-without-call", {"t.jsonl": _trajectory(_orphan_tool_result) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW], 1, ["call_nowhere"]),
    Case("verify-non-json-arguments", {"t.jsonl": _trajectory(_non_json_arguments) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW], 1, ["not valid JSON"]),
    Case("verify-bad-lines-beside-good-ones", {"t.jsonl": _trajectory(lambda m: None) + "\n{oops\n[]\n"
                                               + _trajectory(lambda m: None) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW, "--json"], 0, ["t.jsonl:2", "invalid JSON", "t.jsonl:3",
                                                                      "'messages' list", '"passed": 2'],
         check=_json_verdict_lines(2)),
    Case("verify-broken-scenario", {"t.jsonl": json.dumps({"messages": [], "scenario": {"seed": "x"}}) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW], 1, ["t.jsonl:1", "scenario"]),
    Case("verify-seed-not-a-number", {"t.jsonl": json.dumps({"messages": [], "provenance": {"seed": "x"}}) + "\n"},
         ["verify", "t.jsonl", "--workflow", WORKFLOW], 1, ["t.jsonl:1", "provenance.seed is not an integer"]),
    Case("verify-nothing-usable", {"t.jsonl": "nope\n"}, ["verify", "t.jsonl", "--workflow", WORKFLOW], 2,
         ["t.jsonl:1", "no trajectories to verify"]),
    Case("replay-unknown-role", {"t.json": _trajectory(_unknown_role)},
         ["replay", "t.json", "--workflow", WORKFLOW, "--json"], 1, ["wizard"]),
    Case("replay-tool-result-without-call", {"t.json": _trajectory(_orphan_tool_result)},
         ["replay", "t.json", "--workflow", WORKFLOW, "--json"], 1, ["call_nowhere"]),
    Case("replay-non-json-arguments", {"t.json": _trajectory(_non_json_arguments)},
         ["replay", "t.json", "--workflow", WORKFLOW, "--json"], 1, ["not valid JSON"]),
    Case("replay-broken-scenario", {"t.json": json.dumps({"messages": [], "scenario": {"seed": "x"}})},
         ["replay", "t.json", "--workflow", WORKFLOW], 2, ["t.json", "'scenario' is not valid", "--seed"]),
    Case("replay-not-json", {"t.jsonl": "\n{oops\n"}, ["replay", "t.jsonl", "--workflow", WORKFLOW, "--line", "2"],
         2, ["t.jsonl:2:2: invalid JSON"]),
]


def _write(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def flat(text: str) -> str:
    """Output with line wrapping undone (rich wraps long messages at the terminal width)."""
    return " ".join(text.split())


def test_the_table_has_at_least_thirty_cases_in_every_group() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    groups = {c.id.split("-")[0] for c in CASES}
    assert {"corpus", "config", "tools", "graph", "verify", "replay"} <= groups


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEM_TEST_UNSET_KEY_VAR", raising=False)
    (tmp_path / "ok.yaml").write_text(OK_CONFIG)
    _write(tmp_path, case.files)
    result = CliRunner().invoke(app, case.argv)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{case.id} crashed: {result.exception!r}\n{output}") from result.exception
    assert result.exit_code == case.code, output
    for words in case.says:
        assert words in flat(output), f"{case.id}: {words!r} not in:\n{output}"
    if case.kept:
        assert set(case.kept) <= _stored(tmp_path / "run"), "a good record was lost beside the bad one"
    elif case.argv[0] == "run" and case.code != 0:
        assert not (tmp_path / "run" / "run.sqlite").exists(), "an unusable input must not start a run"
    if case.check is not None:
        case.check(tmp_path, output)
