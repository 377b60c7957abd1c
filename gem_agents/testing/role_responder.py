"""A fake-server responder that plays the user and the assistant with our scripted policies.

It lets tests and benchmarks drive the real ChatOpenAI client through the dialogue graph with
realistic, scenario-consistent replies and no model: each request is turned back into the role's
view, the scripted policy answers, and its message goes out as the completion.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gem_agents.policies.chat import OPENING, assistant_prompt, user_prompt
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.testing.fake_openai import Reply, ToolCall
from gem_agents.user.scripted import scripted_user
from graphs.roles import STOP_TOKEN, RoleView
from tools_runtime.records import Scenario


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        msg = {k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")}
        msg["content"] = _text(m.get("content"))
        out.append(msg)
    return out


class RoleResponder:
    """Answers assistant requests (they carry `tools`) and user requests for known scenarios.

    Scenarios are found by the workflow title the assistant prompt names, or by the first goal the
    user prompt lists; a single scenario needs no lookup.
    """

    def __init__(self, scenarios: list[Scenario]):
        self.scenarios = list(scenarios)

    def _scenario(self, system: str) -> Scenario:
        if len(self.scenarios) == 1:
            return self.scenarios[0]
        # The exact system prompt names one scenario when workflows (titles) or user facts differ.
        exact = [sc for sc in self.scenarios if system in (user_prompt(sc), assistant_prompt(sc))]
        if exact:
            return exact[0]
        for sc in self.scenarios:
            if sc.goals and sc.goals[0].description in system:
                return sc
        for sc in self.scenarios:
            if (sc.workflow.title or sc.workflow.id) in system:
                return sc
        raise LookupError("no scenario matches this request")

    def __call__(self, body: dict[str, Any]) -> Reply:
        """One completion."""
        messages = _plain(body.get("messages") or [])
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        rest = messages[1:] if system else messages
        if body.get("tools"):
            view = RoleView(role="assistant", messages=rest, scenario=self._scenario(system))
            msg = asyncio.run(scripted_assistant(view))
            calls = [ToolCall(name=c["function"]["name"], arguments=c["function"]["arguments"])
                     for c in msg.get("tool_calls") or []]
            return Reply(content=msg.get("content") or None, tool_calls=calls)
        if rest and rest[0]["role"] == "user" and rest[0]["content"] == OPENING:
            rest = rest[1:]
        if rest and rest[-1]["role"] == "user" and rest[-1]["content"].startswith("(waiting"):
            rest = rest[:-1]
        view = RoleView(role="user", messages=rest, scenario=self._scenario(system))
        msg = asyncio.run(scripted_user(view))
        content = msg.get("content") or ""
        if msg.get("stop") and STOP_TOKEN not in content:
            content += f" {STOP_TOKEN}"
        return Reply(content=content)


def tool_call_json(name: str, arguments: dict[str, Any]) -> ToolCall:
    """A tool call whose arguments are sent as a JSON string."""
    return ToolCall(name=name, arguments=json.dumps(arguments))
