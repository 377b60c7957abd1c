"""JSON schemas rewritten into what llama.cpp's schema-to-grammar converter accepts, with bounded lengths.

The grammar only shapes what the model may write; the stage still validates the answer against
its original schema and sends the exact errors back in a repair round. So the rewrite may be
looser than the schema (constraints the grammar cannot express are dropped: `minimum`, `pattern`,
`format` …) but must never forbid a valid answer's shape, with one deliberate exception: strings
and arrays get upper bounds (`maxLength`, `maxItems`), because a small model that loops inside a
string otherwise runs to `max_tokens` and leaves JSON that does not parse at all. Boolean
properties are moved after the others (key order means nothing to the validator, much to the model).
"""

from __future__ import annotations

from typing import Any

# Constraints the converter refuses (it raises rather than ignore them), and annotations it
# does not need; dropped from the grammar's copy.
_DROP = {"format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
         "uniqueItems", "minProperties", "maxProperties", "patternProperties", "propertyNames",
         "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "contains",
         "minContains", "maxContains", "not", "if", "then", "else", "$defs", "definitions", "$schema", "$id",
         "title", "description", "default", "examples", "$comment", "readOnly", "writeOnly", "deprecated"}
MAX_STRING = 240
MAX_ITEMS = 12
_MAX_DEPTH = 12


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any] | None:
    """A local `#/...` reference inside the root schema, or None."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _merge_all_of(parts: list[Any]) -> dict[str, Any]:
    """A shallow merge of `allOf` members (properties and required united): looser, never stricter in shape."""
    out: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                out.setdefault("properties", {}).update(value)
            elif key == "required" and isinstance(value, list):
                out["required"] = sorted(set(out.get("required", [])) | set(value))
            else:
                out.setdefault(key, value)
    return out


def grammar_schema(schema: dict[str, Any], *, max_string: int = MAX_STRING, max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """`schema` with `$ref` inlined, unsupported keywords dropped and string/array lengths bounded."""

    def visit(node: Any, depth: int) -> Any:
        if not isinstance(node, dict):
            return node if isinstance(node, bool) else {}
        if depth > _MAX_DEPTH:
            return {}  # a recursive schema: any JSON value from here down
        node = dict(node)
        if isinstance(node.get("type"), list):  # one alternative per type: bounds apply to the string one only
            types = node.pop("type")
            return {"anyOf": [visit({**node, "type": t}, depth + 1) for t in types]}
        if "$ref" in node:
            target = _resolve(str(node.pop("$ref")), schema)
            node = {**(target or {}), **node}
            return visit(node, depth + 1)
        if "allOf" in node:
            merged = _merge_all_of([visit(p, depth + 1) for p in node.pop("allOf") or []])
            node = {**merged, **node}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP:
                continue
            if key == "properties" and isinstance(value, dict):
                props = {name: visit(sub, depth + 1) for name, sub in value.items()}
                # Yes/no fields last: the grammar fixes the key order, and a small model that must
                # write its verdict first commits before it has written a word about the input.
                out[key] = dict(sorted(props.items(), key=lambda kv: kv[1].get("type") == "boolean"))
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                out[key] = visit(value, depth + 1)
            elif key in ("anyOf", "oneOf") and isinstance(value, list):
                out[key] = [visit(sub, depth + 1) for sub in value]
            elif key == "prefixItems" and isinstance(value, list):
                out[key] = [visit(sub, depth + 1) for sub in value]
            else:
                out[key] = value
        kind = out.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if out.get("properties") is not None and out.get("additionalProperties") not in (None, False):
            out.pop("additionalProperties")  # the converter takes declared properties only
        if not out.get("properties") and isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = True  # a map of anything: the generic object rule
        if "required" in out:
            declared = set((out.get("properties") or {}).keys())
            out["required"] = [r for r in out["required"] if r in declared] if declared else []
            if not out["required"]:
                out.pop("required")
        if kinds & {"string"} and not ({"enum", "const"} & out.keys()):
            out["maxLength"] = min(int(out.get("maxLength", max_string)), max_string)
            out["maxLength"] = max(out["maxLength"], int(out.get("minLength", 0)))
        else:
            out.pop("minLength", None)
            out.pop("maxLength", None)
        if kinds & {"array"} and "prefixItems" not in out:
            out["maxItems"] = max(min(int(out.get("maxItems", max_items)), max_items), int(out.get("minItems", 0)))
        elif "prefixItems" in out:
            out.pop("minItems", None)
            out.pop("maxItems", None)
        return out

    return visit(schema, 0)
