"""Argument validation: a tool call's arguments checked against the tool's JSON Schema.

Draft 2020-12 by default (draft-04/06/07 when the schema's `$schema` names one). Schemas and arguments
here are written by models, so everything is bounded: no `$ref` is ever fetched, every regex runs with a
time budget (the `regex` package, not `re`), schemas and payloads have size and depth limits, and a
`RecursionError` becomes a validation error. Error messages read like a real API's, because the
assistant being simulated must be able to recover from them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import referencing
import referencing.exceptions
import regex
from jsonschema import Draft4Validator, Draft6Validator, Draft7Validator, Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, UnknownType, ValidationError, best_match
from pydantic import BaseModel

from tools_runtime.fastvalid import proven_valid
from tools_runtime.metaschema import known_valid

if TYPE_CHECKING:  # toolspec imports this module, so the import only serves the annotations
    from jsonschema.protocols import Validator

    from tools_runtime.toolspec import ToolSpec

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_ARGUMENT_BYTES = 256 * 1024
REGEX_TIMEOUT_S = 0.05  # one regex search
REGEX_CALL_BUDGET_S = 0.25  # all regex searches of one validate_arguments call together
MAX_ARG_ERRORS = 20

JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


class ArgError(BaseModel):
    """One problem with a tool call's arguments."""

    path: str
    message: str
    param: str | None = None


# ---------------------------------------------------------------------------------------------------------
# $ref resolution that never leaves the schema


def _refuse_retrieval(uri: str) -> referencing.Resource:
    """Refuse every retrieval: remote, file and relative `$ref`s must never be fetched."""
    # referencing declares its attrs classes with a private decorator mypy cannot read: no `ref` field seen.
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Same stubs gap as above: mypy sees no `retrieve` field on referencing's attrs class.
REGISTRY: referencing.Registry = referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------------------
# regexes under a time budget


@lru_cache(maxsize=1024)
def _compiled_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


# Without a budget for the whole call, 5,000 array items × 50 ms each would still hang the caller.
_regex_deadline: ContextVar[float | None] = ContextVar("regex_deadline", default=None)


def regex_search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches in `text`; raises TimeoutError past the time budget, regex.error if invalid."""
    timeout = REGEX_TIMEOUT_S
    if (deadline := _regex_deadline.get()) is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise TimeoutError("the regex time budget of this call is spent")
    return _compiled_pattern(pattern).search(text, timeout=timeout) is not None


def _regex_failure(pattern: str, exc: Exception) -> ValidationError:
    if isinstance(exc, TimeoutError):
        return ValidationError(f"pattern {pattern!r} took too long to match", cause=exc)
    return ValidationError(f"pattern {pattern!r} is not a valid regular expression ({exc})", cause=exc)


def _kw_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        found = regex_search(pattern, instance)
    except (TimeoutError, regex.error) as exc:
        yield _regex_failure(pattern, exc)
        return
    if not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _descend_key(
    validator: Any, instance: dict, key: str, subschema: Any, schema_path: Any = None
) -> Iterator[ValidationError]:
    """Validate `instance[key]` against `subschema`, keeping the key in the path of a `false` schema's error."""
    for error in validator.descend(instance[key], subschema, path=key, schema_path=schema_path):
        if subschema is False:  # jsonschema's descend drops the path for a `false` subschema
            error.path.appendleft(key)
        yield error


