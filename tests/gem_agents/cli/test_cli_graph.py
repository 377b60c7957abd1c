"""`gem graph check`: summaries, JSON output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app

GRAPH = "(login)->(search_items, get_cart)->(update_item)"
REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def invoke(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["graph", "check", *args], input=stdin)


def test_valid_graph_summary():
    res = invoke(GRAPH)
    assert res.exit_code == 0, res.output
    assert "reference order" in res.stdout
    assert "login → get_cart → search_items → update_item" in res.stdout
    assert "OK" in res.stdout


def test_json_ok():
    res = invoke(GRAPH, "--calls", "login, search_items,get_cart,update_item", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is True
    assert out["stages"] == [["login"], ["get_cart", "search_items"], ["update_item"]]
    assert out["reference_order"] == ["login", "get_cart", "search_items", "update_item"]
    assert out["issues"] == []
    assert out["order"] == {"ok": True, "violations": [], "missing": []}


def test_json_order_violation_and_missing():
    res = invoke(GRAPH, "--calls", "login,update_item,get_cart", "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False
    assert out["order"]["violations"] == [
        {"position": 1, "node": "update_item", "missing_predecessors": ["get_cart", "search_items"]}
    ]
    assert out["order"]["missing"] == ["search_items"]


def test_required_option():
    res = invoke(GRAPH, "--calls", "login,get_cart", "--required", "login,get_cart", "--json")
    assert res.exit_code == 0, res.output


def test_cycle_exit_1():
    res = invoke("(a)->(b)\n(b)->(a)", "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert [i["code"] for i in out["issues"]] == ["cycle"]
    assert out["stages"] is None and out["reference_order"] is None
    human = invoke("(a)->(b)\n(b)->(a)")
    assert human.exit_code == 1 and "cycle" in human.stdout and "FAILED" in human.stdout


def test_syntax_error_exit_2_with_caret():
    res = invoke("(login)->(search items)")
    assert res.exit_code == 2
    assert "expected ','" in res.stderr
    lines = res.stderr.splitlines()
    caret = next(line for line in lines if line.strip() == "^")
    source = lines[lines.index(caret) - 1]
    assert caret.index("^") == source.index("items")


def test_syntax_error_json():
    res = invoke("(a) ->", "--json")
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["ok"] is False
    assert out["error"]["position"] == 4 and out["error"]["column"] == 5
    assert "dangling arrow" in out["error"]["message"]


def test_graph_from_stdin():
    res = invoke("-", "--json", stdin="(a)->\n(b)\n")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["stages"] == [["a"], ["b"]]


def test_tools_option(tmp_path):
    tool_file = tmp_path / "tools.json"
    obj = {"type": "object", "properties": {}}
    tools = [{"name": n, "description": n, "parameters": obj} for n in ("login", "search_item", "update_item")]
    tools.append({"name": "broken", "description": "x", "parameters": {"type": "nonsense"}})
    tool_file.write_text(json.dumps(tools))
    res = invoke(GRAPH, "--tools", str(tool_file), "--json")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert [(i["code"], i["nodes"]) for i in out["issues"]] == [
        ("unknown_node", ["get_cart"]),
        ("unknown_node", ["search_items"]),
    ]
    assert out["tool_issues"] and {i["tool"] for i in out["tool_issues"]} == {"broken"}


def test_real_subprocess():
    gem = Path(sys.executable).with_name("gem")
    if not gem.exists():
        pytest.skip(f"console script not installed beside {sys.executable}")
    proc = subprocess.run(
        [str(gem), "graph", "check", GRAPH, "--calls", "login,get_cart,search_items,update_item", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    bad = subprocess.run(
        [str(gem), "graph", "check", "(a"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert bad.returncode == 2 and "unbalanced" in bad.stderr
