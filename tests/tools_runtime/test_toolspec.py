"""Tool-spec normalization: every input shape, every error kind, and the real BFCL function docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools_runtime.toolspec import (
    SpecIssue,
    ToolSpec,
    ToolSpecError,
    bfcl_to_json_schema,
    detect_format,
    load_tool_file,
    normalize_tool,
    normalize_tools,
    read_tool_file,
)
from tools_runtime.validation import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tools"
PARAMS = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
BFCL_NAMES = {"dict", "float", "tuple", "any"}


def issues_of(obj: object, fmt: str = "auto") -> list[SpecIssue]:
    with pytest.raises(ToolSpecError) as info:
        normalize_tool(obj, fmt)
    assert info.value.issues, "a ToolSpecError always carries issues"
    return info.value.issues


# --- the real BFCL function docs ---------------------------------------------------------------------------


def _bfcl_types(schema: object) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "type" and isinstance(value, str):
                found.add(value)
            elif key != "properties" or not isinstance(value, dict):
                found |= _bfcl_types(value)
            else:  # a property may be *named* "type"; its value is a schema
                for sub in value.values():
                    found |= _bfcl_types(sub)
    elif isinstance(schema, list):
        for item in schema:
            found |= _bfcl_types(item)
    return found


def test_every_bfcl_multi_turn_tool_normalizes(bfcl_dir: Path) -> None:
    files = sorted((bfcl_dir / "multi_turn_func_doc").glob("*.json"))
    assert len(files) == 8
    lines = valid = 0
    for path in files:
        expected = sum(1 for line in path.read_text().split("\n") if line.strip())
        report = read_tool_file(path, "bfcl")
        assert report.issues == [], f"{path.name}: {report.issues[:3]}"
        assert report.items == len(report.specs) == expected
        for spec in report.specs:
            assert not (_bfcl_types(spec.parameters) | _bfcl_types(spec.response)) & BFCL_NAMES, spec.name
            assert spec.parameters["type"] == "object"
        # auto-detection finds the same thing
        assert [s.model_dump() for s in load_tool_file(path)[0]] == [s.model_dump() for s in report.specs]
        lines += expected
        valid += len(report.specs)
    assert lines == valid == 128


# --- input shapes --------------------------------------------------------------------------------------------


def test_openai_shape() -> None:
    spec = normalize_tool(
        {"type": "function", "function": {"name": "get_order", "description": "d", "parameters": PARAMS}}
    )
    assert spec == ToolSpec(name="get_order", description="d", parameters=PARAMS)
    assert normalize_tool(spec.to_openai()) == spec
    dumped = ToolSpec(name="t", parameters=PARAMS, response={"type": "object"}).model_dump()
    assert detect_format(dumped) == "bare" and normalize_tool(dumped).model_dump() == dumped


def test_bare_and_responses_api_shapes() -> None:
    assert normalize_tool({"name": "get_order", "parameters": PARAMS}).parameters == PARAMS
    flat = {"type": "function", "name": "get_order", "description": "", "parameters": PARAMS, "strict": True}
    assert normalize_tool(flat).name == "get_order"


@pytest.mark.parametrize("key", ["inputSchema", "input_schema"])
def test_mcp_shape(key: str) -> None:
    obj = {"name": "get_order", "description": "d", key: PARAMS, "outputSchema": {"type": "object"}}
    assert detect_format(obj) == "mcp"
    spec = normalize_tool(obj)
    assert spec.parameters == PARAMS and spec.response == {"type": "object"}


def test_bfcl_shape_maps_types_recursively_without_mutating() -> None:
    raw = {
        "name": "plan",
        "description": "d",
        "parameters": {
            "type": "dict",
            "properties": {
                "price": {"type": "float"},
                "pair": {"type": "tuple", "items": {"type": "integer"}},
                "anything": {"type": "any", "description": "no constraint"},
                "type": {"type": "string"},  # a property named "type"
                "nested": {
                    "type": "dict",
                    "properties": {"x": {"type": "float"}},
                    "additionalProperties": {"type": "float"},
                },
                "rows": {
                    "type": "array",
                    "items": {"type": "dict", "properties": {"ok": {"type": "boolean"}}},
                },
            },
            "required": ["price"],
        },
        "response": {"type": "dict", "properties": {"total": {"type": "float"}}},
    }
    before = json.dumps(raw, sort_keys=True)
    assert detect_format(raw) == "bfcl"
    spec = normalize_tool(raw)
    props = spec.properties
    assert spec.parameters["type"] == "object"
    assert props["price"] == {"type": "number"}
    assert props["pair"] == {"type": "array", "items": {"type": "integer"}}
    assert props["anything"] == {"description": "no constraint"}
    assert props["type"] == {"type": "string"}
    assert props["nested"]["type"] == "object" and props["nested"]["properties"]["x"]["type"] == "number"
    assert props["nested"]["additionalProperties"] == {"type": "number"}
    assert props["rows"]["items"]["type"] == "object"
    assert spec.response == {"type": "object", "properties": {"total": {"type": "number"}}}
    assert json.dumps(raw, sort_keys=True) == before
    assert bfcl_to_json_schema({"type": ["float", "null"]}) == {"type": ["number", "null"]}


def test_missing_or_loose_parameters_become_an_object_schema() -> None:
    empty = {"type": "object", "properties": {}}
    assert normalize_tool({"name": "ping"}).parameters == empty
    assert normalize_tool({"name": "ping", "parameters": None}).parameters == empty
    assert normalize_tool({"name": "ping", "parameters": {}}).parameters == empty
    typeless = normalize_tool({"name": "get", "parameters": {"properties": {"a": {"type": "string"}}}})
    assert typeless.parameters["type"] == "object"


def test_explicit_format_mismatch_is_an_issue() -> None:
    issues = issues_of({"name": "get_order", "parameters": PARAMS}, "openai")
    assert issues[0].path == "$.function"
    assert issues_of({"name": "get_order", "parameters": PARAMS}, "mcp")[0].path == "$.inputSchema"
    with pytest.raises(ValueError, match="unknown tool format"):
        normalize_tool({"name": "x"}, "yaml")


# --- each error kind names the tool and the path -------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "tool", "path", "words"),
    [
        ({"name": "book a room", "parameters": PARAMS}, "book a room", "$.name", "invalid tool name"),
        ({"name": "9lives"}, "9lives", "$.name", "invalid tool name"),
        ({"name": "x" * 65}, "x" * 65, "$.name", "invalid tool name"),
        ({"parameters": PARAMS}, "<unnamed>", "$.name", "missing tool name"),
        ({"name": "ok", "description": 3}, "ok", "$.description", "must be a string"),
        (
            {
                "type": "function",
                "function": {
                    "name": "set_price",
                    "parameters": {"type": "object", "properties": {"x": {"type": "float"}}},
                },
            },
            "set_price",
            "$.function.parameters.properties.x.type",
            "unknown type 'float'",
        ),
        (
            {
                "name": "t",
                "parameters": {"type": "object", "properties": {"x": {"type": "string", "minLength": -1}}},
            },
            "t",
            "$.parameters.properties.x.minLength",
            "-1",
        ),
        ({"name": "t", "parameters": {"type": "array"}}, "t", "$.parameters.type", "must be type 'object'"),
        ({"name": "t", "parameters": {"required": ["a"]}}, "t", "$.parameters.type", "must be type 'object'"),
        ({"name": "t", "parameters": [1]}, "t", "$.parameters", "must be a JSON object"),
        (
            {"name": "t", "parameters": {"type": "object", "properties": {"a": {}}, "required": ["a", "b"]}},
            "t",
            "$.parameters.required[1]",
            "'b' is not defined",
        ),
        (
            {
                "name": "t",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "object", "properties": {}, "required": ["z"]}},
                },
            },
            "t",
            "$.parameters.properties.a.required[0]",
            "field 'z'",
        ),
        (
            {"name": "t", "inputSchema": {"type": "object", "$schema": "https://example.com/mine"}},
            "t",
            "$.inputSchema.$schema",
            "unsupported",
        ),
        (
            {
                "type": "function",
                "function": {
                    "name": "t",
                    "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/none"}}},
                },
            },
            "t",
            "$.function.parameters.properties.a.$ref",
            "does not resolve",
        ),
    ],  # fmt: skip
)
def test_error_kinds_name_tool_and_path(obj: dict, tool: str, path: str, words: str) -> None:
    issues = issues_of(obj)
    match = [i for i in issues if i.path == path]
    assert match, f"no issue at {path}: {issues}"
    assert match[0].tool == tool and words in match[0].message
    text = str(ToolSpecError(issues))
    assert tool in text and path in text


def test_non_object_tool() -> None:
    issue = issues_of(["not", "a", "tool"])[0]
    assert issue.path == "$" and "JSON object" in issue.message


@pytest.mark.parametrize(
    "ref",
    [
        "https://schemas.example.com/invoice.json",
        "http://127.0.0.1:9/x.json#/a",
        "file:///etc/passwd",
        "other.json",
        "other.json#/defs/a",
        "urn:uuid:1234",
    ],
)
def test_remote_ref_refused_without_network(ref: str, no_network: None) -> None:
    obj = {"name": "fetch_invoice", "parameters": {"type": "object", "properties": {"inv": {"$ref": ref}}}}
    [issue] = issues_of(obj)
    assert issue.tool == "fetch_invoice" and issue.path == "$.parameters.properties.inv.$ref"
    assert "remote $ref refused" in issue.message


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        ({"$ref": "#"}, "$.parameters.$ref"),
        (
            {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/a"}},
                "$defs": {"a": {"$ref": "#/$defs/a"}},
            },
            "$.parameters.$defs.a.$ref",
        ),
        (
            {
                "type": "object",
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
                "properties": {"x": {"$ref": "#/$defs/a"}},
            },
            None,
        ),
        ({"type": "object", "anyOf": [{"required": []}, {"$ref": "#"}]}, "$.parameters.anyOf[1].$ref"),
        (
            {
                "type": "object",
                "not": {"$ref": "#/$defs/n"},
                "$defs": {"n": {"$anchor": "n", "not": {"$ref": "#n"}}},
            },
            None,
        ),
    ],  # fmt: skip
)
def test_recursive_ref_without_base_case(parameters: dict, path: str | None) -> None:
    issues = issues_of({"name": "loop", "parameters": parameters})
    hits = [i for i in issues if "recursive $ref without a base case" in i.message]
    assert hits, issues
    assert all(i.tool == "loop" for i in hits)
    if path:
        assert hits[0].path == path


def test_recursion_through_properties_and_items_is_allowed() -> None:
    tree = {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/node"}},
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
    }
    assert normalize_tool({"name": "save_tree", "parameters": tree}).parameters == tree
    assert normalize_tool(
        {"name": "t", "parameters": {"type": "object", "additionalProperties": {"$ref": "#"}}}
    )


def test_nested_id_is_refused() -> None:
    params = {"type": "object", "$defs": {"a": {"$id": "urn:x", "$ref": "#"}}}
    assert any("nested $id" in i.message for i in issues_of({"name": "t", "parameters": params}))


def test_oversize_and_too_deep_schemas() -> None:
    props = {
        f"p{i}": {"type": "string", "description": "x" * 200} for i in range(MAX_SCHEMA_BYTES // 200 + 10)
    }
    [issue] = issues_of({"name": "huge", "parameters": {"type": "object", "properties": props}})
    assert issue.tool == "huge" and issue.path == "$.parameters" and "bytes" in issue.message

    deep: dict = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep = {"type": "object", "properties": {"a": deep}}
    [issue] = issues_of({"name": "deep", "parameters": deep})
    assert "nested deeper" in issue.message

    very_deep: list = []
    for _ in range(50_000):  # past Python's recursion limit: the check must be iterative
        very_deep = [very_deep]
    [issue] = issues_of({"name": "deeper", "parameters": {"type": "object", "default": very_deep}})
    assert "nested deeper" in issue.message


# --- many tools, files -------------------------------------------------------------------------------------


def test_normalize_tools_collects_issues_and_duplicates() -> None:
    items = [
        {"name": "get_order", "parameters": PARAMS},
        None,
        {"name": "bad name"},
        {"type": "function", "function": {"name": "get_order"}},
        {"name": "cancel_order", "inputSchema": PARAMS},
    ]
    specs, issues = normalize_tools(items)
    assert [s.name for s in specs] == ["get_order", "cancel_order"]
    paths = {i.path for i in issues}
    assert {"$[1]", "$[2].name", "$[3]"} <= paths
    dup = next(i for i in issues if "duplicate" in i.message)
    assert dup.tool == "get_order" and dup.path == "$[3]" and "$[0]" in dup.message
    _, issues = normalize_tools([{"name": "x y"}], source="$.tools")
    assert issues[0].path == "$.tools[0].name"


def test_load_list_object_and_json_lines(tmp_path: Path) -> None:
    tools = [{"name": "a"}, {"name": "b", "parameters": PARAMS}]
    (tmp_path / "list.json").write_text(json.dumps(tools))
    (tmp_path / "obj.json").write_text(json.dumps({"tools": tools}))
    (tmp_path / "lines.jsonl").write_text(
        "\n" + json.dumps(tools[0]) + "\n\n   \n" + json.dumps(tools[1]) + "\n"
    )
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(t) for t in tools))
    (tmp_path / "one.json").write_text(json.dumps(tools[1]))
    for name, count in [
        ("list.json", 2),
        ("obj.json", 2),
        ("lines.jsonl", 2),
        ("lines.json", 2),
        ("one.json", 1),
    ]:
        specs, issues = load_tool_file(tmp_path / name)
        assert issues == [] and len(specs) == count, name


def test_json_lines_parse_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tools.jsonl"
    path.write_text('{"name": "a"}\n\n{"name": "b",\n{"name": "c"}\n')
    report = read_tool_file(path)
    assert [s.name for s in report.specs] == ["a", "c"] and report.items == 3
    [issue] = report.issues
    assert issue.path == f"{path}:3" and "invalid JSON" in issue.message


def test_whole_json_parse_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text('[\n  {"name": "a"},\n  {"name": "b" "x"}\n]\n')
    specs, [issue] = load_tool_file(path)
    assert specs == [] and issue.path == f"{path}:3:16" and "line 3 column 16" in issue.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'[{"name": "caf\xe9"}]', "not UTF-8"),
        (b"", "empty"),
        (b"[]", "no tools"),
        (b'"a string"', "expected a JSON list"),
        (b'{"tools": 3}', "must be a list"),
    ],
)
def test_unusable_files_are_issues_not_crashes(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "tools.json"
    path.write_bytes(content)
    specs, [issue] = load_tool_file(path)
    assert specs == [] and words in issue.message


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_tool_file(tmp_path / "absent.json")


def test_example_files() -> None:
    assert len(load_tool_file(EXAMPLES / "library_openai.json")[0]) == 6
    assert len(load_tool_file(EXAMPLES / "thermostat_mcp.jsonl")[0]) == 4
    assert (
        load_tool_file(EXAMPLES / "library_openai.json")[1]
        == load_tool_file(EXAMPLES / "thermostat_mcp.jsonl")[1]
        == []
    )
    report = read_tool_file(EXAMPLES / "broken.json")
    assert report.items == 7 and [s.name for s in report.specs] == ["get_room"]
    assert {i.tool for i in report.issues} == {
        "book a room",
        "set_price",
        "fetch_invoice",
        "loop_forever",
        "list_rooms",
        "get_room",
    }


# --- robustness ----------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "properties", "items", "required", "$ref", "$defs", "anyOf", "not", "enum", "x", "pattern"]
    ) | st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parameters=json_values, fmt=st.sampled_from(["auto", "openai", "mcp", "bfcl", "bare"]))
def test_normalize_never_crashes(parameters: object, fmt: str) -> None:
    obj = {
        "name": "t",
        "parameters": parameters,
        "inputSchema": parameters,
        "function": {"name": "t", "parameters": parameters},
    }
    try:
        spec = normalize_tool(obj, fmt)
    except ToolSpecError as exc:
        assert all(i.tool == "t" for i in exc.issues)
    else:
        assert spec.parameters.get("type") == "object"
