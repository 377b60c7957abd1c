"""Generated text ⇄ OpenAI assistant messages for engines that return raw text (llama.cpp, vLLM).

Qwen-family (hermes) chat templates ask the model to wrap each call as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. In-process engines give us that text,
not parsed `tool_calls`, so the parsing lives here. A block whose JSON is broken is kept as a call
with the raw text as its arguments: the tool environment answers it with an error, as it does for a
server's malformed call.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import regex

_BLOCK = regex.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", regex.S)
_NAME = regex.compile(r'"name"\s*:\s*"([^"]+)"')
_FENCE = regex.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", regex.S)
# Tags a small model invents around its calls (the 1.5B wrote `<tools> {…} {…} </tools>`); their body is
# read like a fence's.
_WRAP = regex.compile(r"<(tools|tool_calls|functions|function_calls|function_call)>\s*(.*?)\s*</\1>", regex.S)


def _call_id(index: int, body: str) -> str:
    # Deterministic ids keep cached and replayed dialogues byte-identical.
    return "call_" + hashlib.sha1(f"{index}:{body}".encode()).hexdigest()[:12]


def _one_call(index: int, body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        args = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):
            raw = args  # some models double-encode; leave it for the validator to judge
        else:
            raw = json.dumps(args if args is not None else {}, ensure_ascii=False)
        name = data["name"]
    else:
        found = _NAME.search(body)
        name, raw = (found.group(1) if found else ""), body
    return {"id": _call_id(index, body), "type": "function", "function": {"name": name, "arguments": raw}}


def _json_calls(body: str, names: set[str] | None) -> list[str] | None:
    """The call objects in a JSON text (one object or a list), re-serialized, or None when it holds none."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("function"), dict):
            item = item["function"]  # the OpenAI wire shape, written out by the model
        if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                and ("arguments" in item or "parameters" in item)):
            return None
        if names is not None and item["name"] not in names:
            return None
        calls.append(json.dumps(item, ensure_ascii=False))
    return calls or None


def _json_sequence(text: str, names: set[str] | None) -> list[str] | None:
    """Call objects written one after another (`{…},\n{…}`: a list without its brackets), or None.

    A 0.5B model plans several calls in one answer this way; the objects before one that does not
    parse (an answer cut off at `max_tokens`) are kept.
    """
    decoder = json.JSONDecoder()
    calls: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,;":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        found = _json_calls(json.dumps(item), names)
        if not found:
            return None
        calls += found
    return calls if len(calls) > 1 else None


def parse_tool_text(text: str, tool_names: list[str] | None = None) -> dict[str, Any]:
    """An assistant message from generated text, with its tool calls parsed leniently.

    Accepted, in this order: `<tool_call>` blocks (the template's format); fenced JSON blocks
    (```json …```) or invented wrapper tags (`<tools>…</tools>`) holding `{"name", "arguments"}` objects; the whole answer being such an object,
    a list of them, or several of them one after another (commas or newlines between). Small models write the last two although the template asks for the first.
    Fenced or bare JSON counts as a call only when its name is a bound tool (when names are given),
    so a JSON example written for the user stays text.
    """
    text = text or ""
    names = set(tool_names) if tool_names is not None else None
    blocks = _BLOCK.findall(text)
    if blocks:
        content = _BLOCK.sub("", text).strip()
        calls = [_one_call(i, b) for i, b in enumerate(blocks) if b.strip()]
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            msg["tool_calls"] = calls
        return msg
    bodies: list[str] = []
    kept = text
    for fence in [*_FENCE.finditer(text), *_WRAP.finditer(text)]:
        inner = fence.group(fence.re.groups)
        found = _json_calls(inner, names) or _json_sequence(inner, names)
        if found and fence.group(0) in kept:
            bodies += found
            kept = kept.replace(fence.group(0), "", 1)
    if not bodies:
        bare = text.strip()
        # `{{"name": …}}`: the template's escaped braces copied (the 1.5B in the embedded funnel)
        for candidate in (bare, bare[1:-1] if bare.startswith("{{") and bare.endswith("}}") else ""):
            found = (_json_calls(candidate, names) or _json_sequence(candidate, names)) if candidate else None
            if found:
                bodies, kept = found, ""
                break
    if not bodies:
        return {"role": "assistant", "content": text.strip()}
    return {"role": "assistant", "content": kept.strip(),
            "tool_calls": [_one_call(i, b) for i, b in enumerate(bodies)]}


def call_from_json(text: str, index: int = 0) -> dict[str, Any]:
    """An assistant message with one tool call from constrained `{"name", "arguments"}` JSON."""
    return {"role": "assistant", "content": "", "tool_calls": [_one_call(index, text)]}


def for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: tool-call arguments as objects, content never None."""
    out = []
    for m in messages:
        m = dict(m)
        m["content"] = m.get("content") or ""
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function") or {})
                raw = fn.get("arguments")
                if isinstance(raw, str):
                    try:
                        fn["arguments"] = json.loads(raw)
                    except ValueError:
                        pass  # keep the broken string; the template prints it as it was
                calls.append({**call, "function": fn})
            m["tool_calls"] = calls
        out.append(m)
    return out


def tool_choice_schema(tools: list[dict[str, Any]], tool_choice: str | None) -> dict[str, Any] | None:
    """A JSON schema forcing one call (`required` or a tool's name), or None when the model may answer in text."""
    names = [t.get("function", t).get("name") for t in tools]
    if tool_choice in (None, "auto", "none"):
        return None
    allowed = names if tool_choice in ("required", "any") else [tool_choice]
    return {"type": "object", "properties": {"name": {"type": "string", "enum": allowed},
                                             "arguments": {"type": "object"}},
            "required": ["name", "arguments"]}
