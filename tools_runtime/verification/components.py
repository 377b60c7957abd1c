"""Outcome verification as reward components (docs/verification.md).

A dialogue is judged on what it achieved, not on whether it copied the reference plan:

state          the final state equals the expected one (gold replayed on a fresh backend), compared on
               what writes change: bookkeeping (the `times` counter of a pressed button, the
               `last_action` of a UI gesture) is left out, and our own environments compare strings
               without regard to case and spacing
actions        every required write happened with the right arguments (normalised: case, spacing,
               `_`/`-`/space, numeric strings, boolean and enum synonyms); no write the task does not
               ask for; writes that depend on each other in the execution graph ran in that order
communicate    every value of `communicate_info` reached the user in an assistant message, after the
               dialogue's tools gave it when the gold's tools do (a guess is not telling)
claims         no closing claim contradicts a tool result
policy         no call of a forbidden tool or of a tool a rule forbids; a confirmation the policy
               requires was asked and given before the call; a task that must be refused changed
               nothing and the assistant refused
nl_assertions  decided by an injected judge callable; pending (undecided) without one
grounding      every argument value of a write was in the dialogue before the call: said by the user,
               returned by an earlier tool, or in the system prompt, policy or the tools' descriptions and
               examples (our own environments)

The `dialogue` component also holds `request_unanswered`: every request the user was given is
answered (its gold calls succeeded) before the assistant's closing message.

Reads, look-ups, repeated reads, asking the user again and any order of reads are free. A write is a
call that changes the state (bookkeeping aside) or whose tool declares a write effect; a
zero-argument UI gesture without a declared effect is not a write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from tools_runtime.binding import bind_tools
from tools_runtime.environment import WRITE_EFFECTS
from tools_runtime.exec_graph import parse_graph
from tools_runtime.executor import ToolEnvironment
from tools_runtime.records import ComponentVerdict, ExecRecord, Failure, Scenario
from tools_runtime.state import canonical_json, diff_states, json_copy
from tools_runtime.tasks import DEFAULT_BASIS, Action, Task
from tools_runtime.verification.replay import Replay, tool_calls_of

# A judge answers `kind` ("nl_assertion" or "blame") about `context` with a small dict
# ({"passed": bool, "reason": str} or {"blame": str, "reason": str}); the gem_agents layer wraps a
# model role into one, tools_runtime never calls a model itself.
Judge = Callable[[str, dict[str, Any]], dict[str, Any]]

# Fields a backend keeps for its own bookkeeping: how often a button was pressed, which gesture ran
# last. No user-visible outcome depends on them, so no component compares them.
BOOKKEEPING_FIELDS = frozenset({"times", "last_action"})

STRUCTURAL = ("task", "dialogue", "schema", "execution")
COMPONENTS = ("state", "actions", "communicate", "claims", "policy", "nl_assertions")
# Decides with the structural ones wherever the user simulator speaks from the task's facts: our own
# (`sim`) environments. Third-party benchmarks' ground truth picks values their prompts never state.
GROUNDING = "grounding"

# Every code a component can emit, with its component (the legacy codes are in verify.FAILURE_CODES).
COMPONENT_CODES = {
    "empty_criteria": "task", "gold_unreachable": "task", "inconsistent_criteria": "task",
    "invalid_reference_plan": "task",
    "state_mismatch": "state",
    "missing_required_call": "actions", "wrong_arguments": "actions", "extra_write": "actions",
    "order_violation": "actions",
    "communicate_missing": "communicate",
    "claim_contradicts_result": "claims",
    "forbidden_call": "policy", "confirmation_missing": "policy", "refusal_expected": "policy",
    "distractor_called": "policy",
    "nl_assertion_failed": "nl_assertions", "judge_required": "nl_assertions",
    "ungrounded_argument": "grounding",
    "request_unanswered": "dialogue",
}


# ---------------------------------------------------------------------------------------------------------
# normalisation

_SYNONYMS = {"yes": "true", "on": "true", "enabled": "true", "enable": "true", "y": "true",
             "no": "false", "off": "false", "disabled": "false", "disable": "false", "n": "false"}
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def norm_text(text: str) -> str:
    """Lower case, `_`/`-` as spaces, runs of spaces collapsed: `Store-Credit ` → `store credit`."""
    return " ".join(re.sub(r"[_\-]+", " ", text.casefold()).split())


def norm_value(value: Any, *, loose: bool = True) -> Any:
    """A comparable form of an argument or state value.

    Numbers and numeric strings become floats, booleans and their synonyms `"true"`/`"false"`;
    with `loose`, strings are compared without case, spacing or `_`/`-` differences.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        stripped = value.strip().replace(",", "") if _NUMBER.match(value.strip().replace(",", "")) else None
        if stripped is not None:
            return float(stripped)
        if not loose:
            return value
        text = norm_text(value)
        return _SYNONYMS.get(text, text)
    if isinstance(value, dict):
        return {str(k): norm_value(v, loose=loose) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [norm_value(v, loose=loose) for v in value]
    return value


def same_value(a: Any, b: Any, *, loose: bool = True) -> bool:
    """Equal after normalisation."""
    return canonical_json(norm_value(a, loose=loose)) == canonical_json(norm_value(b, loose=loose))


def args_match(gold: dict[str, Any], call: Any, *, loose: bool = True) -> list[str]:
    """The gold arguments a call gets wrong (empty when every gold argument matches)."""
    args = call if isinstance(call, dict) else {}
    return [k for k, v in gold.items() if k not in args and v is not None or
            k in args and not same_value(v, args[k], loose=loose)]


def project_state(view: Any, *, loose: bool = True) -> Any:
    """The state with bookkeeping removed (and, with `loose`, scalars normalised) for comparison."""
    if isinstance(view, dict):
        out = {}
        for k, v in view.items():
            if k in BOOKKEEPING_FIELDS:
                continue
            pv = project_state(v, loose=loose)
            # A record that only held bookkeeping (a pressed button) is no outcome.
            if isinstance(v, dict) and v and isinstance(pv, dict) and not pv:
                continue
            # Record ids are values too (`REPORT.pdf` names the same document as `report.pdf`).
            out[norm_text(str(k)) if loose else k] = pv
        return out
    if isinstance(view, list):
        return [project_state(v, loose=loose) for v in view]
    return norm_value(view, loose=loose) if loose else view


def effective_diff(diff: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A call's state diff without bookkeeping-only changes."""
    out = []
    for d in diff:
        last = str(d.get("path", "")).rsplit("/", 1)[-1]
        if last in BOOKKEEPING_FIELDS:
            continue
        if d.get("op") in ("add", "remove"):
            value = d.get("new") if d.get("op") == "add" else d.get("old")
            if isinstance(value, dict) and value and not project_state(value):
                continue
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------------------------
# the criteria of a scenario: its task, or one derived from the reference plan


def task_of(scenario: Scenario) -> Task:
    """The scenario's task, or the legacy one its reference plan implies (gold = plan)."""
    if scenario.task is not None:
        return scenario.task
    basis = list(DEFAULT_BASIS)
    if scenario.workflow.backend.kind == "python":
        # Third-party executable backends (BFCL) judge by their state alone; their adapters' graphs
        # are a chain of first uses, not real dependencies, so `actions` would judge the order.
        basis = ["state", "claims", "policy"]
    return Task(id=scenario.id, env_id=scenario.workflow.id, instruction="",
                gold_actions=[Action(tool=c.tool, arguments=c.arguments) for c in scenario.plan],
                forbidden_tools=[], reward_basis=basis)


def has_criteria(task: Task) -> bool:
    """Whether a task says anything about success at all."""
    return bool(task.gold_actions or task.communicate_info or task.nl_assertions or task.forbidden_tools
                or task.refuse or task.expected_state_hash)


def loose_state(scenario: Scenario) -> bool:
    """Our own environments compare text loosely; third-party backends compute on exact values."""
    return scenario.workflow.backend.kind != "python"


@dataclass
class GoldRun:
    """The gold actions replayed on a fresh backend: the expected end state and each record."""

    env: ToolEnvironment | None = None
    records: list[ExecRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def run_gold_actions(scenario: Scenario, actions: list[Action]) -> GoldRun:
    """Replay `actions` on a fresh backend from the scenario's initial state (no injected errors)."""
    out = GoldRun()
    try:
        env = ToolEnvironment(scenario.workflow, json_copy(scenario.initial_state))
    except Exception as exc:  # noqa: BLE001 — a backend that cannot start is the task's fault, reported
        out.failures.append(Failure(code="gold_unreachable", reason=f"the backend does not start: {exc}"))
        return out
    out.env = env
    for i, a in enumerate(actions):
        rec = env.call(a.tool, a.arguments)
        out.records.append(rec)
        if not rec.ok:
            out.failures.append(Failure(code="gold_unreachable",
                                        reason=f"gold action {i} ({a.tool}) fails on a fresh backend: {rec.error}"))
    return out


def tool_kind(scenario: Scenario, tool: str) -> str:
    """`write`, `read` or `gesture` when the tool declares it or the name binding says so; else `observed`."""
    wf = scenario.workflow
    eff = wf.effects.get(tool)
    if eff is not None:
        return "write" if eff.kind in WRITE_EFFECTS else "read"
    if wf.backend.kind != "sim":
        return "observed"
    spec = wf.tool(tool)
    b = bind_tools(wf.tools).get(tool) if spec is not None else None
    if b is None:
        return "observed"
    if b.op == "action" and spec is not None and not spec.properties:
        return "gesture"
    return "write" if b.op in ("create", "update", "delete", "session", "action") else "read"


def is_session(scenario: Scenario, tool: str) -> bool:
    """Signing in or out: a means to an outcome, never an outcome itself."""
    wf = scenario.workflow
    eff = wf.effects.get(tool)
    if eff is not None:
        return eff.kind == "session"
    if wf.backend.kind != "sim" or wf.tool(tool) is None:
        return False
    b = bind_tools(wf.tools).get(tool)
    return b is not None and b.op == "session"


def is_write(scenario: Scenario, rec: ExecRecord) -> bool:
    """A successful call that changed the state (bookkeeping aside), or of a tool declared as a write.

    Sessions are not writes: the backend already refuses what needs one, and a sign-in changes
    nothing the user asked for.
    """
    if not rec.ok:
        return False
    kind = tool_kind(scenario, rec.name)
    if kind == "gesture" or is_session(scenario, rec.name):
        return False
    if kind == "write" and scenario.workflow.effects.get(rec.name) is not None:
        return True
    return bool(effective_diff(rec.state_diff))


# ---------------------------------------------------------------------------------------------------------
# components


def _verdict(failures: list[Failure], ok_reason: str) -> ComponentVerdict:
    if failures:
        return ComponentVerdict(passed=False, reason=failures[0].reason, failures=failures)
    return ComponentVerdict(passed=True, reason=ok_reason)


def _outcome_view(scenario: Scenario, view: Any) -> Any:
    """The part of a backend's state that is an outcome: our backends' session is not."""
    if scenario.workflow.backend.kind == "sim" and isinstance(view, dict):
        return {k: v for k, v in view.items() if k != "session"}
    return view


def check_state_outcome(replay: Replay, scenario: Scenario, gold: GoldRun) -> ComponentVerdict:
    """The final state against the expected one, on what writes change."""
    if gold.env is None or gold.failures:
        return _verdict(gold.failures or [Failure(code="gold_unreachable", reason="no expected state")], "")
    assert replay.env is not None
    loose = loose_state(scenario)
    want = project_state(_outcome_view(scenario, gold.env.backend.view()), loose=loose)
    got = project_state(_outcome_view(scenario, replay.env.backend.view()), loose=loose)
    if canonical_json(want) == canonical_json(got):
        return ComponentVerdict(passed=True, reason="the final state equals the expected state")
    diffs = diff_states(want, got, limit=4)
    shown = "; ".join(f"{d['op']} {d['path']}" for d in diffs[:3])
    return _verdict([Failure(code="state_mismatch",
                             reason=f"final state differs from the expected state ({shown})")], "")


def gold_write_indices(scenario: Scenario, task: Task, gold: GoldRun) -> list[int]:
    """Indices of the gold actions that are writes (declared, or observed on the gold run)."""
    out = []
    for i, a in enumerate(task.gold_actions):
        kind = tool_kind(scenario, a.tool)
        if kind == "gesture" or kind == "read" or is_session(scenario, a.tool):
            continue
        if kind == "write" and scenario.workflow.effects.get(a.tool) is not None:
            out.append(i)
            continue
        rec = gold.records[i] if i < len(gold.records) else None
        if rec is not None and rec.ok and effective_diff(rec.state_diff):
            out.append(i)
        elif rec is None and kind == "write":
            out.append(i)
    return out


def check_actions(replay: Replay, scenario: Scenario, task: Task, gold: GoldRun) -> ComponentVerdict:
    """Required writes happened with the right arguments, no unrequested write, dependent writes in order."""
    loose = loose_state(scenario)
    writes = [(n, rc) for n, rc in enumerate(replay.calls) if is_write(scenario, rc.record)
              or task.meta.get("require_all_actions") and rc.record.ok]
    # τ²'s ACTION reward needs every gold call (a transfer to a human writes nothing); ours, the writes.
    every = bool(task.meta.get("require_all_actions"))
    indices = range(len(task.gold_actions)) if every else gold_write_indices(scenario, task, gold)
    # `compare_args` (τ²): per gold action, the only arguments that are compared.
    compare = found if isinstance(found := task.meta.get("compare_args"), dict) else {}
    wanted = []
    for i in indices:
        g = task.gold_actions[i]
        keys = compare.get(str(i))
        wanted.append(g if keys is None else Action(tool=g.tool, arguments={k: v for k, v in g.arguments.items()
                                                                            if k in keys}))
    failures: list[Failure] = []
    matched: set[int] = set()
    near: set[int] = set()
    first_pos: dict[str, int] = {}
    for g in wanted:
        hits = [n for n, rc in writes if rc.record.name == g.tool and not args_match(g.arguments, rc.record.arguments,
                                                                                      loose=loose)]
        if hits:
            matched.update(hits)
            first_pos.setdefault(g.tool, min(hits))
            continue
        same_tool = [(n, rc) for n, rc in writes if rc.record.name == g.tool]
        if same_tool:
            n, rc = same_tool[0]
            near.update(x for x, _ in same_tool)
            bad = args_match(g.arguments, rc.record.arguments, loose=loose)
            shown = ", ".join(f"{k}={(rc.record.arguments or {}).get(k)!r} (want {g.arguments.get(k)!r})"
                              for k in bad[:3])
            failures.append(Failure(code="wrong_arguments", index=rc.message_index,
                                    reason=f"{g.tool} was called with {shown}"))
        else:
            failures.append(Failure(code="missing_required_call",
                                    reason=f"the required write {g.tool} never ran successfully"))
    wanted_pairs = [(g.tool, g.arguments) for g in wanted]
    for n, rc in writes:
        if n in matched or n in near:
            continue
        if any(t == rc.record.name and not args_match(a, rc.record.arguments, loose=loose) for t, a in wanted_pairs):
            continue
        failures.append(Failure(code="extra_write", index=rc.message_index,
                                reason=f"{rc.record.name} changed the state but the task never asks for it"))
    failures += _write_order(replay, scenario, {g.tool for g in wanted}, first_pos)
    return _verdict(failures, f"{len(wanted)} required write(s) done with the right arguments")


def _write_order(replay: Replay, scenario: Scenario, gold_tools: set[str], first_pos: dict[str, int]) -> list[Failure]:
    """Writes that depend on each other in the execution graph must run in that order."""
    try:
        graph = parse_graph(scenario.workflow.execution_graph).graph
    except ValueError:
        return []
    out = []
    for v, pos_v in first_pos.items():
        if v not in graph:
            continue
        for u in sorted(nx.ancestors(graph, v) & gold_tools):
            pos_u = first_pos.get(u)
            if pos_u is not None and pos_u > pos_v:
                out.append(Failure(code="order_violation", index=replay.calls[pos_v].message_index,
                                   reason=f"the write {v} ran before {u}, which it depends on"))
    return out


def assistant_texts(messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(index, text) of every assistant message with text."""
    return [(i, str(m.get("content") or "")) for i, m in enumerate(messages)
            if isinstance(m, dict) and m.get("role") == "assistant" and str(m.get("content") or "").strip()]


def _mentions(text: str, value: Any) -> bool:
    """Whether `value` is said in `text` (case, spacing, thousands separators and number format aside)."""
    hay = norm_text(str(text).replace(",", ""))
    if isinstance(value, bool):
        return str(value).lower() in hay
    needle = norm_text(str(value).replace(",", ""))
    if needle and needle in hay:
        return True
    try:
        num = float(str(value).replace(",", "").strip())
    except ValueError:
        return False
    return any(abs(float(x) - num) < 1e-9 for x in re.findall(r"\d+(?:\.\d+)?", hay))


def _leaves(obj: Any, depth: int = 0) -> list[Any]:
    """The scalar values inside a result or an argument (a list's items, a dict's values)."""
    if depth > 6:
        return []
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v, depth + 1)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _leaves(v, depth + 1)]
    return [obj]


def _holds(result: Any, value: Any) -> bool:
    """Whether a tool result has `value` as one of its values (normalised), not merely inside a longer one."""
    return any(same_value(leaf, value) for leaf in _leaves(result))


def _learned_at(messages: list[dict[str, Any]], replay: Replay, value: Any) -> int | None:
    """The first message that gave the assistant `value`: a successful tool result holding it, or the user."""
    at = [c.answered_at for c in replay.calls
          if c.record.ok and c.answered_at is not None and _holds(c.record.result, value)]
    at += [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"
           and _mentions(str(m.get("content") or ""), value)]
    return min(at) if at else None


def check_communicate(messages: list[dict[str, Any]], task: Task, replay: Replay | None = None,
                      gold: GoldRun | None = None) -> ComponentVerdict:
    """Every communicate_info value appears in some assistant message.

    A value the gold's tool results give must be told after this dialogue's own tools (or the user) gave
    it: a guess that merely contains it (page numbers "8,1,2,7,6,3" for a booklet of 3 sheets, no tool
    called) is not telling it. Values no gold result holds (computed ones) need only be said.
    """
    texts = assistant_texts(messages)
    failures = []
    for v in task.communicate_info:
        from_tools = replay is not None and gold is not None and any(
            r.ok and _holds(r.result, v) for r in gold.records)
        if not from_tools:
            if not any(_mentions(t, v) for _, t in texts):
                failures.append(Failure(code="communicate_missing", reason=f"the assistant never told the user {v!r}"))
            continue
        assert replay is not None
        since = _learned_at(messages, replay, v)
        if since is None or not any(i > since and _mentions(t, v) for i, t in texts):
            said = any(_mentions(t, v) for _, t in texts)
            failures.append(Failure(code="communicate_missing", reason=(
                f"the assistant said {v!r} without a tool result that gives it" if said
                else f"the assistant never told the user {v!r}")))
    return _verdict(failures, f"{len(task.communicate_info)} value(s) told to the user")


_REFUSAL = re.compile(r"\b(can ?not|can't|cannot|unable|not able|not allowed|not permitted|won't|"
                      r"refuse|must decline|not possible|transfer(red)? you to a human|human agent)\b", re.I)
_CONFIRM_ASK = re.compile(r"\b(confirm|shall i|should i|do you want|would you like|proceed|are you sure|"
                          r"go ahead|ok to|okay to)\b", re.I)
_YES = re.compile(r"^\s*(yes|yeah|yep|sure|ok|okay|correct|confirm(ed)?|please do|go ahead|do it|proceed|"
                  r"that's right|right)\b", re.I)


def forbidden_tools(scenario: Scenario, task: Task) -> set[str]:
    """The tools the task forbids.

    Policy rules are prose; a rule that limits a tool ("may not exceed the balance") does not forbid
    it, so rules act through the backend's preconditions (an unplanned error fails `execution`) and
    through `confirm`, never through guessing at their words.
    """
    return set(task.forbidden_tools)


def _confirmed_before(messages: list[dict[str, Any]], at: int, since: int) -> bool:
    """An assistant question asking to confirm, then a yes from the user, between `since` and `at`."""
    asked = None
    for i in range(since, at):
        m = messages[i]
        if not isinstance(m, dict):
            continue
        if m.get("role") == "assistant" and not tool_calls_of(m) and "?" in str(m.get("content") or "") \
                and _CONFIRM_ASK.search(str(m.get("content") or "")):
            asked = i
        elif m.get("role") == "user" and asked is not None and _YES.search(str(m.get("content") or "")):
            return True
    return False


def check_policy(messages: list[dict[str, Any]], replay: Replay, scenario: Scenario, task: Task,
                 gold: GoldRun) -> ComponentVerdict:
    """No forbidden call; required confirmations asked and given; refusals honoured."""
    failures: list[Failure] = []
    banned = forbidden_tools(scenario, task)
    for rc in replay.calls:
        if rc.record.name in banned:
            failures.append(Failure(code="forbidden_call", index=rc.message_index,
                                    reason=f"{rc.record.name} is forbidden for this task"))
        elif rc.record.name in scenario.distractors and is_write(scenario, rc.record):
            failures.append(Failure(code="distractor_called", index=rc.message_index,
                                    reason=f"{rc.record.name} is a distractor the task never needs, and it wrote"))
    # Only `must` rules are enforced; a `recommended` confirmation is advice for the prompt.
    confirm_rules = [r for r in scenario.workflow.policy if r.confirm and r.strength == "must"]
    confirm_tools = {t for r in confirm_rules for t in r.tools}
    last_write_at = 0
    confirmed: set[str] = set()
    for rc in replay.calls:
        if rc.record.name in confirm_tools and rc.record.ok:
            # Repeating the very call the user just confirmed needs no second confirmation.
            this = canonical_json([rc.record.name, norm_value(rc.record.arguments)])
            if _confirmed_before(messages, rc.message_index, last_write_at):
                confirmed = {this}
            elif this not in confirmed:
                rule = next(r for r in confirm_rules if rc.record.name in r.tools)
                failures.append(Failure(code="confirmation_missing", index=rc.message_index,
                                        reason=f"{rc.record.name} ran without the confirmation rule "
                                               f"{rule.id} requires ({rule.text})"))
        if is_write(scenario, rc.record):
            last_write_at = rc.message_index + 1
    if task.refuse:
        wrote = [rc for rc in replay.calls if is_write(scenario, rc.record)]
        if wrote:
            failures.append(Failure(code="refusal_expected", index=wrote[0].message_index,
                                    reason=f"the request must be refused, but {wrote[0].record.name} changed the state"))
        if not any(_REFUSAL.search(t) for _, t in assistant_texts(messages)):
            failures.append(Failure(code="refusal_expected",
                                    reason="the request must be refused, and the assistant never refused"))
    return _verdict(failures, "no call the policy forbids")


def check_nl_assertions(messages: list[dict[str, Any]], task: Task, judge: Judge | None) -> ComponentVerdict:
    """Each natural-language assertion, decided by the judge; pending without one."""
    if not task.nl_assertions:
        return ComponentVerdict(passed=True, reason="no assertion to judge")
    if judge is None:
        return ComponentVerdict(passed=False, pending=True, reason="no judge configured",
                                failures=[Failure(code="judge_required",
                                                  reason=f"{len(task.nl_assertions)} assertion(s) need a judge")])
    failures = []
    for text in task.nl_assertions:
        answer = judge("nl_assertion", {"assertion": text, "messages": messages, "task": task.model_dump()})
        if not answer.get("passed"):
            failures.append(Failure(code="nl_assertion_failed",
                                    reason=f"{text!r}: {answer.get('reason') or 'the judge says no'}"))
    return _verdict(failures, f"{len(task.nl_assertions)} assertion(s) hold")


def task_issues(scenario: Scenario, task: Task, gold: GoldRun) -> list[Failure]:
    """Criteria that contradict each other: a gold action the task forbids, a refusal with gold writes."""
    out = []
    banned = forbidden_tools(scenario, task)
    for a in task.gold_actions:
        if a.tool in banned:
            out.append(Failure(code="inconsistent_criteria", reason=f"the gold action {a.tool} is forbidden"))
    if task.refuse and gold_write_indices(scenario, task, gold):
        out.append(Failure(code="inconsistent_criteria", reason="the task must be refused but its gold writes"))
    return out


# ---------------------------------------------------------------------------------------------------------
# grounding: the assistant writes only what it could know


def _needs_grounding(value: Any, schema: dict[str, Any]) -> bool:
    """Whether a value is a fact someone must have said: not a switch, not empty, not the default."""
    if value is None or isinstance(value, bool) or schema.get("type") == "boolean":
        return False  # a switch's direction is the request itself ("turn it off"); `actions` judges it
    if isinstance(value, str) and (not value.strip() or norm_text(value) in _SYNONYMS):
        return False
    return "default" not in schema or not same_value(value, schema["default"])


def _said_in(texts: list[str], value: Any) -> bool:
    """`value` is said in one of `texts` (`_mentions`, or an enum value's words: `dark_mode` in "dark mode")."""
    return any(_mentions(t, value) for t in texts)


def _tool_texts(scenario: Scenario) -> list[str]:
    """The tools' descriptions and their parameters' descriptions and examples: the assistant is given its tools.

    Enum lists are left out: a value merely offered by a schema is a choice someone must have asked for.
    """
    out = []
    for spec in scenario.workflow.tools:
        out.append(spec.description)
        for schema in spec.properties.values():
            if isinstance(schema, dict):
                out.append(str(schema.get("description") or ""))
                out += [str(x) for x in schema.get("examples") or []]
    return [t for t in out if t]


def grounding_context(messages: list[dict[str, Any]], scenario: Scenario, before: int) -> list[str]:
    """What the assistant knows before message `before`: user lines, tool results, its system prompt (the
    policy and the tools' own words)."""
    texts = [r.text for r in scenario.workflow.policy] + [scenario.workflow.title] + _tool_texts(scenario)
    for m in messages[:before]:
        if isinstance(m, dict) and m.get("role") in ("user", "tool", "system", "developer"):
            texts.append(str(m.get("content") or ""))
    return texts


def check_grounding(messages: list[dict[str, Any]], replay: Replay, scenario: Scenario) -> ComponentVerdict:
    """Every argument value of a successful write was in the dialogue before the call.

    A value nobody said was read from somewhere the assistant cannot see (the hidden task): a model
    trained on such a dialogue learns to invent facts.
    """
    failures: list[Failure] = []
    writes = 0
    for rc in replay.calls:
        if not is_write(scenario, rc.record) or not isinstance(rc.record.arguments, dict):
            continue
        writes += 1
        spec = scenario.workflow.tool(rc.record.name)
        props = spec.properties if spec else {}
        known = grounding_context(messages, scenario, rc.message_index)
        for param, value in rc.record.arguments.items():
            schema = found if isinstance(found := props.get(param), dict) else {}
            missing = [v for v in _leaves(value) if _needs_grounding(v, schema) and not _said_in(known, v)]
            if missing:
                failures.append(Failure(code="ungrounded_argument", index=rc.message_index,
                                        reason=f"{rc.record.name} writes {param}={missing[0]!r}, which neither the "
                                               "user, an earlier tool result nor the system prompt gave"))
    return _verdict(failures, f"every value of {writes} write(s) was given before the call")


# ---------------------------------------------------------------------------------------------------------
# requests answered before the assistant closes

_FAREWELL = re.compile(r"\b(good ?bye|bye|take care|have a (?:great|good|nice)|enjoy the rest|see you|"
                       r"glad (?:i could|that's)|my pleasure|you're welcome|you are welcome|anytime)\b", re.I)


def closing_index(messages: list[dict[str, Any]]) -> int | None:
    """The assistant's closing message: its first farewell (text, no question), else its last text reply."""
    texts = assistant_texts(messages)
    for i, text in texts:
        if not tool_calls_of(messages[i]) and "?" not in text and _FAREWELL.search(text):
            return i
    return texts[-1][0] if texts else None


def check_requests_answered(messages: list[dict[str, Any]], replay: Replay, scenario: Scenario,
                            task: Task) -> list[Failure]:
    """Each of the user's requests answered before the assistant closed: the request's gold calls succeeded.

    The evidence is rule-based: the plan's writes for that request ran successfully with the gold
    arguments before the closing message (a request with no write: its read tool ran). A task that must be refused
    asks for nothing to be done.
    """
    close = closing_index(messages)
    if close is None or task.refuse or not scenario.goals:
        return []
    loose = loose_state(scenario)
    done = [rc for rc in replay.calls if rc.record.ok and rc.message_index < close]
    out: list[Failure] = []
    for g, goal in enumerate(scenario.goals):
        calls = [c for c in scenario.plan if c.goal == g and not is_session(scenario, c.tool)]
        writes = [c for c in calls if tool_kind(scenario, c.tool) == "write"]
        # A read-only request is answered by that read with any arguments: reads are never judged by value.
        evidence = writes or [c for c in calls if tool_kind(scenario, c.tool) != "gesture"]
        open_calls = [c for c in evidence if not any(rc.record.name == c.tool and (not writes or not args_match(
            c.arguments, rc.record.arguments, loose=loose)) for rc in done)]
        if open_calls:
            words = " ".join(goal.description.split()[:12])
            out.append(Failure(code="request_unanswered", index=close,
                               reason=f"the assistant closed while request {g + 1} ({words!r}) was open: "
                                      f"{open_calls[0].tool} had not run"))
    return out
