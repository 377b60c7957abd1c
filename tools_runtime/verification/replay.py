"""Replay a transcript's tool calls against a fresh backend and compare every recorded result.

This is what makes a trajectory *grounded*: each tool message must be exactly what the stateful
backend returns for that call at that point. It serves the verifier, `gem replay`, and the
Trajectory Synthesizer's one-shot outputs alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools_runtime.executor import ToolEnvironment, parse_tool_content, tool_message_content
from tools_runtime.records import ExecRecord, Failure, Scenario
from tools_runtime.state import canonical_json, json_copy


@dataclass
class ReplayedCall:
    """One call of the transcript, re-executed: where it is, what ran, what the transcript said."""

    message_index: int
    record: ExecRecord
    recorded: Any = None
    answered_at: int | None = None
    matches: bool = True


@dataclass
class Replay:
    """The outcome of replaying a transcript: per-call records, the final env, divergences."""

    calls: list[ReplayedCall] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    env: ToolEnvironment | None = None

    @property
    def records(self) -> list[ExecRecord]:
        """The executed records in call order."""
        return [c.record for c in self.calls]


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAI `tool_calls` of a message as a list (empty for text messages)."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return calls if isinstance(calls, list) else []


def call_name_args(call: Any) -> tuple[str, Any, str]:
    """(name, raw arguments, id) of one OpenAI tool call, tolerating half-formed ones."""
    if not isinstance(call, dict):
        return "", None, ""
    fn = found if isinstance(found := call.get("function"), dict) else call
    return str(fn.get("name") or ""), fn.get("arguments"), str(call.get("id") or "")


def _same_payload(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)


def replay_dialogue(messages: list[dict[str, Any]], scenario: Scenario, *, check_results: bool = True,
                    stop_at_first_divergence: bool = False, proposals: dict[str, Any] | None = None) -> Replay:
    """Re-execute every tool call in `messages` on a fresh backend built from `scenario`.

    `proposals` maps tool-call ids to results a tool-environment model proposed for tools no
    backend operation fits; the backend's state change still comes from the deterministic op.
    """
    proposals = proposals or {}
    env = ToolEnvironment(scenario.workflow, json_copy(scenario.initial_state), scenario.planned_errors)
    out = Replay(env=env)
    # Ids may repeat across turns (`call_0` in every turn is common in third-party data): each
    # call is answered by the first unused tool message with its id that comes after it.
    answers: dict[str, list[tuple[int, Any]]] = {}
    for i, msg in enumerate(messages):
        if isinstance(msg, dict) and msg.get("role") == "tool":
            answers.setdefault(str(msg.get("tool_call_id") or ""), []).append((i, msg.get("content")))
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        for call in tool_calls_of(msg):
            name, raw_args, call_id = call_name_args(call)
            rec = env.call(name, raw_args, call_id)
            if rec.ok and call_id in proposals:
                rec = rec.model_copy(update={"result": proposals[call_id], "proposed": True})
            answered = _next_answer(answers.get(call_id), i)
            rc = ReplayedCall(message_index=i, record=rec,
                              recorded=answered[1] if answered else None,
                              answered_at=answered[0] if answered else None)
            if check_results and answered is not None:
                is_err, payload = parse_tool_content(answered[1])
                expected_err, expected = parse_tool_content(tool_message_content(rec))
                if is_err != expected_err or not _same_payload(payload, expected):
                    rc.matches = False
                    out.failures.append(Failure(
                        code="tool_result_mismatch", index=answered[0],
                        reason=(f"the tool message for {name} (call {call_id or '?'}) says "
                                f"{_short(answered[1])} but the backend returns {_short(tool_message_content(rec))}")))
            out.calls.append(rc)
            if stop_at_first_divergence and not rc.matches:
                return out
    return out


def _next_answer(queue: list[tuple[int, Any]] | None, after: int) -> tuple[int, Any] | None:
    """Take the first answer in `queue` that comes after message `after` (None when there is none)."""
    while queue:
        answer = queue.pop(0)
        if answer[0] > after:
            return answer
    return None


def _short(value: Any, n: int = 160) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= n else text[: n - 1] + "…"
