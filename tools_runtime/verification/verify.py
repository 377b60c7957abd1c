"""Trajectory verification: what must hold before a trajectory is exported (docs/design.md §6).

Its components, failure codes and blame are described in docs/verification.md.

`verify` judges a dialogue by its outcome, as components (Verdict.components):

task        the task has a criterion, its gold actions run, its criteria are consistent
dialogue    well-formed roles, every tool call answered exactly once, a final assistant message
schema      every call names a known tool with valid arguments
execution   every tool message equals what the backend returns; errors only where the scenario
            planned them, each followed by a successful retry of the same tool
state, actions, communicate, claims, policy, nl_assertions   the outcome (components.py)
grounding   every value a write uses was given before the call (components.py)

The first four always decide, and `grounding` on our own (`sim`) environments; of the rest, those in
the task's `reward_basis`. `dialogue` also checks that every request was answered before the
assistant's closing message. A scenario without a
task is judged against the task its reference plan implies. `verify_legacy` keeps the imitation
verdict of earlier releases (plan order, every node called, exact state hash) for measurements;
the one-shot synthesizer still uses its building blocks (`check_graph_order`, `check_state`).

Each failure carries a machine-readable `code`, a human `reason` and the message index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tools_runtime.backend import same
from tools_runtime.exec_graph import check_order, parse_graph
from tools_runtime.executor import parse_tool_content
from tools_runtime.records import ComponentVerdict, ExecRecord, Failure, PlannedError, Scenario, Verdict
from tools_runtime.scenario import ScenarioError, replay_plan
from tools_runtime.state import diff_states
from tools_runtime.verification.blame import assign_blame
from tools_runtime.verification.components import (
    COMPONENT_CODES,
    COMPONENTS,
    GROUNDING,
    STRUCTURAL,
    Judge,
    check_actions,
    check_communicate,
    check_grounding,
    check_nl_assertions,
    check_policy,
    check_requests_answered,
    check_state_outcome,
    has_criteria,
    run_gold_actions,
    task_issues,
    task_of,
)
from tools_runtime.verification.replay import Replay, call_name_args, replay_dialogue, tool_calls_of

ROLES = {"system", "developer", "user", "assistant", "tool"}

# Every failure code the verifier can emit, with the check it belongs to (documented in README).
FAILURE_CODES = {
    "unknown_role": "dialogue", "bad_role_sequence": "dialogue", "malformed_tool_call": "dialogue",
    "unanswered_tool_call": "dialogue", "orphan_tool_result": "dialogue", "duplicate_tool_result": "dialogue",
    "no_final_assistant_message": "dialogue", "empty_dialogue": "dialogue", "claim_contradicts_result": "dialogue",
    "turn_budget_exhausted": "dialogue",
    "unknown_tool": "schema", "invalid_arguments": "schema",
    "tool_result_mismatch": "execution", "unplanned_error": "execution", "unrecovered_error": "execution",
    "order_violation": "order", "missing_required_call": "order", "distractor_called": "order",
    "state_mismatch": "state", "invalid_reference_plan": "state",
}
# The outcome verdict's codes, by component (components.py); the structural ones above keep theirs.
FAILURE_CODES.update({code: comp for code, comp in COMPONENT_CODES.items() if code not in FAILURE_CODES})


def check_dialogue(messages: list[Any]) -> list[Failure]:
    """Role sequence and tool-call bookkeeping of an OpenAI-format transcript."""
    if not messages:
        return [Failure(code="empty_dialogue", reason="the transcript has no messages")]
    failures: list[Failure] = []
    ledger = _ToolCallLedger(failures)
    prev_role: str | None = None  # "assistant_text" for an assistant reply without tool calls
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ROLES:
            failures.append(Failure(code="unknown_role", index=i, reason=f"message {i} has role {role!r}"))
            continue
        if role in ("system", "developer"):
            continue
        if role != "tool":
            ledger.close()
        failures += _turn_order_failures(i, role, prev_role)
        if role == "tool":
            ledger.answer(i, msg)
        elif role == "assistant":
            ledger.open(i, msg)
            if not tool_calls_of(msg) and not str(msg.get("content") or "").strip():
                failures.append(Failure(code="bad_role_sequence", index=i,
                                        reason=f"assistant message {i} has neither text nor tool calls"))
        prev_role = "assistant_text" if role == "assistant" and not tool_calls_of(msg) else role
    ledger.close()
    return failures + _final_reply_failures(messages)


@dataclass
class _ToolCallLedger:
    """The open tool calls of a transcript (id → message index); bookkeeping failures go to `failures`."""

    failures: list[Failure]
    pending: dict[str, int] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def open(self, i: int, msg: dict[str, Any]) -> None:
        """Open the calls of assistant message `i`; one without an id, a name or arguments is malformed."""
        for call in tool_calls_of(msg):
            name, args, call_id = call_name_args(call)
            if not name or not call_id or args is None:
                self.failures.append(Failure(code="malformed_tool_call", index=i,
                                             reason=f"a tool call in message {i} lacks an id, a name or arguments"))
            if call_id:
                self.pending[call_id] = i

    def answer(self, i: int, msg: dict[str, Any]) -> None:
        """Close the call tool message `i` answers; answering twice or answering nothing is a failure."""
        call_id = str(msg.get("tool_call_id") or "")
        if call_id in self.pending:
            del self.pending[call_id]
            self.answered.add(call_id)
        elif call_id in self.answered:
            self.failures.append(Failure(code="duplicate_tool_result", index=i,
                                         reason=f"tool call {call_id!r} is answered more than once"))
        else:
            self.failures.append(Failure(code="orphan_tool_result", index=i,
                                         reason=f"tool result {i} answers no open tool call ({call_id!r})"))

    def close(self) -> None:
        """Results must follow their calls directly: every call still open now stays unanswered."""
        for call_id, at in self.pending.items():
            self.failures.append(Failure(code="unanswered_tool_call", index=at,
                                         reason=f"tool call {call_id!r} of message {at} has no tool result"))
        self.pending.clear()


def _turn_order_failures(i: int, role: str, prev_role: str | None) -> list[Failure]:
    """The user speaks first; no two user turns, and no two assistant replies, in a row."""
    out = []
    if prev_role is None and role != "user":
        out.append(Failure(code="bad_role_sequence", index=i,
                           reason=f"the dialogue starts with {role!r}, not with the user"))
    if role == "assistant" and prev_role == "assistant_text":
        out.append(Failure(code="bad_role_sequence", index=i,
                           reason=f"assistant message {i} follows an assistant reply without a user turn"))
    if role == "user" and prev_role == "user":
        out.append(Failure(code="bad_role_sequence", index=i,
                           reason=f"user message {i} follows another user message"))
    return out


def _final_reply_failures(messages: list[Any]) -> list[Failure]:
    """The dialogue must end with an assistant text reply (system messages after it do not count)."""
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") not in ("system",)), None)
    if not last or last.get("role") != "assistant" or tool_calls_of(last) or not str(last.get("content") or "").strip():
        return [Failure(code="no_final_assistant_message", index=len(messages) - 1,
                        reason="the dialogue does not end with an assistant text reply")]
    return []


def planned_for(rec: ExecRecord, planned: list[PlannedError]) -> PlannedError | None:
    """The planned error this failed call realises, or None when nobody planned it."""
    args = rec.arguments if isinstance(rec.arguments, dict) else {}
    for p in planned:
        if p.tool != rec.name:
            continue
        if rec.injected and p.kind in ("transient", "permission"):
            return p
        param = p.param or p.key
        if p.kind in ("not_found", "invalid_value") and param in args and same(args[param], p.wrong_value):
            return p
    return None


def check_execution(replay: Replay, scenario: Scenario) -> tuple[list[Failure], int]:
    """Unplanned and unrecovered errors, and distractor calls; also counts recovered errors."""
    failures: list[Failure] = []
    recovered = 0
    calls = replay.calls
    for n, rc in enumerate(calls):
        rec = rc.record
        idx = rc.message_index
        if rec.name in scenario.distractors:
            failures.append(Failure(code="distractor_called", index=idx,
                                    reason=f"{rec.name} is a distractor the task never needs"))
        if rec.ok:
            continue
        code = (rec.error or {}).get("code", "")
        msg = (rec.error or {}).get("message", "")
        if planned_for(rec, scenario.planned_errors) is None:
            mapped = code if code in ("unknown_tool", "invalid_arguments") else "unplanned_error"
            failures.append(Failure(code=mapped, index=idx, reason=f"{rec.name}: {msg}"))
            continue
        if any(later.record.ok and later.record.name == rec.name for later in calls[n + 1:]):
            recovered += 1
        else:
            failures.append(Failure(code="unrecovered_error", index=idx,
                                    reason=f"after the planned error on {rec.name} ({code}) the call never succeeded"))
    return failures, recovered


def check_graph_order(replay: Replay, scenario: Scenario) -> list[Failure]:
    """Order and coverage of the successful calls against the execution graph."""
    try:
        graph = parse_graph(scenario.workflow.execution_graph)
    except ValueError as exc:
        return [Failure(code="order_violation", reason=f"the execution graph does not parse: {exc}")]
    ok_calls = [c for c in replay.calls if c.record.ok]
    report = check_order(graph, [c.record.name for c in ok_calls])
    failures = []
    for v in report.violations:
        idx = ok_calls[v.position].message_index if v.position < len(ok_calls) else None
        failures.append(Failure(code="order_violation", index=idx,
                                reason=f"{v.node} ran before {', '.join(v.missing_predecessors)}"))
    for node in report.missing:
        failures.append(Failure(code="missing_required_call", reason=f"{node} never ran successfully"))
    return failures


def check_state(replay: Replay, scenario: Scenario) -> tuple[list[Failure], str, str]:
    """Final state against the reference plan's end state, by canonical hash."""
    assert replay.env is not None
    final_hash = replay.env.backend.state_hash()
    try:
        ref_env = replay_plan(scenario)
    except ScenarioError as exc:
        return [Failure(code="invalid_reference_plan", reason=str(exc))], final_hash, ""
    ref_hash = ref_env.backend.state_hash()
    if ref_hash == final_hash:
        return [], final_hash, ref_hash
    diffs = diff_states(ref_env.backend.view(), replay.env.backend.view(), limit=4)
    shown = "; ".join(f"{d['op']} {d['path']}" for d in diffs[:3])
    return [Failure(code="state_mismatch",
                    reason=f"final state differs from the reference plan's ({shown})")], final_hash, ref_hash


