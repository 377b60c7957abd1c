"""The model client every stage and role uses: cache → provider → retries → usage accounting.

Providers only turn (messages, call spec) into (assistant message, usage); everything that must
behave the same whatever the provider — the call cache, backoff on 429/5xx/timeouts/malformed
replies honouring Retry-After, per-endpoint concurrency, token counting per stage — lives here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gem_agents.config import RoleConfig
from gem_agents.models.cache import CallCache, cache_key
from gem_agents.models.usage import UsageMeter


class ModelCallError(RuntimeError):
    """A model call that failed for good (after retries, or with a non-retryable status)."""


@dataclass(frozen=True)
class CallSpec:
    """What a call asks for besides the messages."""

    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: str | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "output"


@dataclass
class ChatReply:
    """One assistant message with its usage; `cached` when it came from the call cache."""

    message: dict[str, Any]
    usage: dict[str, int] = field(default_factory=dict)
    cached: bool = False
    model: str = ""

    @property
    def text(self) -> str:
        """The text content of the reply."""
        return str(self.message.get("content") or "")


Completer = Callable[[list[dict[str, Any]], CallSpec], Awaitable[tuple[dict[str, Any], dict[str, int]]]]

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


def classify(exc: BaseException) -> tuple[bool, float | None]:
    """(retryable?, server-requested delay in seconds) for an exception from a provider."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    retry_after = None
    headers = getattr(response, "headers", None)
    if headers is not None:
        raw = headers.get("retry-after")
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:
            retry_after = None
    if status is not None:
        return int(status) in RETRYABLE_STATUS, retry_after
    # By class names along the MRO: providers wrap transport errors in subclasses of their own
    # (langchain-openai raises OpenAITimeoutError, a subclass of openai.APITimeoutError).
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"APIConnectionError", "APITimeoutError", "TimeoutError", "ConnectError", "ReadTimeout",
                "RemoteProtocolError", "APIResponseValidationError"}:
        return True, None
    # Malformed bodies and empty choices surface as parsing errors deep in the client.
    return isinstance(exc, ValueError | TypeError | KeyError | IndexError | AttributeError), None


class ModelClient:
    """One role's access to its model."""

    def __init__(self, role: str, cfg: RoleConfig, complete: Completer, *, cache: CallCache | None = None,
                 meter: UsageMeter | None = None, limiter: asyncio.Semaphore | None = None,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 30.0):
        self.role = role
        self.cfg = cfg
        self._complete = complete
        self.cache = cache
        self.meter = meter
        self.limiter = limiter or asyncio.Semaphore(cfg.concurrency)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.attempts = 0
        self.retries = 0

    @property
    def model(self) -> str:
        """The model name (or GGUF path) this client talks to."""
        return self.cfg.model or self.cfg.setting("model_path") or self.cfg.setting("model_package") or self.cfg.provider

    async def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
                   tool_choice: str | None = None, json_schema: dict[str, Any] | None = None,
                   schema_name: str = "output", stage: str | None = None, salt: str = "") -> ChatReply:
        """One chat completion, from the cache when this exact call was answered before."""
        spec = CallSpec(tools=tuple(tools) if tools else None, tool_choice=tool_choice, json_schema=json_schema,
                        schema_name=schema_name)
        # The key hashes the whole transcript: computed only when there is a cache to look it up in.
        key = "" if self.cache is None else cache_key(
            provider=self.cfg.provider, model=self.model, base_url=self.cfg.base_url or "", messages=messages,
            tools=list(spec.tools or []), tool_choice=tool_choice, json_schema=json_schema,
            temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens, extra_body=self.cfg.extra_body,
            salt=salt)
        stage = stage or self.role
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                if self.meter is not None:
                    self.meter.add(stage, hit.get("usage"), cached=True)
                return ChatReply(message=hit["message"], usage=hit.get("usage", {}), cached=True, model=self.model)
        message, usage = await self._with_retries(messages, spec)
        if self.meter is not None:
            self.meter.add(stage, usage, cached=False)
        if self.cache is not None:
            self.cache.put(key, {"message": message, "usage": usage})
        return ChatReply(message=message, usage=usage, cached=False, model=self.model)

    async def _with_retries(self, messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict]:
        last: BaseException | None = None
        for attempt in range(self.cfg.max_retries + 1):
            self.attempts += 1
            try:
                async with self.limiter:
                    return await self._complete(messages, spec)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — classified below, re-raised as ModelCallError
                last = exc
                retryable, delay = classify(exc)
                if not retryable or attempt == self.cfg.max_retries:
                    break
                self.retries += 1
                wait = delay if delay is not None else self.backoff_base_s * (2**attempt)
                await asyncio.sleep(min(self.backoff_max_s, wait) * (1 + 0.1 * random.random()))
        raise ModelCallError(f"{self.role} ({self.cfg.provider}:{self.model}): {type(last).__name__}: {last}") from last
