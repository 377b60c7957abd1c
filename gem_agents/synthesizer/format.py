"""The synthesizer's target string: tools, execution graph, initial state and dialogue as plain lines.

One trajectory is one block of sections, in this order (`## errors` may be left out):

    ## tools
    {"name": "login", "description": "Sign in.", "parameters": {"type": "object", ...}}
    {"name": "get_order", "description": "...", "parameters": {...}}
    ## graph
    (login)->(get_order)->(cancel_order)
    ## effects
    {"effects": {"cancel_order": {"kind": "update", ...}}, "entities": [{"name": "order", ...}]}
    ## state
    {"collections": {"order": {"ORD-1": {"status": "shipped"}}}, "session": {...}, "counters": {}}
    ## errors
    {"kind": "transient", "tool": "cancel_order", "occurrence": 1}
    ## dialogue
    user: I want to cancel order ORD-1.
    assistant: Sure. What is your password?
    user: "Here it is:\\npassword: hunter2"
    assistant:
    call call_001 login {"username": "ann", "password": "hunter2"}
    tool call_001 login: {"status": "logged_in", "user": "ann"}
    assistant: Done: order ORD-1 is cancelled.
    ## end

- `## tools`: one JSON object per line, the OpenAI `function` object (name, description, parameters).
- `## graph`: one line in the execution-graph notation `(a)->(b, c)->(d)`.
- `## effects` (environments only): one JSON line with the tools' declared effects and the entities,
  so the replay executes each call as the environment declares it.
- `## state`: the simulated backend's initial state as JSON (`collections`, `session`, `counters`);
  it may span lines. The replay starts from it, so every tool line can be checked against it.
- `## errors`: tool errors the scenario planned (a `PlannedError` per line), e.g. an HTTP 503 on the
  first `cancel_order` call that the assistant must retry.
- `## dialogue`: one message per line. `ROLE: TEXT` for system, developer, user and assistant;
  an assistant message's tool calls follow it as `call ID NAME ARGUMENTS` lines; a tool result is
  `tool ID NAME: CONTENT`. TEXT, ARGUMENTS and CONTENT are written as they are when they are one
  line with no surrounding spaces and do not start with `"`; otherwise as a JSON string literal.
  `assistant:` with nothing after it is an empty text (a message that only calls tools).
- `## end` closes the block; a block without it was cut off.

`render` and `parse` are inverse on canonical trajectories (`canonical_messages`, `canonical_tools`):
parse(render(x)) == x. Every parse error names the line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools_runtime.records import PlannedError, Trajectory

SECTIONS = ("tools", "graph", "effects", "state", "errors", "dialogue", "end")
OPTIONAL_SECTIONS = {"errors", "effects"}
TEXT_ROLES = ("system", "developer", "user", "assistant")
STATE_KEYS = ("collections", "session", "counters")

_TOKEN = re.compile(r"[^\s:\"]+")
_ROLE_LINE = re.compile(r"^(system|developer|user|assistant):(.*)$")
_CALL_LINE = re.compile(r"^call (\S+) (\S+)(?: (.*))?$")
_TOOL_LINE = re.compile(r"^tool ([^\s:]+)(?: ([^\s:]+))?:(.*)$")


class FormatError(ValueError):
    """A block that is not in the synthesizer format (parsing) or cannot be written in it."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


class SynthTrajectory(BaseModel):
    """What one block holds: everything needed to replay and verify the dialogue."""

    model_config = ConfigDict(extra="forbid")

    tools: list[dict[str, Any]]
    execution_graph: str
    initial_state: dict[str, Any] = Field(default_factory=dict)
    planned_errors: list[PlannedError] = Field(default_factory=list)
    messages: list[dict[str, Any]]
    # An environment's declared effects and entities (empty for name-bound tools).
    effects: dict[str, Any] = Field(default_factory=dict)
    entities: list[dict[str, Any]] = Field(default_factory=list)


# -- canonical form --------------------------------------------------------------------------

def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False)