def _kw_properties(
    validator: Any, properties: dict, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for key, subschema in properties.items():
        if key in instance:
            yield from _descend_key(validator, instance, key, subschema, key)


def _kw_pattern_properties(
    validator: Any, pp: dict, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pp.items():
        for key in instance:
            try:
                found = regex_search(pattern, key)
            except (TimeoutError, regex.error) as exc:
                yield _regex_failure(pattern, exc)
                return
            if found:
                yield from _descend_key(validator, instance, key, subschema, pattern)


def _extra_keys(instance: dict, schema: dict) -> list[str]:
    """Keys matched by neither `properties` nor `patternProperties` (raises on a regex failure)."""
    props = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in props and not any(regex_search(p, k) for p in patterns)]


def _kw_additional_properties(
    validator: Any, ap: Any, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    try:
        extras = _extra_keys(instance, schema)
    except (TimeoutError, regex.error) as exc:
        yield _regex_failure("patternProperties", exc)
        return
    if validator.is_type(ap, "object"):
        for key in extras:
            yield from _descend_key(validator, instance, key, ap)
    elif ap is False:
        # One error per key, located at the key, so the message can name the unexpected argument.
        for key in extras:
            yield ValidationError(f"unexpected property {key!r}", path=[key])


def _valid_under(validator: Any, instance: Any, subschema: Any) -> bool:
    return next(validator.descend(instance, subschema), None) is None


def _evaluated_keys(validator: Any, instance: dict, schema: Any) -> set[str]:
    """jsonschema's find_evaluated_property_keys_by_schema, ported so patternProperties use `regex_search`."""
    if not isinstance(schema, dict):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        if (ref := schema.get(keyword)) is not None:
            resolved = validator._resolver.lookup(ref)
            evolved = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            keys |= _evaluated_keys(evolved, instance, resolved.contents)
    if isinstance(props := schema.get("properties"), dict):
        keys |= props.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (sub := schema.get(keyword)) is not None:
            keys |= {k for k, v in instance.items() if _valid_under(validator, v, sub)}
    for pattern in schema.get("patternProperties", {}):
        keys |= {k for k in instance if regex_search(pattern, k)}
    for prop, sub in schema.get("dependentSchemas", {}).items():
        if prop in instance:
            keys |= _evaluated_keys(validator, instance, sub)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(keyword, []):
            if _valid_under(validator, instance, sub):
                keys |= _evaluated_keys(validator, instance, sub)
    if "if" in schema:
        if _valid_under(validator, instance, schema["if"]):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            keys |= _evaluated_keys(validator, instance, schema.get("then", True))
        else:
            keys |= _evaluated_keys(validator, instance, schema.get("else", True))
    return keys


def _kw_unevaluated_properties(
    validator: Any, up: Any, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    try:
        evaluated = _evaluated_keys(validator, instance, schema)
    except (TimeoutError, regex.error) as exc:
        yield _regex_failure("patternProperties", exc)
        return
    for key in instance:
        if key in evaluated:
            continue
        if up is False:
            yield ValidationError(f"unexpected property {key!r}", path=[key])
        else:
            yield from _descend_key(validator, instance, key, up, key)


def _canonical_value(value: Any) -> Any:
    """A hashable form under JSON Schema equality: 1 == 1.0, true != 1, key order ignored."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("n", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, list | tuple):
        return ("a", tuple(_canonical_value(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _canonical_value(v)) for k, v in value.items()))
    return ("?", repr(value))


def _kw_unique_items(validator: Any, unique: Any, instance: Any, schema: dict) -> Iterator[ValidationError]:
    # jsonschema compares unsortable items pairwise: O(n²) on an array of objects, a hang at 256 KiB.
    if unique and validator.is_type(instance, "array"):
        if len({_canonical_value(v) for v in instance}) < len(instance):
            yield ValidationError("array has non-unique elements")


_SAFE_KEYWORDS = {
    "uniqueItems": _kw_unique_items,
    "properties": _kw_properties,
    "pattern": _kw_pattern,
    "patternProperties": _kw_pattern_properties,
    "additionalProperties": _kw_additional_properties,
}
# `extend` without a version keeps these classes out of jsonschema's global dialect table.
SafeDraft202012Validator = validators.extend(
    Draft202012Validator, {**_SAFE_KEYWORDS, "unevaluatedProperties": _kw_unevaluated_properties}
)
_SAFE_CLASSES: list[tuple[type[Validator], type[Validator]]] = [
    (Draft202012Validator, SafeDraft202012Validator),
    (Draft7Validator, validators.extend(Draft7Validator, _SAFE_KEYWORDS)),
    (Draft6Validator, validators.extend(Draft6Validator, _SAFE_KEYWORDS)),
    (Draft4Validator, validators.extend(Draft4Validator, _SAFE_KEYWORDS)),
]


def _dialect_key(uri: str) -> str:
    # People write http/https and with or without the empty fragment for the same dialect.
    return uri.strip().rstrip("#").removeprefix("https://").removeprefix("http://")


_BY_DIALECT = {_dialect_key(stock.ID_OF(stock.META_SCHEMA)): (stock, safe) for stock, safe in _SAFE_CLASSES}


def dialect_classes(schema: Any) -> tuple[type[Validator], type[Validator]] | None:
    """(stock, hardened) validator classes for `schema`'s `$schema` (2020-12 when absent); None if unsupported."""
    dialect = schema.get("$schema") if isinstance(schema, dict) else None
    if dialect is None:
        return _SAFE_CLASSES[0]
    return _BY_DIALECT.get(_dialect_key(dialect)) if isinstance(dialect, str) else None


# ---------------------------------------------------------------------------------------------------------
# schema structure: where the subschemas are, and safety checks over them

_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")
_DESCEND_ONE = (
    "items", "additionalItems", "contains", "additionalProperties", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
)  # fmt: skip
_DESCEND_LIST = ("prefixItems", "items")
_DESCEND_MAP = ("properties", "patternProperties")
_DEFS_MAP = ("$defs", "definitions")

Key = str | int
Pointer = tuple[Key, ...]


def subschema_children(schema: Any) -> list[tuple[Pointer, Any, str]]:
    """The subschemas directly inside `schema`: (relative path, subschema, kind in in_place|descend|defs)."""
    if not isinstance(schema, dict):
        return []
    out: list[tuple[Pointer, Any, str]] = []

    def add(path: Pointer, child: Any, kind: str) -> None:
        if isinstance(child, dict | bool):
            out.append((path, child, kind))

    for kw in _IN_PLACE_ONE:
        if kw in schema:
            add((kw,), schema[kw], "in_place")
    for kw in _DESCEND_ONE:
        if kw in schema and not isinstance(schema[kw], list):
            add((kw,), schema[kw], "descend")
    for kinds, kind in ((_IN_PLACE_LIST, "in_place"), (_DESCEND_LIST, "descend")):
        for kw in kinds:
            if isinstance(schema.get(kw), list):
                for i, child in enumerate(schema[kw]):
                    add((kw, i), child, kind)
    for kinds, kind in ((_IN_PLACE_MAP, "in_place"), (_DESCEND_MAP, "descend"), (_DEFS_MAP, "defs")):
        for kw in kinds:
            if isinstance(schema.get(kw), dict):
                for name, child in schema[kw].items():
                    add((kw, name), child, kind)
    return out


def json_path(pointer: Pointer, root: str = "$") -> str:
    """Render a key path as a JSON path in jsonschema's style (`$.properties.x.items[0]`)."""
    return root + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in pointer)


def _too_deep(obj: Any, limit: int) -> bool:
    # Iterative on purpose: a hostile schema may be nested far past Python's recursion limit.
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def _resolve_local(ref: str, root: Any, anchors: dict[str, Pointer]) -> Pointer | None:
    """The key path a local `#...` reference points at, or None when it points nowhere."""
    fragment = unquote(ref[1:])
    if not fragment.startswith("/"):
        return () if fragment == "" else anchors.get(fragment)
    node, path = root, []
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            key: Key = token
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            key = int(token)
        else:
            return None
        node = node[key]
        path.append(key)
    return tuple(path)


def _as_ref(pointer: Pointer) -> str:
    """A key path written the way a `$ref` would point at it."""
    return "#" + "".join("/" + str(k).replace("~", "~0").replace("/", "~1") for k in pointer)


def _node_at(root: Any, pointer: Pointer) -> Any:
    node = root
    for key in pointer:
        node = node[key]
    return node


def _walk_schemas(root: Any, start: Pointer, nodes: dict[Pointer, Any]) -> None:
    """Add every schema position under `start` to `nodes` (key path → subschema)."""
    stack = [start]
    while stack:
        pointer = stack.pop()
        if pointer in nodes:
            continue
        node = _node_at(root, pointer)
        nodes[pointer] = node
        stack.extend(pointer + rel for rel, _, _ in subschema_children(node))


def schema_safety_issues(schema: Any) -> list[tuple[str, str]]:
    """Size, depth, `$ref` locality and `$ref` cycles of a schema, as (JSON path, message) pairs."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [("$", "a schema must be a JSON object")]
    if _too_deep(schema, MAX_SCHEMA_DEPTH):
        return [("$", f"schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")]
    try:
        size = len(json.dumps(schema, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return [("$", "schema is not JSON data")]
    if size > MAX_SCHEMA_BYTES:
        return [("$", f"schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}")]

    issues: list[tuple[str, str]] = []
    nodes: dict[Pointer, Any] = {}
    _walk_schemas(schema, (), nodes)
    anchors: dict[str, Pointer] = {}
    for pointer, node in nodes.items():
        if isinstance(node, dict):
            for kw in ("$anchor", "$dynamicAnchor"):
                if isinstance(node.get(kw), str):
                    anchors.setdefault(node[kw], pointer)
            if pointer and "$id" in node:
                # An embedded resource re-bases `#` refs inside it, which would defeat the cycle check.
                issues.append(
                    (
                        json_path(pointer + ("$id",)),
                        "a nested $id (embedded schema resource) is not supported",
                    )
                )

    # Resolve refs; a ref may point outside any schema keyword (e.g. into "x-defs"), so walk its target too.
    edges: dict[Pointer, list[tuple[Pointer, Pointer | None]]] = {}
    pending = list(nodes)
    while pending:
        pointer = pending.pop()
        node = nodes[pointer]
        if not isinstance(node, dict):
            continue
        out = edges.setdefault(pointer, [])
        out.extend((pointer + rel, None) for rel, _, kind in subschema_children(node) if kind == "in_place")
        for kw in ("$ref", "$dynamicRef"):
            if kw not in node:
                continue
            ref, site = node[kw], pointer + (kw,)
            if not isinstance(ref, str) or not ref.startswith("#"):
                issues.append(
                    (json_path(site), f"remote $ref refused: {ref!r} (only local '#...' references)")
                )
                continue
            target = _resolve_local(ref, schema, anchors)
            if target is None or not isinstance(_node_at(schema, target), dict | bool):
                issues.append(
                    (json_path(site), f"$ref {ref!r} does not resolve to a schema in this document")
                )
                continue
            out.append((target, site))
            if target not in nodes:
                before = set(nodes)
                _walk_schemas(schema, target, nodes)
                pending.extend(p for p in nodes if p not in before)
    issues.extend(_ref_cycles(schema, edges))
    return issues


def _ref_cycles(
    schema: dict, edges: dict[Pointer, list[tuple[Pointer, Pointer | None]]]
) -> list[tuple[str, str]]:
    """Cycles among subschemas applied to the same instance: validation would recurse forever."""
    issues: list[tuple[str, str]] = []
    state: dict[Pointer, int] = {}  # 1 = on the DFS stack, 2 = done
    reported: set[Pointer] = set()
    # Root first, so a cycle is reported from the side a reader enters it.
    for start in sorted(edges, key=lambda p: (len(p), [str(k) for k in p])):
        if state.get(start):
            continue
        state[start] = 1
        stack: list[tuple[Pointer, Iterator[tuple[Pointer, Pointer | None]], Pointer | None]] = [
            (start, iter(edges.get(start, [])), None)
        ]
        while stack:
            node, it, _ = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                continue
            target, site = nxt
            if state.get(target) == 1:
                # The cycle is the stack from `target` up, plus this edge; name its first $ref.
                idx = next(i for i, frame in enumerate(stack) if frame[0] == target)
                sites = [frame[2] for frame in stack[idx + 1 :]] + [site]
                ref_site = next((s for s in sites if s is not None), site)
                if ref_site is not None and ref_site not in reported:
                    reported.add(ref_site)
                    ref = _node_at(schema, ref_site)
                    issues.append((
                        json_path(ref_site),
                        f"recursive $ref without a base case: {ref!r} leads back to {_as_ref(target)!r} "
                        "without descending into a property or item",
                    ))  # fmt: skip
            elif not state.get(target):
                state[target] = 1
                stack.append((target, iter(edges.get(target, [])), site))
    return issues


def check_schema_safety(schema: dict) -> list[str]:
    """Safety problems of a schema (size, depth, non-local or dangling `$ref`, `$ref` cycles) as messages."""
    return [f"{path}: {message}" for path, message in schema_safety_issues(schema)]


def metaschema_issues(schema: Any) -> list[tuple[str, str]]:
    """Errors of `schema` under its dialect's metaschema (Draft 2020-12 by default) as (JSON path, message)."""
    classes = dialect_classes(schema)
    if classes is None:
        return [
            (
                "$.$schema",
                f"unsupported $schema {schema.get('$schema')!r}; use Draft 2020-12, draft-07, draft-06 or draft-04",
            )
        ]
    stock = classes[0]
    if stock is Draft202012Validator and known_valid(schema):  # the common case, without the slow walk
        return []
    checker = stock(stock.META_SCHEMA, format_checker=stock.FORMAT_CHECKER)
    out = []
    for err in sorted(checker.iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path]):
        message = err.message
        if err.absolute_path and err.absolute_path[-1] == "type" and err.validator == "anyOf":
            message = f"unknown type {err.instance!r}; use one of {', '.join(JSON_TYPES)}"
        out.append((err.json_path, message))
    return out


# ---------------------------------------------------------------------------------------------------------
# compiled validators, cached


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of `obj` (sorted keys, no spaces): the cache key of a schema."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=512)
def _compile(canonical: str) -> tuple[Any, str | None]:
    """(validator, None) for a usable schema, or (None, why not)."""
    schema = json.loads(canonical)
    problems = check_schema_safety(schema) if isinstance(schema, dict) else []
    if problems:
        return None, "; ".join(problems)
    classes = dialect_classes(schema)
    if classes is None:
        return None, f"unsupported $schema {schema.get('$schema')!r}"
    try:
        if classes[0] is not Draft202012Validator or not known_valid(schema):
            classes[0].check_schema(schema)
    except SchemaError as exc:
        return None, f"invalid schema at {exc.json_path}: {exc.message}"
    return classes[1](schema, registry=REGISTRY), None


def compiled_validator(schema: Any) -> tuple[Any, str | None]:
    """The cached hardened validator for `schema`, or (None, the reason it is refused)."""
    try:
        canonical = canonical_json(schema)
    except (TypeError, ValueError, RecursionError):
        return None, "schema is not JSON data"
    if len(canonical) > 4 * MAX_SCHEMA_BYTES:
        # Checked before the cache so an enormous schema is never kept as a cache key.
        return None, f"schema is larger than {MAX_SCHEMA_BYTES} bytes"
    return _compile(canonical)


# ---------------------------------------------------------------------------------------------------------
# arguments


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_arguments(raw: str | dict | None) -> tuple[dict | None, str | None]:
    """Decode a model's tool-call arguments: (dict, None), or (None, an error for the model)."""
    if raw is None:
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return None, f"arguments must be a JSON object (got {_json_type(raw)})"
    if not raw.strip():
        return {}, None  # some servers send "" for a call without arguments
    if len(raw.encode()) > MAX_ARGUMENT_BYTES:
        return None, f"arguments are larger than {MAX_ARGUMENT_BYTES} bytes"
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        return None, f"arguments are not valid JSON: {exc}"
    except RecursionError:
        return None, "arguments are nested too deeply"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object (got {_json_type(value)})"
    return value, None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_TYPE_WORDS = {
    "integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean",
    "object": "an object", "array": "an array", "null": "null",
}  # fmt: skip


def _types(value: Any) -> str:
    names = value if isinstance(value, list) else [value]
    return " or ".join(_TYPE_WORDS.get(n, repr(n)) for n in names)


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _loc(path: list[Key]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _format(err: ValidationError, subject: str | None = None) -> list[ArgError]:
    """Turn one jsonschema error into messages a real API would send back (`subject` names the value)."""
    path = list(err.absolute_path)
    top = path[0] if path and isinstance(path[0], str) else None
    if subject is None and "propertyNames" in err.absolute_schema_path:
        return _format_key(err, path, top)
    subject = subject or (f"'{_loc(path)}'" if path else "arguments")
    if isinstance(err.cause, TimeoutError | regex.error):
        return _one(path, top, f"{subject}: {err.message}")
    for special in (_missing_errors, _shape_errors):
        found = special(err, path, top, subject)
        if found is not None:
            return found
    return _one(path, top, _value_message(err, subject) or f"{subject}: {err.message}")


def _one(path: list[Key], param: str | None, message: str) -> list[ArgError]:
    return [ArgError(path=json_path(tuple(path)), message=message, param=param)]


def _format_key(err: ValidationError, path: list[Key], top: str | None) -> list[ArgError]:
    """A `propertyNames` failure: the failing value is a key of the object at `path`, so name it as a key."""
    owner = "argument name" if not path else f"field name in '{_loc(path)}':"
    return [
        e.model_copy(update={"param": top or e.param or str(err.instance)})
        for e in _format(err, f"{owner} {_show(err.instance)}")
    ]


def _missing_errors(err: ValidationError, path: list[Key], top: str | None, subject: str) -> list[ArgError] | None:
    """One message per missing field (`required`, `dependentRequired`); None for other errors."""
    kw, val, inst = err.validator, err.validator_value, err.instance
    if kw == "required":
        missing = [p for p in val if isinstance(inst, dict) and p not in inst]
        if not path:
            return [
                ArgError(path=json_path((p,)), message=f"missing required argument '{p}'", param=p)
                for p in missing
            ]
        return [
            ArgError(
                path=json_path((*path, p)), message=f"missing required field '{p}' in {subject}", param=top
            )
            for p in missing
        ]
    if kw in ("dependentRequired", "dependencies") and isinstance(inst, dict) and isinstance(val, dict):
        pairs = [
            (d, p)
            for p, deps in val.items()
            if p in inst and isinstance(deps, list)
            for d in deps
            if d not in inst
        ]
        if pairs:
            what = "argument" if not path else "field"
            return [
                ArgError(
                    path=json_path((*path, d)),
                    message=f"{what} '{d}' is required when '{p}' is given",
                    param=top or d,
                )
                for d, p in pairs
            ]
    return None


def _shape_errors(err: ValidationError, path: list[Key], top: str | None, subject: str) -> list[ArgError] | None:
    """Unexpected fields, refused values and failed alternatives (anyOf/oneOf); None for other errors."""
    kw = err.validator
    if kw in ("additionalProperties", "unevaluatedProperties") and err.message.startswith(
        "unexpected property"
    ):
        if len(path) == 1:
            return _one(path, top, f"unexpected argument '{path[0]}'")
        return _one(path, top, f"unexpected field '{path[-1]}' in '{_loc(path[:-1])}'")
    if kw is None and err.schema is False:
        return _one(
            path, top, f"argument '{path[0]}' is not accepted" if len(path) == 1 else f"{subject} is not accepted"
        )
    if kw in ("anyOf", "oneOf") and err.context:
        if all(e.validator == "type" and list(e.absolute_path) == path for e in err.context):
            alternatives: list[str] = []
            for e in err.context:
                listed = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
                alternatives += [t for t in listed if t not in alternatives]
            return _one(path, top, f"{subject} must be {_types(alternatives)} (got {_show(err.instance)})")
        return _format(best_match(err.context))
    return None


def _value_message(err: ValidationError, subject: str) -> str | None:
    """The message for a value that breaks one keyword (type, enum, bounds...); None for other keywords."""
    kw, val, inst = err.validator, err.validator_value, err.instance
    messages = {
        "type": lambda: f"{subject} must be {_types(val)} (got {_show(inst)})",
        "enum": lambda: f"{subject} must be one of {val!r} (got {_show(inst)})",
        "const": lambda: f"{subject} must be {_show(val)} (got {_show(inst)})",
        "minimum": lambda: f"{subject} must be >= {val} (got {_show(inst)})",
        "maximum": lambda: f"{subject} must be <= {val} (got {_show(inst)})",
        "exclusiveMinimum": lambda: f"{subject} must be > {val} (got {_show(inst)})",
        "exclusiveMaximum": lambda: f"{subject} must be < {val} (got {_show(inst)})",
        "multipleOf": lambda: f"{subject} must be a multiple of {val} (got {_show(inst)})",
        "minLength": lambda: (
            f"{subject} must be at least {_plural(val, 'character')} long (got {_show(inst)})"
        ),
        "maxLength": lambda: f"{subject} must be at most {_plural(val, 'character')} long",
        "pattern": lambda: f"{subject} must match the pattern {val!r} (got {_show(inst)})",
        "format": lambda: f"{subject} must be a valid {val} (got {_show(inst)})",
        "minItems": lambda: f"{subject} must have at least {_plural(val, 'item')}",
        "maxItems": lambda: f"{subject} must have at most {_plural(val, 'item')}",
        "uniqueItems": lambda: f"{subject} must not contain duplicate items",
        "minProperties": lambda: f"{subject} must have at least {_plural(val, 'field')}",
        "maxProperties": lambda: f"{subject} must have at most {_plural(val, 'field')}",
        "contains": lambda: f"{subject} must contain at least one matching item",
        "not": lambda: f"{subject} has a value that is not allowed (got {_show(inst)})",
        "oneOf": lambda: f"{subject} matches more than one of the allowed forms",
    }
    # Draft-4's boolean exclusiveMinimum/Maximum has no number to quote: keep jsonschema's wording.
    if kw in messages and not (kw.startswith("exclusive") and isinstance(val, bool)):
        return messages[kw]()
    return None


def validate_arguments(spec: ToolSpec, arguments: Any) -> list[ArgError]:
    """Check a call's arguments against `spec.parameters`; an empty list means they are valid."""
    if not isinstance(arguments, dict):
        return [ArgError(path="$", message=f"arguments must be a JSON object (got {_json_type(arguments)})")]
    try:
        size = len(json.dumps(arguments, ensure_ascii=False, allow_nan=False).encode())
    except RecursionError:
        return [ArgError(path="$", message="arguments are nested too deeply")]
    except (TypeError, ValueError):
        return [ArgError(path="$", message="arguments are not JSON data")]
    if size > MAX_ARGUMENT_BYTES:
        return [ArgError(path="$", message=f"arguments are {size} bytes; the limit is {MAX_ARGUMENT_BYTES}")]
    validator, refusal = compiled_validator(spec.parameters)
    if validator is None:
        return [
            ArgError(
                path="$", message=f"tool '{spec.name}' cannot be called: its schema is refused ({refusal})"
            )
        ]
    if proven_valid(spec.parameters, arguments):  # the common case, without jsonschema's machinery
        return []
    out: list[ArgError] = []
    token = _regex_deadline.set(time.monotonic() + REGEX_CALL_BUDGET_S)
    try:
        for err in islice(validator.iter_errors(arguments), 5 * MAX_ARG_ERRORS):
            for item in _format(err):
                if item not in out:
                    out.append(item)
    except RecursionError:
        return [ArgError(path="$", message="arguments are nested too deeply to validate")]
    except referencing.exceptions.Unresolvable as exc:
        return [ArgError(path="$", message=f"tool '{spec.name}' has a $ref that cannot be resolved: {exc}")]
    except UnknownType as exc:
        return [
            ArgError(path="$", message=f"tool '{spec.name}' has an unknown type in its schema: {exc.type!r}")
        ]
    finally:
        _regex_deadline.reset(token)
    return out[:MAX_ARG_ERRORS]
