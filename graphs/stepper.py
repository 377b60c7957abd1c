"""Step through one dialogue on the real dialogue graph: pause, inspect, edit, rewind, resume.

Nothing here re-implements the dialogue. Every move is a LangGraph primitive on the compiled graph
of `graphs/dialogue.py`: breakpoints are run-time `interrupt_before`, the state is a checkpoint
(`aget_state`), edits are `aupdate_state` (a new checkpoint), the history is the chain of
checkpoints behind the current one, and a rewind points the next run at an older checkpoint, so
the run forks from there and the abandoned branch stays in the saver.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.types import Overwrite

from graphs.dialogue import SimContext, _occurrences, build_dialogue_graph, initial_state
from graphs.roles import Roles
from graphs.rollouts import recursion_limit, trajectory_from_state
from graphs.serde import memory_checkpointer, sqlite_checkpointer
from tools_runtime.executor import ToolEnvironment, make_backend
from tools_runtime.records import ExecRecord, Scenario, Trajectory
from tools_runtime.state import get_path
from tools_runtime.validation import parse_arguments, validate_arguments
from tools_runtime.verification.replay import call_name_args, tool_calls_of

NODES = ("user", "assistant", "tools", "verify")
DEFAULT_BREAKS = ("user", "assistant", "tools")
# Which node writes a message of each role: an edit of the pending message is applied "as" that
# node, so the graph routes from the edited message exactly as if the node had written it.
WRITER_OF_ROLE = {"user": "user", "assistant": "assistant", "tool": "tools"}


class StepperError(ValueError):
    """A debugger command that cannot be carried out; the message says why."""


@dataclass
class Pause:
    """Where the dialogue stands: the checkpoint and the node about to run (None at the end)."""

    next: str | None
    step: int
    checkpoint_id: str
    source: str
    values: dict[str, Any]

    @property
    def done(self) -> bool:
        """True when the dialogue has ended (verified)."""
        return self.next is None


@dataclass
class HistoryEntry:
    """One checkpoint on the current branch, oldest first."""

    index: int
    step: int
    next: str | None
    source: str
    checkpoint_id: str
    messages: int
    config: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class Edit:
    """The outcome of a `set`: what changed, and warnings the edit is allowed to carry."""

    target: str
    path: str
    old: Any
    new: Any
    warnings: list[str] = field(default_factory=list)


def parse_breaks(text: str | None) -> tuple[str, ...]:
    """`user,assistant,tools` → a tuple of node names; unknown names are an error."""
    if text is None:
        return DEFAULT_BREAKS
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in NODES]
    if unknown:
        raise StepperError(f"--break: unknown node(s) {', '.join(unknown)}; the nodes are {', '.join(NODES)}")
    return names


MAX_VALUE_DEPTH = 64  # a `set` value is a small edit; deeper nesting would only crash later copies


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_value(text: str) -> Any:
    """A `set` value: JSON when it parses (`3`, `true`, `"x"`, `{...}`), otherwise the bare string."""
    if _depth(text) > MAX_VALUE_DEPTH:
        raise StepperError(f"the value is nested more than {MAX_VALUE_DEPTH} levels deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _split(path: str) -> list[str]:
    return [p for p in path.replace("/", ".").split(".") if p]


def _set_checked(root: Any, parts: list[str], value: Any, where: str, *, typed: bool = True) -> Any:
    """Set `value` at `parts` under `root` (in place) and return the old value.

    Only an existing container may be written into, and an existing value keeps its JSON type
    (a number stays a number), so a typo cannot silently grow a new branch of state.
    """
    cur = root
    for n, part in enumerate(parts[:-1]):
        cur = _child(cur, part, ".".join(parts[: n + 1]), where)
    last = parts[-1]
    if isinstance(cur, list):
        idx = _index(last, cur, ".".join(parts), where)
        old = cur[idx]
    elif isinstance(cur, dict):
        old = cur.get(last)
        if last not in cur and value is None:
            raise StepperError(f"{where}: nothing at '{'.'.join(parts)}' to clear")
    else:
        raise StepperError(f"{where}: '{'.'.join(parts[:-1])}' is a {_kind(cur)}, not an object or array")
    if typed and old is not None and value is not None and _kind(old) != _kind(value):
        raise StepperError(f"{where}: '{'.'.join(parts)}' holds a {_kind(old)}; got a {_kind(value)} "
                           f"({json.dumps(value, ensure_ascii=False)[:60]})")
    if isinstance(cur, list):
        cur[idx] = value
    elif value is None and last in cur and isinstance(old, dict | list):
        del cur[last]  # `null` on a record removes it (e.g. delete an order)
    else:
        cur[last] = value
    return old


def _child(cur: Any, part: str, shown: str, where: str) -> Any:
    if isinstance(cur, list):
        return cur[_index(part, cur, shown, where)]
    if isinstance(cur, dict):
        if part not in cur:
            keys = ", ".join(sorted(map(str, cur))[:8]) or "none"
            raise StepperError(f"{where}: no '{shown}' (keys here: {keys})")
        return cur[part]
    raise StepperError(f"{where}: '{shown}' is inside a {_kind(cur)}, not an object or array")


def _index(part: str, seq: list[Any], shown: str, where: str) -> int:
    try:
        idx = int(part)
        seq[idx]
    except (ValueError, IndexError) as exc:
        raise StepperError(f"{where}: '{shown}' is not an index of a list of {len(seq)}") from exc
    return idx


def check_message(msg: Any) -> list[str]:
    """Structural problems of one OpenAI message (errors) — a pending edit must leave none."""
    if not isinstance(msg, dict) or msg.get("role") not in WRITER_OF_ROLE:
        return ["the message must be an object with role user, assistant or tool"]
    problems = []
    if not isinstance(msg.get("content", ""), str):
        problems.append("content must be a string")
    calls = msg.get("tool_calls")
    if calls is not None:
        if msg["role"] != "assistant" or not isinstance(calls, list):
            problems.append("tool_calls must be a list on an assistant message")
        else:
            for k, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not call.get("id"):
                    problems.append(f"tool_calls.{k} needs an id and function.name")
                elif not isinstance(fn.get("arguments"), str):
                    problems.append(f"tool_calls.{k}.function.arguments must be a JSON string")
    return problems


def call_warnings(msg: dict[str, Any], scenario: Scenario) -> list[str]:
    """Schema problems of a message's tool calls: allowed in an edit (the tools will answer with an error)."""
    out = []
    for call in tool_calls_of(msg):
        name, raw, _ = call_name_args(call)
        spec = scenario.workflow.tool(name)
        if spec is None:
            out.append(f"{name}: not a tool of this workflow")
            continue
        args, err = parse_arguments(raw)
        if args is None:
            out.append(f"{name}: {err}")
            continue
        out += [f"{name}: {p.message}" for p in validate_arguments(spec, args)]
    return out


