"""Prove a JSON value valid against a plain JSON Schema without jsonschema's machinery.

Every tool call's arguments and every record a tool writes are checked against a schema; almost
all of them are valid, and jsonschema's validator (descend, evolve, error generators, our hardened
keywords) spent ~1 ms of CPU per model call proving it (~18 % of the engine, docs/throughput.md).
`proven_valid` walks the schema directly for the keywords whose meaning it knows exactly; it answers
True only when the value is valid under Draft 2020-12 as the hardened validator applies it. Any
keyword it does not handle (`$ref`, `pattern`, combinators, `uniqueItems`, unknown words...), a
`$schema`, or any doubt answers False, and the caller runs the full validator, which also writes the
error messages. So a False costs one extra walk, never a different verdict.
"""

from __future__ import annotations

from typing import Any

# Annotations: no effect on validity. (`format` asserts nothing: the project's validators are built
# without a format checker, as jsonschema's default.)
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
                          "$comment", "format", "contentMediaType", "contentEncoding"})
_HANDLED = frozenset({"type", "enum", "const", "properties", "required", "additionalProperties", "items",
                      "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                      "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) | _ANNOTATIONS
_MAX_DEPTH = 32


def _is_number(x: Any) -> bool:
    return type(x) in (int, float)


def _has_type(x: Any, name: str) -> bool | None:
    """Whether `x` is of the JSON type `name` (jsonschema's Draft 2020-12 checker); None for an unknown name."""
    t = type(x)
    if name == "string":
        return t is str
    if name == "object":
        return t is dict
    if name == "array":
        return t is list
    if name == "boolean":
        return t is bool
    if name == "null":
        return x is None
    if name == "number":
        return t is int or t is float
    if name == "integer":
        return t is int or (t is float and x.is_integer())
    return None


def _same_scalar(a: Any, b: Any) -> bool | None:
    """jsonschema's equality for `enum`/`const` on scalars (True is not 1); None when either is a container."""
    ta, tb = type(a), type(b)
    if ta in (dict, list) or tb in (dict, list):
        return None
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if a is None or b is None:
        return a is b
    if ta is str or tb is str:
        return ta is tb and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return None


def _count(v: Any) -> int | None:
    return v if type(v) is int and v >= 0 else None


def proven_valid(schema: Any, value: Any, _depth: int = 0) -> bool:
    """True when `value` is certainly valid against `schema`; False when unsure (then run the full validator)."""
    if schema is True:
        return True
    if type(schema) is not dict or _depth > _MAX_DEPTH:
        return False
    for key in schema:
        if key not in _HANDLED:
            return False
    t = schema.get("type")
    if t is not None:
        names = [t] if type(t) is str else t
        if type(names) is not list or not names:
            return False
        matched = False
        for name in names:
            has = _has_type(value, name) if type(name) is str else None
            if has is None:
                return False  # an unknown type name: jsonschema raises, let it
            matched = matched or has
        if not matched:
            return False
    if "enum" in schema:
        options = schema["enum"]
        if type(options) is not list:
            return False
        found = False
        for option in options:
            same = _same_scalar(value, option)
            if same is None:
                return False
            if same:
                found = True
                break
        if not found:
            return False
    if "const" in schema and not _same_scalar(value, schema["const"]):
        return False
    vt = type(value)
    if vt is dict:
        return _object_valid(schema, value, _depth)
    if vt is list:
        return _array_valid(schema, value, _depth)
    if vt is str:
        return _bounded(len(value), schema.get("minLength"), schema.get("maxLength"))
    if vt is int or vt is float:
        return _number_valid(schema, value)
    return True


def _bounded(n: int, low: Any, high: Any) -> bool:
    if low is not None and (_count(low) is None or n < low):
        return False
    return high is None or (_count(high) is not None and n <= high)


def _number_valid(schema: dict[str, Any], value: Any) -> bool:
    for key, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                    ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b)):
        if key in schema:
            bound = schema[key]
            if not _is_number(bound) or not ok(bound):
                return False
    return True


def _object_valid(schema: dict[str, Any], value: dict[str, Any], depth: int) -> bool:
    props = schema.get("properties", {})
    if type(props) is not dict:
        return False
    required = schema.get("required", [])
    if type(required) is not list or any(type(r) is not str or r not in value for r in required):
        return False
    if not _bounded(len(value), schema.get("minProperties"), schema.get("maxProperties")):
        return False
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if type(key) is not str:
            return False
        sub = props.get(key) if key in props else extra
        if sub is True:
            continue
        if sub is False or not proven_valid(sub, item, depth + 1):
            return False
    return True


def _array_valid(schema: dict[str, Any], value: list[Any], depth: int) -> bool:
    if not _bounded(len(value), schema.get("minItems"), schema.get("maxItems")):
        return False
    items = schema.get("items", True)
    if items is True or items is False:
        return items or not value
    if type(items) is not dict:
        return False  # the array form (2020-12 spells it prefixItems): the full validator
    return all(proven_valid(items, v, depth + 1) for v in value)
