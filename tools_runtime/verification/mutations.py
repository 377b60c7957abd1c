"""Derive defective transcripts from a good one, to prove the verifier rejects each defect.

Each mutation returns a new message list (the input is never changed) or raises ValueError when
the transcript has nothing it applies to. Used by the mutation tests, `gem replay` demos and
anyone building negative examples.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tools_runtime.exec_graph import parse_graph
from tools_runtime.executor import parse_tool_content
from tools_runtime.verification.replay import call_name_args, tool_calls_of

Messages = list[dict[str, Any]]


def _calls(messages: Messages) -> list[tuple[int, int, dict[str, Any]]]:
    """(message index, position in tool_calls, call) of every tool call, in order."""
    return [(i, k, c) for i, m in enumerate(messages) for k, c in enumerate(tool_calls_of(m))]


def _answer_index(messages: Messages, call_id: str) -> int:
    for i, m in enumerate(messages):
        if m.get("role") == "tool" and m.get("tool_call_id") == call_id:
            return i
    raise ValueError(f"no tool result for call {call_id!r}")


def _successful(messages: Messages) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for i, k, call in _calls(messages):
        try:
            j = _answer_index(messages, call_name_args(call)[2])
        except ValueError:
            continue
        if not parse_tool_content(messages[j].get("content"))[0]:
            out.append((i, k, call))
    return out


def drop_call(messages: Messages, which: int = -1) -> Messages:
    """Remove one successful tool call (default: the last) together with its result."""
    calls = _successful(messages)
    if not calls:
        raise ValueError("no successful tool call to drop")
    i, k, call = calls[which]
    out = copy.deepcopy(messages)
    j = _answer_index(out, call_name_args(call)[2])
    del out[j]
    remaining = [c for n, c in enumerate(out[i]["tool_calls"]) if n != k]
    if remaining:
        out[i]["tool_calls"] = remaining
    elif str(out[i].get("content") or "").strip():
        del out[i]["tool_calls"]
    else:
        del out[i]
    return out


def drop_last_write(messages: Messages, scenario: Any) -> Messages:
    """Remove the last successful call of a tool that writes (by declaration or name binding)."""
    from tools_runtime.verification.components import tool_kind

    calls = _successful(messages)
    for n in range(len(calls) - 1, -1, -1):
        if tool_kind(scenario, call_name_args(calls[n][2])[0]) == "write":
            return drop_call(messages, n)
    raise ValueError("no successful write to drop")


def swap_dependent_calls(messages: Messages, execution_graph: str, only: set[str] | None = None) -> Messages:
    """Swap two successful calls u, v where the graph has u → v (both in `only` when given), with their results."""
    graph = parse_graph(execution_graph).graph
    calls = _successful(messages)
    for a in range(len(calls)):
        for b in range(a + 1, len(calls)):
            u = call_name_args(calls[a][2])[0]
            v = call_name_args(calls[b][2])[0]
            if only is not None and not {u, v} <= only:
                continue
            if graph.has_edge(u, v) or only is not None and graph.has_node(u) and graph.has_node(v) \
                    and v in _descendants(graph, u):
                out = copy.deepcopy(messages)
                (ia, ka, ca), (ib, kb, cb) = calls[a], calls[b]
                ja, jb = _answer_index(out, call_name_args(ca)[2]), _answer_index(out, call_name_args(cb)[2])
                fa, fb = out[ia]["tool_calls"][ka]["function"], out[ib]["tool_calls"][kb]["function"]
                out[ia]["tool_calls"][ka]["function"], out[ib]["tool_calls"][kb]["function"] = fb, fa
                out[ja]["content"], out[jb]["content"] = out[jb]["content"], out[ja]["content"]
                if "name" in out[ja] and "name" in out[jb]:
                    out[ja]["name"], out[jb]["name"] = out[jb]["name"], out[ja]["name"]
                return out
    raise ValueError("no pair of dependent successful calls to swap")


def _descendants(graph: Any, node: str) -> set[str]:
    import networkx as nx

    return set(nx.descendants(graph, node))


def swap_dependent_writes(messages: Messages, scenario: Any) -> Messages:
    """Swap two successful writes where one depends on the other in the execution graph."""
    from tools_runtime.verification.components import tool_kind

    writes = {t.name for t in scenario.workflow.tools if tool_kind(scenario, t.name) == "write"}
    return swap_dependent_calls(messages, scenario.workflow.execution_graph, only=writes)


def corrupt_argument_type(messages: Messages, which: int = 0) -> Messages:
    """Give one argument of a call a value of the wrong JSON type."""
    out = copy.deepcopy(messages)
    for i, k, call in _calls(out)[which:]:
        args = json.loads(call["function"]["arguments"] or "{}")
        for key, value in args.items():
            args[key] = 12345 if isinstance(value, str) else f"{value}"
            out[i]["tool_calls"][k]["function"]["arguments"] = json.dumps(args)
            return out
    raise ValueError("no call with arguments to corrupt")


def call_unknown_tool(messages: Messages, name: str = "delete_all_records") -> Messages:
    """Rename the first tool call to a tool the workflow does not define."""
    out = copy.deepcopy(messages)
    calls = _calls(out)
    if not calls:
        raise ValueError("no tool call to rename")
    i, k, _ = calls[0]
    out[i]["tool_calls"][k]["function"]["name"] = name
    return out


def fake_result(messages: Messages, which: int = -1) -> Messages:
    """Change a value inside one successful tool result so it contradicts the backend."""
    calls = _successful(messages)
    if not calls:
        raise ValueError("no successful tool result to fake")
    out = copy.deepcopy(messages)
    j = _answer_index(out, call_name_args(calls[which][2])[2])
    payload = parse_tool_content(out[j]["content"])[1]
    if isinstance(payload, dict) and payload:
        key = sorted(payload)[0]
        payload[key] = "FAKED-9999" if payload[key] != "FAKED-9999" else "FAKED-0000"
        out[j]["content"] = json.dumps(payload, sort_keys=True)
    else:
        out[j]["content"] = json.dumps({"status": "ok", "note": "made up"})
    return out


def leave_unanswered(messages: Messages, which: int = -1) -> Messages:
    """Delete the tool result of one call, leaving the call unanswered."""
    calls = _calls(messages)
    if not calls:
        raise ValueError("no tool call to leave unanswered")
    out = copy.deepcopy(messages)
    del out[_answer_index(out, call_name_args(calls[which][2])[2])]
    return out
