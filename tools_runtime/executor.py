"""The executor: validate → dispatch → record, for one tool call.

Whatever a model writes as a tool call — an unknown name, arguments that are not JSON, arguments
that break the schema — comes back as a tool error the assistant can read, never as an exception.
Planned errors (docs/design.md §5.3: transient failures, expired permissions) are injected here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import networkx as nx

from tools_runtime.backend import Backend, SimBackend
from tools_runtime.binding import bind_tools
from tools_runtime.exec_graph import parse_graph
from tools_runtime.python_backend import PythonBackend
from tools_runtime.records import ExecRecord, PlannedError, Workflow
from tools_runtime.toolspec import ToolSpec
from tools_runtime.validation import parse_arguments, validate_arguments

INJECTED_ERRORS: dict[str, dict[str, str]] = {
    "transient": {"code": "service_unavailable",
                  "message": "The service is temporarily unavailable (HTTP 503). Please try again."},
    "permission": {"code": "permission_denied",
                   "message": "Permission denied: your session has expired. Please log in again."},
}


@lru_cache(maxsize=256)
def _graph_of(execution_graph: str) -> Any:
    """The parsed execution graph (None when it does not parse); parsed once per text, only read."""
    try:
        return parse_graph(execution_graph).graph
    except ValueError:
        return None


def session_required(workflow: Workflow) -> set[str]:
    """Tools that need a logged-in session: those after a login step, and tools off the graph.

    Only for tools without a declared effect: a declared one says `requires_session` itself.
    """
    bindings = {n: b for n, b in bind_tools(workflow.tools).items() if n not in workflow.effects}
    logins = {n for n, b in bindings.items() if b.op == "session" and b.mode == "login"}
    if not logins:
        return set()
    graph = _graph_of(workflow.execution_graph)
    if graph is None:
        return set()
    need: set[str] = set()
    for login in logins & set(graph.nodes):
        need |= nx.descendants(graph, login)
    need |= {n for n in bindings if n not in graph.nodes}
    return {n for n in need if n in bindings and bindings[n].op != "session"}


def make_backend(workflow: Workflow, state: dict[str, Any] | None = None) -> Backend:
    """The backend a workflow runs on, at `state` (its seeded initial state when given)."""
    ref = workflow.backend
    if ref.kind == "python":
        be = PythonBackend(ref.classes, ref.initial_config)
        if state and state.get("calls"):
            be.restore(state)
        return be
    if state is None and (workflow.initial_state or workflow.entities):
        state = initial_state(workflow)
    return SimBackend(workflow.tools, state, frozenset(session_required(workflow)),
                      effects=workflow.effects, entities=workflow.entities)


def initial_state(workflow: Workflow) -> dict[str, Any]:
    """The backend state an environment starts from (its `initial_state` records, validated)."""
    from tools_runtime.effects import spec_state

    return spec_state(workflow.entities, workflow.initial_state)


def planned_injection(errors: list[PlannedError], tool: str, occurrence: int) -> PlannedError | None:
    """The injected error planned for the `occurrence`-th call of `tool`, if any."""
    for err in errors:
        if err.kind in INJECTED_ERRORS and err.tool == tool and err.occurrence == occurrence:
            return err
    return None


def execute_call(backend: Backend, tools: Mapping[str, ToolSpec], name: str, raw_arguments: Any,
                 *, inject: PlannedError | None = None, tool_call_id: str = "") -> ExecRecord:
    """Validate and run one call against `backend`, recording result, error and state diff."""
    spec = tools.get(name)
    if spec is None:
        known = ", ".join(sorted(tools)) or "none"
        return ExecRecord(tool_call_id=tool_call_id, name=name, arguments=raw_arguments, ok=False,
                          error={"code": "unknown_tool",
                                 "message": f"Unknown tool '{name}'. Available tools: {known}."})
    args, parse_error = parse_arguments(raw_arguments)
    if args is None:
        return ExecRecord(tool_call_id=tool_call_id, name=name, arguments=raw_arguments, ok=False,
                          error={"code": "invalid_arguments", "message": parse_error or "invalid arguments"})
    problems = validate_arguments(spec, args)
    if problems:
        err: dict[str, Any] = {"code": "invalid_arguments",
                               "message": "; ".join(p.message for p in problems)}
        param = next((p.param for p in problems if p.param), None)
        if param:
            err["param"] = param
        return ExecRecord(tool_call_id=tool_call_id, name=name, arguments=args, ok=False, error=err)
    if inject is not None:
        err = dict(INJECTED_ERRORS[inject.kind])
        if inject.message:
            err["message"] = inject.message
        return ExecRecord(tool_call_id=tool_call_id, name=name, arguments=args, ok=False, error=err,
                          injected=True)
    out = backend.execute(name, args)
    return ExecRecord(tool_call_id=tool_call_id, name=name, arguments=args, ok=out.ok, result=out.result,
                      error=out.error, state_diff=out.diff)


def tool_message_content(rec: ExecRecord) -> str:
    """The `content` of the tool message the assistant reads for this call."""
    payload = rec.result if rec.ok else {"error": rec.error}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def parse_tool_content(content: Any) -> tuple[bool, Any]:
    """Read a tool message back: (is_error, payload). Plain-text results stay strings."""
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        return False, content
    try:
        payload = json.loads(content)
    except (ValueError, TypeError):
        return content.lower().startswith("error"), content
    if isinstance(payload, dict) and set(payload) == {"error"}:
        return True, payload
    return False, payload


class ToolEnvironment:
    """A backend plus the tools and planned errors of one dialogue; counts calls per tool."""

    def __init__(self, workflow: Workflow, state: dict[str, Any] | None,
                 planned_errors: list[PlannedError] | None = None,
                 occurrences: dict[str, int] | None = None):
        self.workflow = workflow
        self.tools = {t.name: t for t in workflow.tools}
        self.backend = make_backend(workflow, state)
        self.planned_errors = list(planned_errors or [])
        self.occurrences = dict(occurrences or {})

    def call(self, name: str, raw_arguments: Any, tool_call_id: str = "") -> ExecRecord:
        """Execute the next call of `name`, injecting the planned error for this occurrence."""
        n = self.occurrences.get(name, 0) + 1
        self.occurrences[name] = n
        inject = planned_injection(self.planned_errors, name, n)
        return execute_call(self.backend, self.tools, name, raw_arguments, inject=inject,
                            tool_call_id=tool_call_id)
