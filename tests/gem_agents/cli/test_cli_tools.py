"""`gem tools validate`: summaries, --json, exit codes, and one real run of the installed command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gem_agents.cli import app

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "tools"
runner = CliRunner()


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["tools", "validate", "--json", *args])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object
    return result.exit_code, json.loads(lines[0])


def test_valid_files_exit_zero() -> None:
    for name, count in [("library_openai.json", 6), ("thermostat_mcp.jsonl", 4)]:
        code, out = run_json(str(EXAMPLES / name))
        assert (code, out) == (0, {"tools": count, "valid": count, "errors": []})
    result = runner.invoke(app, ["tools", "validate", str(EXAMPLES / "library_openai.json")])
    assert result.exit_code == 0 and "6 tools" in result.stdout and "6 valid" in result.stdout


def test_broken_file_lists_each_error() -> None:
    code, out = run_json(str(EXAMPLES / "broken.json"))
    assert code == 1 and out["tools"] == 7 and out["valid"] == 1
    assert all(set(e) == {"tool", "path", "message"} for e in out["errors"])
    by_tool = {e["tool"]: e for e in out["errors"]}
    assert by_tool["fetch_invoice"]["path"] == "$[2].function.parameters.properties.invoice.$ref"
    assert "recursive $ref" in by_tool["loop_forever"]["message"]
    result = runner.invoke(app, ["tools", "validate", str(EXAMPLES / "broken.json")])
    assert result.exit_code == 1
    for words in ["7 tools", "1 valid", "set_price", "unknown type 'float'", "duplicate tool name"]:
        assert words in result.stdout


def test_format_option(bfcl_dir: Path) -> None:
    path = bfcl_dir / "multi_turn_func_doc" / "math_api.json"
    assert run_json("--format", "bfcl", str(path)) == (0, {"tools": 17, "valid": 17, "errors": []})
    code, out = run_json("--format", "mcp", str(EXAMPLES / "library_openai.json"))
    assert code == 1 and out["valid"] == 0
    assert runner.invoke(app, ["tools", "validate", "--format", "yaml", str(path)]).exit_code == 2


def test_unreadable_file_exits_two(tmp_path: Path) -> None:
    code, out = run_json(str(tmp_path / "absent.json"))
    assert code == 2 and out["tools"] == 0 and out["errors"][0]["path"].endswith("absent.json")
    assert runner.invoke(app, ["tools", "validate", str(tmp_path)]).exit_code == 2  # a directory


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    lines = tmp_path / "tools.jsonl"
    lines.write_text('{"name": "a"}\n{"name": \n')
    code, out = run_json(str(lines))
    assert code == 1 and out["tools"] == 2 and out["valid"] == 1
    assert out["errors"][0]["path"] == f"{lines}:2"
    doc = tmp_path / "tools.json"
    doc.write_text('[\n  {"name": "a"},\n  oops\n]')
    code, out = run_json(str(doc))
    assert code == 1 and out["errors"][0]["path"] == f"{doc}:3:3"
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    code, out = run_json(str(binary))
    assert code == 1 and "not UTF-8" in out["errors"][0]["message"]


def test_installed_command() -> None:
    gem = Path(sys.executable).parent / "gem"
    proc = subprocess.run(
        [str(gem), "tools", "validate", "--json", str(EXAMPLES / "broken.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tools"] == 7 and len(out["errors"]) == 7
