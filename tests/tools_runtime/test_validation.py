"""Argument validation: realistic messages, hard bounds, no network, no hanging regex, no crash."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest
import referencing.exceptions
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tools_runtime import validation
from tools_runtime.toolspec import ToolSpec
from tools_runtime.validation import (
    MAX_ARGUMENT_BYTES,
    REGEX_CALL_BUDGET_S,
    REGEX_TIMEOUT_S,
    REGISTRY,
    ArgError,
    SafeDraft202012Validator,
    check_schema_safety,
    compiled_validator,
    parse_arguments,
    validate_arguments,
)

ORDER = ToolSpec(
    name="update_order",
    parameters={
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 10},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "note": {"type": ["string", "null"], "maxLength": 5},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "alt": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "uniqueItems": True},
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["street"],
                "additionalProperties": False,
            },
        },
        "required": ["order_id", "quantity"],
        "additionalProperties": False,
    },
)


def messages(spec: ToolSpec, args: object) -> dict[str, ArgError]:
    return {e.message: e for e in validate_arguments(spec, args)}


def test_valid_arguments() -> None:
    args = {"order_id": "A1", "quantity": 2, "color": "red", "note": None, "address": {"street": "Main"}}
    assert validate_arguments(ORDER, args) == []
    assert validate_arguments(ToolSpec(name="ping"), {}) == []


@pytest.mark.parametrize(
    ("args", "message", "param", "path"),
    [
        ({"quantity": 1}, "missing required argument 'order_id'", "order_id", "$.order_id"),
        (
            {"order_id": "A", "quantity": "two"},
            "'quantity' must be an integer (got 'two')",
            "quantity",
            "$.quantity",
        ),
        (
            {"order_id": "A", "quantity": True},
            "'quantity' must be an integer (got true)",
            "quantity",
            "$.quantity",
        ),
        ({"order_id": "A", "quantity": 0}, "'quantity' must be >= 1 (got 0)", "quantity", "$.quantity"),
        ({"order_id": "A", "quantity": 11}, "'quantity' must be <= 10 (got 11)", "quantity", "$.quantity"),
        (
            {"order_id": "A", "quantity": 1, "color": "green"},
            "'color' must be one of ['red', 'blue'] (got 'green')",
            "color",
            "$.color",
        ),
        (
            {"order_id": "A", "quantity": 1, "note": 5},
            "'note' must be a string or null (got 5)",
            "note",
            "$.note",
        ),
        (
            {"order_id": "A", "quantity": 1, "note": "toolong"},
            "'note' must be at most 5 characters long",
            "note",
            "$.note",
        ),
        (
            {"order_id": "A", "quantity": 1, "code": "ab"},
            "'code' must match the pattern '^[A-Z]{3}$' (got 'ab')",
            "code",
            "$.code",
        ),
        (
            {"order_id": "A", "quantity": 1, "alt": 1.5},
            "'alt' must be a string or an integer (got 1.5)",
            "alt",
            "$.alt",
        ),
        (
            {"order_id": "A", "quantity": 1, "tags": ["a", 1]},
            "'tags[1]' must be a string (got 1)",
            "tags",
            "$.tags[1]",
        ),
        (
            {"order_id": "A", "quantity": 1, "tags": ["a", "a"]},
            "'tags' must not contain duplicate items",
            "tags",
            "$.tags",
        ),
        (
            {"order_id": "A", "quantity": 1, "tags": ["a", "b", "c"]},
            "'tags' must have at most 2 items",
            "tags",
            "$.tags",
        ),
        (
            {"order_id": "A", "quantity": 1, "coupon": "X"},
            "unexpected argument 'coupon'",
            "coupon",
            "$.coupon",
        ),
        (
            {"order_id": "A", "quantity": 1, "address": {}},
            "missing required field 'street' in 'address'",
            "address",
            "$.address.street",
        ),
        (
            {"order_id": "A", "quantity": 1, "address": {"street": "M", "city": "X"}},
            "unexpected field 'city' in 'address'",
            "address",
            "$.address.city",
        ),
    ],  # fmt: skip
)
def test_messages_read_like_an_api(args: dict, message: str, param: str, path: str) -> None:
    found = messages(ORDER, args)
    assert message in found, list(found)
    assert found[message].param == param and found[message].path == path


def test_keys_false_schemas_and_dependencies_are_named() -> None:
    spec = ToolSpec(
        name="t",
        parameters={
            "type": "object",
            "properties": {"legacy": False, "card": {"type": "string"}, "cvv": {"type": "string"}},
            "patternProperties": {"^debug_": False},
            "propertyNames": {"maxLength": 8},
            "dependentRequired": {"card": ["cvv"]},
        },
    )
    found = messages(spec, {"legacy": 1, "debug_x": 1, "card": "4111", "verylongname": 1})
    assert found["argument 'legacy' is not accepted"].path == "$.legacy"
    assert found["argument 'debug_x' is not accepted"].param == "debug_x"
    assert found["argument 'cvv' is required when 'card' is given"].param == "cvv"
    assert found["argument name 'verylongname' must be at most 8 characters long"].param == "verylongname"


def test_several_errors_at_once_and_missing_each_named() -> None:
    errors = validate_arguments(ORDER, {"color": 3})
    names = {e.param for e in errors if e.message.startswith("missing required argument")}
    assert names == {"order_id", "quantity"}
    assert any(e.param == "color" for e in errors)


def test_non_object_arguments() -> None:
    for value, kind in [([1], "array"), ("x", "string"), (None, "null"), (3, "integer")]:
        [err] = validate_arguments(ORDER, value)
        assert err.message == f"arguments must be a JSON object (got {kind})" and err.param is None


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == ({"a": 1}, None)
    assert parse_arguments({"a": 1}) == ({"a": 1}, None)
    assert parse_arguments(None) == ({}, None)
    assert parse_arguments("  ") == ({}, None)
    value, error = parse_arguments('{"a": ')
    assert value is None and error.startswith("arguments are not valid JSON") and "line 1 column 7" in error
    assert parse_arguments("[1, 2]") == (None, "arguments must be a JSON object (got array)")
    assert parse_arguments('"x"') == (None, "arguments must be a JSON object (got string)")
    assert parse_arguments('{"a": NaN}')[0] is None
    assert parse_arguments("[" * 100_000 + "]" * 100_000)[0] is None
    assert parse_arguments(" " * (MAX_ARGUMENT_BYTES + 1) + "{}")[1].startswith("arguments are larger")
    assert parse_arguments(5)[1] == "arguments must be a JSON object (got integer)"  # type: ignore[arg-type]


def test_oversize_and_unserializable_arguments() -> None:
    [err] = validate_arguments(ORDER, {"order_id": "x" * MAX_ARGUMENT_BYTES, "quantity": 1})
    assert "limit" in err.message
    [err] = validate_arguments(ORDER, {"order_id": float("nan"), "quantity": 1})
    assert err.message == "arguments are not JSON data"


def test_recursion_error_becomes_an_error() -> None:
    tree = ToolSpec(
        name="save_tree",
        parameters={
            "type": "object",
            "properties": {"root": {"$ref": "#/$defs/node"}},
            "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
        },
    )  # fmt: skip
    node: dict = {}
    for _ in range(400):  # shallow enough for json.dumps, deep enough to exhaust the validator's stack
        node = {"kids": [node]}
    [err] = validate_arguments(tree, {"root": node})
    assert "nested too deeply" in err.message
    for _ in range(5000):
        node = {"kids": [node]}
    [err] = validate_arguments(tree, {"root": node})
    assert "nested too deeply" in err.message
    assert validate_arguments(tree, {"root": {"kids": [{"kids": []}]}}) == []


def test_registry_never_retrieves(no_network: None) -> None:
    for ref in ["https://schemas.example.com/x.json", "file:///etc/passwd", "other.json"]:
        validator = SafeDraft202012Validator({"$ref": ref}, registry=REGISTRY)
        with pytest.raises(referencing.exceptions.Unresolvable):
            list(validator.iter_errors({}))


def test_remote_ref_in_a_spec_is_refused_without_network(no_network: None) -> None:
    spec = ToolSpec(
        name="fetch",
        parameters={"type": "object", "properties": {"x": {"$ref": "http://127.0.0.1:9/s.json"}}},
    )
    [err] = validate_arguments(spec, {"x": 1})
    assert "remote $ref refused" in err.message and "fetch" in err.message


def test_recursive_ref_in_a_spec_is_refused_not_looped() -> None:
    spec = ToolSpec(name="loop", parameters={"$ref": "#"})
    [err] = validate_arguments(spec, {})
    assert "recursive $ref without a base case" in err.message


class _TimedPatterns:
    """Stands in for `_compiled_pattern`: records every search's timeout, and refuses one without a timeout
    (a catastrophic pattern searched without one would hang this test instead of failing it)."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def __call__(self, pattern: str) -> Any:
        return types.SimpleNamespace(search=lambda text, timeout=None: self._search(pattern, text, timeout))

    def _search(self, pattern: str, text: str, timeout: float | None) -> Any:
        self.timeouts.append(timeout)
        if timeout is None:
            raise AssertionError(f"regex {pattern!r} searched without a timeout")
        return regex.compile(pattern).search(text, timeout=timeout)


