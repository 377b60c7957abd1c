"""`fastvalid.proven_valid` says "valid" only where the project's hardened validator finds no error."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tools_runtime.environment import Entity, entity_schema, record_issues
from tools_runtime.fastvalid import proven_valid
from tools_runtime.validation import compiled_validator

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded" / "docs"


def full_errors(schema, value) -> list:
    validator, why = compiled_validator(schema)
    assert validator is not None, why
    return list(validator.iter_errors(value))


def recorded() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RECORDED.glob("*.json"))]


def test_recorded_records_and_gold_arguments_take_the_fast_path():
    """Real extractions: every initial record and gold call is valid, and the fast walk proves it."""
    records = calls = 0
    for doc in recorded():
        ext = doc.get("extraction")
        if not ext:
            continue
        entities = {e["name"]: e for e in ext["entities"]}
        for rec in ext["initial_state"]:
            schema = entity_schema(Entity.model_validate(entities[rec["entity"]]))
            assert not full_errors(schema, rec["values"])
            assert proven_valid(schema, rec["values"]), (doc["doc_id"], rec)
            records += 1
        tools = {t["name"]: t["parameters"] for t in ext["tools"]}
        for task in doc["tasks"]["tasks"]:
            for action in task["gold_actions"]:
                assert not full_errors(tools[action["tool"]], action["arguments"])
                assert proven_valid(tools[action["tool"]], action["arguments"]), (doc["doc_id"], action)
                calls += 1
    assert records >= 15 and calls >= 15


INVALID = [
    ({"type": "string"}, 5), ({"type": "integer"}, True), ({"type": "integer"}, 1.5), ({"type": "number"}, "1"),
    ({"type": "boolean"}, 0), ({"type": "null"}, False), ({"type": ["string", "null"]}, 3),
    ({"enum": ["a", "b"]}, "c"), ({"enum": [1, 2]}, True), ({"enum": [True]}, 1), ({"const": 0}, False),
    ({"type": "object", "required": ["a"]}, {}), ({"additionalProperties": False}, {"x": 1}),
    ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x", "b": 1}),
    ({"additionalProperties": {"type": "integer"}}, {"n": "1"}), ({"properties": {"a": False}}, {"a": 1}),
    ({"minLength": 2}, "a"), ({"maxLength": 1}, "ab"), ({"minItems": 1}, []), ({"maxItems": 1}, [1, 2]),
    ({"items": {"type": "string"}}, ["a", 1]), ({"minimum": 0}, -1), ({"maximum": 3}, 3.5),
    ({"exclusiveMinimum": 1}, 1), ({"exclusiveMaximum": 1}, 1.0), ({"minProperties": 1}, {}),
    ({"maxProperties": 0}, {"a": 1}), ({"properties": {"a": {"properties": {"b": {"type": "integer"}}}}}, {"a": {"b": "x"}}),
]


def test_invalid_values_are_never_proven_valid():
    for schema, value in INVALID:
        assert full_errors(schema, value), (schema, value)  # each really is invalid
        assert not proven_valid(schema, value), (schema, value)


def test_unsure_cases_fall_back_to_the_full_validator():
    # Valid, but outside what the walk proves exactly: the full validator decides (and writes the messages).
    for schema, value in [({"pattern": "^a"}, "abc"), ({"$ref": "#/$defs/x", "$defs": {"x": {}}}, 1),
                          ({"anyOf": [{"type": "string"}]}, "a"), ({"uniqueItems": True}, [1, 2]),
                          ({"type": "strange"}, 1), ({"enum": [[1]]}, [1]), ({"const": {"a": 1}}, {"a": 1}),
                          ({"$schema": "http://json-schema.org/draft-07/schema#"}, 1), ({"x-extra": 1}, 1),
                          ({"minLength": 2.0}, "abc"), ({"items": [{"type": "string"}]}, ["a"])]:
        assert not proven_valid(schema, value), schema
    # …and record_issues / validate_arguments still give the full validator's answer there.
    ent = Entity(name="code", key="id", fields={"id": {"type": "string", "pattern": "^[A-Z]+$"}})
    assert record_issues(ent, {"id": "AB"}) == []
    assert record_issues(ent, {"id": "ab"})[0][0] == "id"


FIELD_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(-2, 3, allow_nan=False),
                    st.sampled_from(["", "a", "ab", "abc"]))
NUMBERS = st.one_of(st.integers(-2, 4), st.floats(-1, 3, allow_nan=False))


def _keyword(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("type"), FIELD_TYPES | st.lists(FIELD_TYPES, min_size=1, max_size=3, unique=True)),
        st.tuples(st.just("enum"), st.lists(SCALARS, min_size=1, max_size=3)),
        st.tuples(st.just("const"), SCALARS),
        st.tuples(st.just("properties"), st.dictionaries(st.sampled_from("abc"), children, max_size=3)),
        st.tuples(st.just("required"), st.lists(st.sampled_from("abc"), max_size=2, unique=True)),
        st.tuples(st.just("additionalProperties"), st.booleans() | children),
        st.tuples(st.just("items"), children),
        st.tuples(st.sampled_from(["minItems", "maxItems", "minLength", "maxLength", "minProperties",
                                   "maxProperties"]), st.integers(0, 3)),
        st.tuples(st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]), NUMBERS),
        st.tuples(st.sampled_from(["description", "format", "title"]), st.sampled_from(["date", "email", "x"])),
    )


SCHEMAS = st.recursive(st.just({}) | st.booleans(),
                       lambda children: st.lists(_keyword(children), max_size=4).map(dict), max_leaves=8)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3), max_leaves=8)


@settings(max_examples=600, deadline=None)
@given(SCHEMAS, VALUES)
def test_proven_valid_never_hides_an_error(schema, value):
    if compiled_validator(schema)[0] is None:
        return  # a refused schema never reaches the walk
    if proven_valid(schema, value):
        assert full_errors(schema, value) == [], (schema, value)


@settings(max_examples=300, deadline=None)
@given(SCHEMAS)
def test_the_walk_proves_the_values_a_schema_accepts(schema):
    """Not vacuous: among generated valid values most are proven (a walk that always says False would fail)."""
    if compiled_validator(schema)[0] is None or not isinstance(schema, dict):
        return
    for value in (None, True, 0, 1.5, "ab", [], [1], {}, {"a": 1}):
        if not full_errors(schema, value) and not any(k in schema for k in ("const", "enum")):
            # Every keyword generated here is handled, so a valid value is always proven.
            assert proven_valid(schema, value), (schema, value)
