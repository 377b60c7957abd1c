"""Benign and harmful variants of a gold dialogue, to measure how fair and how strict verification is.

A *benign* variant is something a real assistant does that leaves the outcome intact (an extra read,
asking again, another order of independent calls, another spelling, a retried transient error…): it
must verify. A *harmful* one breaks the outcome, the policy or the truth (a wrong record, a missing
or extra write, an invented tool result, a claim a tool contradicts…): it must fail, in the named
component. Each variant maps (scenario, messages) to a new pair — it may add a task, a rule or a
planned error to the scenario — and raises `NotApplicable` when the dialogue has nothing it applies
to. Tool results are re-executed after every structural change (`reground`), so a variant is always
a transcript the backend could have produced, except where inventing a result is the point.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from tools_runtime.binding import bind_tools
from tools_runtime.environment import Rule
from tools_runtime.exec_graph import parse_graph
from tools_runtime.executor import parse_tool_content, tool_message_content
from tools_runtime.records import PlannedError, Scenario
from tools_runtime.tasks import Action, Task
from tools_runtime.toolspec import ToolSpec
from tools_runtime.verification import mutations
from tools_runtime.verification.components import (
    _CONFIRM_ASK,
    _YES,
    check_grounding,
    closing_index,
    is_write,
    loose_state,
    tool_kind,
)
from tools_runtime.verification.replay import call_name_args, replay_dialogue, tool_calls_of

Messages = list[dict[str, Any]]
Variant = Callable[[Scenario, Messages], tuple[Scenario, Messages]]


class NotApplicable(ValueError):
    """The dialogue has nothing this variant applies to."""


@dataclass(frozen=True)
class Perturbation:
    """One named variant: benign ones must verify, harmful ones must fail in one of `components`."""

    name: str
    benign: bool
    apply: Variant
    components: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------------------------
# helpers


def reground(messages: Messages, scenario: Scenario) -> Messages:
    """The transcript with every tool message replaced by what the backend returns for its call."""
    out = copy.deepcopy(messages)
    replay = replay_dialogue(out, scenario, check_results=False)
    for rc in replay.calls:
        if rc.answered_at is not None:
            out[rc.answered_at]["content"] = tool_message_content(rc.record)
    return out


def _calls(messages: Messages, scenario: Scenario) -> list[tuple[int, str, dict[str, Any], str, bool]]:
    """(message index, name, arguments, call id, ok) of every single-call assistant message."""
    replay = replay_dialogue(messages, scenario, check_results=False)
    out = []
    for rc in replay.calls:
        if len(tool_calls_of(messages[rc.message_index])) != 1:
            continue
        args = rc.record.arguments if isinstance(rc.record.arguments, dict) else {}
        out.append((rc.message_index, rc.record.name, args, rc.record.tool_call_id, rc.record.ok))
    return out


def _writes(messages: Messages, scenario: Scenario) -> list[tuple[int, str, dict[str, Any], str]]:
    replay = replay_dialogue(messages, scenario, check_results=False)
    return [(rc.message_index, rc.record.name, dict(rc.record.arguments or {}), rc.record.tool_call_id)
            for rc in replay.calls if is_write(scenario, rc.record) and len(tool_calls_of(messages[rc.message_index])) == 1]


def _reads(messages: Messages, scenario: Scenario) -> list[tuple[int, str, dict[str, Any], str]]:
    replay = replay_dialogue(messages, scenario, check_results=False)
    return [(rc.message_index, rc.record.name, dict(rc.record.arguments or {}), rc.record.tool_call_id)
            for rc in replay.calls if rc.record.ok and not rc.record.state_diff
            and tool_kind(scenario, rc.record.name) in ("read", "observed")
            and len(tool_calls_of(messages[rc.message_index])) == 1]


def _results(messages: Messages, scenario: Scenario) -> dict[str, tuple[bool, str]]:
    """(ok, result text) of every replayed call, by call id."""
    replay = replay_dialogue(messages, scenario, check_results=False)
    return {rc.record.tool_call_id: (rc.record.ok, tool_message_content(rc.record)) for rc in replay.calls}


def _harmless(before: Messages, after: Messages, scenario: Scenario, new_id: str | None = None) -> bool:
    """Every call of `before` gets the same result in `after`, and the new call (if any) succeeds.

    This is what makes an inserted or moved call a read: nothing else notices it (a `cd` is no read).
    """
    old, new = _results(before, scenario), _results(after, scenario)
    if new_id is not None and not new.get(new_id, (False, ""))[0]:
        return False
    if any(new.get(cid) != res for cid, res in old.items() if cid != new_id):
        return False
    ends = [replay_dialogue(x, scenario, check_results=False).env for x in (before, after)]
    return ends[0] is not None and ends[1] is not None and \
        ends[0].backend.state_hash() == ends[1].backend.state_hash()


def _call_message(call_id: str, name: str, args: dict[str, Any], content: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


def _answer_at(messages: Messages, call_id: str, after: int) -> int:
    return next(i for i in range(after + 1, len(messages))
                if messages[i].get("role") == "tool" and messages[i].get("tool_call_id") == call_id)


def _insert_call(messages: Messages, at: int, name: str, args: dict[str, Any], tag: str) -> Messages:
    """Insert an assistant call of `name` and its (placeholder) answer before message `at`."""
    call_id = f"call_{tag}"
    out = copy.deepcopy(messages)
    out[at:at] = [_call_message(call_id, name, args), {"role": "tool", "tool_call_id": call_id, "content": "{}"}]
    return out


def _independent(scenario: Scenario, u: str, v: str) -> bool:
    try:
        g = parse_graph(scenario.workflow.execution_graph).graph
    except ValueError:
        return False
    if u == v or u not in g or v not in g:
        return False
    return not nx.has_path(g, u, v) and not nx.has_path(g, v, u)


def _last_text(messages: Messages) -> int:
    return next(i for i in range(len(messages) - 1, -1, -1)
                if messages[i].get("role") == "assistant" and not tool_calls_of(messages[i]))


def task_from_plan(scenario: Scenario, **update: Any) -> Task:
    """A task whose gold actions are the scenario's reference plan (plus `update`)."""
    task = Task(id=f"{scenario.id}:task", env_id=scenario.workflow.id, instruction=scenario.goals[0].description
                if scenario.goals else "", gold_actions=[Action(tool=c.tool, arguments=c.arguments)
                                                          for c in scenario.plan])
    return task.model_copy(update=update)