def test_catastrophic_regex_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not timed: every search runs under the regex module's own timeout, and the TimeoutError it raises
    # comes back as a "took too long" error on the argument.
    patterns = _TimedPatterns()
    monkeypatch.setattr(validation, "_compiled_pattern", patterns)
    spec = ToolSpec(
        name="t", parameters={"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    )
    [err] = validate_arguments(spec, {"s": "a" * 40 + "!"})
    assert err.param == "s"
    # (a|a)+ defeats the regex engine's own safeguards, so the time budget itself is exercised
    spec = ToolSpec(
        name="t",
        parameters={"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|a)+$"}}},
    )
    [err] = validate_arguments(spec, {"s": "a" * 40 + "!"})
    assert "took too long" in err.message and err.param == "s"
    slow_key = "a" * 40 + "!"
    for params in [
        {"type": "object", "patternProperties": {"^(a|a)+$": {"type": "string"}}},
        {
            "type": "object",
            "patternProperties": {"^(a|a)+$": {"type": "string"}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "patternProperties": {"^(a|a)+$": {"type": "string"}},
            "unevaluatedProperties": False,
        },
        {"type": "object", "propertyNames": {"pattern": "^(a|a)+$"}},
    ]:
        errors = validate_arguments(ToolSpec(name="t", parameters=params), {slow_key: 1})
        assert any("took too long" in e.message for e in errors), (params, errors)
    assert patterns.timeouts and all(t is not None and 0 < t <= REGEX_TIMEOUT_S for t in patterns.timeouts)


def test_regex_budget_covers_the_whole_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock and a pattern that always spends its whole timeout: the call budget, not the item
    # count, must bound how many searches run (2000 × 50 ms would be 100 s).
    clock = [1000.0]
    granted: list[float] = []

    def search(text: str, timeout: float) -> None:
        granted.append(timeout)
        clock[0] += timeout
        raise TimeoutError("regex timed out")

    monkeypatch.setattr(validation, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(validation, "_compiled_pattern", lambda pattern: types.SimpleNamespace(search=search))
    spec = ToolSpec(
        name="t",
        parameters={"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string", "pattern": "^(a|a)+$"}}}},
    )  # fmt: skip
    errors = validate_arguments(spec, {"xs": ["a" * 40 + "!"] * 2000})
    assert errors and all("took too long" in e.message for e in errors)
    full = round(REGEX_CALL_BUDGET_S / REGEX_TIMEOUT_S)
    assert full <= len(granted) <= full + 1  # five full searches, perhaps one float-rounding leftover, then none
    assert sum(granted) == pytest.approx(REGEX_CALL_BUDGET_S)