def canonical_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """Tools as OpenAI `{"type": "function", "function": {...}}` entries (bare function objects wrapped)."""
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise FormatError(f"tool {i} is a {type(tool).__name__}, not an object")
        fn = tool["function"] if isinstance(tool.get("function"), dict) else tool
        out.append({"type": "function", "function": fn})
    return out


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages reduced to what the format carries: role, text content, tool calls, call id, tool name."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in (*TEXT_ROLES, "tool"):
            raise FormatError(f"message {i} has role {role!r}, which the format cannot carry")
        m: dict[str, Any] = {"role": role, "content": _text_of(msg.get("content"))}
        if role == "assistant" and msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    raise FormatError(f"message {i}: a tool call without a function")
                args = fn.get("arguments")
                args = args if isinstance(args, str) else json.dumps(args if args is not None else {},
                                                                    ensure_ascii=False)
                calls.append({"id": str(call.get("id") or ""), "type": "function",
                              "function": {"name": str(fn.get("name") or ""), "arguments": args}})
            m["tool_calls"] = calls
        if role == "tool":
            m["tool_call_id"] = str(msg.get("tool_call_id") or "")
            if msg.get("name"):
                m["name"] = str(msg["name"])
        out.append(m)
    return out


def from_trajectory(traj: Trajectory) -> SynthTrajectory:
    """The block contents of a simulated trajectory (its scenario gives the graph, state and errors)."""
    if traj.scenario is None:
        raise FormatError(f"trajectory {traj.id} carries no scenario (initial state and graph are needed)")
    sc = traj.scenario
    tools = traj.tools or [t.to_openai() for t in sc.workflow.tools]
    wf = sc.workflow
    graph = wf.execution_graph
    if sc.task is not None and sc.task.gold_actions:
        # An environment's graph spans all its capabilities; a task's dialogue runs its gold procedure.
        graph = "->".join(f"({t})" for t in dict.fromkeys(a.tool for a in sc.task.gold_actions))
    return SynthTrajectory(tools=canonical_tools(tools), execution_graph=graph,
                           initial_state=sc.initial_state, planned_errors=list(sc.planned_errors),
                           messages=canonical_messages(traj.messages),
                           effects={k: v.model_dump(mode="json", exclude_defaults=True) | {"kind": v.kind}
                                    for k, v in wf.effects.items()},
                           entities=[e.model_dump(mode="json", exclude_defaults=True) for e in wf.entities])


# -- writing ---------------------------------------------------------------------------------

def encode_value(text: str) -> str:
    """A value as written on a line: as is when safe, else a JSON string literal."""
    if text and "\n" not in text and "\r" not in text and text == text.strip() and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _token(value: str, what: str, where: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise FormatError(f"{where}: {what} {value!r} must be non-empty, without spaces, colons or quotes")
    return value


def _json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(st: SynthTrajectory) -> str:
    """The block for `st` (raises FormatError for ids or names the format cannot carry)."""
    lines = ["## tools"]
    for tool in canonical_tools(st.tools):
        lines.append(_json_line(tool["function"]))
    lines += ["## graph", encode_value(st.execution_graph)]
    if st.effects or st.entities:
        lines += ["## effects", _json_line({"effects": st.effects, "entities": st.entities})]
    lines += ["## state", _json_line(st.initial_state)]
    if st.planned_errors:
        lines.append("## errors")
        lines += [_json_line(e.model_dump(exclude_defaults=True)) for e in st.planned_errors]
    lines.append("## dialogue")
    for i, m in enumerate(canonical_messages(st.messages)):
        where = f"message {i}"
        if m["role"] == "tool":
            head = f"tool {_token(m['tool_call_id'], 'tool call id', where)}"
            if m.get("name"):
                head += f" {_token(m['name'], 'tool name', where)}"
            lines.append(f"{head}: {encode_value(m['content'])}")
            continue
        text = m["content"]
        lines.append(f"{m['role']}:" + (f" {encode_value(text)}" if text else ""))
        for call in m.get("tool_calls", []):
            fn = call["function"]
            lines.append(f"call {_token(call['id'], 'tool call id', where)} "
                         f"{_token(fn['name'], 'tool name', where)} {encode_value(fn['arguments'])}")
    lines.append("## end")
    return "\n".join(lines) + "\n"


def trajectory_to_text(traj: Trajectory) -> str:
    """A simulated trajectory as a target string."""
    return render(from_trajectory(traj))


# -- reading ---------------------------------------------------------------------------------

def decode_value(raw: str, line: int, what: str) -> str:
    """The inverse of `encode_value`; a broken JSON literal is an error naming the line."""
    if not raw.startswith('"'):
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what} starts with '\"' but is not a valid JSON string ({exc.msg} at column "
                          f"{exc.colno})", line) from exc
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a JSON string literal", line)
    return value


