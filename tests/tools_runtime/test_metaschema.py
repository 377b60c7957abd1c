"""The metaschema fast path says "valid" only where the stock Draft 2020-12 check finds no error."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tools_runtime.metaschema import known_valid
from tools_runtime.validation import compiled_validator, metaschema_issues

STOCK = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def stock_errors(schema):
    return list(STOCK.iter_errors(schema))


def test_every_example_tool_schema_takes_the_fast_path():
    schemas = [t[k] for p in sorted(EXAMPLES.glob("*.json"))
               for t in json.loads(p.read_text(encoding="utf-8"))["tools"] for k in ("parameters", "response") if k in t]
    assert len(schemas) > 10
    for s in schemas:
        assert not stock_errors(s), s
        assert known_valid(s), s  # the fast path is taken for real schemas, not only for toy ones


BROKEN = [{"type": "strin"}, {"type": []}, {"type": ["string", "string"]}, {"properties": {"a": {"minimum": "x"}}},
          {"required": "a"}, {"required": ["a", "a"]}, {"$ref": 5}, {"items": {"type": 1}}, {"pattern": "("},
          {"patternProperties": {"(": {}}}, {"enum": 5}, {"allOf": []}, {"anyOf": [{"type": "q"}]},
          {"properties": {"$ref": {"type": "bad"}}}, {"dependentRequired": {"a": [1]}}, {"$defs": {"x": {"minLength": -1}}},
          {"format": 3}, {"minItems": True}, {"multipleOf": 0}, {"uniqueItems": "yes"}, {"prefixItems": {}},
          {"not": {"type": "foo"}}, {"if": {"maxItems": -2}}, {"$comment": 1}, {"title": 2}, {"deprecated": "x"},
          {"examples": 1}, {"additionalProperties": {"properties": {"x": {"type": "nope"}}}}, 5, "s", None, []]


def test_broken_schemas_are_never_called_valid_and_keep_their_stock_errors():
    for s in BROKEN:
        assert stock_errors(s), s  # each really is broken
        assert not known_valid(s), s
        assert metaschema_issues(s), s
        assert compiled_validator(s)[0] is None or not isinstance(s, dict), s


def test_unsure_cases_fall_back_to_the_full_check():
    # Valid, but outside what the fast walk proves: the stock check decides.
    for s in ({"minLength": 2.0}, {"$id": "https://example.org/s"}, {"dependencies": {"a": ["b"]}},
              {"$schema": "https://json-schema.org/draft/2020-12/schema"}):
        assert not stock_errors(s)
        assert not known_valid(s)
        assert metaschema_issues(s) == []


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(-2, 3, allow_nan=False),
                    st.sampled_from(["string", "", "(", "#/$defs/x"]))
NUMBERS = st.one_of(st.integers(-2, 5), st.floats(-1, 2, allow_nan=False), st.just("1"), st.booleans())


def _keyword(children):
    """(keyword, value): mostly what a tool schema holds, sometimes subtly wrong."""
    return st.one_of(
        st.tuples(st.just("type"), st.sampled_from(["string", "object", "integer", "number", "array", "null", "nope"])
                  | st.lists(st.sampled_from(["string", "null", "integer", "x"]), max_size=3)),
        st.tuples(st.sampled_from(["properties", "$defs", "definitions", "dependentSchemas"]),
                  st.dictionaries(st.sampled_from(["a", "b", "$ref"]), children, max_size=3)),
        st.tuples(st.sampled_from(["items", "additionalProperties", "not", "if", "then", "contains",
                                   "unevaluatedProperties"]), children),
        st.tuples(st.sampled_from(["anyOf", "allOf", "oneOf", "prefixItems"]), st.lists(children, max_size=3)),
        st.tuples(st.just("required"), st.lists(st.sampled_from(["a", "b", 1]), max_size=3)),
        st.tuples(st.sampled_from(["minimum", "exclusiveMaximum", "multipleOf"]), NUMBERS),
        st.tuples(st.sampled_from(["maxLength", "minItems", "minContains", "minProperties"]), NUMBERS),
        st.tuples(st.just("pattern"), st.sampled_from(["^a+$", "(", "[a-z]{2}", 3])),
        st.tuples(st.sampled_from(["format", "description", "title", "$comment", "contentMediaType"]),
                  st.sampled_from(["date-time", "hi", 0])),
        st.tuples(st.sampled_from(["enum", "examples"]), st.lists(SCALARS, max_size=3) | SCALARS),
        st.tuples(st.sampled_from(["const", "default", "x-custom", "dependencies", "$id", "minLength"]), SCALARS),
        st.tuples(st.sampled_from(["uniqueItems", "deprecated", "readOnly"]), st.sampled_from([True, False, "yes"])),
        st.tuples(st.just("$ref"), st.sampled_from(["#/$defs/a", "#", "a b", "http://x y", 1])),
        st.tuples(st.just("patternProperties"), st.dictionaries(st.sampled_from(["^a", "("]), children, max_size=2)),
        st.tuples(st.just("dependentRequired"),
                  st.dictionaries(st.just("a"), st.lists(st.sampled_from(["b", "c", 1]), max_size=2), max_size=1)),
    )


SCHEMAS = st.recursive(st.booleans() | st.just({}),
                       lambda children: st.lists(_keyword(children), max_size=4).map(dict), max_leaves=15)


@settings(max_examples=400, deadline=None)
@given(SCHEMAS)
def test_fast_path_never_hides_an_error(schema):
    if known_valid(schema):
        assert stock_errors(schema) == []
        assert metaschema_issues(schema) == []
