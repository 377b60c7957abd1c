"""Stage 1: pre-filter short-circuit, model answers, the bounded re-ask, structured output."""

from __future__ import annotations

import asyncio
import json

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, ModelClient
from gem_agents.stages.relevance import filter_messages, judge_relevance, relevance_offline, wants_json_schema
from tools_runtime.records import Document

PROCEDURE = Document(id="p", text="# Add a world clock\n1. Click the clock on the top bar.\n"
                                  "2. Click the Add world clocks button.\n3. Select the city from the list.\n")
PROSE = Document(id="n", text="The Academy Award for Best Production Design recognizes achievement in film.")


class Stub:
    """A completer that answers from a list and records every call."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.calls: list[tuple[list[dict], CallSpec]] = []

    async def __call__(self, messages, spec):
        self.calls.append((messages, spec))
        return {"role": "assistant", "content": self.answers[len(self.calls) - 1]}, {"input_tokens": 1}


def client(stub: Stub, structured_output: str = "tagged") -> ModelClient:
    return ModelClient("filter", RoleConfig(provider="openai", model="m", structured_output=structured_output),
                       complete=stub)


def run(coro):
    return asyncio.run(coro)


def test_offline_relevance_from_prefilter():
    rel = relevance_offline(PROCEDURE)
    assert rel.multi_step and rel.decided_by == "prefilter"
    assert rel.summary == "Add a world clock" and rel.platform == "computer"
    assert not relevance_offline(PROSE).multi_step
    assert run(judge_relevance(PROCEDURE, None)).decided_by == "prefilter"


def test_prefilter_reject_makes_no_model_call():
    stub = Stub("<multi_step>True</multi_step>")
    rel = run(judge_relevance(PROSE, client(stub)))
    assert rel.multi_step is False and rel.decided_by == "prefilter"
    assert stub.calls == []


def test_model_answer_is_parsed():
    stub = Stub("```\n<multi_step>True</multi_step>\n<summary>Add a world clock.</summary>\n<domain>computers"
                "</domain>\n<platform>computer</platform>\n<task>system_settings</task>\n```")
    rel = run(judge_relevance(PROCEDURE, client(stub)))
    assert (rel.multi_step, rel.summary, rel.decided_by) == (True, "Add a world clock.", "model")
    prompt = stub.calls[0][0][0]["content"]
    assert "Click the clock on the top bar." in prompt and "<multi_step>" in prompt
    assert stub.calls[0][1].json_schema is None


def test_unparsable_answer_is_reasked_once_quoting_the_error():
    stub = Stub("This text is clearly about clocks.", "<multi_step>False</multi_step>")
    rel = run(judge_relevance(PROCEDURE, client(stub), reask_rounds=1))
    assert (rel.multi_step, rel.decided_by) == (False, "model_reask")
    assert len(stub.calls) == 2
    second = stub.calls[1][0]
    assert second[-2] == {"role": "assistant", "content": "This text is clearly about clocks."}
    assert "has no <multi_step> tag" in second[-1]["content"]


def test_reask_is_bounded():
    stub = Stub("nonsense", "still nonsense", "never asked")
    rel = run(judge_relevance(PROCEDURE, client(stub), reask_rounds=1))
    assert len(stub.calls) == 2
    assert rel.multi_step is False and rel.decided_by == "unparsable" and "multi_step" in rel.summary


def test_json_schema_mode():
    stub = Stub(json.dumps({"multi_step": True, "summary": "s", "domain": "d", "platform": "computer", "task": "t"}))
    rel = run(judge_relevance(PROCEDURE, client(stub, "json_schema")))
    assert rel.multi_step and rel.platform == "computer"
    assert stub.calls[0][1].json_schema is not None and stub.calls[0][1].schema_name == "relevance"
    assert '"multi_step"' in stub.calls[0][0][0]["content"]


def test_structured_output_switch():
    assert wants_json_schema(RoleConfig(provider="openai", model="m"))
    assert not wants_json_schema(RoleConfig(provider="openai", model="m", structured_output="tagged"))
    assert not wants_json_schema(RoleConfig(provider="local", model_path="x.gguf"))
    assert wants_json_schema(RoleConfig(provider="local", model_path="x.gguf", structured_output="json_schema"))


def test_prompt_keeps_braces_in_the_text():
    doc = Document(id="t", text="- Count lines:\n\n`wc -l {{path/to/file}}`\n- Count words:\n\n`wc -w {{path/to/file}}`")
    assert "{{path/to/file}}" in filter_messages(doc)[0]["content"]


def test_a_platform_the_text_never_hints_at_is_replaced_by_the_texts_vocabulary():
    # the 1.5B labelled a GNOME printing page `command_line`; the assistant was then told so
    answer = {"multi_step": True, "summary": "s", "domain": "d", "platform": "command_line", "task": "t"}
    rel = run(judge_relevance(PROCEDURE, client(Stub(json.dumps(answer)), "json_schema")))
    assert rel.platform == "computer"
    shell = Document(id="s", text="# Copy files\n1. Open a terminal.\n2. Run `cp -r src dst`.\n3. Run `ls dst`.\n")
    rel = run(judge_relevance(shell, client(Stub(json.dumps(answer)), "json_schema"), use_prefilter=False))
    assert rel.platform == "command_line"
