"""Robust parsing of the tagged output format stages 1 and 2 ask models for.

Models wrap answers in code fences, add prose before and after, change tag case (`<Multi_Step>`),
forget a closing tag, and write "JSON" with single quotes, trailing commas, comments or Python
literals. Everything here accepts those and raises `ParseError` naming the missing or broken part
only when the answer really lacks it. No `eval`: JSON is cleaned by a string-aware scanner and
only as a last resort read with `ast.literal_eval` (literals only, never code).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from tools_runtime.records import Relevance


class ParseError(ValueError):
    """A model answer that lacks a required part; `tag` names it when one tag is to blame."""

    def __init__(self, message: str, tag: str | None = None):
        super().__init__(message)
        self.tag = tag


# ---------------------------------------------------------------------------------------------------------
# fences and tags

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9_\- ]{0,40}?)\s*(/?)\s*>")


def norm_tag(name: str) -> str:
    """`Multi_Step`, `multi-step`, `MULTI STEP` → `multistep` (tags compare on this form)."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def strip_fences(text: str) -> str:
    """The text with Markdown code fences removed (their content kept, in order)."""
    if "```" not in text:
        return text
    out = _FENCE.sub(lambda m: m.group(1), text)
    return out.replace("```", "")  # an unclosed fence


def find_tags(text: str) -> dict[str, str]:
    """Every tag's content by normalized name (first occurrence wins); unclosed tags run to the next tag.

    Nested tags are found too: `<workflow><steps>…</steps></workflow>` gives both `workflow` and `steps`.
    """
    text = strip_fences(text)
    events = [(m.start(), m.end(), m.group(1) == "/", norm_tag(m.group(2)), m.group(3) == "/")
              for m in _TAG.finditer(text)]
    found: dict[str, str] = {}
    for i, (_start, end, closing, name, selfclosing) in enumerate(events):
        if closing or name in found:
            continue
        if selfclosing:
            found[name] = ""
            continue
        close = next((e for e in events[i + 1:] if e[2] and e[3] == name), None)
        if close is not None:
            found[name] = text[end:close[0]].strip()
            continue
        # No closing tag: the content ends where the next tag (opening or closing) starts.
        nxt = next((e for e in events[i + 1:]), None)
        found[name] = text[end: nxt[0] if nxt else len(text)].strip()
    return found


def require(tags: dict[str, str], name: str, what: str = "answer") -> str:
    """The content of tag `name`, or a ParseError that names it."""
    key = norm_tag(name)
    if key not in tags:
        present = ", ".join(f"<{t}>" for t in tags) or "no tags at all"
        raise ParseError(f"the {what} has no <{name}> tag (found: {present})", tag=name)
    return tags[key]


def parse_bool(value: str, tag: str = "value") -> bool:
    """`True`/`yes`/`1` → True, `False`/`no`/`0` → False; anything else is a ParseError."""
    v = strip_fences(value).strip().strip("\"'`*. ").lower()
    if v in ("true", "yes", "y", "1"):
        return True
    if v in ("false", "no", "n", "0", "none"):
        return False
    raise ParseError(f"<{tag}> must be True or False, got {value.strip()[:60]!r}", tag=tag)


# ---------------------------------------------------------------------------------------------------------
# loose JSON

_LITERALS = {"true": "True", "false": "False", "null": "None"}


def _string_end(text: str, i: int) -> int:
    """Index just past the quoted string that starts at `i` (escapes honoured, unclosed → end)."""
    quote, j, n = text[i], i + 1, len(text)
    while j < n and text[j] != quote:
        j += 2 if text[j] == "\\" else 1
    return min(j + 1, n)