class _CountedObject(dict):
    """A JSON object that counts how often its members are read, to measure work without a clock."""

    reads = 0

    def items(self) -> Any:
        type(self).reads += 1
        return super().items()

    def __iter__(self) -> Any:
        type(self).reads += 1
        return super().__iter__()


def test_unique_items_is_linear_and_uses_json_equality(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ToolSpec(
        name="t", parameters={"type": "object", "properties": {"u": {"type": "array", "uniqueItems": True}}}
    )

    def reads(n: int) -> int:
        monkeypatch.setattr(_CountedObject, "reads", 0)
        assert validate_arguments(spec, {"u": [_CountedObject(id=i) for i in range(n)]}) == []
        return _CountedObject.reads

    # Pairwise comparison (jsonschema's fallback for unsortable items) reads each object once per other item.
    small, large = reads(1000), reads(2000)
    assert 0 < small <= 4 * 1000 and large == 2 * small
    assert validate_arguments(spec, {"u": [1, True, "1", None, [1], {"a": 1}]}) == []
    for dup in (
        [1, 1.0],
        [{"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2}]}],
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}],
    ):
        [err] = validate_arguments(spec, {"u": dup})
        assert err.message == "'u' must not contain duplicate items"


def test_pattern_properties_and_unevaluated_properties() -> None:
    spec = ToolSpec(
        name="t",
        parameters={"type": "object", "properties": {"a": {}}, "patternProperties": {"^x_": {"type": "integer"}}, "unevaluatedProperties": False},
    )  # fmt: skip
    assert validate_arguments(spec, {"a": 1, "x_b": 2}) == []
    msgs = messages(spec, {"x_b": "no", "zzz": 1})
    assert "'x_b' must be an integer (got 'no')" in msgs and "unexpected argument 'zzz'" in msgs


def test_draft7_dialect_is_honoured() -> None:
    spec = ToolSpec(
        name="t",
        parameters={"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}}},
    )  # fmt: skip
    assert validate_arguments(spec, {"pair": ["a", 1]}) == []
    assert messages(spec, {"pair": [1, 1]}) == {
        "'pair[0]' must be a string (got 1)": ArgError(
            path="$.pair[0]", message="'pair[0]' must be a string (got 1)", param="pair"
        )
    }


def test_invalid_schema_is_refused_with_a_reason() -> None:
    [err] = validate_arguments(ToolSpec(name="bad", parameters={"type": "float"}), {})
    assert "bad" in err.message and "refused" in err.message


def test_validator_cache_is_keyed_by_canonical_json() -> None:
    a = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    b = json.loads(json.dumps({"required": ["x"], "properties": {"x": {"type": "string"}}, "type": "object"}))
    assert compiled_validator(a)[0] is compiled_validator(b)[0] is not None
    assert (
        compiled_validator({"type": "object", "properties": {"x": {"type": "integer"}}})[0]
        is not compiled_validator(a)[0]
    )


def test_check_schema_safety_messages() -> None:
    assert check_schema_safety({"type": "object"}) == []
    assert check_schema_safety({"properties": {"$ref": {"type": "string"}}}) == []  # a property named $ref
    [msg] = check_schema_safety({"properties": {"a": {"$ref": "https://x.example/a"}}})
    assert msg.startswith("$.properties.a.$ref: remote $ref refused")


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=15,
    )
)
def test_validate_never_crashes(arguments: object) -> None:
    for error in validate_arguments(ORDER, arguments):
        assert error.message and error.path.startswith("$")
