"""Tool specifications: the one pydantic model every other module uses for a tool, and the normalizer
that turns every shape a tool arrives in (OpenAI, MCP, BFCL function docs, bare) into it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools_runtime.validation import json_path, metaschema_issues, schema_safety_issues, subschema_children


class ToolSpec(BaseModel):
    """A tool as the assistant sees it: a name, a description and a JSON Schema for arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    response: dict[str, Any] | None = None

    def to_openai(self) -> dict[str, Any]:
        """Return the OpenAI `tools` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @property
    def properties(self) -> dict[str, Any]:
        """The schema of each top-level argument (empty when the tool takes none)."""
        props = self.parameters.get("properties")
        return props if isinstance(props, dict) else {}

    @property
    def required(self) -> list[str]:
        """Names of the required top-level arguments."""
        req = self.parameters.get("required")
        return list(req) if isinstance(req, list) else []


# ---------------------------------------------------------------------------------------------------------
# normalization: every shape a tool arrives in → ToolSpec, with every problem named by tool and JSON path

FORMATS = ("auto", "openai", "mcp", "bfcl", "bare")
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
# BFCL's function docs use Python-ish type names; `any` means no constraint at all.
_BFCL_TYPES: dict[str, str | None] = {"dict": "object", "float": "number", "tuple": "array", "any": None}


class SpecIssue(BaseModel):
    """One problem with one tool specification."""

    tool: str
    path: str
    message: str

    def __str__(self) -> str:
        return (
            f"tool '{self.tool}' at {self.path}: {self.message}"
            if self.tool
            else f"{self.path}: {self.message}"
        )


class ToolSpecError(ValueError):
    """A tool specification that cannot be used; `issues` says exactly where and why."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(issue) for issue in self.issues))


def detect_format(obj: Any) -> str:
    """Which shape a tool object has: openai, mcp, bfcl or bare."""
    if not isinstance(obj, dict):
        return "bare"
    if isinstance(obj.get("function"), dict):
        return "openai"
    if "inputSchema" in obj or "input_schema" in obj:
        return "mcp"
    # BFCL docs always type their top-level schemas "dict"; a ToolSpec dump with a response stays bare.
    if any(isinstance(obj.get(k), dict) and obj[k].get("type") == "dict" for k in ("parameters", "response")):
        return "bfcl"
    return "bare"