_CLAIM = re.compile(r"\b([A-Za-z][A-Za-z _]{1,40}?)\s*(?:is|was|:|=)\s*[\"'`]?([A-Za-z0-9][\w\-.@]*)")


def check_claims(messages: list[dict[str, Any]], replay: Replay) -> list[Failure]:
    """The final assistant text must not state a value a tool result contradicts.

    Conservative on purpose: only `field is/: value` claims whose field a tool result holds and
    whose value has a digit (ids, amounts, dates) are compared, so free prose never fails.
    """
    last_idx = next((i for i in range(len(messages) - 1, -1, -1)
                     if isinstance(messages[i], dict) and messages[i].get("role") == "assistant"
                     and not tool_calls_of(messages[i])), None)
    if last_idx is None:
        return []
    facts: dict[str, set[str]] = {}
    for rc in replay.calls:
        if rc.record.ok and isinstance(rc.record.result, dict):
            _collect(rc.record.result, facts)
    failures = []
    for m in _CLAIM.finditer(str(messages[last_idx].get("content") or "")):
        words = m.group(1).strip().lower().split()
        # "Your return id is …": the field is the phrase's tail, not the whole phrase.
        key = next((k for k in ("_".join(words[-n:]) for n in (len(words), 3, 2, 1) if n <= len(words))
                    if k in facts), "_".join(words))
        value = m.group(2).rstrip(".")
        if key not in facts or not any(ch.isdigit() for ch in value):
            continue
        if not any(same(value, known) for known in facts[key]):
            failures.append(Failure(code="claim_contradicts_result", index=last_idx,
                                    reason=f"the reply says {key} is {value!r}, the tools said "
                                           f"{sorted(facts[key])[:3]}"))
    return failures