def _scan_clean(text: str) -> str:
    """Drop comments (`//`, `#`, `/* */`) and trailing commas outside strings."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j = _string_end(text, i)
            out.append(text[i:j])
            i = j
            continue
        if text.startswith("//", i) or ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "]}":
                i += 1  # a trailing comma
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _to_python_literals(text: str) -> str:
    """`true/false/null` → `True/False/None` outside strings, so ast.literal_eval can read the text."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j = _string_end(text, i)
            out.append(text[i:j])
            i = j
            continue
        m = re.match(r"[A-Za-z_]+", text[i:])
        if m:
            word = m.group()
            out.append(_LITERALS.get(word, word))
            i += len(word)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _balanced_span(text: str) -> str | None:
    """The first complete `{…}` or `[…]` in `text` (string-aware), or None."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    stack: list[str] = []
    i, n = start, len(text)
    pairs = {"{": "}", "[": "]"}
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start:i + 1]
        i += 1
    return None


def loads_loose(text: str, what: str = "JSON") -> Any:
    """Parse JSON as models write it: fenced, with prose around, comments, trailing commas, single quotes."""
    body = strip_fences(text).strip()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        pass
    span = _balanced_span(body) or body
    cleaned = _scan_clean(span)
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError as exc:
        first_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        raise ParseError(f"{what}: nested too deeply") from None
    try:
        # Python-literal-ish dicts ({'name': 'x', 'required': True}); literal_eval runs no code.
        return ast.literal_eval(_to_python_literals(cleaned))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ParseError(f"{what} is not valid JSON: {first_error}") from None


# ---------------------------------------------------------------------------------------------------------
# stage 1: relevance

def _clean_field(value: str) -> str:
    return " ".join(strip_fences(value).split()).strip("\"'` ")


def parse_relevance(text: str) -> Relevance:
    """A stage-1 answer → Relevance; only <multi_step> is required (the rest default to '')."""
    body = strip_fences(text)
    tags = find_tags(body)
    if norm_tag("multi_step") not in tags:
        data = _maybe_json_object(body)
        if data is not None and any(norm_tag(k) == "multistep" for k in data):
            return relevance_from_dict(data)
    raw = require(tags, "multi_step", "relevance answer")
    multi = parse_bool(raw, "multi_step")
    return Relevance(
        multi_step=multi,
        summary=_clean_field(tags.get("summary", "")),
        domain=_clean_field(tags.get("domain", "")),
        platform=_clean_field(tags.get("platform", "")),
        task=_clean_field(tags.get("task", tags.get("taskcategory", ""))),
        decided_by="model",
    )


def _maybe_json_object(text: str) -> dict[str, Any] | None:
    try:
        data = loads_loose(text)
    except ParseError:
        return None
    return data if isinstance(data, dict) else None


def relevance_from_dict(data: dict[str, Any]) -> Relevance:
    """A JSON (structured-output) stage-1 answer → Relevance."""
    by = {norm_tag(k): v for k, v in data.items()}
    if "multistep" not in by:
        raise ParseError("the relevance answer has no multi_step field", tag="multi_step")
    raw = by["multistep"]
    multi = raw if isinstance(raw, bool) else parse_bool(str(raw), "multi_step")

    def text_of(key: str) -> str:
        value = by.get(key)
        return _clean_field(str(value)) if value is not None else ""

    return Relevance(multi_step=multi, summary=text_of("summary"), domain=text_of("domain"),
                     platform=text_of("platform"), task=text_of("task") or text_of("taskcategory"),
                     decided_by="model")


# ---------------------------------------------------------------------------------------------------------
# stage 2: workflow extraction

_STEP_PREFIX = re.compile(r"^\s*(?:[-*•]\s*)?(?:step\s*\d+\s*[:.)-]|\d+\s*[:.)-])\s*", re.IGNORECASE)


def parse_steps(raw: Any) -> list[str]:
    """`Step1: …\\nStep2: …`, a numbered list, or a JSON list of strings → the step texts."""
    if isinstance(raw, list):
        return [" ".join(str(s).split()) for s in raw if str(s).strip()]
    text = strip_fences(str(raw)).strip()
    if text.startswith("["):
        try:
            data = loads_loose(text)
            if isinstance(data, list):
                return parse_steps(data)
        except ParseError:
            pass
    # One step per line; a line without a step prefix continues the previous step.
    steps: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if _STEP_PREFIX.match(line) or not steps:
            steps.append(_STEP_PREFIX.sub("", line).strip())
        else:
            steps[-1] = f"{steps[-1]} {line.strip()}"
    if len(steps) == 1 and re.search(r"\bStep\s*2\s*:", steps[0], re.IGNORECASE):
        steps = [s.strip() for s in re.split(r"\s*\bStep\s*\d+\s*:\s*", steps[0], flags=re.IGNORECASE) if s.strip()]
    return [s for s in steps if s]


def parse_graph_text(raw: Any) -> str:
    """The execution graph text: fences, quotes and a leading label removed."""
    text = strip_fences(str(raw)).strip().strip("`\"'")
    text = re.sub(r"^\s*execution[_ ]graph\s*[:=]\s*", "", text, flags=re.IGNORECASE)
    return text.strip()


_SCHEMA_KEYS = ("parameters", "inputSchema", "input_schema", "arguments", "args", "params")


def tools_list(data: Any) -> list[dict[str, Any]]:
    """Tools as models give them → a list of tool dicts.

    Accepts a list, `{"tools": [...]}`, one tool object, or a dict keyed by tool name
    (`{"get_x": {"description": …, "inputSchema": …}}`). Schema keys models invent
    (`arguments`, `params`) become `parameters`; `inputSchema` is left for the normalizer.
    """
    if isinstance(data, dict) and isinstance(data.get("tools"), list | dict):
        data = data["tools"]
    if isinstance(data, dict):
        looks_like_one = "name" in data or isinstance(data.get("function"), dict)
        if looks_like_one:
            data = [data]
        else:
            items = []
            for name, body in data.items():
                body = dict(body) if isinstance(body, dict) else {"description": str(body)}
                body.setdefault("name", name)
                items.append(body)
            data = items
    if not isinstance(data, list):
        raise ParseError(f"<tools> must hold a JSON list of tools, got {type(data).__name__}", tag="tools")
    out: list[dict[str, Any]] = []
    for item in data:
        if not isinstance(item, dict):
            out.append(item)  # the workflow validator names the bad item and its position
            continue
        tool = dict(item)
        if "function" not in tool and "parameters" not in tool and "inputSchema" not in tool \
                and "input_schema" not in tool:
            for key in ("arguments", "args", "params"):
                if isinstance(tool.get(key), dict):
                    tool["parameters"] = tool.pop(key)
                    break
        out.append(tool)
    return out


def parse_tools(raw: str) -> list[dict[str, Any]]:
    """The <tools> block → a list of tool dicts (see `tools_list`)."""
    return tools_list(loads_loose(raw, "<tools>"))


def parse_extraction(text: str) -> dict[str, Any]:
    """A stage-2 answer (tagged, or a JSON object) → {steps, execution_graph, tools} ready for validation."""
    body = strip_fences(text)
    tags = find_tags(body)
    if not any(k in tags for k in ("steps", "executiongraph", "tools")):
        data = _maybe_json_object(body)
        if data is not None:
            return extraction_from_dict(data)
    missing = [name for name in ("steps", "execution_graph", "tools") if norm_tag(name) not in tags]
    if missing:
        present = ", ".join(f"<{t}>" for t in tags) or "no tags at all"
        names = ", ".join(f"<{m}>" for m in missing)
        raise ParseError(f"the extraction has no {names} tag{'s' if len(missing) > 1 else ''} "
                         f"(found: {present})", tag=missing[0])
    steps = parse_steps(tags["steps"])
    graph = parse_graph_text(tags["executiongraph"])
    if not graph:
        raise ParseError("<execution_graph> is empty", tag="execution_graph")
    tools = parse_tools(tags["tools"])
    out: dict[str, Any] = {"steps": steps, "execution_graph": graph, "tools": tools}
    for extra in ("title",):
        if extra in tags and tags[extra].strip():
            out[extra] = _clean_field(tags[extra])
    if "environment" in tags and tags["environment"].strip():
        env = loads_loose(tags["environment"], "environment")
        if isinstance(env, dict):
            out.update(environment_parts(env))
    return out


def extraction_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A JSON (structured-output) stage-2 answer → {steps, execution_graph, tools}."""
    if isinstance(data.get("workflow"), dict):
        data = data["workflow"]
    by = {norm_tag(k): v for k, v in data.items()}
    missing = [k for k, n in (("steps", "steps"), ("execution_graph", "executiongraph"), ("tools", "tools"))
               if n not in by]
    if missing:
        raise ParseError(f"the extraction has no {', '.join(missing)} field", tag=missing[0])
    graph = by["executiongraph"]
    if isinstance(graph, list):  # structured output may give stages as lists of names
        graph = "->".join("(" + ", ".join(map(str, stage if isinstance(stage, list) else [stage])) + ")"
                          for stage in graph)
    out: dict[str, Any] = {
        "steps": parse_steps(by["steps"]),
        "execution_graph": parse_graph_text(graph),
        "tools": tools_list(by["tools"] if not isinstance(by["tools"], str) else loads_loose(by["tools"], "tools")),
    }
    if isinstance(by.get("title"), str) and by["title"].strip():
        out["title"] = by["title"].strip()
    out.update(environment_parts(data))
    return out


ENV_PARTS = ("effects", "entities", "initial_state", "policy", "user_tools")


def environment_parts(data: dict[str, Any]) -> dict[str, Any]:
    """The environment-spec parts of an answer (effects, entities, initial_state, policy, user_tools), as given."""
    by = {norm_tag(k): v for k, v in data.items()}
    out: dict[str, Any] = {}
    for key in ENV_PARTS:
        value = by.get(norm_tag(key))
        if isinstance(value, str) and value.strip():
            value = loads_loose(value, key)
        if value is not None:
            out[key] = value
    return out
