"""BFCL multi-turn tasks as scenarios on BFCL's own executable backends (the `bfcl-eval` wheel).

A task becomes a Scenario whose backend is the real BFCL classes loaded with the task's initial
config, whose goals are the user turns, and whose reference plan is the ground truth — Python
call strings parsed with `ast` (never evaluated). This lets our verifier be checked against
BFCL's own notion of a correct end state.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

from tools_runtime.exec_graph import format_graph, graph_from_stages
from tools_runtime.python_backend import trust_classes
from tools_runtime.records import ArgSource, BackendRef, Goal, PlannedCall, Scenario, Workflow
from tools_runtime.toolspec import ToolSpec, normalize_tool

FUNC_SOURCE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
CLASS_FILES = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}


def class_path(name: str) -> str:
    """`module:Class` of a BFCL backend class."""
    return f"{FUNC_SOURCE}.{CLASS_FILES[name]}:{name}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per non-empty line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_func_docs(bfcl_data: Path) -> dict[str, list[ToolSpec]]:
    """Tool specs per BFCL class, from `multi_turn_func_doc/<file>.json`."""
    out = {}
    for cls, stem in CLASS_FILES.items():
        docs = read_jsonl(bfcl_data / "multi_turn_func_doc" / f"{stem}.json")
        out[cls] = [normalize_tool(d, "bfcl", where=f"{stem}.json[{i}]") for i, d in enumerate(docs)]
    return out


def _literal(node: ast.AST) -> Any:
    """A Python literal from the AST (strings, numbers, lists, dicts, tuples, True/False/None)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        keys = [k for k in node.keys if k is not None]
        if len(keys) < len(node.keys):  # a None key stands for `{**other}`, which is not a literal
            raise ValueError("not a literal: dict unpacking")
        return {_literal(k): _literal(v) for k, v in zip(keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, int | float):
            return -value
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def parse_call(text: str, signatures: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    """`sort('a.txt', reverse=True)` → ("sort", {"file_name": "a.txt", "reverse": True})."""
    tree = ast.parse(text.strip(), mode="eval")
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"not a plain function call: {text!r}")
    name = call.func.id
    params = signatures.get(name, [])
    args: dict[str, Any] = {}
    for i, node in enumerate(call.args):
        if i >= len(params):
            raise ValueError(f"{name}: too many positional arguments in {text!r}")
        args[params[i]] = _literal(node)
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"{name}: **kwargs are not supported in {text!r}")
        args[kw.arg] = _literal(kw.value)
    return name, args


def signatures_of(classes: list[str]) -> dict[str, list[str]]:
    """Parameter names, in order, of every public method of the named BFCL classes."""
    out: dict[str, list[str]] = {}
    for cls_name in classes:
        module_name, _, attr = class_path(cls_name).partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                out.setdefault(name, [p for p in inspect.signature(fn).parameters if p != "self"])
    return out


def task_scenario(task: dict[str, Any], answer: dict[str, Any], docs: dict[str, list[ToolSpec]]) -> Scenario:
    """The Scenario of one BFCL task: real backend, user turns as goals, ground truth as plan."""
    classes = list(task["involved_classes"])
    tools = [t for c in classes for t in docs[c]]
    excluded = set(task.get("excluded_function") or [])
    tools = [t for t in tools if t.name not in excluded]
    sigs = signatures_of(classes)
    plan: list[PlannedCall] = []
    goals: list[Goal] = []
    for turn, (question, calls) in enumerate(zip(task["question"], answer["ground_truth"], strict=False)):
        text = " ".join(m["content"] for m in question if m.get("role") == "user")
        goals.append(Goal(description=text))
        for call_text in calls:
            name, args = parse_call(call_text, sigs)
            plan.append(PlannedCall(tool=name, arguments=args, goal=turn,
                                    sources={k: ArgSource(kind="const") for k in args}))
    order: list[str] = []
    for call in plan:
        if call.tool not in order:
            order.append(call.tool)
    graph = format_graph(graph_from_stages([[n] for n in order])) if order else ""
    # The classes come from BFCL's own package, chosen by this code: the caller trusts them.
    trust_classes([class_path(c) for c in classes])
    wf = Workflow(id=task["id"], doc_id=task["id"], title=task["id"], execution_graph=graph or "(noop)",
                  tools=tools, backend=BackendRef(kind="python", classes=[class_path(c) for c in classes],
                                                  initial_config=task["initial_config"]))
    state = {"initial_config": task["initial_config"], "calls": []}
    return Scenario(id=task["id"], workflow=wf, goals=goals, initial_state=state, plan=plan)


def load_tasks(bfcl_data: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(task, answer) pairs of BFCL multi-turn base."""
    tasks = read_jsonl(bfcl_data / "BFCL_v4_multi_turn_base.json")
    answers = {a["id"]: a for a in read_jsonl(bfcl_data / "possible_answer" / "BFCL_v4_multi_turn_base.json")}
    return [(t, answers[t["id"]]) for t in tasks if t["id"] in answers]


def transcript_from_plan(scenario: Scenario, calls: list[PlannedCall]) -> tuple[list[dict[str, Any]], Any]:
    """Execute `calls` turn by turn on a fresh backend and write them as an OpenAI transcript.

    Returns the messages and the backend (whose instances hold the end state).
    """
    from tools_runtime.executor import ToolEnvironment, tool_message_content

    env = ToolEnvironment(scenario.workflow, None)
    messages: list[dict[str, Any]] = []
    n = 0
    for g, goal in enumerate(scenario.goals):
        messages.append({"role": "user", "content": goal.description})
        for call in (c for c in calls if c.goal == g):
            n += 1
            call_id = f"call_{n:03d}"
            rec = env.call(call.tool, call.arguments, call_id)
            messages.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": call.tool, "arguments": json.dumps(call.arguments)}}]})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": tool_message_content(rec)})
        messages.append({"role": "assistant", "content": "Done."})
    return messages, env.backend
