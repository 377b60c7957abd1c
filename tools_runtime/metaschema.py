"""A fast proof that a schema passes the Draft 2020-12 metaschema, for the common case.

Checking a schema against the stock 2020-12 metaschema walks seven vocabulary documents and
resolves a `$dynamicRef` at every subschema: several ms per tool schema, the largest validation
cost of an extraction (docs/throughput.md). Tool schemas almost always use a handful of keywords
with plainly well-typed values, which a direct walk can confirm in microseconds. `known_valid`
says True only when every keyword the metaschema constrains is one it checks exactly as the
metaschema would (same types, same formats through the same format checker); anything else —
an unfamiliar constrained keyword, a float where an integer is asked, an error — answers False,
and the caller runs the full check, so errors are always the stock ones. tests/tools_runtime/test_metaschema.py
holds it to that on hand-written and generated schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

_BASE = "https://json-schema.org/draft/2020-12/"
_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_FORMATS = Draft202012Validator.FORMAT_CHECKER


@cache
def constrained_keywords() -> frozenset[str]:
    """Every keyword the 2020-12 metaschema (root and vocabularies) says anything about."""
    root = SPECIFICATIONS.contents(_BASE + "schema")
    names = set(root.get("properties", {}))
    for entry in root.get("allOf", []):
        names |= set(SPECIFICATIONS.contents(_BASE + entry["$ref"]).get("properties", {}))
    return frozenset(names)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _count(v: Any) -> bool:  # nonNegativeInteger; a float such as 2.0 is left to the full check
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _strings(v: Any) -> bool:  # stringArray: unique strings
    return isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)


def _type(v: Any) -> bool:
    if isinstance(v, str):
        return v in _SIMPLE_TYPES
    return isinstance(v, list) and bool(v) and _strings(v) and all(x in _SIMPLE_TYPES for x in v)


def _uri_reference(v: Any) -> bool:
    return isinstance(v, str) and _FORMATS.conforms(v, "uri-reference")


def _regex(v: Any) -> bool:
    return isinstance(v, str) and _FORMATS.conforms(v, "regex")


def _subschema(v: Any) -> bool:
    return known_valid(v)


def _schema_map(v: Any) -> bool:
    return isinstance(v, dict) and all(known_valid(s) for s in v.values())


def _schema_list(v: Any) -> bool:  # schemaArray: at least one schema
    return isinstance(v, list) and bool(v) and all(known_valid(s) for s in v)


def _pattern_map(v: Any) -> bool:
    return isinstance(v, dict) and all(_regex(k) and known_valid(s) for k, s in v.items())


def _required_map(v: Any) -> bool:
    return isinstance(v, dict) and all(_strings(x) for x in v.values())


def _any(v: Any) -> bool:
    return True


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "type": _type,
    "properties": _schema_map, "$defs": _schema_map, "definitions": _schema_map, "dependentSchemas": _schema_map,
    "patternProperties": _pattern_map,
    **dict.fromkeys(("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                     "unevaluatedItems", "unevaluatedProperties", "contentSchema"), _subschema),
    **dict.fromkeys(("allOf", "anyOf", "oneOf", "prefixItems"), _schema_list),
    "required": _strings, "dependentRequired": _required_map,
    "enum": lambda v: isinstance(v, list), "const": _any, "default": _any,
    "examples": lambda v: isinstance(v, list),
    "multipleOf": lambda v: _number(v) and v > 0,
    **dict.fromkeys(("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"), _number),
    **dict.fromkeys(("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties",
                     "maxContains", "minContains"), _count),
    **dict.fromkeys(("uniqueItems", "deprecated", "readOnly", "writeOnly"), lambda v: isinstance(v, bool)),
    "pattern": _regex,
    **dict.fromkeys(("format", "title", "description", "$comment", "contentEncoding", "contentMediaType"),
                    lambda v: isinstance(v, str)),
    "$ref": _uri_reference,
}


def known_valid(schema: Any) -> bool:
    """True only if `schema` certainly has no error under the Draft 2020-12 metaschema (False: check it)."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    constrained = constrained_keywords()
    for key, value in schema.items():
        check = _CHECKS.get(key)
        if check is None:
            if key in constrained:
                return False  # a keyword the metaschema constrains that is not checked here
            continue  # the metaschema says nothing about other keywords
        if not check(value):
            return False
    return True