def bfcl_to_json_schema(schema: Any) -> Any:
    """A copy of a BFCL schema with its type names mapped to JSON Schema (dict→object, float→number …)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str) and kind in _BFCL_TYPES:
        if _BFCL_TYPES[kind] is None:
            del out["type"]
        else:
            out["type"] = _BFCL_TYPES[kind]
    elif isinstance(kind, list):
        if "any" in kind:
            del out["type"]
        else:
            out["type"] = [_BFCL_TYPES.get(k, k) if isinstance(k, str) else k for k in kind]
    for rel, child, _ in subschema_children(schema):
        if len(rel) == 1:
            out[rel[0]] = bfcl_to_json_schema(child)
        else:
            container = out[rel[0]]
            if container is schema[rel[0]]:  # copy each container once, never mutate the input
                container = out[rel[0]] = dict(container) if isinstance(container, dict) else list(container)
            container[rel[1]] = bfcl_to_json_schema(child)
    return out


def _extract(obj: dict, fmt: str) -> tuple[dict, str, list[tuple[str, str]]]:
    """The function object inside `obj`, its path prefix, and shape problems as (path, message)."""
    problems: list[tuple[str, str]] = []
    if fmt != "openai":
        return obj, "", problems
    fn = obj.get("function")
    if not isinstance(fn, dict):
        problems.append((".function", "expected an OpenAI tool {'type': 'function', 'function': {...}}"))
        return {}, ".function", problems
    if obj.get("type", "function") != "function":
        problems.append((".type", f"an OpenAI tool has type 'function' (got {obj.get('type')!r})"))
    return fn, ".function", problems


def _schema_issues(schema: Any, *, top: bool, bfcl: bool) -> tuple[Any, list[tuple[str, str]]]:
    """Normalize one schema (parameters or response); return it and its problems as (JSON path, message)."""
    if not isinstance(schema, dict):
        return None, [("$", f"a schema must be a JSON object (got {type(schema).__name__})")]
    problems = schema_safety_issues(schema)  # first: the bounds protect everything below
    if problems:
        return None, problems
    schema = bfcl_to_json_schema(schema) if bfcl else copy.deepcopy(schema)
    if top and "type" not in schema and ("properties" in schema or not schema):
        # Models often omit the top-level type; an empty or properties-only schema is an object.
        schema = {"type": "object", **schema}
        schema.setdefault("properties", {})
    problems = metaschema_issues(schema)
    if top and schema.get("type") not in ("object", ["object"]):
        problems.append(
            ("$.type", f"top-level parameters must be type 'object' (got {schema.get('type')!r})")
        )
    problems += _required_issues(schema, top)
    return schema, problems


def _required_issues(schema: dict, top: bool) -> list[tuple[str, str]]:
    """Every name in a `required` list must be a declared property (top level, and nested objects)."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[tuple, Any]] = [((), schema)]
    while stack:
        pointer, node = stack.pop()
        if not isinstance(node, dict):
            continue
        stack.extend((pointer + rel, child) for rel, child, _ in subschema_children(node))
        required = node.get("required")
        props = node.get("properties")
        if not isinstance(required, list) or (pointer and not isinstance(props, dict)):
            continue
        props = props if isinstance(props, dict) else {}
        what = "argument" if top and not pointer else "field"
        for i, name in enumerate(required):
            if isinstance(name, str) and name not in props:
                problems.append(
                    (
                        json_path(pointer + ("required", i)),
                        f"required {what} {name!r} is not defined in properties",
                    )
                )
    return problems