def _collect(obj: Any, facts: dict[str, set[str]], depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str | int | float) and not isinstance(v, bool):
                facts.setdefault(str(k).lower(), set()).add(str(v))
            else:
                _collect(v, facts, depth + 1)
    elif isinstance(obj, list):
        for v in obj[:20]:
            _collect(v, facts, depth + 1)


def proposals_from_steps(steps: list[Any]) -> dict[str, Any]:
    """Model-proposed results recorded in a trajectory's steps, by tool-call id."""
    out = {}
    for s in steps:
        rec = s if isinstance(s, ExecRecord) else ExecRecord.model_validate(s)
        if rec.proposed and rec.tool_call_id:
            out[rec.tool_call_id] = rec.result
    return out


def verify_legacy(messages: list[dict[str, Any]], scenario: Scenario, *, ended_by: str = "",
                  check_results: bool = True, proposals: dict[str, Any] | None = None) -> tuple[Verdict, Replay, int]:
    """The imitation verdict of earlier releases (plan order, every node called, exact state hash).

    Kept to measure what the outcome verdict changes (benchmarks/measure_verification.py); nothing
    exports by it.
    """
    failures = check_dialogue(messages)
    if any(f.code in ("unknown_role", "empty_dialogue") for f in failures):
        return Verdict(passed=False, failures=failures), Replay(), 0
    replay = replay_dialogue(messages, scenario, check_results=check_results, proposals=proposals)
    failures += replay.failures
    exec_failures, recovered = check_execution(replay, scenario)
    failures += exec_failures
    failures += check_graph_order(replay, scenario)
    state_failures, final_hash, ref_hash = check_state(replay, scenario)
    failures += state_failures
    failures += check_claims(messages, replay)
    if ended_by == "turn_budget":
        failures.append(Failure(code="turn_budget_exhausted",
                                reason="the dialogue hit its turn budget before the user was done"))
    failures.sort(key=lambda f: (f.index if f.index is not None else 1 << 30))
    verdict = Verdict(passed=not failures, failures=failures, final_state_hash=final_hash,
                      reference_state_hash=ref_hash)
    return verdict, replay, recovered