def _json(raw: str, line: int, what: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}", line) from exc


def _split_sections(lines: list[str]) -> dict[str, tuple[int, list[tuple[int, str]]]]:
    sections: dict[str, tuple[int, list[tuple[int, str]]]] = {}
    current: str | None = None
    order = -1
    for n, line in enumerate(lines, 1):
        if line.startswith("## "):
            name = line[3:].strip()
            if name not in SECTIONS and not any(x.strip() for x in lines[n:]) \
                    and any(s.startswith(name) for s in SECTIONS):
                break  # a header cut off mid-word ("## s") on the last line: the block was cut off
            if name not in SECTIONS:
                raise FormatError(f"unknown section '## {name}'; sections are {', '.join(SECTIONS)}", n)
            if name in sections:
                raise FormatError(f"section '## {name}' appears twice", n)
            pos = SECTIONS.index(name)
            if pos < order:
                raise FormatError(f"section '## {name}' is out of order; the order is {' → '.join(SECTIONS)}", n)
            for missing in SECTIONS[order + 1:pos]:
                if missing not in OPTIONAL_SECTIONS:
                    raise FormatError(f"section '## {missing}' is missing before '## {name}'", n)
            order = pos
            current = name
            sections[name] = (n, [])
            continue
        if current is None:
            if line.strip():
                raise FormatError("expected the block to start with '## tools'", n)
            continue
        if current == "end":
            if line.strip():
                raise FormatError("text after '## end'", n)
            continue
        sections[current][1].append((n, line))
    if "end" not in sections:
        if not sections:
            raise FormatError("no '## tools' line: this is not a synthesizer block", 1)
        last = max(n for n, _ in sections.values())
        absent = [s for s in SECTIONS if s not in sections and s not in OPTIONAL_SECTIONS]
        raise FormatError(f"the block was cut off: no {', '.join('## ' + s for s in absent)} "
                          f"(last section starts at line {last})", len(lines))
    return sections


def _parse_tools(body: list[tuple[int, str]], at: int) -> list[dict[str, Any]]:
    tools = []
    for n, line in body:
        if not line.strip():
            continue
        obj = _json(line, n, "the tool")
        if not isinstance(obj, dict):
            raise FormatError("a tool line must be a JSON object", n)
        fn = obj["function"] if isinstance(obj.get("function"), dict) else obj
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise FormatError("the tool has no 'name'", n)
        tools.append({"type": "function", "function": fn})
    if not tools:
        raise FormatError("'## tools' lists no tool", at)
    return tools


def _parse_state(body: list[tuple[int, str]], at: int) -> dict[str, Any]:
    text = "\n".join(line for _, line in body).strip()
    first = next((n for n, line in body if line.strip()), at)
    if not text:
        raise FormatError("'## state' is empty (write {} for an empty backend)", at)
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"the state is not valid JSON: {exc.msg} at column {exc.colno}",
                          first + exc.lineno - 1) from exc
    if not isinstance(state, dict):
        raise FormatError("the state must be a JSON object", first)
    for key in state:
        if key not in STATE_KEYS:
            raise FormatError(f"unknown state key {key!r}; the state has {', '.join(STATE_KEYS)}", first)
    colls = state.get("collections", {})
    if not isinstance(colls, dict):
        raise FormatError("state.collections must be an object of entities", first)
    for entity, records in colls.items():
        if not isinstance(records, dict):
            raise FormatError(f"state.collections.{entity} must be an object of records by id", first)
        for rid, rec in records.items():
            if not isinstance(rec, dict):
                raise FormatError(f"state.collections.{entity}.{rid} must be an object", first)
    for key in ("session", "counters"):
        if key in state and not isinstance(state[key], dict):
            raise FormatError(f"state.{key} must be an object", first)
    return state


def _parse_errors(body: list[tuple[int, str]]) -> list[PlannedError]:
    out = []
    for n, line in body:
        if not line.strip():
            continue
        obj = _json(line, n, "the planned error")
        try:
            out.append(PlannedError.model_validate(obj))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(object)"
            raise FormatError(f"planned error field {loc}: {err['msg']}", n) from exc
    return out


