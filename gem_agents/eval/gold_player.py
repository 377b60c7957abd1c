"""A scripted assistant that plays a task's gold: the ceiling of `gem eval` (it must score 1.0).

It calls the reference plan's actions in order with their literal arguments (goal by goal, as the
user states them), asks for the confirmation a policy rule requires before such a call, retries a
transient error, tells the user the task's `communicate_info` values, and refuses a task that must be
refused (after the gold look-ups). It never reads the user's words for values: it is the gold.
"""

from __future__ import annotations

import json
from typing import Any

from graphs.roles import RoleView
from tools_runtime.executor import parse_tool_content
from tools_runtime.verification.replay import tool_calls_of

RETRYABLE = {"service_unavailable", "permission_denied"}


def _call(n: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"gold_{n:03d}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def _progress(messages: list[dict[str, Any]]) -> tuple[int, int, dict[str, Any] | None]:
    """(successful calls so far, calls made, the last failed call's message if the last result failed)."""
    ok = made = 0
    last_failed = None
    results = {m.get("tool_call_id"): m for m in messages if m.get("role") == "tool"}
    for m in messages:
        for c in tool_calls_of(m):
            made += 1
            res = results.get(c.get("id"))
            if res is not None and not parse_tool_content(res.get("content"))[0]:
                ok += 1
                last_failed = None
            elif res is not None:
                last_failed = c
    return ok, made, last_failed


async def gold_player(view: RoleView) -> dict[str, Any]:
    """The next assistant message: the next gold call, a confirmation question, or the closing text."""
    sc = view.scenario
    messages = view.messages
    task = sc.task
    ok, made, failed = _progress(messages)
    if failed is not None and messages and messages[-1].get("role") == "tool":
        err = parse_tool_content(messages[-1].get("content"))[1]
        code = (err.get("error") or {}).get("code") if isinstance(err, dict) else None
        if code in RETRYABLE:
            fn = failed["function"]
            return {"role": "assistant", "content": "That failed for a moment; trying again.",
                    "tool_calls": [_call(made + 1, fn["name"], json.loads(fn["arguments"] or "{}"))]}
    goals_stated = sum(1 for m in messages if m.get("role") == "user")
    pending = [c for c in sc.plan[ok:] if c.goal < max(goals_stated, 1)]
    if pending:
        call = pending[0]
        confirm = [r for r in sc.workflow.policy if r.confirm and call.tool in r.tools and r.strength == "must"]
        last = messages[-1] if messages else {}
        answered_yes = last.get("role") == "user" and str(last.get("content") or "").lower().startswith(("yes", "sure"))
        if confirm and not answered_yes:
            # No values in the question: a user simulator would read them as questions about its facts.
            return {"role": "assistant", "content": "I have everything I need. Shall I go ahead? Please confirm."}
        return {"role": "assistant", "content": "", "tool_calls": [_call(made + 1, call.tool, call.arguments)]}
    if task is not None and task.refuse:
        return {"role": "assistant", "content": "I'm sorry, but I can't do that: our policy does not allow it. "
                                                "Is there anything else I can help you with?"}
    told = ""
    if task is not None and task.communicate_info:
        told = " " + "; ".join(str(v) for v in task.communicate_info) + "."
    return {"role": "assistant", "content": f"Done.{told} Is there anything else I can help you with?"}