def normalize_tool(obj: Any, fmt: str = "auto", *, where: str = "") -> ToolSpec:
    """One tool in any shape → a checked ToolSpec; raises ToolSpecError (issue paths start at `where`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown tool format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = where or "$"
    if not isinstance(obj, dict):
        raise ToolSpecError([SpecIssue(tool="<unnamed>", path=root, message="a tool must be a JSON object")])
    fmt = detect_format(obj) if fmt == "auto" else fmt
    fn, prefix, shape = _extract(obj, fmt)
    name = fn.get("name")
    tool = name if isinstance(name, str) and name else "<unnamed>"
    issues = [SpecIssue(tool=tool, path=root + path, message=message) for path, message in shape]

    def add(base: str, problems: list[tuple[str, str]]) -> None:
        issues.extend(
            SpecIssue(tool=tool, path=root + base + path[1:], message=msg) for path, msg in problems
        )

    if not isinstance(name, str) or not name:
        add(prefix + ".name", [("$", "missing tool name")])
    elif not _NAME_RE.fullmatch(name):
        add(prefix + ".name", [("$", f"invalid tool name {name!r}: it must match {NAME_PATTERN}")])
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        add(prefix + ".description", [("$", "description must be a string")])

    if fmt == "mcp":
        key = "inputSchema" if "inputSchema" in fn else "input_schema"
        out_key = "outputSchema" if "outputSchema" in fn else "output_schema"
        if key not in fn:
            add(".inputSchema", [("$", "an MCP tool needs an inputSchema")])
    else:
        key, out_key = "parameters", "response"
    raw = fn.get(key)
    params, problems = _schema_issues({} if raw is None else raw, top=True, bfcl=fmt == "bfcl")
    add(f"{prefix}.{key}", problems)
    response = None
    if fn.get(out_key) is not None:
        response, problems = _schema_issues(fn[out_key], top=False, bfcl=fmt == "bfcl")
        add(f"{prefix}.{out_key}", problems)
    if issues:
        raise ToolSpecError(issues)
    return ToolSpec(name=name, description=description or "", parameters=params, response=response)


def _normalize_many(located: list[tuple[str, Any]], fmt: str) -> tuple[list[ToolSpec], list[SpecIssue]]:
    specs: list[ToolSpec] = []
    issues: list[SpecIssue] = []
    first_at: dict[str, str] = {}
    for where, obj in located:
        try:
            spec = normalize_tool(obj, fmt, where=where)
        except ToolSpecError as exc:
            issues.extend(exc.issues)
            continue
        if spec.name in first_at:
            message = f"duplicate tool name {spec.name!r} (first defined at {first_at[spec.name]})"
            issues.append(SpecIssue(tool=spec.name, path=where, message=message))
            continue
        first_at[spec.name] = where
        specs.append(spec)
    return specs, issues


def normalize_tools(
    items: list[Any], fmt: str = "auto", *, source: str = ""
) -> tuple[list[ToolSpec], list[SpecIssue]]:
    """Normalize tools found at JSON path `source`: (valid specs, every issue); never raises for a bad tool."""
    root = source or "$"
    return _normalize_many([(f"{root}[{i}]", obj) for i, obj in enumerate(items)], fmt)


class ToolFile(BaseModel):
    """What a file of tools holds: how many items it has, the valid specs and every issue."""

    path: str
    items: int = 0
    specs: list[ToolSpec] = Field(default_factory=list)
    issues: list[SpecIssue] = Field(default_factory=list)


def read_tool_file(path: Path, fmt: str = "auto") -> ToolFile:
    """Like `load_tool_file`, also counting the file's items (valid or not); OSError if unreadable."""
    path = Path(path)
    data = path.read_bytes()  # never anything but this local file: no URL, no $ref retrieval
    report = ToolFile(path=str(path))

    def fail(message: str, at: str = report.path) -> ToolFile:
        report.issues.append(SpecIssue(tool="", path=at, message=message))
        return report

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return fail(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}")
    if not text.strip():
        return fail("no tools found (the file is empty)")
    lines_mode = path.suffix.lower() in (".jsonl", ".ndjson")
    if not lines_mode:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                at = f"{report.path}:{exc.lineno}:{exc.colno}"
                return fail(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", at)
            lines_mode = True  # one value, then more: JSON lines
        except RecursionError:
            return fail("invalid JSON: nested too deeply")
    if lines_mode:
        return _read_lines(text, report, fmt)
    if isinstance(doc, dict) and "tools" in doc:
        if not isinstance(doc["tools"], list):
            return fail("'tools' must be a list of tools", f"{report.path}: $.tools")
        located = [(f"$.tools[{i}]", obj) for i, obj in enumerate(doc["tools"])]
    elif isinstance(doc, list):
        located = [(f"$[{i}]", obj) for i, obj in enumerate(doc)]
    elif isinstance(doc, dict):
        located = [("$", doc)]
    else:
        return fail("expected a JSON list of tools, an object with a 'tools' list, or JSON lines")
    if not located:
        return fail("no tools found")
    report.items = len(located)
    report.specs, report.issues = _normalize_many(located, fmt)
    return report


def _read_lines(text: str, report: ToolFile, fmt: str) -> ToolFile:
    located: list[tuple[str, Any]] = []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and other characters it splits on.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        report.items += 1
        try:
            located.append((f"line {lineno}: $", json.loads(line)))
        except json.JSONDecodeError as exc:
            message = f"invalid JSON: {exc.msg} (column {exc.colno})"
            report.issues.append(SpecIssue(tool="", path=f"{report.path}:{lineno}", message=message))
        except RecursionError:
            message = "invalid JSON: nested too deeply"
            report.issues.append(SpecIssue(tool="", path=f"{report.path}:{lineno}", message=message))
    specs, issues = _normalize_many(located, fmt)
    report.specs, report.issues = specs, report.issues + issues
    return report


def load_tool_file(path: Path, fmt: str = "auto") -> tuple[list[ToolSpec], list[SpecIssue]]:
    """Read tools from a JSON list, an object with a `tools` list, or JSON lines; OSError if unreadable."""
    report = read_tool_file(path, fmt)
    return report.specs, report.issues
