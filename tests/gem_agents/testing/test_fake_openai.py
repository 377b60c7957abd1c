"""The fake OpenAI server, driven by the real langchain-openai ChatOpenAI client (no network, no LLM)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import openai._base_client
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from gem_agents.testing import (
    FAULT_KINDS,
    FakeOpenAIServer,
    Faults,
    RuleResponder,
    ScriptedResponder,
    echo_responder,
    http_error,
    last_role_is,
    last_user_contains,
    load_script,
    text,
    tool_calls,
)


@tool
def get_balance(account: str) -> str:
    """Return the balance of an account."""
    return "42"


class Verdict(BaseModel):
    ok: bool
    reason: str


def chat(srv: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    """A real ChatOpenAI pointed at the fake server; no retries unless asked."""
    kwargs.setdefault("max_retries", 0)
    return ChatOpenAI(base_url=srv.base_url, api_key="test", model="fake-model", **kwargs)


def raw_post(srv: FakeOpenAIServer, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """POST /v1/chat/completions with the stdlib; returns status, headers, body bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def wait_until(condition: Callable[[], bool], limit_s: float = 30.0) -> bool:
    """Poll `condition` until it holds; the limit only stops a broken server from hanging the suite."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


# ---------------------------------------------------------------------------------------------------------
# Happy paths through ChatOpenAI


def test_plain_text_with_usage(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder([text("hello there", prompt_tokens=7), text("second")])
    msg = chat(srv, max_tokens=64).invoke("hi")
    assert isinstance(msg, AIMessage) and msg.content == "hello there"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == 7
    assert msg.usage_metadata["output_tokens"] == len("hello there") // 4
    assert msg.response_metadata["model_name"] == "fake-model"
    assert msg.response_metadata["finish_reason"] == "stop"
    body = srv.requests[0].body
    assert body is not None and body["model"] == "fake-model"
    assert body["max_completion_tokens"] == 64  # what ChatOpenAI sends for max_tokens
    # Default usage is a deterministic estimate, never zero.
    msg2 = chat(srv).invoke("again")
    assert msg2.usage_metadata is not None and msg2.usage_metadata["input_tokens"] >= 1


def test_tool_calls_parsed(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder(
        [
            tool_calls(
                {"name": "get_balance", "arguments": {"account": "a1"}}, ("get_balance", {"account": "b2"})
            )
        ]
    )
    msg = chat(srv).bind_tools([get_balance], tool_choice="any").invoke("balance?")
    assert [(c["name"], c["args"], c["id"]) for c in msg.tool_calls] == [
        ("get_balance", {"account": "a1"}, "call_1"),
        ("get_balance", {"account": "b2"}, "call_2"),
    ]
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    body = srv.requests[0].body
    assert body is not None and body["tool_choice"] == "required"
    assert body["tools"][0]["function"]["name"] == "get_balance"


def test_invalid_tool_json_becomes_invalid_tool_calls(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder([tool_calls(("get_balance", '{"account": '))])
    msg = chat(srv).bind_tools([get_balance]).invoke("balance?")
    assert msg.tool_calls == []
    assert len(msg.invalid_tool_calls) == 1
    bad = msg.invalid_tool_calls[0]
    assert bad["name"] == "get_balance" and bad["args"] == '{"account": ' and bad["error"]


async def test_astream_tool_calls_and_usage(srv: FakeOpenAIServer) -> None:
    long_args = {"account": "x" * 50}  # longer than one 16-char delta, so arguments arrive in pieces
    srv.responder = ScriptedResponder([tool_calls(("get_balance", long_args), content="let me check")])
    chunks = [c async for c in chat(srv, stream_usage=True).bind_tools([get_balance]).astream("hi")]
    assert len(chunks) > 5
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert isinstance(total, AIMessageChunk)
    assert total.content == "let me check"
    assert [(c["name"], c["args"], c["id"]) for c in total.tool_calls] == [
        ("get_balance", long_args, "call_1")
    ]
    assert total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] > 0 and total.usage_metadata["output_tokens"] > 0
    body = srv.requests[0].body
    assert body is not None and body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_raw_sse_shape(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder([text("abc")])
    body = {"model": "m1", "messages": [{"role": "user", "content": "x"}], "stream": True}
    status, headers, raw = raw_post(srv, body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: ") :] for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["model"] for c in chunks} == {"m1"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)  # no include_usage, no usage chunk
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_structured_output_json_schema(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder([text('{"ok": true, "reason": "fine"}')])
    out = chat(srv).with_structured_output(Verdict, method="json_schema").invoke("judge")
    assert out == Verdict(ok=True, reason="fine")
    body = srv.requests[0].body
    assert body is not None and body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Verdict"


def test_rule_responder_multi_turn(srv: FakeOpenAIServer) -> None:
    srv.responder = RuleResponder(
        [
            (last_role_is("tool"), text("your balance is 42")),
            (last_user_contains("balance"), tool_calls(("get_balance", {"account": "a"}))),
        ],
        default=lambda body: text(f"{len(body['messages'])} messages"),
    )
    llm = chat(srv).bind_tools([get_balance])
    first = llm.invoke("what is my balance?")
    assert first.tool_calls[0]["name"] == "get_balance"
    result = get_balance.invoke(first.tool_calls[0])
    second = llm.invoke(["what is my balance?", first, result])
    assert second.content == "your balance is 42"
    assert llm.invoke("hello").content == "1 messages"


def test_scripted_exhausted_is_a_500_and_cycle_repeats(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder(["only one"])
    assert chat(srv).invoke("a").content == "only one"
    with pytest.raises(openai.InternalServerError, match="exhausted"):
        chat(srv).invoke("b")
    assert "exhausted" in srv.responder_errors[0]
    srv.responder = ScriptedResponder(["x", "y"], cycle=True)
    assert [chat(srv).invoke("q").content for _ in range(3)] == ["x", "y", "x"]


# ---------------------------------------------------------------------------------------------------------
# Errors and faults


def test_responder_http_error_429_retry_after_is_retried(
    srv: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's waits are recorded, not slept: it must wait the server's Retry-After (0.05 s), not its
    # own 0.375-0.5 s jittered default backoff, and exactly once.
    sleeps: list[float] = []
    monkeypatch.setattr(openai._base_client, "time", types.SimpleNamespace(sleep=sleeps.append, time=time.time))
    srv.responder = ScriptedResponder([http_error(429, "slow down", retry_after=0.05), text("ok")])
    assert chat(srv, max_retries=2).invoke("hi").content == "ok"
    assert srv.count == 2
    assert sleeps == [0.05]


def test_injected_429_and_500_retried_by_client(srv: FakeOpenAIServer) -> None:
    srv.faults = Faults(error_429=1.0, retry_after_s=0.05)
    with pytest.raises(openai.RateLimitError) as info:
        chat(srv, max_retries=2).invoke("hi")
    assert info.value.response.headers["retry-after"] == "0.05"
    assert srv.count == 3 and srv.fault_counts["error_429"] == 3  # 1 try + 2 retries

    srv.reset()
    srv.faults = Faults(error_500=1.0)
    with pytest.raises(openai.InternalServerError):
        chat(srv, max_retries=0).invoke("hi")
    assert srv.count == 1 and srv.fault_counts["error_500"] == 1


def test_injected_faults_do_not_consume_scripted_replies(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder(["first", "second"])
    srv.faults = Faults(error_500=1.0)
    with pytest.raises(openai.InternalServerError):
        chat(srv).invoke("hi")
    srv.faults = Faults()
    assert chat(srv).invoke("hi").content == "first"


def test_timeout_fault(srv: FakeOpenAIServer) -> None:
    srv.faults = Faults(timeout=1.0, timeout_s=3600)  # the server hangs until stopped; the client gives up
    with pytest.raises(openai.APITimeoutError):  # a server that answered or dropped would not raise this
        chat(srv, timeout=0.5).invoke("hi")
    assert wait_until(lambda: srv.fault_counts["timeout"] == 1)
    assert srv.in_flight == 1  # still hanging after the client left: unanswered, not dropped
    srv.stop()
    assert srv.in_flight == 0  # stop() woke it


def test_drop_connection_fault(srv: FakeOpenAIServer) -> None:
    srv.faults = Faults(drop_connection=1.0)
    with pytest.raises(openai.APIConnectionError) as info:
        chat(srv).invoke("hi")
    assert not isinstance(info.value, openai.APITimeoutError)
    assert srv.fault_counts["drop_connection"] == 1


def test_malformed_body_and_empty_choices(srv: FakeOpenAIServer) -> None:
    # Neither is an openai.APIError, and the openai client never retries them.
    srv.faults = Faults(malformed_body=1.0)
    with pytest.raises(json.JSONDecodeError):
        chat(srv, max_retries=2).invoke("hi")
    assert srv.count == 1

    srv.faults = Faults(empty_choices=1.0)
    status, _, raw = raw_post(srv, {"model": "m", "messages": []})
    assert status == 200 and json.loads(raw)["choices"] == []
    with pytest.raises(IndexError):  # langchain builds a ChatResult with no generations
        chat(srv).invoke("hi")


def test_content_faults_rewrite_tool_calls(srv: FakeOpenAIServer) -> None:
    srv.responder = ScriptedResponder([text("no tools here")], cycle=True)
    llm = chat(srv).bind_tools([get_balance])

    srv.faults = Faults(unknown_tool=1.0)
    msg = llm.invoke("hi")
    assert len(msg.tool_calls) == 1 and msg.tool_calls[0]["name"] not in {"get_balance"}

    srv.faults = Faults(invalid_tool_json=1.0)
    msg = llm.invoke("hi")
    assert msg.tool_calls == [] and msg.invalid_tool_calls[0]["name"] == "get_balance"


def test_seeded_faults_reproducible() -> None:
    rates = dict(error_500=0.1, error_429=0.1, malformed_body=0.1, empty_choices=0.1, drop_connection=0.1)
    rates |= dict(invalid_tool_json=0.2, unknown_tool=0.2, retry_after_s=0)

    def run(seed: int) -> list[list[str]]:
        with FakeOpenAIServer(faults=Faults(seed=seed, **rates)) as server:
            for _ in range(50):
                try:
                    raw_post(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
                except (OSError, http.client.HTTPException):
                    pass  # dropped connections
            seq = [r.faults for r in server.requests]
            assert sum(server.fault_counts.values()) == sum(len(f) for f in seq)
            return seq

    first, again, other = run(7), run(7), run(8)
    assert len(first) == 50 and first == again
    assert first != other
    kinds = {k for f in first + other for k in f}
    assert kinds <= set(FAULT_KINDS) and len(kinds) >= 5


def test_faults_settable_at_runtime_and_latency(srv: FakeOpenAIServer) -> None:
    # The server records the latency it waited out before answering; new faults apply to the next request.
    srv.faults = Faults(latency_s=0.2)
    assert chat(srv).invoke("slow").content == "echo: slow"
    srv.faults = Faults()
    assert chat(srv).invoke("fast").content == "echo: fast"
    assert [r.latency_s for r in srv.requests] == [0.2, 0.0]


# ---------------------------------------------------------------------------------------------------------
# Log, routes, lifecycle, concurrency


def test_request_log_models_and_404(srv: FakeOpenAIServer) -> None:
    assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
    assert srv.count == 0
    chat(srv).invoke("one")
    chat(srv).invoke("two")
    assert srv.count == 2
    assert [b["messages"][-1]["content"] for b in srv.bodies if b] == ["one", "two"]
    assert srv.requests[0].time <= srv.requests[1].time
    srv.reset()
    assert srv.count == 0 and srv.requests == []

    models = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0).models.list()
    assert [m.id for m in models.data] == ["fake-model"]

    with pytest.raises(openai.NotFoundError) as info:
        openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0).embeddings.create(
            model="e", input="x"
        )
    assert info.value.body["code"] == "unknown_url"  # type: ignore[index]
    assert srv.count == 2 and srv.requests[-1].path == "/v1/embeddings"


def test_stop_wakes_hung_requests_and_context_manager() -> None:
    server = FakeOpenAIServer(faults=Faults(timeout=1.0)).start()
    url = server.base_url
    llm = ChatOpenAI(base_url=url, api_key="test", model="fake-model", max_retries=0, timeout=5)

    async def hang_then_stop() -> BaseException | None:
        task = asyncio.ensure_future(llm.ainvoke("hi"))
        assert await asyncio.to_thread(wait_until, lambda: server.in_flight == 1)  # hanging in the server
        await asyncio.to_thread(server.stop)
        assert server.in_flight == 0  # stop() woke the hang (it would otherwise last timeout_s, 30 s)
        try:
            await task
        except BaseException as e:  # the hung request ends as a connection error
            return e
        return None

    err = asyncio.run(hang_then_stop())
    assert isinstance(err, openai.APIConnectionError)
    server.stop()  # idempotent


async def test_concurrent_requests_are_served_concurrently(srv: FakeOpenAIServer) -> None:
    # Counted, not timed: a serial server never has two requests inside the responder at once,
    # however fast or loaded the machine is.
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def slow_echo(body: dict[str, Any]) -> Any:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return echo_responder(body)

    srv.responder = slow_echo
    llm = chat(srv)
    replies = await asyncio.gather(*(llm.ainvoke(f"q{i}") for i in range(200)))
    assert state["most"] > 1, state
    assert srv.count == 200
    assert sorted(r.content for r in replies) == sorted(f"echo: q{i}" for i in range(200))


def test_load_script(tmp_path: Path) -> None:
    script = tmp_path / "replies.jsonl"
    lines = [
        {"content": "hi"},
        {"tool_calls": [{"name": "get_balance", "arguments": "{oops"}]},
        {"error": {"status": 503, "message": "busy", "retry_after": 1}},
    ]
    script.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    replies = load_script(script)
    assert replies[0].content == "hi"
    assert replies[1].tool_calls[0].arguments == "{oops"
    assert replies[2].error is not None and replies[2].error.status == 503
    assert replies[2].error.headers == {"Retry-After": "1"}