def _parse_dialogue(body: list[tuple[int, str]], at: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    calls_open = False  # True while `call` lines may attach to the last assistant message
    for n, line in body:
        if not line.strip():
            continue
        if m := _ROLE_LINE.match(line):
            role, rest = m.group(1), m.group(2)
            rest = rest[1:] if rest.startswith(" ") else rest
            messages.append({"role": role, "content": decode_value(rest, n, "the text") if rest else ""})
            calls_open = role == "assistant"
        elif line.startswith("call "):
            m = _CALL_LINE.match(line)
            if not m:
                raise FormatError("a call line is 'call ID NAME ARGUMENTS'", n)
            if not calls_open:
                raise FormatError("a 'call' line must follow an 'assistant:' line or another call", n)
            if m.group(3) is None:
                raise FormatError(f"call {m.group(1)} {m.group(2)} has no arguments (write {{}} for none)", n)
            call_id, name = m.group(1), m.group(2)
            args = decode_value(m.group(3), n, "the arguments")
            messages[-1].setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        elif line.startswith("tool "):
            m = _TOOL_LINE.match(line)
            if not m:
                raise FormatError("a tool result line is 'tool ID NAME: CONTENT'", n)
            rest = m.group(3)
            rest = rest[1:] if rest.startswith(" ") else rest
            msg: dict[str, Any] = {"role": "tool", "tool_call_id": m.group(1),
                                   "content": decode_value(rest, n, "the tool result") if rest else ""}
            if m.group(2):
                msg["name"] = m.group(2)
            messages.append(msg)
            calls_open = False
        else:
            raise FormatError(f"cannot read this dialogue line (expected 'user:', 'assistant:', 'call …' or "
                              f"'tool …'): {line[:60]!r}", n)
    if not messages:
        raise FormatError("'## dialogue' has no messages", at)
    return messages


def parse(text: str) -> SynthTrajectory:
    """Read one block; raises FormatError naming the line and what is wrong."""
    if not isinstance(text, str):
        raise FormatError(f"expected text, got {type(text).__name__}")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    sections = _split_sections(lines)
    graph_at, graph_body = sections["graph"]
    graph_lines = [(n, line) for n, line in graph_body if line.strip()]
    if len(graph_lines) != 1:
        raise FormatError(f"'## graph' must hold exactly one line, found {len(graph_lines)}", graph_at)
    graph = decode_value(graph_lines[0][1], graph_lines[0][0], "the graph")
    env: dict[str, Any] = {}
    if "effects" in sections:
        at, body = sections["effects"]
        raw = "\n".join(line for _, line in body).strip()
        env = _json(raw, at + 1, "the effects") if raw else {}
        if not isinstance(env, dict) or not isinstance(env.get("effects", {}), dict) or \
                not isinstance(env.get("entities", []), list):
            raise FormatError("'## effects' must be one JSON object {\"effects\": {...}, \"entities\": [...]}", at)
    return SynthTrajectory(
        effects=env.get("effects", {}),
        entities=env.get("entities", []),
        tools=_parse_tools(sections["tools"][1], sections["tools"][0]),
        execution_graph=graph,
        initial_state=_parse_state(sections["state"][1], sections["state"][0]),
        planned_errors=_parse_errors(sections["errors"][1]) if "errors" in sections else [],
        messages=_parse_dialogue(sections["dialogue"][1], sections["dialogue"][0]),
    )


_THINK = re.compile(r"<think>.*?</think>", re.S)


def extract_block(text: str) -> str:
    """The block inside a model's answer: from a '## tools' line through its '## end'.

    Models wrap answers in code fences, add a sentence around them, or think aloud first
    (`<think>…</think>`, drafts); that text is dropped here so `parse` stays strict. The last
    complete block wins (a draft comes before the answer); with none complete, the first start
    is kept so the parse error says where it was cut off. Without a '## tools' line the answer
    is returned as is (parse reports it).
    """
    lines = _THINK.sub("", text).split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == "## tools"]
    if not starts:
        return text
    spans = []
    for start in starts:
        end = next((i for i in range(start, len(lines)) if lines[i].strip() == "## end"), None)
        if end is not None:
            spans.append((start, end + 1))
    start, stop = spans[-1] if spans else (starts[0], len(lines))
    return "\n".join(lines[start:stop]).rstrip("`\n ") + "\n"
