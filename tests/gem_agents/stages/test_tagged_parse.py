"""Parsing messy model output in the tagged format (stages 1 and 2)."""

from __future__ import annotations

import pytest

from gem_agents.stages.tagged import (
    ParseError,
    find_tags,
    loads_loose,
    parse_extraction,
    parse_relevance,
    parse_steps,
    parse_tools,
    strip_fences,
)

GOOD_TOOLS = ('[{"name": "open_print_dialog", "description": "Open it.", "parameters": {"type": "object", '
              '"properties": {}}}, {"name": "print_document", "description": "Print.", "parameters": '
              '{"type": "object", "properties": {"copies": {"type": "integer"}}, "required": ["copies"]}}]')


def extraction(tools: str = GOOD_TOOLS, graph: str = "(open_print_dialog)->(print_document)") -> str:
    return (f"<workflow>\n<steps>Step1: Open the print dialog.\nStep2: Print.</steps>\n"
            f"<execution_graph>{graph}</execution_graph>\n<tools>{tools}</tools>\n</workflow>")


# ---------------------------------------------------------------------------------------------------------
# relevance


def test_relevance_with_fences_prose_and_odd_tag_case():
    text = ("Sure! Here is my judgement.\n```xml\n<Multi_Step> True </Multi_Step>\n<Summary>Print a booklet.</Summary>"
            "\n<DOMAIN>computers_and_electronics</DOMAIN><platform>computer</platform><task>printing</task>\n```\n"
            "Let me know if you need more.")
    rel = parse_relevance(text)
    assert rel.multi_step is True
    assert rel.summary == "Print a booklet."
    assert (rel.domain, rel.platform, rel.task) == ("computers_and_electronics", "computer", "printing")


@pytest.mark.parametrize("raw,expected", [("False", False), ("no", False), ("**True**", True), ("yes.", True)])
def test_relevance_boolean_spellings(raw, expected):
    assert parse_relevance(f"<multi_step>{raw}</multi_step>").multi_step is expected


def test_relevance_missing_tag_names_it():
    with pytest.raises(ParseError, match="multi_step") as info:
        parse_relevance("I think this text is a procedure.")
    assert info.value.tag == "multi_step"


def test_relevance_bad_boolean_is_a_parse_error():
    with pytest.raises(ParseError, match="True or False"):
        parse_relevance("<multi_step>maybe</multi_step>")


def test_relevance_as_json_object():
    rel = parse_relevance('{"multi_step": true, "summary": "s", "domain": "d", "platform": "p", "task": "t"}')
    assert rel.multi_step and rel.task == "t"


def test_unclosed_tag_runs_to_next_tag():
    tags = find_tags("<multi_step>True\n<summary>Do it.</summary>")
    assert tags["multistep"] == "True"
    assert tags["summary"] == "Do it."


# ---------------------------------------------------------------------------------------------------------
# loose JSON


def test_loose_json_single_quotes_trailing_commas_comments():
    text = """```json
    [
      {'name': 'a', 'required': True, 'x': None, },  // the first tool
      /* block comment */ {"name": "b", "ok": false,},
    ]
    ```"""
    data = loads_loose(text)
    assert data == [{"name": "a", "required": True, "x": None}, {"name": "b", "ok": False}]


def test_loose_json_with_prose_around():
    assert loads_loose('Here are the tools: [{"name": "x"}] — hope this helps!') == [{"name": "x"}]


def test_loose_json_keeps_commas_and_slashes_inside_strings():
    assert loads_loose('{"u": "http://x/y,]", "n": 1,}') == {"u": "http://x/y,]", "n": 1}


def test_loose_json_garbage_is_a_parse_error():
    with pytest.raises(ParseError, match="not valid JSON"):
        loads_loose("{name: ???")


def test_strip_fences_keeps_content():
    assert strip_fences("a\n```python\nx = 1\n```\nb").split() == ["a", "x", "=", "1", "b"]


# ---------------------------------------------------------------------------------------------------------
# extraction


def test_extraction_messy_but_complete():
    tools = ("```json\n[{'name': 'open_print_dialog', 'description': 'Open it', 'inputSchema': "
             "{'type': 'object', 'properties': {},},}, // first\n"
             '{"name": "print_document", "parameters": {"type": "object", "properties": {}},},]\n```')
    text = "Here you go:\n" + extraction(tools=tools).replace("<steps>", "<STEPS>").replace("</steps>", "</Steps>")
    data = parse_extraction(f"```\n{text}\n```\nThanks!")
    assert data["steps"] == ["Open the print dialog.", "Print."]
    assert data["execution_graph"] == "(open_print_dialog)->(print_document)"
    assert [t["name"] for t in data["tools"]] == ["open_print_dialog", "print_document"]
    assert "inputSchema" in data["tools"][0]  # left for the normalizer, which accepts MCP shapes


def test_tools_as_dict_keyed_by_name_and_invented_schema_keys():
    tools = parse_tools('{"get_order": {"description": "Read an order.", "arguments": '
                        '{"type": "object", "properties": {"order_id": {"type": "string"}}}}}')
    assert tools == [{"description": "Read an order.", "name": "get_order",
                      "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}]


def test_tools_wrapped_in_object_and_openai_shape():
    tools = parse_tools('{"tools": [{"type": "function", "function": {"name": "x", "parameters": {}}}]}')
    assert tools[0]["function"]["name"] == "x"


def test_missing_tags_are_named():
    with pytest.raises(ParseError, match=r"<execution_graph>") as info:
        parse_extraction("<steps>Step1: a</steps><tools>[]</tools>")
    assert info.value.tag == "execution_graph"
    with pytest.raises(ParseError, match=r"<steps>, <execution_graph>, <tools>"):
        parse_extraction("I could not find any workflow in this text.")


def test_extraction_as_json_object_with_stage_lists():
    data = parse_extraction('{"steps": ["a", "b"], "execution_graph": [["x"], ["y", "z"]], '
                            '"tools": [{"name": "x"}, {"name": "y"}, {"name": "z"}]}')
    assert data["execution_graph"] == "(x)->(y, z)"


@pytest.mark.parametrize("raw,expected", [
    ("Step1: Open it\nStep2: Click OK", ["Open it", "Click OK"]),
    ("1. Open it\n2) Click OK\n   on the right", ["Open it", "Click OK on the right"]),
    ('["Open it", "Click OK"]', ["Open it", "Click OK"]),
    ("Step1: Open it Step2: Click OK", ["Open it", "Click OK"]),
])
def test_step_spellings(raw, expected):
    assert parse_steps(raw) == expected


def test_unknown_node_and_cycle_are_rejections_not_crashes():
    """Parsing succeeds; the workflow validator turns the graph problems into messages."""
    from tools_runtime.workflow_io import WorkflowError, workflow_from_dict

    unknown = parse_extraction(extraction(graph="(open_print_dialog)->(print_everything)"))
    with pytest.raises(WorkflowError, match="print_everything"):
        workflow_from_dict(unknown)
    cyclic = parse_extraction(extraction(graph="(open_print_dialog)->(print_document)->(open_print_dialog)"))
    with pytest.raises(WorkflowError, match="cycle"):
        workflow_from_dict(cyclic)
