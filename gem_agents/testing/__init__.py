"""Test helpers: a local fake OpenAI-compatible server (no network, no LLM)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gem_agents.testing.fake_openai import (
        FAULT_KINDS,
        FakeOpenAIServer,
        Faults,
        HttpError,
        RecordedRequest,
        Reply,
        Responder,
        ResponderError,
        RuleResponder,
        ScriptedResponder,
        ToolCall,
        echo_responder,
        http_error,
        last_role_is,
        last_user_contains,
        load_script,
        reply_from_dict,
        text,
        tool_calls,
    )

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "Faults",
    "HttpError",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ResponderError",
    "RuleResponder",
    "ScriptedResponder",
    "ToolCall",
    "echo_responder",
    "http_error",
    "last_role_is",
    "last_user_contains",
    "load_script",
    "reply_from_dict",
    "text",
    "tool_calls",
]


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so `python -m gem_agents.testing.fake_openai` does not import the module twice."""
    if name in __all__:
        return getattr(importlib.import_module("gem_agents.testing.fake_openai"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