# ---------------------------------------------------------------------------------------------------------
# benign variants


def extra_read(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """Look something up again after the last write (a read the plan never asked for)."""
    writes = _writes(m, sc)
    if not writes:
        raise NotApplicable("needs a write")
    at = _answer_at(m, writes[-1][3], writes[-1][0]) + 1
    for _, name, args, _ in _reads(m, sc):
        out = reground(_insert_call(m, at, name, args, "extra_read"), sc)
        if _harmless(m, out, sc, "call_extra_read"):
            return sc, out
    raise NotApplicable("no read that can be repeated after the writes")


def repeated_read(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The same read twice in a row."""
    for idx, name, args, cid in reversed(_reads(m, sc)):
        out = reground(_insert_call(m, _answer_at(m, cid, idx) + 1, name, args, "repeat_read"), sc)
        if _harmless(m, out, sc, "call_repeat_read"):
            return sc, out
    raise NotApplicable("no repeatable read")


def ask_again(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The assistant asks the user to confirm their request first; the user repeats it."""
    first = next(i for i, x in enumerate(m) if x.get("role") == "user")
    out = copy.deepcopy(m)
    out[first + 1:first + 1] = [
        {"role": "assistant", "content": "Before I start, could you tell me once more what you need?"},
        {"role": "user", "content": "Sure. " + str(m[first].get("content") or "")}]
    return sc, out


def reorder_independent(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """Swap two calls that the execution graph leaves unordered."""
    calls = [c for c in _calls(m, sc) if c[4]]
    for a in range(len(calls)):
        for b in range(a + 1, len(calls)):
            if _independent(sc, calls[a][1], calls[b][1]):
                out = copy.deepcopy(m)
                ia, ib = calls[a][0], calls[b][0]
                fa = out[ia]["tool_calls"][0]["function"]
                out[ia]["tool_calls"][0]["function"] = out[ib]["tool_calls"][0]["function"]
                out[ib]["tool_calls"][0]["function"] = fa
                return sc, reground(out, sc)
    raise NotApplicable("no independent pair")


def parallel_calls(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """Two independent calls in one assistant message (parallel tool calls)."""
    calls = [c for c in _calls(m, sc) if c[4]]
    for a in range(len(calls) - 1):
        (ia, na, _, ca, _), (ib, nb, _, cb, _) = calls[a], calls[a + 1]
        if not _independent(sc, na, nb):
            continue
        ja, jb = _answer_at(m, ca, ia), _answer_at(m, cb, ib)
        if not (ia < ja < ib < jb) or ib != ja + 1 or jb != ib + 1:
            continue
        out = copy.deepcopy(m)
        out[ia]["tool_calls"] = out[ia]["tool_calls"] + out[ib]["tool_calls"]
        out = out[:ja + 1] + [out[jb]] + out[jb + 1:]
        return sc, reground(out, sc)
    raise NotApplicable("no adjacent independent pair")


def read_after_write(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A look-up the graph puts before a write, done after it (reads are never order-checked)."""
    writes = _writes(m, sc)
    for idx, _name, _args, cid in _reads(m, sc):
        later = [w for w in writes if w[0] > idx]
        if not later:
            continue
        j = _answer_at(m, cid, idx)
        if j != idx + 1:
            continue
        out = copy.deepcopy(m)
        moved = out[idx:j + 1]
        if str(moved[0].get("content") or "").strip():
            continue
        del out[idx:j + 1]
        w_idx = later[-1][0] - 2
        at = _answer_at(out, later[-1][3], w_idx) + 1
        out[at:at] = moved
        out = reground(out, sc)
        # A read that told the assistant a value a later write uses is not free to move: the write
        # would then use a value nobody had given yet.
        if _harmless(m, out, sc) and not _grounding_codes(out, sc) - _grounding_codes(m, sc):
            return sc, out
    raise NotApplicable("no read before a write that can move after it")


def _grounding_codes(messages: Messages, sc: Scenario) -> set[str]:
    """The ungrounded write values of a transcript, as `tool:reason` strings."""
    replay = replay_dialogue(messages, sc, check_results=False)
    return {f.reason for f in check_grounding(messages, replay, sc).failures}


def _free_text_arg(sc: Scenario, name: str, args: dict[str, Any]) -> str | None:
    spec = sc.workflow.tool(name)
    props = spec.properties if spec else {}
    for k, v in args.items():
        p = found if isinstance(found := props.get(k), dict) else {}
        if isinstance(v, str) and any(c.isalpha() for c in v) and not ({"enum", "pattern", "format", "const"} & set(p)):
            return k
    return None


def equivalent_spelling(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A write's text argument in other letter case with stray spaces (`'  BLUE jacket '`)."""
    if not loose_state(sc):
        raise NotApplicable("a third-party backend computes on exact values")
    for idx, name, args, _ in _writes(m, sc):
        key = _free_text_arg(sc, name, args)
        if key is None:
            continue
        value = args[key]
        args[key] = f" {value.upper() if value != value.upper() else value.lower()} "
        out = copy.deepcopy(m)
        out[idx]["tool_calls"][0]["function"]["arguments"] = json.dumps(args)
        return sc, reground(out, sc)
    raise NotApplicable("no free-text argument in a write")


def polite_extra_message(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The assistant says something friendly alongside its first tool call."""
    out = copy.deepcopy(m)
    for x in out:
        if x.get("role") == "assistant" and tool_calls_of(x) and not str(x.get("content") or "").strip():
            x["content"] = "Happy to help with that — one moment while I take care of it."
            return sc, out
    raise NotApplicable("no silent tool-call message")


def closing_pleasantry(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The user thanks the assistant and the assistant says goodbye."""
    return sc, [*copy.deepcopy(m), {"role": "user", "content": "Great, thanks a lot!"},
                {"role": "assistant", "content": "You're welcome — have a great day!"}]


def retried_transient_error(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The first write hits a (planned) transient service error and the assistant retries it."""
    writes = _writes(m, sc)
    if not writes:
        raise NotApplicable("no write")
    idx, name, args, _ = writes[0]
    before = sum(1 for x in m[:idx] for c in tool_calls_of(x) if call_name_args(c)[0] == name)
    err = PlannedError(kind="transient", tool=name, occurrence=before + 1)
    sc2 = sc.model_copy(update={"planned_errors": [*sc.planned_errors, err]})
    return sc2, reground(_insert_call(m, idx, name, args, "transient"), sc2)


def skipped_gesture(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A zero-argument UI gesture (`restart_router()`) left out."""
    for idx, name, _, cid, ok in _calls(m, sc):
        if ok and tool_kind(sc, name) == "gesture" and not str(m[idx].get("content") or "").strip():
            out = copy.deepcopy(m)
            j = _answer_at(out, cid, idx)
            del out[j]
            del out[idx]
            return sc, reground(out, sc)
    raise NotApplicable("no gesture")


def repeated_press(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A button pressed twice: an action or an idempotent setting done again with the same arguments."""
    for idx, name, args, cid, ok in _calls(m, sc):
        if ok and tool_kind(sc, name) in ("gesture", "write") and _idempotent(sc, name):
            at = _answer_at(m, cid, idx) + 1
            return sc, reground(_insert_call(m, at, name, args, "press_again"), sc)
    raise NotApplicable("no action or setting")


def _op(sc: Scenario, name: str) -> str:
    eff = sc.workflow.effects.get(name)
    if eff is not None:
        return eff.kind
    b = bind_tools(sc.workflow.tools).get(name)
    return b.op if b is not None else ""


def _idempotent(sc: Scenario, name: str) -> bool:
    return _op(sc, name) in ("action", "update")


def confirmed_write(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The policy asks for a confirmation before a write; the assistant asks and the user agrees each time."""
    sc2, _ = skipped_confirmation(sc, m)
    name = _writes(m, sc)[-1][1]
    out = copy.deepcopy(m)
    for idx in sorted({i for i, n, *_ in _calls(m, sc) if n == name}, reverse=True):
        out[idx:idx] = [{"role": "assistant",
                         "content": f"I'm about to {name.replace('_', ' ')}. Shall I go ahead — can you confirm?"},
                        {"role": "user", "content": "Yes, please go ahead."}]
    return sc2, out


def refused_request(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A request the policy forbids, refused politely without touching anything."""
    task = task_from_plan(sc, gold_actions=[], refuse=True, id=f"{sc.id}:refuse")
    first = next(x for x in m if x.get("role") == "user")
    return sc.model_copy(update={"task": task}), [
        copy.deepcopy(first),
        {"role": "assistant", "content": "I'm sorry, but I can't do that: our policy does not allow it."}]


# ---------------------------------------------------------------------------------------------------------
# harmful variants


def _records(sc: Scenario) -> dict[str, dict[str, Any]]:
    state = sc.initial_state if isinstance(sc.initial_state, dict) else {}
    cols = found if isinstance(found := state.get("collections"), dict) else {}
    return {e: r for e, r in cols.items() if isinstance(r, dict)}


def wrong_record(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A write aimed at another existing record than the one the user means."""
    cols = _records(sc)
    for idx, _name, args, _ in _writes(m, sc):
        for key, value in args.items():
            for records in cols.values():
                ids = [r for r in records if str(r) != str(value)]
                if str(value) in {str(r) for r in records} and ids:
                    args[key] = type(value)(ids[0]) if isinstance(value, int) else ids[0]
                    out = copy.deepcopy(m)
                    out[idx]["tool_calls"][0]["function"]["arguments"] = json.dumps(args)
                    return sc, reground(out, sc)
    raise NotApplicable("no write names an existing record")


def missing_write(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The last write never happens."""
    writes = _writes(m, sc)
    if not writes:
        raise NotApplicable("no write")
    idx, _, _, cid = writes[-1]
    out = copy.deepcopy(m)
    j = _answer_at(out, cid, idx)
    del out[j]
    if str(out[idx].get("content") or "").strip():
        del out[idx]["tool_calls"]
    else:
        del out[idx]
    return sc, reground(out, sc)


def extra_write(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A create done a second time (a record nobody asked for)."""
    for idx, name, args, cid in reversed(_writes(m, sc)):
        if _op(sc, name) == "create":
            return sc, reground(_insert_call(m, _answer_at(m, cid, idx) + 1, name, args, "extra_write"), sc)
    raise NotApplicable("no create")


def wrong_value(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A write with a different value than the user gave (another enum member, another number or text)."""
    for idx, name, args, _ in reversed(_writes(m, sc)):
        spec = sc.workflow.tool(name)
        props = spec.properties if spec else {}
        for key, value in args.items():
            p = found if isinstance(found := props.get(key), dict) else {}
            new: Any = None
            if isinstance(p.get("enum"), list) and len(p["enum"]) > 1:
                new = next(e for e in p["enum"] if e != value)
            elif isinstance(value, int) and not isinstance(value, bool):
                hi = p.get("maximum")
                new = value - 1 if hi is not None and value + 1 > hi else value + 1
                if p.get("minimum") is not None and new < p["minimum"]:
                    continue
            elif isinstance(value, str) and key == _free_text_arg(sc, name, {key: value}) \
                    and not key.endswith("_id"):
                new = value + "x"
            if new is None:
                continue
            args[key] = new
            out = copy.deepcopy(m)
            out[idx]["tool_calls"][0]["function"]["arguments"] = json.dumps(args)
            return sc, reground(out, sc)
    raise NotApplicable("no value to change")


def invented_tool_result(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A tool message the backend never produced."""
    try:
        return sc, mutations.fake_result(m, 0)
    except ValueError as exc:
        raise NotApplicable(str(exc)) from None


def contradicting_claim(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The closing message states a value a tool result contradicts."""
    replay = replay_dialogue(m, sc, check_results=False)
    for rc in reversed(replay.calls):
        result = rc.record.result if rc.record.ok else None
        if not isinstance(result, dict):
            continue
        for key, value in result.items():
            text = str(value)
            if isinstance(value, str | int) and not isinstance(value, bool) and any(ch.isdigit() for ch in text) \
                    and len(text) < 40 and not any(ch.isspace() for ch in text):
                wrong = "".join("7" if ch.isdigit() and ch != "7" else ("1" if ch == "7" else ch)
                                for ch in str(value)) + "0042"
                out = copy.deepcopy(m)
                i = _last_text(out)
                out[i]["content"] = f"{out[i]['content']}\n{key}: {wrong}"
                return sc, out
    raise NotApplicable("no digit-bearing result value")


def forbidden_call(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A call of a tool the task forbids (a delete the user never asked for)."""
    cols = {e: r for e, r in _records(sc).items() if r}
    if not cols:
        raise NotApplicable("no records")
    entity = sorted(cols)[0]
    tool = ToolSpec(name=f"delete_{entity}", description=f"Delete a {entity}.",
                    parameters={"type": "object", "properties": {f"{entity}_id": {"type": "string"}},
                                "required": [f"{entity}_id"]})
    if sc.workflow.tool(tool.name) is not None:
        raise NotApplicable("the workflow already has a delete tool")
    wf = sc.workflow.model_copy(update={"tools": [*sc.workflow.tools, tool]})
    sc2 = sc.model_copy(update={"workflow": wf, "task": task_from_plan(sc, forbidden_tools=[tool.name])})
    at = _last_text(m)
    rid = sorted(cols[entity])[-1]
    return sc2, reground(_insert_call(m, at, tool.name, {f"{entity}_id": str(rid)}, "forbidden"), sc2)


def skipped_confirmation(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The policy requires a confirmation before the last write; the assistant does not ask."""
    writes = _writes(m, sc)
    if not writes:
        raise NotApplicable("no write")
    name = writes[-1][1]
    rule = Rule(id="confirm_write", text=f"Ask the user to confirm before calling {name}.", confirm=True, tools=[name])
    wf = sc.workflow.model_copy(update={"policy": [*sc.workflow.policy, rule]})
    # A dialogue that already confirms loses its question-and-yes exchanges.
    out: Messages = []
    i = 0
    while i < len(m):
        x, nxt = m[i], m[i + 1] if i + 1 < len(m) else {}
        if x.get("role") == "assistant" and not tool_calls_of(x) and "?" in str(x.get("content") or "") \
                and _CONFIRM_ASK.search(str(x.get("content") or "")) and nxt.get("role") == "user" \
                and _YES.search(str(nxt.get("content") or "")):
            i += 2
            continue
        out.append(copy.deepcopy(x))
        i += 1
    return sc.model_copy(update={"workflow": wf}), out


def not_refused(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A request the policy forbids (task.refuse), carried out anyway."""
    if not _writes(m, sc):
        raise NotApplicable("no write")
    return sc.model_copy(update={"task": task_from_plan(sc, gold_actions=[], refuse=True,
                                                        id=f"{sc.id}:refuse")}), m


def dependent_writes_swapped(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """Two writes that depend on each other, in the wrong order."""
    if sc.workflow.backend.kind == "python":
        raise NotApplicable("a third-party adapter's graph is a chain of first uses, not dependencies")
    try:
        g = parse_graph(sc.workflow.execution_graph).graph
    except ValueError:
        raise NotApplicable("no execution graph") from None
    writes = _writes(m, sc)
    for a in range(len(writes)):
        for b in range(a + 1, len(writes)):
            u, v = writes[a][1], writes[b][1]
            if u in g and v in g and u != v and nx.has_path(g, u, v):
                out = copy.deepcopy(m)
                ia, ib = writes[a][0], writes[b][0]
                fa = out[ia]["tool_calls"][0]["function"]
                out[ia]["tool_calls"][0]["function"] = out[ib]["tool_calls"][0]["function"]
                out[ib]["tool_calls"][0]["function"] = fa
                return sc, reground(out, sc)
    raise NotApplicable("no two dependent writes")


def communicate_omitted(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The task needs a value told to the user; the assistant's messages leave it out."""
    replay = replay_dialogue(m, sc, check_results=False)
    texts = [i for i, x in enumerate(m) if x.get("role") == "assistant" and str(x.get("content") or "").strip()]
    for rc in reversed(replay.calls):
        result = rc.record.result if rc.record.ok else None
        if not isinstance(result, dict):
            continue
        for value in result.values():
            if not (isinstance(value, str) and any(ch.isdigit() for ch in value)):
                continue
            saying = [i for i in texts if value in str(m[i].get("content"))]
            if saying:
                sc2 = sc.model_copy(update={"task": task_from_plan(sc, communicate_info=[value])})
                out = copy.deepcopy(m)
                for i in saying:
                    out[i]["content"] = str(out[i]["content"]).replace(value, "it")
                return sc2, out
    raise NotApplicable("no assistant message tells a result value")


def communicated(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The task needs a value told to the user, and the gold closing message tells it."""
    sc2, _ = communicate_omitted(sc, m)
    return sc2, m


def wrong_argument_type(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """An argument of the wrong JSON type (the schema rejects it)."""
    try:
        return sc, reground(mutations.corrupt_argument_type(m), sc)
    except ValueError as exc:
        raise NotApplicable(str(exc)) from None


def unanswered_call(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """A tool call without a result."""
    try:
        return sc, mutations.leave_unanswered(m)
    except ValueError as exc:
        raise NotApplicable(str(exc)) from None


def unsaid_value(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The user said another value than its task's, and the assistant wrote the task's value anyway.

    The write equals the gold, so `state` and `actions` pass: only `grounding` sees that the
    assistant used a value nobody in the dialogue gave it (it read the hidden task).
    """
    if sc.workflow.backend.kind != "sim":
        raise NotApplicable("grounding decides on our own environments only")
    other = "Quillon Harbour 7"
    for idx, name, args, _ in _writes(m, sc):
        for key, value in args.items():
            if not isinstance(value, str) or key != _free_text_arg(sc, name, {key: value}):
                continue
            needle = value.strip()
            said = [i for i, x in enumerate(m[:idx]) if x.get("role") == "user" and needle in str(x.get("content") or "")]
            elsewhere = any(x.get("role") in ("tool", "system") and needle.lower() in str(x.get("content") or "").lower()
                            for x in m[:idx])
            if not said or elsewhere or len(needle) < 3:
                continue
            out = copy.deepcopy(m)
            for i in said:
                out[i]["content"] = str(out[i]["content"]).replace(needle, other)
            if _grounding_codes(out, sc) - _grounding_codes(m, sc):  # nothing else (a tool's example) gives it
                return sc, out
    raise NotApplicable("no write value the user said and no tool returned")


def closed_with_request_open(sc: Scenario, m: Messages) -> tuple[Scenario, Messages]:
    """The assistant says goodbye before doing what was asked; the user has to ask again."""
    if sc.task is not None and sc.task.refuse:
        raise NotApplicable("a request that must be refused asks for nothing to be done")
    first_call = next((i for i, x in enumerate(m) if x.get("role") == "assistant" and tool_calls_of(x)), None)
    if first_call is None or m[first_call - 1].get("role") != "user":
        raise NotApplicable("no tool call answering a user message")
    out = copy.deepcopy(m)
    out[first_call:first_call] = [
        {"role": "assistant", "content": "Glad I could help — have a great day!"},
        {"role": "user", "content": "Wait, you haven't done it yet. Please go ahead."}]
    if closing_index(out) != first_call:
        raise NotApplicable("the dialogue already closed earlier")
    return sc, out


BENIGN = [
    Perturbation("extra_read", True, extra_read),
    Perturbation("repeated_read", True, repeated_read),
    Perturbation("ask_again", True, ask_again),
    Perturbation("reorder_independent", True, reorder_independent),
    Perturbation("parallel_calls", True, parallel_calls),
    Perturbation("read_after_write", True, read_after_write),
    Perturbation("equivalent_spelling", True, equivalent_spelling),
    Perturbation("polite_extra_message", True, polite_extra_message),
    Perturbation("closing_pleasantry", True, closing_pleasantry),
    Perturbation("retried_transient_error", True, retried_transient_error),
    Perturbation("skipped_gesture", True, skipped_gesture),
    Perturbation("repeated_press", True, repeated_press),
    Perturbation("confirmed_write", True, confirmed_write),
    Perturbation("refused_request", True, refused_request),
    Perturbation("communicated", True, communicated),
]

HARMFUL = [
    Perturbation("wrong_record", False, wrong_record, frozenset({"state", "actions"})),
    Perturbation("missing_write", False, missing_write, frozenset({"actions"})),
    Perturbation("extra_write", False, extra_write, frozenset({"state", "actions"})),
    Perturbation("wrong_value", False, wrong_value, frozenset({"state", "actions"})),
    Perturbation("invented_tool_result", False, invented_tool_result, frozenset({"execution"})),
    Perturbation("contradicting_claim", False, contradicting_claim, frozenset({"claims"})),
    Perturbation("forbidden_call", False, forbidden_call, frozenset({"policy"})),
    Perturbation("skipped_confirmation", False, skipped_confirmation, frozenset({"policy"})),
    Perturbation("not_refused", False, not_refused, frozenset({"policy"})),
    Perturbation("dependent_writes_swapped", False, dependent_writes_swapped, frozenset({"actions", "execution"})),
    Perturbation("communicate_omitted", False, communicate_omitted, frozenset({"communicate"})),
    Perturbation("wrong_argument_type", False, wrong_argument_type, frozenset({"schema"})),
    Perturbation("unanswered_call", False, unanswered_call, frozenset({"dialogue"})),
    Perturbation("unsaid_value", False, unsaid_value, frozenset({"grounding"})),
    Perturbation("closed_with_request_open", False, closed_with_request_open, frozenset({"dialogue"})),
]

ALL = BENIGN + HARMFUL


def failed_components(verdict: Any) -> set[str]:
    """Names of the components a verdict failed."""
    return {name for name, c in verdict.components.items() if not c.passed}


def is_error_message(message: dict[str, Any]) -> bool:
    """Whether a tool message carries an error payload."""
    return parse_tool_content(message.get("content"))[0]
