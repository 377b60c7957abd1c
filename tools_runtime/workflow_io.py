"""Read workflows from JSON (with tools in any accepted shape) and report errors by file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools_runtime.exec_graph import parse_graph, validate_graph
from tools_runtime.records import Workflow
from tools_runtime.toolspec import ToolSpecError, normalize_tool


class WorkflowError(ValueError):
    """A workflow file or object that cannot be used; the message names where and why."""


def workflow_from_dict(data: Any, where: str = "workflow", *, check_graph: bool = True) -> Workflow:
    """Build a Workflow from a dict whose tools may be OpenAI, MCP, bare or BFCL shaped."""
    if not isinstance(data, dict):
        raise WorkflowError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if "workflow" in data and isinstance(data["workflow"], dict):  # `gem extract` output records
        inner = dict(data["workflow"])
        inner.setdefault("id", data.get("id", ""))
        inner.setdefault("doc_id", data.get("id", ""))
        data = inner
    raw_tools = data.get("tools")
    if not isinstance(raw_tools, list) or not raw_tools:
        raise WorkflowError(f"{where}.tools: expected a non-empty list of tool definitions")
    tools = []
    for i, raw in enumerate(raw_tools):
        try:
            tools.append(normalize_tool(raw, where=f"{where}.tools[{i}]"))
        except ToolSpecError as exc:
            raise WorkflowError(f"{where}.tools[{i}]: {exc}") from exc
    body = {k: v for k, v in data.items() if k != "tools"}
    body.setdefault("id", Path(where).stem if where.endswith(".json") else "workflow")
    try:
        wf = Workflow.model_validate({**body, "tools": tools})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise WorkflowError(f"{where}.{loc}: {first['msg']}") from exc
    names = [t.name for t in wf.tools]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WorkflowError(f"{where}.tools: duplicate tool names {dupes}")
    if check_graph:
        try:
            graph = parse_graph(wf.execution_graph)
        except ValueError as exc:
            raise WorkflowError(f"{where}.execution_graph: {exc}") from exc
        issues = validate_graph(graph, names)
        if issues:
            raise WorkflowError(f"{where}.execution_graph: " + "; ".join(i.message for i in issues))
    return wf


def load_workflow(path: str | Path, **kwargs: Any) -> Workflow:
    """Read one workflow JSON file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WorkflowError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise WorkflowError(f"{p}: is a folder; give one workflow JSON file") from exc
    except UnicodeDecodeError as exc:
        raise WorkflowError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise WorkflowError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise WorkflowError(f"{p}: JSON nested too deeply") from exc
    return workflow_from_dict(data, str(p), **kwargs)


def load_workflows(path: str | Path) -> list[Workflow]:
    """Read workflows from a JSON file, a JSON-lines file (one per line) or a folder of JSON files."""
    p = Path(path)
    if p.is_dir():
        return [load_workflow(f) for f in sorted(p.glob("*.json"))]
    if p.suffix == ".jsonl":
        out = []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise WorkflowError(f"{p}:{n}: invalid JSON: {exc.msg}") from exc
            if isinstance(data, dict) and "rejected" in data:
                continue
            out.append(workflow_from_dict(data, f"{p}:{n}"))
        return out
    data = json.loads(p.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return [workflow_from_dict(d, f"{p}[{i}]") for i, d in enumerate(data)]
    return [workflow_from_dict(data, str(p))]