def preview_tool_calls(scenario: Scenario, values: dict[str, Any]) -> list[ExecRecord]:
    """What the tools node would do with the pending calls: a dry run on a copy of the backend.

    Each record holds the validation outcome (an `invalid_arguments` error), the result and the
    state diff. A tool-environment model is not consulted here, so a model-proposed result may differ.
    """
    messages = values.get("messages") or []
    if not messages:
        return []
    env = ToolEnvironment(scenario.workflow, copy.deepcopy(values.get("backend")), scenario.planned_errors,
                          _occurrences(messages[:-1]))
    return [env.call(*call_name_args(c)) for c in tool_calls_of(messages[-1])]


class DialogueStepper:
    """One dialogue under the debugger; every method is one debugger command."""

    def __init__(self, scenario: Scenario, roles: Roles, *, checkpointer: Any = None,
                 breaks: tuple[str, ...] = DEFAULT_BREAKS, thread_id: str = "debug",
                 max_user_turns: int = 24, max_tool_rounds: int = 16):
        unknown = [b for b in breaks if b not in NODES]
        if unknown:
            raise StepperError(f"unknown breakpoint node(s) {unknown}; the nodes are {list(NODES)}")
        self.scenario = scenario
        self.roles = roles
        self.breaks = tuple(breaks)
        self.graph = build_dialogue_graph(checkpointer=checkpointer if checkpointer is not None
                                          else memory_checkpointer())
        self.context = SimContext(scenario=scenario, roles=roles, max_user_turns=max_user_turns,
                                  max_tool_rounds=max_tool_rounds)
        self.config: dict[str, Any] = {"configurable": {"thread_id": thread_id},
                                       "recursion_limit": recursion_limit(max_user_turns, max_tool_rounds)}
        # After a rewind the next run starts from this older checkpoint (and so forks the thread).
        self._head: dict[str, Any] | None = None

    async def start(self) -> tuple[Pause, bool]:
        """Pause before the first node; with a saved thread, resume it instead. Returns (pause, resumed)."""
        existing = await self.graph.aget_state(self.config)
        if existing.values:
            return await self.pause(), True
        start = initial_state(self.scenario, self.roles.system_message(self.scenario))
        await self.graph.ainvoke(start, self.config, context=self.context, interrupt_before=list(NODES))
        return await self.pause(), False

    def _at(self) -> dict[str, Any]:
        return self._head or self.config

    async def pause(self) -> Pause:
        """The current checkpoint."""
        snap = await self.graph.aget_state(self._at())
        return _pause(snap)

    async def _run(self, interrupt_before: list[str]) -> Pause:
        if (await self.pause()).done:
            raise StepperError("the dialogue has ended; rewind to go back, or quit")
        at = self._at()
        self._head = None
        await self.graph.ainvoke(None, at, context=self.context, interrupt_before=interrupt_before)
        return await self.pause()

    async def step(self) -> Pause:
        """Run the next node and pause before the one after it."""
        return await self._run(list(NODES))

    async def cont(self) -> Pause:
        """Run to the next breakpoint, or to the end."""
        return await self._run(list(self.breaks))

    async def finish(self) -> Pause:
        """Run to the end, ignoring breakpoints."""
        return await self._run([])

    async def state(self, path: str = "") -> Any:
        """The backend state, or the value at a dotted path in it (`collections.order.ORD-1`).

        `message.…` reads the pending (last) message, `steps`/`messages`/`verdict` the dialogue state.
        """
        values = (await self.pause()).values
        parts = _split(path)
        if not parts:
            return values.get("backend")
        root, rest = _root(values, parts)
        try:
            return get_path(root, ".".join(rest)) if rest else root
        except (KeyError, IndexError, ValueError) as exc:
            raise StepperError(f"state {path}: {exc}") from exc

    async def set(self, path: str, value: Any) -> Edit:
        """Edit the backend state or the pending message at `path`; the edit is validated first."""
        pause = await self.pause()
        if pause.done:
            raise StepperError("the dialogue has ended; rewind before editing")
        parts = _split(path)
        if not parts:
            raise StepperError("set needs a PATH and a VALUE")
        if parts[0] in ("message", "pending"):
            return await self._set_message(pause, parts[1:], value, path)
        if parts[0] == "backend":
            parts = parts[1:]
        if not parts:
            raise StepperError("set backend: give a path inside the backend, e.g. collections.order.ORD-1.status")
        backend = copy.deepcopy(pause.values.get("backend") or {})
        old = _set_checked(backend, parts, value, f"set {path}")
        try:
            make_backend(self.scenario.workflow, backend).view()
        except Exception as exc:  # noqa: BLE001 — any failure to load the edited state rejects the edit
            raise StepperError(f"set {path}: the backend rejects the edited state ({exc})") from exc
        await self._update({"backend": backend}, None)
        return Edit(target="backend", path=".".join(parts), old=old, new=value)

    async def _set_message(self, pause: Pause, parts: list[str], value: Any, shown: str) -> Edit:
        messages = copy.deepcopy(pause.values.get("messages") or [])
        if not messages:
            raise StepperError(f"set {shown}: there is no pending message yet")
        msg = messages[-1]
        if not parts:
            raise StepperError(f"set {shown}: give a field of the message, e.g. message.content")
        if parts[0] == "role":
            raise StepperError(f"set {shown}: the role of a message cannot change")
        old = _set_in_message(msg, parts, value, f"set {shown}")
        problems = check_message(msg)
        if problems:
            raise StepperError(f"set {shown}: " + "; ".join(problems))
        await self._update({"messages": Overwrite(messages)}, WRITER_OF_ROLE[msg["role"]])
        return Edit(target="message", path=".".join(parts), old=old, new=value,
                    warnings=call_warnings(msg, self.scenario))

    async def _update(self, values: dict[str, Any], as_node: str | None) -> None:
        at = self._at()
        self._head = None
        await self.graph.aupdate_state(at, values, as_node=as_node)

    async def history(self) -> list[HistoryEntry]:
        """The checkpoints from the start to the current one (the current branch), oldest first."""
        snaps = {s.config["configurable"]["checkpoint_id"]: s
                 async for s in self.graph.aget_state_history(self.config)}
        current = await self.graph.aget_state(self._at())
        chain = []
        cid: str | None = current.config["configurable"]["checkpoint_id"]
        while cid and cid in snaps:
            snap = snaps[cid]
            chain.append(snap)
            parent = snap.parent_config or {}
            cid = parent.get("configurable", {}).get("checkpoint_id")
        # The `input` checkpoint holds no state yet (before START); the first pause is the real start.
        chain = [s for s in reversed(chain) if s.metadata.get("source") != "input"]
        return [HistoryEntry(index=i, step=s.metadata.get("step", 0), next=s.next[0] if s.next else None,
                             source=s.metadata.get("source", ""), checkpoint_id=s.config["configurable"]["checkpoint_id"],
                             messages=len(s.values.get("messages") or []), config=s.config)
                for i, s in enumerate(chain)]

    async def rewind(self, index: int) -> Pause:
        """Go back to checkpoint `index` of `history`; the next step, continue or set forks from it."""
        entries = await self.history()
        if not 0 <= index < len(entries):
            raise StepperError(f"rewind {index}: history has checkpoints 0..{len(entries) - 1}")
        self._head = entries[index].config
        return await self.pause()

    async def trajectory(self) -> Trajectory:
        """The dialogue so far as a Trajectory (with its verdict once verified)."""
        values = (await self.pause()).values
        return trajectory_from_state(values, self.scenario, self.roles, stage="debug",
                                     trajectory_id=f"{self.scenario.id}:debug")


