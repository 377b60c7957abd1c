"""Stage 2 with a model: validation, the bounded repair loop, structured output, a fake OpenAI endpoint."""

from __future__ import annotations

import asyncio
import json

from gem_agents.config import RoleConfig, RunConfig
from gem_agents.models.client import ModelClient
from gem_agents.models.hub import ModelHub
from gem_agents.stages.extract import EXTRACTION_SCHEMA, extract_workflow, validate_extraction
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text
from tests.gem_agents.stages.test_relevance import Stub
from tools_runtime.records import Document, Relevance

DOC = Document(id="doc-1", text="# Print a booklet\n1. Open the document.\n2. Pick the printer.\n3. Print it.\n")
TOOLS = [
    {"name": "open_document", "description": "Open a document.",
     "parameters": {"type": "object", "properties": {"file_name": {"type": "string"}}, "required": ["file_name"]}},
    {"name": "select_printer", "description": "Choose the printer.",
     "inputSchema": {"type": "object", "properties": {"printer_name": {"type": "string"}},
                     "required": ["printer_name"]}},
    {"name": "print_document", "description": "Print.",
     "parameters": {"type": "object", "properties": {"copies": {"type": "integer", "minimum": 1, "maximum": 5}},
                    "required": ["copies"]}},
]
GOOD_GRAPH = "(open_document)->(select_printer)->(print_document)"


def tagged(graph: str = GOOD_GRAPH, tools: list | None = None) -> str:
    return ("Here is the workflow.\n<workflow>\n<title>Print a booklet</title>\n<steps>Step1: Open the document.\n"
            "Step2: Pick the printer.\nStep3: Print it.</steps>\n"
            f"<execution_graph>{graph}</execution_graph>\n<tools>{json.dumps(tools or TOOLS)}</tools>\n</workflow>")


def client(stub: Stub, structured_output: str = "tagged") -> ModelClient:
    return ModelClient("extract", RoleConfig(provider="openai", model="m", structured_output=structured_output),
                       complete=stub)


def run(coro):
    return asyncio.run(coro)


def test_good_extraction_in_one_round():
    stub = Stub(tagged())
    rel = Relevance(multi_step=True, summary="Print a booklet", domain="computers", platform="computer")
    res = run(extract_workflow(DOC, client(stub), relevance=rel))
    assert res.ok and res.rounds == 1 and res.decided_by == "model"
    wf = res.workflow
    assert (wf.id, wf.doc_id, wf.title, wf.platform) == ("doc-1", "doc-1", "Print a booklet", "computer")
    assert [t.name for t in wf.tools] == ["open_document", "select_printer", "print_document"]
    assert wf.steps == ["Open the document.", "Pick the printer.", "Print it."]
    assert "1. Open the document." in stub.calls[0][0][0]["content"]


def test_repair_loop_fixes_an_unknown_node():
    stub = Stub(tagged(graph="(open_document)->(choose_printer)->(print_document)"), tagged())
    res = run(extract_workflow(DOC, client(stub), repair_rounds=2))
    assert res.ok and res.rounds == 2
    second = stub.calls[1][0]
    assert second[1]["role"] == "assistant" and "choose_printer" in second[1]["content"]
    repair = second[2]["content"]
    assert "node 'choose_printer' is not a defined tool; did you mean 'select_printer'?" in repair


def test_cyclic_graph_is_sent_back_not_raised():
    stub = Stub(tagged(graph="(open_document)->(select_printer)->(open_document)"), tagged())
    res = run(extract_workflow(DOC, client(stub), repair_rounds=1))
    assert res.ok and res.rounds == 2
    assert "the execution graph has a cycle: open_document -> select_printer -> open_document" in \
        stub.calls[1][0][-1]["content"]


def test_never_fixed_stops_after_k_rounds_with_reasons():
    broken = tagged(tools=[{**TOOLS[0], "parameters": {"type": "object", "properties": {}, "required": ["x"]}},
                           *TOOLS[1:]])
    stub = Stub(broken, broken, broken, "never asked")
    res = run(extract_workflow(DOC, client(stub), repair_rounds=2))
    assert not res.ok and res.rounds == 3 and len(stub.calls) == 3
    assert res.rejected and "required argument 'x' is not defined in properties" in res.rejected[0]
    assert all("required argument 'x'" in call[0][-1]["content"] for call in stub.calls[1:])


def test_parse_errors_are_repaired_too():
    stub = Stub("I am not sure what the tools are.", tagged())
    res = run(extract_workflow(DOC, client(stub), repair_rounds=1))
    assert res.ok and res.rounds == 2
    assert "has no <steps>, <execution_graph>, <tools> tags" in stub.calls[1][0][-1]["content"]


def test_unsimulatable_workflow_is_rejected_with_the_scenario_error():
    # No value can satisfy `code` (minimum above maximum), so no reference call can succeed.
    impossible = {"type": "object", "properties": {"code": {"type": "integer", "minimum": 5, "maximum": 1}},
                  "required": ["code"]}
    tools = [TOOLS[0], {"name": "delete_everything", "description": "x", "parameters": impossible}]
    wf, errors = run(validate_extraction({"steps": ["a"], "execution_graph": "(open_document)->(delete_everything)",
                                          "tools": tools}, DOC))
    assert wf is None and errors and errors[0].startswith("not simulatable")


def test_json_schema_structured_output():
    answer = json.dumps({"title": "Print", "steps": ["Open", "Pick", "Print"], "execution_graph": GOOD_GRAPH,
                         "tools": TOOLS})
    stub = Stub(answer)
    res = run(extract_workflow(DOC, client(stub, "json_schema")))
    assert res.ok
    spec = stub.calls[0][1]
    assert spec.json_schema == EXTRACTION_SCHEMA and spec.schema_name == "workflow"
    # Switchable: the same client forced to the tagged format sends no schema.
    stub2 = Stub(tagged())
    assert run(extract_workflow(DOC, client(stub2, "json_schema"), json_mode=False)).ok
    assert stub2.calls[0][1].json_schema is None


def test_end_to_end_through_a_fake_openai_server():
    broken = tagged(graph="(open_document)->(select_printer)->(print_it)")
    with FakeOpenAIServer(ScriptedResponder([text(broken), text(tagged())])) as srv:
        cfg = RunConfig.model_validate({"cache": False, "roles": {"extract": {
            "provider": "openai", "base_url": srv.base_url, "model": "fake", "structured_output": "tagged",
            "max_retries": 0}}})
        hub = ModelHub(cfg)
        try:
            res = run(extract_workflow(DOC, hub.client("extract"), repair_rounds=cfg.limits.repair_rounds))
        finally:
            hub.close()
        assert res.ok and res.rounds == 2 and srv.count == 2
        repair = srv.bodies[1]["messages"][-1]["content"]
        assert "'print_it' is not a defined tool" in repair
