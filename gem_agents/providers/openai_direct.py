"""OpenAI-compatible chat completions posted directly over one pooled aiohttp session per endpoint.

`http_client: direct` on an `openai` role. The messages are already OpenAI dicts, so they go out as
they are: no LangChain round trip (to_langchain → AIMessage → from_ai_message) and no OpenAI SDK
parameter transform, which walks every message and tool against its TypedDicts and was the largest
CPU cost per call (docs/throughput.md). One connection pool per (event loop, base URL) serves every
role on that endpoint; it is aiohttp's because httpx's pool scans every connection on each request
(measured: ~5-9 ms of CPU per call at C = 16-256 against ~0.5 ms for aiohttp). What it sends and returns matches the ChatOpenAI path: `max_completion_tokens`,
tools with `tool_choice`, `response_format` json_schema, `extra_body` merged in; tool-call arguments
that are a JSON object are re-encoded like `from_ai_message`, anything else is kept raw so the
tool environment can answer it with an error. Failures raise exceptions `ModelClient.classify`
understands (status code and Retry-After on HTTP errors, APIConnectionError for a transport failure,
TimeoutError, ValueError for a malformed body).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, Completer
from gem_agents.providers.openai_provider import api_key_for, rate_limiter

_loads: Callable[[str | bytes], Any]
try:  # a transitive dependency of langchain-core (langsmith); the stdlib encoder is the fallback
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # pragma: no cover — exercised only where orjson is absent
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    _loads = json.loads


class HTTPStatusError(RuntimeError):
    """An HTTP error answer; `status_code` and `response.headers` are what ModelClient.classify reads."""

    def __init__(self, status_code: int, headers: Any, message: str):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.response = SimpleNamespace(headers=headers)


class APIConnectionError(RuntimeError):
    """The connection failed or dropped (named like the SDK's, which ModelClient.classify retries)."""


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aiohttp.ClientSession]] = (
    weakref.WeakKeyDictionary())


def pool_for(base_url: str, timeout_s: float) -> aiohttp.ClientSession:
    """The one pooled session of this event loop for `base_url` (created on first use)."""
    loop = asyncio.get_running_loop()
    pools = _POOLS.setdefault(loop, {})
    session = pools.get(base_url)
    if session is None or session.closed:
        # No connection limit here: the endpoint's limiter (ModelHub) bounds what is in flight.
        session = aiohttp.ClientSession(base_url.rstrip("/") + "/", connector=aiohttp.TCPConnector(limit=0),
                                        timeout=aiohttp.ClientTimeout(total=timeout_s))
        pools[base_url] = session
    return session


def close_pools() -> None:
    """Close every pooled session now (synchronously: ModelHub.close is not a coroutine)."""
    for pools in list(_POOLS.values()):
        for session in pools.values():
            connector = session.connector
            if connector is not None and not connector.closed:
                connector._close()  # closes the transports at once; the async close only waits for them
        pools.clear()


def _content(value: Any) -> Any:
    if isinstance(value, list):  # content parts: the text, as the LangChain path sends it
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return "" if value is None else value


def wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our transcript as the API takes it: only the fields the API knows, content as text."""
    out = []
    for m in messages:
        role = m.get("role")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": _content(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = [{"id": c.get("id") or "", "type": "function",
                                  "function": {"name": (c.get("function") or {}).get("name", ""),
                                               "arguments": _args_text((c.get("function") or {}).get("arguments"))}}
                                 for c in m["tool_calls"]]
        elif role == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or "")
        elif role not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        out.append(msg)
    return out


def _args_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw or {}, ensure_ascii=False)


def reply_message(choice: dict[str, Any]) -> dict[str, Any]:
    """The assistant dict of one choice, as `from_ai_message` would build it."""
    message = choice["message"]
    out: dict[str, Any] = {"role": "assistant", "content": _content(message.get("content"))}
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        raw = fn.get("arguments")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
            text = json.dumps(args, ensure_ascii=False) if isinstance(args, dict) else raw
        except ValueError:
            text = raw
        calls.append({"id": call.get("id") or "", "type": "function",
                      "function": {"name": fn.get("name") or "", "arguments": text if isinstance(text, str) else ""}})
    if calls:
        out["tool_calls"] = calls
    return out


def request_body(cfg: RoleConfig, messages: list[dict[str, Any]], spec: CallSpec) -> dict[str, Any]:
    """The chat.completions request for one call."""
    body: dict[str, Any] = {"model": cfg.model, "messages": wire_messages(messages), "temperature": cfg.temperature,
                            "max_completion_tokens": cfg.max_tokens, "stream": False}
    if spec.tools:
        body["tools"] = [t if t.get("type") == "function" else {"type": "function", "function": t}
                         for t in spec.tools]
        if spec.tool_choice:
            choice = "required" if spec.tool_choice == "any" else spec.tool_choice  # LangChain's alias
            body["tool_choice"] = (choice if choice in ("auto", "none", "required")
                                   else {"type": "function", "function": {"name": choice}})
    elif spec.json_schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": spec.schema_name,
                                                                           "schema": spec.json_schema}}
    body.update(cfg.extra_body or {})
    return body


def direct_completer(cfg: RoleConfig) -> Completer:
    """A completer posting to `{base_url}/chat/completions` with the endpoint's pooled client."""
    headers = {"Authorization": f"Bearer {api_key_for(cfg)}", "Content-Type": "application/json"}
    limiter = rate_limiter(cfg)
    base_url = cfg.base_url or "https://api.openai.com/v1"

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        if limiter is not None:
            await limiter.aacquire()
        # Relative to the session's base URL, which ends in "/": {base_url}/chat/completions.
        session = pool_for(base_url, cfg.timeout_s)
        try:
            async with session.post("chat/completions", data=_dumps(request_body(cfg, messages, spec)),
                                    headers=headers) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise HTTPStatusError(resp.status, resp.headers.copy(), raw[:500].decode("utf-8", "replace"))
        except aiohttp.ClientError as exc:  # refused, reset, dropped mid-answer: retryable
            raise APIConnectionError(f"{type(exc).__name__}: {exc}") from exc
        data = _loads(raw)  # a malformed body raises ValueError: retryable
        if not isinstance(data, dict) or not data.get("choices"):
            raise ValueError("the endpoint answered without choices")
        usage = data.get("usage") or {}
        return reply_message(data["choices"][0]), {"input_tokens": int(usage.get("prompt_tokens") or 0),
                                                   "output_tokens": int(usage.get("completion_tokens") or 0)}

    return complete