def _pause(snap: Any) -> Pause:
    meta = snap.metadata or {}
    return Pause(next=snap.next[0] if snap.next else None, step=int(meta.get("step", 0)),
                 checkpoint_id=snap.config["configurable"]["checkpoint_id"], source=str(meta.get("source", "")),
                 values=dict(snap.values or {}))


def _root(values: dict[str, Any], parts: list[str]) -> tuple[Any, list[str]]:
    head = parts[0]
    if head in ("message", "pending"):
        messages = values.get("messages") or []
        if not messages:
            raise StepperError("there is no pending message yet")
        return _decoded(messages[-1]), parts[1:]
    if head in ("messages", "steps", "verdict", "stats", "user_turns", "rounds", "ended_by"):
        return values.get(head), parts[1:]
    if head == "backend":
        return values.get("backend"), parts[1:]
    return values.get("backend"), parts


def _decoded(msg: dict[str, Any]) -> dict[str, Any]:
    """A message with its tool-call arguments decoded, so paths can reach into them."""
    out = copy.deepcopy(msg)
    for call in tool_calls_of(out):
        fn = call.get("function") or {}
        args, _ = parse_arguments(fn.get("arguments"))
        if args is not None:
            fn["arguments"] = args
    return out


def _set_in_message(msg: dict[str, Any], parts: list[str], value: Any, where: str) -> Any:
    """Set a field of a message; paths into `…function.arguments.X` edit the JSON-encoded arguments."""
    if "arguments" in parts:
        k = parts.index("arguments")
        holder = msg
        for n, part in enumerate(parts[:k]):
            holder = _child(holder, part, ".".join(parts[: n + 1]), where)
        if not isinstance(holder, dict) or "arguments" not in holder:
            raise StepperError(f"{where}: '{'.'.join(parts[:k + 1])}' is not the arguments of a tool call")
        rest = parts[k + 1:]
        if not rest:
            old = holder["arguments"]
            holder["arguments"] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return old
        args, err = parse_arguments(holder["arguments"])
        if args is None:
            raise StepperError(f"{where}: the current arguments are not a JSON object ({err})")
        if len(rest) == 1 and rest[0] not in args:
            old = None  # adding an argument the call did not have is allowed (e.g. to break the schema)
            args[rest[0]] = value
        else:
            # Untyped: a wrong argument type is a legitimate experiment; the schema check warns about it.
            old = _set_checked(args, rest, value, where, typed=False)
        holder["arguments"] = json.dumps(args, ensure_ascii=False)
        return old
    return _set_checked(msg, parts, value, where)


@asynccontextmanager
async def open_checkpointer(path: str | Path | None) -> AsyncIterator[Any]:
    """An in-memory saver, or an SQLite one at `path` (async: the dialogue nodes are coroutines)."""
    if not path:
        yield memory_checkpointer()
        return
    # The sync SqliteSaver refuses async runs (NotImplementedError); the graph's nodes are async.
    async with sqlite_checkpointer(path) as saver:
        yield saver