def _component(failures: list[Failure], ok: str) -> ComponentVerdict:
    if failures:
        return ComponentVerdict(passed=False, reason=failures[0].reason, failures=failures)
    return ComponentVerdict(passed=True, reason=ok)


def verify(messages: list[dict[str, Any]], scenario: Scenario, *, ended_by: str = "",
           check_results: bool = True, proposals: dict[str, Any] | None = None, judge: Judge | None = None,
           tool_results_by: str = "environment") -> tuple[Verdict, Replay, int]:
    """Judge a dialogue by its outcome; returns the verdict, the replay (for reports) and errors recovered.

    The verdict has one component per check (docs/verification.md). `passed` needs the structural
    components (task, dialogue, schema, execution) and every component of the task's reward basis;
    `failures` lists theirs. A failed verdict carries its `blame`. `tool_results_by` says who wrote
    the tool messages (`environment` in a simulation, `assistant` for a one-shot author), for blame.
    """
    task = task_of(scenario)
    if not has_criteria(task):
        f = Failure(code="empty_criteria", reason=f"task {task.id!r} has no criterion: nothing could ever fail it")
        return Verdict(passed=False, failures=[f], components={"task": _component([f], "")}, blame="task",
                       blame_reason=f.reason), Replay(), 0
    dialogue = check_dialogue(messages)
    if any(f.code in ("unknown_role", "empty_dialogue") for f in dialogue):
        return Verdict(passed=False, failures=dialogue, components={"dialogue": _component(dialogue, "")},
                       blame="assistant", blame_reason=dialogue[0].reason), Replay(), 0
    replay = replay_dialogue(messages, scenario, check_results=check_results, proposals=proposals)
    exec_failures, recovered = check_execution(replay, scenario)
    exec_failures = [f for f in exec_failures if f.code != "distractor_called"]  # judged by `policy`
    schema = [f for f in exec_failures if f.code in ("unknown_tool", "invalid_arguments")]
    execution = replay.failures + [f for f in exec_failures if f not in schema]
    if ended_by == "turn_budget":
        dialogue.append(Failure(code="turn_budget_exhausted",
                                reason="the dialogue hit its turn budget before the user was done"))
    gold = run_gold_actions(scenario, task.gold_actions)
    dialogue += check_requests_answered(messages, replay, scenario, task)
    task_failures = list(gold.failures) + task_issues(scenario, task, gold)
    if scenario.task is None:  # the legacy name for a reference plan that does not replay
        task_failures = [f.model_copy(update={"code": "invalid_reference_plan"}) if f.code == "gold_unreachable"
                         else f for f in task_failures]
    comps: dict[str, ComponentVerdict] = {
        "task": _component(task_failures, "the task's criteria are consistent and its gold runs"),
        "dialogue": _component(dialogue, "well-formed dialogue"),
        "schema": _component(schema, "every call names a tool with valid arguments"),
        "execution": _component(execution, "every tool message is what the backend returns"),
    }
    if gold.failures:
        comps["state"] = ComponentVerdict(passed=False, reason="no expected state: the gold actions do not run")
    else:
        comps["state"] = check_state_outcome(replay, scenario, gold)
    comps["actions"] = check_actions(replay, scenario, task, gold)
    comps["communicate"] = check_communicate(messages, task, replay, gold)
    comps["claims"] = _component(check_claims(messages, replay), "no claim contradicts a tool result")
    comps["policy"] = check_policy(messages, replay, scenario, task, gold)
    comps["nl_assertions"] = check_nl_assertions(messages, task, judge)
    comps[GROUNDING] = check_grounding(messages, replay, scenario)
    deciding = [*STRUCTURAL, *(c for c in COMPONENTS if c in task.reward_basis)]
    if scenario.workflow.backend.kind == "sim":
        deciding.append(GROUNDING)
    failures = [f for name in deciding for f in comps[name].failures]
    failures.sort(key=lambda f: (f.index if f.index is not None else 1 << 30))
    passed = all(comps[name].passed for name in deciding)
    assert replay.env is not None
    verdict = Verdict(passed=passed, failures=failures, final_state_hash=replay.env.backend.state_hash(),
                      reference_state_hash=gold.env.backend.state_hash() if gold.env is not None else "",
                      components=comps)
    if not passed:
        blame, why = assign_blame(failures or [f for c in comps.values() for f in c.failures], messages, replay,
                                  scenario, task, ended_by=ended_by, tool_results_by=tool_results_by, judge=judge)
        verdict.blame, verdict.blame_reason = blame, why
    return verdict, replay, recovered


def is_error_content(content: Any) -> bool:
    """True when a tool message's content is an error payload."""
    return parse_tool_content(content)[0]
