"""Any OpenAI-compatible server (OpenAI, `vllm serve`, llama.cpp's server, SGLang) via ChatOpenAI."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI

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


def make_chat_openai(cfg: RoleConfig) -> ChatOpenAI:
    """The ChatOpenAI client for a role; retries are ours (ModelClient), so the client's are off."""
    limiter = InMemoryRateLimiter(requests_per_second=cfg.rate_limit_rps, check_every_n_seconds=0.05,
                                  max_bucket_size=max(1, int(cfg.rate_limit_rps))) if cfg.rate_limit_rps else None
    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=api_key_for(cfg),
                      temperature=cfg.temperature, max_tokens=cfg.max_tokens, timeout=cfg.timeout_s,
                      max_retries=0, use_responses_api=False, extra_body=cfg.extra_body or None,
                      rate_limiter=limiter)


def openai_completer(cfg: RoleConfig) -> Completer:
    """A completer over ChatOpenAI: tools via `bind_tools`, JSON schema via `response_format`."""
    llm = make_chat_openai(cfg)

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
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
