"""Who is to blame for a failed rollout: the assistant, the user simulator, the environment or the task.

Rules decide first, in this order (docs/verification.md lists them):

task         the task has no criterion, its gold actions do not run on a fresh backend, or its
             criteria contradict each other
environment  a tool message the backend would not have produced (when the environment wrote the tool
             messages), an error nobody planned injected by the environment, or a backend that crashed
             on a call equal to a gold action
user         the simulator gave a value it was not given (and the assistant used it), said a known fact
             with another value, ended the dialogue while the assistant was still asking or before it
             ever brought up one of its requests, or asked for a write outside the task
assistant    everything else — unless a judge callable is given, which then decides the rest

Rules only look at the transcript, the replay and the task; they never call a model.
"""

from __future__ import annotations

import re
from typing import Any

from tools_runtime.records import Blame, Failure, Scenario
from tools_runtime.tasks import Task
from tools_runtime.verification.components import Judge, _mentions, args_match, norm_text, norm_value
from tools_runtime.verification.replay import Replay, tool_calls_of

_TASK_CODES = {"empty_criteria", "gold_unreachable", "inconsistent_criteria", "invalid_reference_plan"}
# Spaces only ([ \t]), never a newline: "Here are the details:\n- title: X" is two lines, and a `\s*` after
# the colon read the second as the first one's value and skipped it.
_FACT_LINE = re.compile(r"^[ \t]*[-*]?[ \t]*([A-Za-z][A-Za-z0-9 _\-]{0,40}?)[ \t]*:[ \t]*(.+?)[ \t]*$", re.M)
# The same fact said in a sentence, as the scripted user says it: "the reason is damaged, and the …".
_FACT_SENTENCE = re.compile(r"\b(?:my|the)\s+([A-Za-z][A-Za-z0-9 _\-]{0,40}?)\s+(?:is|are)\s+"
                            r"(.+?)(?=,\s+(?:and\s+)?(?:my|the|turn)\s|[.;](?:\s|$)|$)", re.I | re.M)


def _user_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("content") or "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]


def _known_values(scenario: Scenario, task: Task) -> list[Any]:
    return list(task.known().values()) + list(scenario.known_info.values())


def _tool_values(replay: Replay) -> list[str]:
    out: list[str] = []

    def walk(obj: Any, depth: int = 0) -> None:
        if depth > 5:
            return
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, list):
            for v in obj[:50]:
                walk(v, depth + 1)
        elif obj is not None:
            out.append(str(obj))

    for rc in replay.calls:
        walk(rc.record.result)
    return out


def user_gave_unknown_fact(messages: list[dict[str, Any]], replay: Replay, scenario: Scenario, task: Task,
                           failures: list[Failure]) -> str | None:
    """A wrong argument the user said, though it is no value the user was given or a tool returned."""
    wrong_at = {f.index for f in failures if f.code == "wrong_arguments"}
    if not wrong_at:
        return None
    known = [norm_value(v) for v in _known_values(scenario, task)]
    produced = [norm_value(v) for v in _tool_values(replay)]
    users = _user_texts(messages)
    golds = {a.tool: a.arguments for a in task.gold_actions}
    for rc in replay.calls:
        if rc.message_index not in wrong_at or rc.record.name not in golds:
            continue
        args = rc.record.arguments if isinstance(rc.record.arguments, dict) else {}
        for key in args_match(golds[rc.record.name], args):
            value = args.get(key)
            if value is None or norm_value(value) in known or norm_value(value) in produced:
                continue
            if any(_mentions(text, value) for text in users):
                return f"the user said {key}={value!r}, a value the task never gave them"
    return None


def user_contradicted(messages: list[dict[str, Any]], scenario: Scenario, task: Task) -> str | None:
    """A `words: value` line of the user that names a known fact with another value."""
    known = {norm_text(k.split("@")[0]): v for k, v in {**scenario.known_info, **task.known()}.items()}
    for text in _user_texts(messages):
        for m in [*_FACT_LINE.finditer(text), *_FACT_SENTENCE.finditer(text)]:
            key = norm_text(m.group(1))
            if key in known and not _mentions(m.group(2), known[key]):
                return f"the user said {m.group(1).strip()} is {m.group(2).strip()!r}, their instruction says {known[key]!r}"
    return None


