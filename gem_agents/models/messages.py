"""OpenAI chat dicts ⇄ LangChain messages, keeping malformed tool calls instead of crashing.

langchain-core's `convert_to_messages` raises on tool-call arguments that are not JSON, and
`convert_to_openai_messages` drops `invalid_tool_calls`. A model's broken call must survive both
ways so the tool environment can answer it with an error the assistant sees.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)


def _content(value: Any) -> str:
    if isinstance(value, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return "" if value is None else str(value)


def to_langchain(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """Convert OpenAI-format dicts to LangChain messages."""
    out: list[BaseMessage] = []
    for m in messages:
        role = m.get("role")
        content = _content(m.get("content"))
        if role in ("system", "developer"):
            out.append(SystemMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        elif role == "tool":
            out.append(ToolMessage(content=content, tool_call_id=str(m.get("tool_call_id") or "")))
        elif role == "assistant":
            good, bad = [], []
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                raw = fn.get("arguments")
                try:
                    args = json.loads(raw) if isinstance(raw, str) else (raw or {})
                    if not isinstance(args, dict):
                        raise ValueError("arguments are not an object")
                    good.append({"name": fn.get("name", ""), "args": args, "id": call.get("id"), "type": "tool_call"})
                except ValueError:
                    bad.append({"name": fn.get("name"), "args": raw if isinstance(raw, str) else json.dumps(raw),
                                "id": call.get("id"), "error": "arguments are not a JSON object",
                                "type": "invalid_tool_call"})
            out.append(AIMessage(content=content, tool_calls=good, invalid_tool_calls=bad))
        else:
            raise ValueError(f"unknown role {role!r}")
    return out


def from_ai_message(ai: BaseMessage) -> dict[str, Any]:
    """An AIMessage as an OpenAI assistant dict, invalid tool calls included with raw arguments."""
    msg: dict[str, Any] = {"role": "assistant", "content": _content(ai.content)}
    calls = []
    for call in getattr(ai, "tool_calls", None) or []:
        calls.append({"id": call.get("id") or "", "type": "function",
                      "function": {"name": call["name"], "arguments": json.dumps(call.get("args") or {},
                                                                                 ensure_ascii=False)}})
    for call in getattr(ai, "invalid_tool_calls", None) or []:
        raw = call.get("args")
        calls.append({"id": call.get("id") or "", "type": "function",
                      "function": {"name": call.get("name") or "", "arguments": raw if isinstance(raw, str) else ""}})
    if calls:
        msg["tool_calls"] = calls
    return msg
