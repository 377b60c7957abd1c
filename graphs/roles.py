"""The one signature every role policy has, and the view of the conversation each role gets.

A policy is `async (RoleView) -> dict`: it receives its own view and returns one OpenAI-format
message. The same dialogue graph runs with scripted policies, chat models or a local model,
because the graph only ever calls this signature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tools_runtime.records import Scenario

STOP_TOKEN = "###STOP###"


@dataclass(frozen=True)
class RoleView:
    """What one role sees on its turn."""

    role: Literal["user", "assistant", "tool_env"]
    messages: list[dict[str, Any]]
    scenario: Scenario
    tools: list[dict[str, Any]] = field(default_factory=list)
    turn: int = 0
    request: dict[str, Any] | None = None


Policy = Callable[[RoleView], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Roles:
    """The policies one rollout runs with. `tool_env` may propose results for `action` tools."""

    user: Policy
    assistant: Policy
    tool_env: Policy | None = None
    name: str = "scripted"
    model: str = ""
    prompts_hash: str = ""
    # The assistant's system prompt for a scenario (its policy and context). When set, the dialogue
    # opens with that system message, so the exported trajectory shows what the assistant was told.
    system: Callable[[Scenario], str] | None = None

    def system_message(self, scenario: Scenario) -> dict[str, Any] | None:
        """The system message a dialogue opens with, or None."""
        if self.system is None:
            return None
        text = self.system(scenario)
        return {"role": "system", "content": text} if text else None


def user_view(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's side of the transcript, roles flipped: the user model speaks as `assistant`.

    Tool traffic is dropped — the user never sees tool calls or results, only what the assistant
    says — and assistant messages that only carried tool calls disappear.
    """
    view = []
    for m in messages:
        role = m.get("role")
        if role == "user":
            view.append({"role": "assistant", "content": m.get("content") or ""})
        elif role == "assistant" and str(m.get("content") or "").strip():
            view.append({"role": "user", "content": m.get("content") or ""})
    return view


def assistant_view(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assistant sees the whole transcript: user turns, its own calls and every tool result."""
    return list(messages)


def is_stop(message: dict[str, Any]) -> bool:
    """True when a user message ends the conversation (flag or the stop token in the text)."""
    return bool(message.get("stop")) or STOP_TOKEN in str(message.get("content") or "")


def strip_stop(message: dict[str, Any]) -> dict[str, Any]:
    """The message without the stop flag or token (what goes into the transcript)."""
    content = str(message.get("content") or "").replace(STOP_TOKEN, "").strip()
    return {"role": "user", "content": content}