def user_ended_early(messages: list[dict[str, Any]], failures: list[Failure], ended_by: str) -> str | None:
    """The user stopped while a required write was missing and the assistant's last words were a question."""
    if ended_by != "user" or not any(f.code == "missing_required_call" for f in failures):
        return None
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"
                 and not tool_calls_of(m)), None)
    if last is not None and str(last.get("content") or "").rstrip().endswith("?"):
        return "the user ended the dialogue while the assistant was still asking for what it needed"
    return None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", norm_text(text)) if len(w) > 3}


def user_never_asked(messages: list[dict[str, Any]], scenario: Scenario, failures: list[Failure],
                     ended_by: str) -> str | None:
    """The user ended the dialogue with a request open that it never brought up (most of its words unsaid)."""
    if ended_by != "user":
        return None
    said = set().union(*(_words(t) for t in _user_texts(messages))) if _user_texts(messages) else set()
    for f in failures:
        if f.code != "request_unanswered":
            continue
        m = re.search(r"request (\d+)", f.reason)
        goal = int(m.group(1)) - 1 if m else -1
        if 0 <= goal < len(scenario.goals):
            words = _words(scenario.goals[goal].description)
            if words and len(words & said) / len(words) < 0.5:
                return f"the user ended the dialogue without ever asking for request {goal + 1}"
    return None


def user_asked_outside(messages: list[dict[str, Any]], replay: Replay, failures: list[Failure]) -> str | None:
    """An extra write whose tool words the user asked for in so many words."""
    extra_at = {f.index for f in failures if f.code == "extra_write"}
    users = [norm_text(t) for t in _user_texts(messages)]
    for rc in replay.calls:
        if rc.message_index not in extra_at:
            continue
        # Every word of the tool's name (verb and noun): "delete" and "order" both asked for.
        words = [w for w in norm_text(rc.record.name).split() if len(w) > 2]
        if len(words) > 1 and any(all(re.search(rf"\b{re.escape(w.rstrip('s'))}", text) for w in words)
                                  for text in users):
            return f"the user asked for {rc.record.name}, which the task does not include"
    return None


def environment_fault(failures: list[Failure], replay: Replay, task: Task, tool_results_by: str) -> str | None:
    """A tool message the backend would not produce, an unplanned injection, or a crashing backend."""
    if tool_results_by == "environment":
        bad = next((f for f in failures if f.code == "tool_result_mismatch"), None)
        if bad is not None:
            return f"the environment answered a call with a result the backend does not give ({bad.reason})"
    for rc in replay.calls:
        err = rc.record.error or {}
        if rc.record.injected and any(f.code == "unplanned_error" and f.index == rc.message_index for f in failures):
            return f"the environment injected an error nobody planned into {rc.record.name}"
        if err.get("code") == "execution_error" and any(
                a.tool == rc.record.name and not args_match(a.arguments, rc.record.arguments) for a in task.gold_actions):
            return f"the backend crashed on {rc.record.name}, a call equal to a gold action ({err.get('message')})"
    return None


def assign_blame(failures: list[Failure], messages: list[dict[str, Any]], replay: Replay, scenario: Scenario,
                 task: Task, *, ended_by: str = "", tool_results_by: str = "environment",
                 judge: Judge | None = None) -> tuple[Blame, str]:
    """(blame, reason) for a failed rollout: rules first, then the judge, else the assistant."""
    task_fault = next((f for f in failures if f.code in _TASK_CODES), None)
    if task_fault is not None:
        return "task", task_fault.reason
    env = environment_fault(failures, replay, task, tool_results_by)
    if env:
        return "environment", env
    for rule in (lambda: user_gave_unknown_fact(messages, replay, scenario, task, failures),
                 lambda: user_contradicted(messages, scenario, task),
                 lambda: user_ended_early(messages, failures, ended_by),
                 lambda: user_never_asked(messages, scenario, failures, ended_by),
                 lambda: None if task.refuse else user_asked_outside(messages, replay, failures)):
        why = rule()
        if why:
            return "user", why
    if judge is not None:
        answer = judge("blame", {"failures": [f.model_dump() for f in failures], "messages": messages,
                                 "task": task.model_dump()})
        decided = answer.get("blame")
        if decided in ("assistant", "user", "environment", "task"):
            return decided, str(answer.get("reason") or "decided by the judge")
    first = failures[0] if failures else None
    return "assistant", (first.reason if first else "the rollout failed")


def blame_for_rollout_error(reason: str) -> str:
    """Who failed a rollout that crashed before it could be verified: the role whose call failed."""
    for role in ("user", "assistant"):
        if f"{role} (" in reason or reason.startswith(f"{role}:"):
            return role
    return "environment"

