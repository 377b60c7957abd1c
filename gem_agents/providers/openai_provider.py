"""Any OpenAI-compatible server (OpenAI, `vllm serve`, llama.cpp's server, SGLang) via ChatOpenAI."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI
from openai import DefaultAsyncHttpxClient

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, Completer
from gem_agents.models.messages import from_ai_message, to_langchain


class MissingAPIKey(ValueError):
    """The environment variable a config names for the API key is not set."""


def api_key_for(cfg: RoleConfig) -> str:
    """The key from the environment variable the config names (never from the config itself)."""
    if not cfg.api_key_env:
        return "not-needed"  # local servers accept anything, but the client insists on a value
    value = os.environ.get(cfg.api_key_env)
    if not value:
        raise MissingAPIKey(f"environment variable {cfg.api_key_env} (api_key_env) is not set")
    return value


_LIMITERS: dict[tuple[str, str, float], InMemoryRateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter(cfg: RoleConfig) -> InMemoryRateLimiter | None:
    """The requests-per-second limiter of an endpoint, shared by every role that talks to it."""
    if not cfg.rate_limit_rps:
        return None
    key = (cfg.base_url or "https://api.openai.com/v1", cfg.model, float(cfg.rate_limit_rps))
    with _LIMITERS_LOCK:
        if key not in _LIMITERS:
            _LIMITERS[key] = InMemoryRateLimiter(requests_per_second=cfg.rate_limit_rps, check_every_n_seconds=0.02,
                                                 max_bucket_size=max(1, int(cfg.rate_limit_rps)))
        return _LIMITERS[key]


def make_chat_openai(cfg: RoleConfig, http_async_client: Any = None) -> ChatOpenAI:
    """The ChatOpenAI client for a role; retries are ours (ModelClient), so the client's are off."""
    limiter = rate_limiter(cfg)
    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=api_key_for(cfg),
                      temperature=cfg.temperature, max_tokens=cfg.max_tokens, timeout=cfg.timeout_s,
                      max_retries=0, use_responses_api=False, extra_body=cfg.extra_body or None,
                      rate_limiter=limiter, http_async_client=http_async_client)


def openai_completer(cfg: RoleConfig) -> Completer:
    """A completer over ChatOpenAI: tools via `bind_tools`, JSON schema via `response_format`.

    One client per event loop: langchain-openai otherwise shares a process-wide httpx client per
    base_url, and a second `asyncio.run` in the same process (a notebook, a test, a resumed run)
    fails with "Event loop is closed" on the first loop's pooled connections.
    """
    make_chat_openai(cfg)  # a missing API key is a config error now, not on the first call
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ChatOpenAI] = weakref.WeakKeyDictionary()

    def llm_for_this_loop() -> ChatOpenAI:
        loop = asyncio.get_running_loop()
        if loop not in clients:
            clients[loop] = make_chat_openai(cfg, http_async_client=DefaultAsyncHttpxClient())
        return clients[loop]

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        llm = llm_for_this_loop()
        runnable: Any = llm
        if spec.tools:
            runnable = llm.bind_tools(list(spec.tools), tool_choice=spec.tool_choice)
        elif spec.json_schema is not None:
            runnable = llm.bind(response_format={"type": "json_schema", "json_schema": {
                "name": spec.schema_name, "schema": spec.json_schema}})
        ai = await runnable.ainvoke(to_langchain(messages))
        usage = dict(getattr(ai, "usage_metadata", None) or {})
        return from_ai_message(ai), {"input_tokens": int(usage.get("input_tokens", 0)),
                                     "output_tokens": int(usage.get("output_tokens", 0))}

    return complete
