"""`http_client: direct`: OpenAI-compatible calls without the SDK, against the fake server (no network)."""

from __future__ import annotations

import asyncio
import json

import pytest

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, ModelCallError, ModelClient
from gem_agents.models.hub import make_completer
from gem_agents.providers.openai_direct import reply_message, request_body, wire_messages
from gem_agents.testing.fake_openai import (
    FakeOpenAIServer,
    Faults,
    ScriptedResponder,
    http_error,
    text,
    tool_calls,
)

TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "Look up an order",
                                           "parameters": {"type": "object",
                                                          "properties": {"order_id": {"type": "string"}}}}}]
SCHEMA = {"type": "object", "properties": {"multi_step": {"type": "boolean"}}, "required": ["multi_step"]}
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is order A1?"}]


def direct_client(base_url: str, **kw) -> ModelClient:
    cfg = RoleConfig(provider="openai", model="fake-model", base_url=base_url, http_client="direct", **kw)
    client = ModelClient("assistant", cfg, make_completer(cfg))
    client.backoff_base_s = 0.01
    return client


def test_text_tools_and_schema_go_out_like_the_langchain_path():
    replies = [text("It shipped."), tool_calls(("get_order", {"order_id": "A1"})), text('{"multi_step": true}')]
    with FakeOpenAIServer(ScriptedResponder(replies)) as srv:
        client = direct_client(srv.base_url, max_retries=0, max_tokens=64)

        async def go():
            a = await client.chat(MSGS)
            b = await client.chat(MSGS, tools=TOOLS, tool_choice="auto")
            c = await client.chat(MSGS, json_schema=SCHEMA, schema_name="relevance")
            return a, b, c

        a, b, c = asyncio.run(go())
        bodies = srv.bodies
    assert a.text == "It shipped." and a.usage["input_tokens"] > 0 and a.usage["output_tokens"] > 0
    call = b.message["tool_calls"][0]
    assert call["function"]["name"] == "get_order" and json.loads(call["function"]["arguments"]) == {"order_id": "A1"}
    assert json.loads(c.text) == {"multi_step": True}
    assert bodies[0]["max_completion_tokens"] == 64 and bodies[0]["messages"] == MSGS
    assert bodies[1]["tools"] == TOOLS and bodies[1]["tool_choice"] == "auto"
    assert bodies[2]["response_format"] == {"type": "json_schema",
                                            "json_schema": {"name": "relevance", "schema": SCHEMA}}


def test_malformed_tool_arguments_are_kept_raw():
    msg = reply_message({"message": {"content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "get_order", "arguments": '{"broken": '}},
        {"id": "c2", "function": {"name": "get_order", "arguments": '{"order_id":"A1"}'}}]}})
    assert msg["content"] == ""
    assert msg["tool_calls"][0]["function"]["arguments"] == '{"broken": '
    assert msg["tool_calls"][1]["function"]["arguments"] == '{"order_id": "A1"}'


def test_transcripts_keep_only_wire_fields_and_named_tool_choice():
    msgs = [{"role": "developer", "content": [{"type": "text", "text": "rules"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "ok", "extra": 1}]
    wire = wire_messages(msgs)
    assert wire[0] == {"role": "system", "content": "rules"}
    assert wire[1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert wire[2] == {"role": "tool", "content": "ok", "tool_call_id": "c1"}
    cfg = RoleConfig(provider="openai", model="m", http_client="direct", extra_body={"top_k": 5})
    body = request_body(cfg, [{"role": "user", "content": "hi"}], CallSpec(tools=tuple(TOOLS), tool_choice="get_order"))
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_order"}} and body["top_k"] == 5
    with pytest.raises(ValueError):
        wire_messages([{"role": "robot", "content": "x"}])


def test_retryable_failures_are_retried_and_client_errors_are_not():
    faults = Faults(error_429=1.0, retry_after_s=0.01)
    with FakeOpenAIServer(ScriptedResponder([text("fine")], cycle=True), faults=faults) as srv:
        client = direct_client(srv.base_url, max_retries=2)
        with pytest.raises(ModelCallError, match="429"):
            asyncio.run(client.chat(MSGS))
        assert srv.count == 3  # the first try and two retries
        for kind in ("malformed_body", "drop_connection", "error_500"):
            srv.faults = Faults(**{kind: 0.5}, seed=3)
            srv.reset()
            ok = asyncio.run(direct_client(srv.base_url, max_retries=8).chat(MSGS))
            assert ok.text == "fine" and srv.summary()["requests"] >= 1
    with FakeOpenAIServer(ScriptedResponder([http_error(400, "bad request")])) as srv:
        with pytest.raises(ModelCallError, match="400"):
            asyncio.run(direct_client(srv.base_url, max_retries=3).chat(MSGS))
        assert srv.count == 1


def test_roles_on_one_endpoint_share_one_pool():
    from gem_agents.providers.openai_direct import close_pools, pool_for

    async def go():
        same = pool_for("http://127.0.0.1:1/v1", 5) is pool_for("http://127.0.0.1:1/v1", 5)
        close_pools()
        return same

    assert asyncio.run(go())
