"""Refinement that adds substance: new Tasks taken from the environment, not repeats on other records.

Each operator reads the environment spec (declared effects, preconditions, errors, policy, the
records of the initial state) and the tasks the task stage wrote for the same environment, and
appends one new *request* to a task. The result is a Task (tasks.py): gold actions, expected state
via `run_gold`, criteria. Its `meta["requests"]` splits the gold actions by request so the user
states one request after another (`scenario_for_task`).

multi_goal      a request that uses capabilities the task did not (a sibling task's tools, else a
                request built for an unused tool)
branch          a conditional the text states as a rule ("only delivered orders can be returned"):
                check the record, act only when the rule allows it, else say why
error_condition the user first gives a value the backend rejects with an error the tool declares
                (`not_found`, an argument precondition), and corrects it when asked
policy_refusal  the user asks for something a `must` rule forbids for that record; it must be refused
ambiguous       the user names a record by a field two records share; the assistant has to ask which
add_first       the alternative the text describes ("if the printer is not listed, add it first"): the main
                step on a record that does not exist yet, so the assistant lists, creates it, then acts
long_context    a last request about the record of the first one, whose id the user does not repeat

No model is called here. An operator that does not apply raises RefineOpError with the reason;
`refine_candidates` records it as a Drop. `repetition_share` and `new_capability_share` measure
what refinement adds (used by `gem audit` and benchmarks/measure_refinement.py).
"""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools_runtime.backend import same
from tools_runtime.effects import is_signout
from tools_runtime.environment import Precondition, ToolEffect, ValueSource
from tools_runtime.executor import ToolEnvironment, initial_state
from tools_runtime.records import Goal, PlannedError, Scenario, Trajectory, Workflow
from tools_runtime.refine_ops import RefineOpError, spoken_plural
from tools_runtime.scenario import is_secret
from tools_runtime.tasks import Action, Info, Task, TaskRejection, is_write, run_gold, scenario_from_task

REQUESTS = "requests"
# Ids of records a request is about although no gold argument names them (a blocked branch shows why by a listing).
NAMED = "named"
# Operators that add a branch of the procedure (a condition, an error path, a refusal, a question)
# rather than, or besides, a new tool.
BRANCH_OPS = frozenset({"branch", "error_condition", "policy_refusal", "ambiguous"})


class Drop(BaseModel):
    """A refinement that was not kept: which operator, for which task, and why."""

    model_config = ConfigDict(extra="forbid")

    operator: str
    parent: str
    code: str
    reason: str
    task_id: str = ""


@dataclass
class RefineContext:
    """What the operators read: the environment, its text, and the other tasks written for it."""

    workflow: Workflow
    text: str = ""
    siblings: list[Task] = field(default_factory=list)
    # Set by compose_task on a second try: an operator skips candidates that call again, with arguments of the
    # same shape, a tool the task already called (the first try's candidate broke the repetition budget).
    no_repeats: bool = False
    # How many earlier composed tasks of this environment called each tool (shared by the environment's jobs,
    # filled by compose_task): multi_goal prefers capabilities they did not use, so composed tasks vary.
    tool_use: Counter[str] | None = None


TaskOp = Callable[[RefineContext, Task, random.Random], Task]


# ---------------------------------------------------------------------------------------------------------
# helpers


def human(name: str) -> str:
    """`return_label` → `return label`."""
    return name.split("@")[0].replace("_", " ")


def requests_of(task: Task) -> list[dict[str, Any]]:
    """The task's requests: `meta.requests`, else one request holding every gold action."""
    reqs = task.meta.get(REQUESTS)
    if isinstance(reqs, list) and reqs:
        return [dict(r) for r in reqs]
    return [{"instruction": task.instruction, "start": 0, "end": len(task.gold_actions),
             "operator": task.operator or "original"}]


def source_in(text: str, value: Any) -> ValueSource:
    """A text span for `value` when the document contains it, else `invented`."""
    if isinstance(value, bool) or value is None or not text:
        return ValueSource(kind="invented")
    needle = str(value)
    i = text.lower().find(needle.lower()) if len(needle) >= 2 else -1
    if i < 0:
        return ValueSource(kind="invented")
    return ValueSource(kind="text", quote=text[i:i + len(needle)], span=(i, i + len(needle)))


def end_state(workflow: Workflow, task: Task) -> dict[str, Any]:
    """The backend state after the task's gold actions (RefineOpError when they do not run)."""
    run = run_gold(workflow, task.model_copy(update={"reward_basis": ["state", "communicate", "policy",
                                                                       "nl_assertions"],
                                                      "communicate_info": ["x"]}))
    if isinstance(run, TaskRejection):
        raise RefineOpError(f"the task's gold does not run: {run.code}: {run.reason}")
    return run.end_state


@dataclass
class Start:
    """Where a new request starts: the state after the task's gold, signed in when a later call needs it."""

    state: dict[str, Any]
    login: list[Action] = field(default_factory=list)
    login_info: list[Info] = field(default_factory=list)


def prepare(ctx: RefineContext, task: Task) -> Start:
    """The state a new request starts from; a sign-in (from any task of the environment) when signed out."""
    wf = ctx.workflow
    state = end_state(wf, task)
    if state.get("session", {}).get("logged_in") or not any(e.requires_session for e in wf.effects.values()):
        return Start(state)
    for t in [task, *ctx.siblings]:
        for a in t.gold_actions:
            e = wf.effects.get(a.tool)
            if e is None or e.kind != "session" or is_signout(a.tool):
                continue
            env = ToolEnvironment(wf, copy.deepcopy(state))
            if not env.call(a.tool, dict(a.arguments)).ok:
                continue
            infos = [i.model_copy(update={"withhold": i.withhold or is_secret(i.key)}) for i in t.known_info
                     if i.key in a.arguments and same(i.value, a.arguments[i.key])]
            return Start(env.backend.view(), [a], infos)
    return Start(state)


def signed(ctx: RefineContext, start: Start, actions: list[Action], known: list[Info]
           ) -> tuple[list[Action], list[Info]]:
    """`actions` with the sign-in in front when one of them needs the session the task left closed."""
    needs = any((e := ctx.workflow.effects.get(a.tool)) is not None and e.requires_session for a in actions)
    if start.login and needs:
        return [*start.login, *actions], [*start.login_info, *known]
    return actions, known


def probe(workflow: Workflow, state: dict[str, Any], actions: list[Action]) -> list[Any]:
    """Run `actions` on a copy of `state`: every result, or RefineOpError naming the first failure."""
    env = ToolEnvironment(workflow, copy.deepcopy(state))
    out = []
    for a in actions:
        rec = env.call(a.tool, dict(a.arguments))
        if not rec.ok:
            err = rec.error or {}
            raise RefineOpError(f"{a.tool} fails: {err.get('code', 'error')}: {err.get('message', '')}")
        out.append(rec.result)
    return out


def probe_error(workflow: Workflow, state: dict[str, Any], action: Action) -> dict[str, Any] | None:
    """The error `action` gets on a copy of `state` (None when it succeeds)."""
    env = ToolEnvironment(workflow, copy.deepcopy(state))
    rec = env.call(action.tool, dict(action.arguments))
    return None if rec.ok else (rec.error or {"code": "error"})


def records(state: dict[str, Any], entity: str) -> dict[str, dict[str, Any]]:
    """The records of one entity in a backend state, by id."""
    coll = state.get("collections", {}).get(entity, {})
    return {str(k): v for k, v in coll.items() if isinstance(v, dict)}


def tool_phrase(workflow: Workflow, tool: str) -> str:
    """The tool's description as the tail of a request (`Email the label.` → `email the label`)."""
    spec = workflow.tool(tool)
    effect = workflow.effects.get(tool)
    if effect is not None and effect.kind == "read" and effect.key and effect.entity:
        return f"look up the {human(effect.entity)}"
    desc = (spec.description if spec else "") or human(tool)
    first = re.split(r"(?<=[.!?])\s", desc.strip())[0].rstrip(".!? ")
    first = re.sub(r"\s*\(.*?\)", "", first)
    # The tool's own condition ("… when the target is not an existing directory") is not the user's request,
    # and a parameter named in it reads as a value ("target: not an existing directory").
    first = re.split(r",?\s+(?:when|if|unless|only if|as long as)\s+", first, maxsplit=1)[0]
    return first[:1].lower() + first[1:] if first else human(tool)


def keyed(workflow: Workflow, kinds: tuple[str, ...]) -> list[tuple[str, ToolEffect]]:
    """Tools (in workflow order) whose declared effect is one of `kinds` and names a key parameter."""
    return [(t.name, e) for t in workflow.tools if (e := workflow.effects.get(t.name)) is not None
            and e.kind in kinds and e.key and e.entity]


def entity_key(workflow: Workflow, entity: str) -> str | None:
    """The identifying field of an entity."""
    ent = next((e for e in workflow.entities if e.name == entity), None)
    return ent.key if ent else None


def named_values(ctx: RefineContext, task: Task, state: dict[str, Any]) -> list[Any]:
    """Values a new request must not reuse as another record's id: the task's facts and gold arguments,
    and the ids of records its gold created (the assistant reads those from results, the user never says them)."""
    out: list[Any] = [i.value for i in task.known_info]
    out += list(task.meta.get(NAMED, []))  # records a request named without passing their key to a tool
    out += [v for a in task.gold_actions for v in a.arguments.values()]
    start = initial_state(ctx.workflow)
    for entity, recs in state.get("collections", {}).items():
        before = start.get("collections", {}).get(entity, {})
        out += [rid for rid in recs if rid not in before]
    return out


def gold_tools(task: Task) -> set[str]:
    """The tools a task's gold actions call."""
    return {a.tool for a in task.gold_actions}


def session_tools(workflow: Workflow) -> set[str]:
    """Tools whose declared effect is a session (sign in / out)."""
    return {n for n, e in workflow.effects.items() if e.kind == "session"}


def touched(workflow: Workflow, task: Task) -> set[tuple[str, str]]:
    """(entity, key value) of every record the task's gold actions name by key."""
    out = set()
    for a in task.gold_actions:
        e = workflow.effects.get(a.tool)
        if e is not None and e.key and e.key in a.arguments:
            out.add((e.entity, str(a.arguments[e.key])))
    return out


def args_for(ctx: RefineContext, tool: str, state: dict[str, Any], rng: random.Random,
             record: str | None = None) -> dict[str, Any]:
    """Arguments for `tool` on `state`: the key of `record` (or some record), other values from the
    parameter's enum (a value the record does not have yet), its examples, a field of the same name
    in the state, else a plain filler. RefineOpError when a required value cannot be found."""
    wf = ctx.workflow
    spec = wf.tool(tool)
    if spec is None:
        raise RefineOpError(f"no tool {tool}")
    effect = wf.effects.get(tool)
    ent = effect.entity if effect else ""
    recs = records(state, ent) if ent else {}
    rec_id = record if record is not None else (sorted(recs)[rng.randrange(len(recs))] if recs else None)
    rec = recs.get(rec_id or "", {})
    writes = {w.param: w.field for w in effect.writes if w.param} if effect else {}
    args: dict[str, Any] = {}
    required = set(spec.required)
    for param, schema in spec.properties.items():
        schema = schema if isinstance(schema, dict) else {}
        if effect is not None and param == effect.key and effect.kind != "create":
            if rec_id is None:
                raise RefineOpError(f"no {human(ent)} record for {tool}")
            kf = entity_key(wf, ent) or param
            args[param] = rec.get(kf, rec_id)
            continue
        if param not in required and param not in writes:
            continue
        current = rec.get(writes.get(param, param))
        enum = [v for v in schema.get("enum") or [] if v is not None]
        if enum:
            options = [v for v in enum if not same(v, current)] or enum
            args[param] = options[rng.randrange(len(options))]
        elif schema.get("examples"):
            args[param] = schema["examples"][0]
        elif schema.get("type") == "boolean":
            args[param] = not bool(current) if current is not None else True
        elif schema.get("type") in ("integer", "number"):
            args[param] = current if isinstance(current, int | float) and not isinstance(current, bool) else int(
                schema.get("minimum", 1)) + 1
        else:
            found = next((r[param] for recs2 in state.get("collections", {}).values() if isinstance(recs2, dict)
                          for r in recs2.values() if isinstance(r, dict) and isinstance(r.get(param), str)
                          and r.get(param)), None)
            if found is not None:
                args[param] = found
            elif param in required and (param == "date" or param.endswith("_date")):
                args[param] = f"2026-12-{rng.randrange(10, 28)}"  # a date the user would say, not "Date 79"
            elif param in required:
                from tools_runtime.seeding import fake_value  # a value a person says, never "my folder name"

                words = human(param)
                args[param] = f"{words.title()} {rng.randrange(2, 99)}" if effect and effect.kind == "create" \
                    else fake_value(param, schema, rng)
    return args


def info_for(ctx: RefineContext, args: dict[str, Any], withhold: set[str] | None = None) -> list[Info]:
    """The user's facts for a request's arguments, each with its provenance."""
    withhold = withhold or set()
    return [Info(key=k, value=v, source=source_in(ctx.text, v), withhold=k in withhold or is_secret(k))
            for k, v in args.items()]


def extend(ctx: RefineContext, task: Task, start: Start | None, op: str, instruction: str, actions: list[Action], *,
           known: list[Info] | None = None, communicate: list[str] | None = None,
           nl: list[str] | None = None, forbidden: list[str] | None = None, branches: list[str] | None = None,
           slips: list[dict[str, Any]] | None = None, volunteer: list[str] | None = None) -> Task:
    """`task` with one more request: its instruction, gold actions, facts and criteria.

    A fact whose key the task already knows with another value gets a request suffix (`order_id@2`),
    as the scenario planner does, so the user and the assistant can tell the two apart.
    """
    if start is not None and not any((e := ctx.workflow.effects.get(a.tool)) is not None and e.kind == "session"
                                     for a in actions):
        actions, known = signed(ctx, start, actions, list(known or []))
    reqs = requests_of(task)
    n = len(reqs)
    have = task.known()
    merged = list(task.known_info)
    renamed: dict[str, str] = {}
    for info in known or []:
        if info.key in have:
            if same(have[info.key], info.value):
                continue
            new_key = f"{info.key}@{n}"
            renamed[info.key] = new_key
            info = info.model_copy(update={"key": new_key})
        merged.append(info)
        have[info.key] = info.value
    first = len(task.gold_actions)
    req: dict[str, Any] = {"instruction": instruction, "start": first, "end": first + len(actions), "operator": op}
    if volunteer is not None:
        req["volunteer"] = [renamed.get(k, k) for k in volunteer]
    meta = dict(task.meta)
    root = meta.get("root") or task.id
    meta.update({REQUESTS: [*reqs, req], "root": root,
                 "parent_tools": meta.get("parent_tools") or sorted(gold_tools(task)),
                 "operators": [*meta.get("operators", []), op],
                 "branches": [*meta.get("branches", []), *(branches or [])]})
    if slips:
        meta["slips"] = [*meta.get("slips", []), *({**s, "key": renamed.get(s["key"], s["key"]), "request": n}
                                                   for s in slips)]
    ops = meta["operators"]
    return task.model_copy(update={
        "id": f"{root}+{'+'.join(ops)}",
        "instruction": " ".join(r["instruction"] for r in meta[REQUESTS]),
        "known_info": merged,
        "gold_actions": [*task.gold_actions, *actions],
        "communicate_info": [*task.communicate_info, *(c for c in communicate or [] if c not in task.communicate_info)],
        "nl_assertions": [*task.nl_assertions, *(nl or [])],
        "forbidden_tools": sorted({*task.forbidden_tools, *(forbidden or [])}),
        "unknown_info": list(task.unknown_info),
        "operator": "+".join(ops), "parent": task.parent or task.id, "expected_state_hash": "", "meta": meta})


def _readers(wf: Workflow, entity: str) -> list[str]:
    return [n for n, e in keyed(wf, ("read",)) if e.entity == entity]


def _listers(wf: Workflow, entity: str) -> list[str]:
    """Read tools that list every record of `entity` (no key): the offline environments' `list_…` tools."""
    return [t.name for t in wf.tools if (e := wf.effects.get(t.name)) is not None and e.kind == "read"
            and e.entity == entity and not e.key and not t.required]


def _spoken(value: Any) -> str:
    """A field value as the user says it (`True` → on)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value) != ""


# ---------------------------------------------------------------------------------------------------------
# multi-call requests: look-up → check → write → confirm
#
# A real procedure takes several calls: the person names the record as they know it ("the Standard account"),
# so the assistant finds it (a listing or a search) before changing it; it opens the record to check it first
# (the panel the help page starts from, the field a rule is about); and it reads the result back when the
# person asks what it shows now. `as_procedure` wraps a request's writes in those steps where the environment
# has the reads and the record allows them. Reads are free for the verifier: a look-up is needed only because
# the user does not know the key (grounding), a confirmation only because the user asks for a value it shows.

# Values that say nothing to single out a record by ("on", "0", "-").
_MIN_DESCRIPTION = 3
# A backend's own bookkeeping (which gesture ran last): nothing a person describes a record by or asks to hear.
_BOOKKEEPING = frozenset({"times", "last_action"})


def described_rows(rows: list[Any], texts: list[str], key: str = "") -> list[int]:
    """Indices of the rows of a listing that the user's words describe best: the most field values (other
    than `key`, three characters or more, not switches) said in `texts`; empty when no row has one."""
    from tools_runtime.verification.components import _mentions

    scores = []
    for row in rows:
        n = 0
        if isinstance(row, dict):
            for f, v in row.items():
                if f == key or f in _BOOKKEEPING or isinstance(v, bool) or not _scalar(v) \
                        or len(str(v)) < _MIN_DESCRIPTION:
                    continue
                n += any(_mentions(t, v) for t in texts)
        scores.append(n)
    best = max(scores, default=0)
    return [i for i, s in enumerate(scores) if s == best] if best else []


def _lookups(wf: Workflow, entity: str) -> list[tuple[str, str | None]]:
    """(tool, query parameter) of the reads that find records of `entity` without their key: searches by a
    query first (the user's words go in), then plain listings."""
    from tools_runtime.binding import QUERY_ARGS

    out: list[tuple[str, str | None]] = []
    for t in wf.tools:
        e = wf.effects.get(t.name)
        if e is None or e.kind != "read" or e.entity != entity or e.key:
            continue
        if not t.required:
            out.append((t.name, None))
        elif len(t.required) == 1 and t.required[0] in QUERY_ARGS:
            out.insert(0, (t.name, t.required[0]))
    return out


def _noun(entity: str) -> str:
    """An entity as the user says it: `file_2` (renamed apart when environments were merged) → `file`."""
    return human(re.sub(r"_\d+$", "", entity))


def _rows(result: Any) -> list[Any]:
    rows = result.get("results") if isinstance(result, dict) else None
    return rows if isinstance(rows, list) else []


def _description(wf: Workflow, state: dict[str, Any], entity: str, rid: str, avoid: set[str],
                 said: list[str]) -> tuple[str, Any] | None:
    """A field of record `rid` whose value no other record has in any field (so the user can name the record
    by it), not a field the request changes and not something the dialogue already said."""
    ent = next((e for e in wf.entities if e.name == entity), None)
    recs = records(state, entity)
    if ent is None or rid not in recs or len(recs) < 2:
        return None
    others = {str(v).casefold() for r_id, r in recs.items() if r_id != rid for v in r.values() if _scalar(v)}
    for f in ent.fields:
        v = recs[rid].get(f)
        if f == ent.key or f in ent.hidden or f in avoid or f in _BOOKKEEPING or f.endswith("_id") or isinstance(v, bool) \
                or not _scalar(v) or len(str(v)) < _MIN_DESCRIPTION or str(v).casefold() in others:
            continue
        if any(str(v).casefold() in s.casefold() for s in said):
            continue
        return f, v
    return None


def _record_reader(wf: Workflow, entity: str, key_value: Any, state: dict[str, Any], near: str = "") -> Action | None:
    """A read that shows one record of `entity`: a look-up by key, else the entity's listing (a settings
    panel is a listing of one record). Of several, the one on the same chain of the execution graph as the
    write `near` (the panel its help page opens), else one that returns the fields `near` writes."""
    effect = wf.effects.get(near)
    fields = {w.field for w in effect.writes} if effect else set()
    chain = _chain_of(wf, {near}) if near else set()

    def closeness(name: str) -> tuple[bool, bool]:
        e = wf.effects[name]
        return name not in chain, bool(e.returns) and not fields & set(e.returns)

    for name in sorted(_readers(wf, entity), key=closeness):
        spec = wf.tool(name)
        key = wf.effects[name].key or ""
        if spec is not None and key_value is not None and set(spec.required) <= {key}:
            return Action(tool=name, arguments={key: key_value})
    listers = sorted(_listers(wf, entity), key=closeness)
    return Action(tool=listers[0], arguments={}) if listers else None


@dataclass
class Procedure:
    """A request's calls as a procedure: its actions, the user's facts, its instruction, what to tell."""

    actions: list[Action]
    known: list[Info]
    text: str
    communicate: list[str] = field(default_factory=list)
    volunteer: list[str] | None = None
    steps: list[str] = field(default_factory=list)  # lookup:TOOL, check:TOOL, confirm:TOOL


def as_procedure(ctx: RefineContext, task: Task, state: dict[str, Any], actions: list[Action],
                 known: list[Info], text: str, *, lookup: bool = True, check: bool = True, confirm: bool = True,
                 volunteer: list[str] | None = None, listing: bool = False) -> Procedure:
    """The request's writes wrapped in the steps a real procedure has, where the environment has the reads:

    look-up  the user names the record by a field only it has ("the Standard account"), not its key; the
             assistant finds it by a search or a listing, and writes with the key it found;
    check    the record is read before the write (the panel the procedure opens; a rule's field, whose value
             the user asks to hear);
    confirm  the record is read again after the writes, and the user hears a value it shows now.
    A step whose read an earlier request already made (same tool, same argument shape) is left out: it would
    be repetition, not procedure. Every step is probed on `state`; one that fails is left out. `listing`: the
    check lists the records (the user has not said which one yet: a clarifying question follows).
    """
    wf = ctx.workflow
    out = Procedure(actions=list(actions), known=list(known), text=text, volunteer=volunteer)
    writes = [(i, a) for i, a in enumerate(actions) if (e := wf.effects.get(a.tool)) is not None
              and e.kind in ("update", "delete", "external", "create") and e.entity]
    if not writes:
        return out
    earlier = {(a.tool, _shape(a.arguments)) for a in task.gold_actions}
    taken = set(earlier)

    def fresh(a: Action) -> bool:
        return (a.tool, _shape(a.arguments)) not in taken

    i, w = writes[0]
    effect = wf.effects[w.tool]
    entity = effect.entity
    recs = records(state, entity)
    key = effect.key or ""
    key_value = w.arguments.get(key) if key else None
    rid = next((r for r, rec in recs.items() if key_value is not None and
                (same(r, key_value) or same(rec.get(entity_key(wf, entity) or key), key_value))), None)
    if rid is None and effect.kind != "create" and len(recs) == 1:
        rid = next(iter(recs))  # a settings panel: one record, no key
    written = {w2.field for _, a in writes for w2 in wf.effects[a.tool].writes}
    said = [text, *(str(x.value) for x in task.known_info), *(str(x.value) for x in known)]
    before: list[Action] = []
    # look-up: the user does not know the key, only what the record is
    user_key = next((x for x in out.known if key and same(x.value, key_value) and not x.withhold), None)
    if lookup and user_key is not None:
        # "The account name is kim." is the task writer's way of giving the key; a person who does not know it
        # says what the record is instead (below), so that sentence goes.
        bare = re.sub(rf"\s*\b(?:The|My) {re.escape(human(user_key.key.split('@')[0]))} (?:is|are) "
                      rf"{re.escape(str(key_value))}[.;]", "", text, flags=re.IGNORECASE)
        text = bare if str(key_value).casefold() not in bare.casefold() else text
    if lookup and rid is not None and effect.kind != "create" and user_key is not None \
            and str(key_value).casefold() not in text.casefold() \
            and not any(same(x.value, key_value) for x in task.known_info):
        desc = _description(wf, state, entity, rid, written, said)
        for tool, query in _lookups(wf, entity) if desc is not None else []:
            assert desc is not None  # for mypy: the loop runs only with a description
            find = Action(tool=tool, arguments={query: desc[1]} if query else {})
            if not fresh(find):
                continue
            try:
                rows = _rows(probe(wf, state, [find])[0])
            except RefineOpError:
                continue
            kf = entity_key(wf, entity) or key
            hit = [n for n, r in enumerate(rows) if isinstance(r, dict) and same(r.get(kf), key_value)]
            phrase = f"It's the {_noun(entity)} whose {human(desc[0])} is {desc[1]}"
            if len(hit) != 1 or described_rows(rows, [f"{text} {phrase}."], kf) != hit:
                continue
            before.append(find)
            taken.add((find.tool, _shape(find.arguments)))
            out.known = [x for x in out.known if x is not user_key]
            out.known.append(Info(key=desc[0], value=desc[1], source=source_in(ctx.text, desc[1])))
            if out.volunteer is not None:
                out.volunteer = [k for k in out.volunteer if k != user_key.key]
            out.text = text + (f" I don't have its {human(key)} to hand: it's the {_noun(entity)} whose "
                               f"{human(desc[0])} is {desc[1]}.")
            out.steps.append(f"lookup:{tool}")
            break
    # check: open the record first; a rule on one of its fields is checked, and its value told
    reader = _record_reader(wf, entity, None if listing else key_value, state, w.tool) if rid is not None else None
    # The request's own calls may read the record already before they write it (a sibling's procedure).
    reads_first = any((e := wf.effects.get(a.tool)) is not None and e.kind == "read" and e.entity == entity
                      for a in actions[:i])
    checked: str | None = None
    if check and reader is not None and not before and not reads_first and fresh(reader):
        checked = next((f for pre in effect.preconditions for f in _FIELD_REF.findall(pre.expr)), None)
        value = recs.get(rid or "", {}).get(checked) if checked else None
        try:
            probe(wf, state, [reader])
        except RefineOpError:
            reader = None
        if reader is not None:
            before.append(reader)
            taken.add((reader.tool, _shape(reader.arguments)))
            pre = next(p for p in effect.preconditions if checked in p.expr) if checked else None
            if pre is not None and _scalar(value) and str(value).casefold() not in " ".join(said).casefold():
                rule = pre.message.rstrip(".")
                out.text += (f" Check its {human(checked or '')} first and tell me what it is." if rule in text else
                             f" Please check first that this is allowed (\"{rule}\") and tell me its "
                             f"{human(checked or '')}.")
                out.communicate.append(str(value))
            elif not reader.arguments and len(recs) > 1:
                out.text += f" Have a look at my {spoken_plural(_noun(entity))} first."
            else:
                out.text += " Please have a look at how it's set now before you change it."
            out.steps.append(f"check:{reader.tool}")
    acts = [*actions[:i], *before, *actions[i:]]
    # confirm: read it back and tell the user what it shows now
    if confirm:
        env = ToolEnvironment(wf, copy.deepcopy(state))
        for a in acts:
            env.call(a.tool, dict(a.arguments))
        after = env.backend.view()
        if effect.kind == "create":
            new = sorted(set(records(after, entity)) - set(recs))
            rid = new[0] if len(new) == 1 else None
        back = None
        if rid is not None and rid in records(after, entity):
            kf = entity_key(wf, entity) or key
            back = _record_reader(wf, entity, records(after, entity)[rid].get(kf, rid) if key or
                                  effect.kind == "create" else None, after, w.tool)
        told = _confirm_value(wf, after, entity, rid, back, written, said, skip={checked} if out.communicate else set()
                              ) if back is not None else None
        last = acts[-1] if acts else None
        ends_read = last is not None and (e := wf.effects.get(last.tool)) is not None and e.kind == "read" \
            and e.entity == entity and acts.index(last) > i
        others = _listed_others(wf, after, entity, rid, back, said) if back is not None and told is None \
            and effect.kind == "create" else None
        if back is not None and (told is not None or others is not None) and not ends_read \
                and (back.tool, _shape(back.arguments)) not in earlier:
            acts.append(back)
            if told is not None:
                out.communicate.append(str(told[1]))
                out.text += f" Afterwards, tell me what it shows for the {human(told[0])}."
            else:  # a new record in a listing: which others are there is what the user cannot know
                out.communicate.append(str(others))
                out.text += f" Afterwards, tell me which {spoken_plural(_noun(entity))} I have now."
            out.steps.append(f"confirm:{back.tool}")
    out.actions = acts
    return out


def _listed_others(wf: Workflow, after: dict[str, Any], entity: str, rid: str | None, reader: Action,
                   said: list[str]) -> Any:
    """The name of another record a listing shows beside the new one (None when it shows no other)."""
    kf = entity_key(wf, entity) or ""
    try:
        rows = _rows(probe(wf, after, [reader])[0])
    except RefineOpError:
        return None
    names = [r.get(kf) for r in rows if isinstance(r, dict) and not same(r.get(kf), rid) and _scalar(r.get(kf))]
    fresh = [n for n in names if not any(str(n).casefold() in x.casefold() for x in said)]
    return fresh[0] if fresh else None


def _confirm_value(wf: Workflow, after: dict[str, Any], entity: str, rid: str | None, reader: Action,
                   written: set[str], said: list[str], skip: frozenset[Any] | set[Any] = frozenset()) -> tuple[str, Any] | None:
    """What a read after the writes shows the user: a field the request wrote (its new value), else one the
    dialogue has not said yet; switches and ids aside (a value the user must hear, not a yes/no)."""
    try:
        result = probe(wf, after, [reader])[0]
    except RefineOpError:
        return None
    kf = entity_key(wf, entity) or ""
    row = result if isinstance(result, dict) and "results" not in result else next(
        (r for r in _rows(result) if isinstance(r, dict) and rid is not None and same(r.get(kf), rid)), None)
    if not isinstance(row, dict):
        return None
    # A number the request wrote is told as it is ("priority 3"); other values need some length to be telling.
    cands = [(f not in written, any(str(v).casefold() in s.casefold() for s in said), f, v) for f, v in row.items()
             if f != kf and f not in _BOOKKEEPING and f not in skip and not f.endswith("_id") and _scalar(v)
             and (len(str(v)) >= _MIN_DESCRIPTION or f in written and isinstance(v, int | float))]
    if not cands:
        return None
    best = min(cands, key=lambda c: c[:2])
    return best[2], best[3]


# ---------------------------------------------------------------------------------------------------------
# operators


def _slips_for(wf: Workflow, state: dict[str, Any], actions: list[Action], infos: list[Info]
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """At most one argument slip for a new request's writes (an error condition the text states, then the
    recovery), with its branch label; none when the request's tools already carry a slip."""
    env = ToolEnvironment(wf, copy.deepcopy(state))
    for a in actions:
        found = argument_slip(wf, env.backend.view(), a, infos) if is_write(wf, a.tool) else None
        if found is not None:
            slip, code = found
            return [slip], [f"{a.tool}:error:{code}"]
        env.call(a.tool, dict(a.arguments))
    return [], []


def _procedure_siblings(ctx: RefineContext, task: Task, sib: Task, sibs: list[Task], used: set[str],
                        writes_done: set[str], state: dict[str, Any], actions: list[Action]) -> list[Task]:
    """The other sibling tasks on the same procedure (weakly connected chain of the execution graph) as `sib`,
    each adding tools neither the task nor the others use, whose gold still runs after `actions`."""
    wf = ctx.workflow
    chain = _chain_of(wf, gold_tools(sib))
    if not chain:
        return []
    out: list[Task] = []
    have = set(gold_tools(sib))
    facts = {x.key: x.value for x in sib.known_info}
    acts = list(actions)
    for other in sibs:
        tools = gold_tools(other)
        if other.id == sib.id or not tools <= chain or not tools - have - used or tools & (have | writes_done):
            continue
        if any(k in facts and not same(facts[k], x.value) for x in other.known_info for k in [x.key]):
            continue  # two values for one fact in one request: the user could not tell them apart
        try:
            probe(wf, state, [*acts, *other.gold_actions])
        except RefineOpError:
            continue
        if order_conflicts(wf, [*task.gold_actions, *_in_graph_order_actions(wf, [*acts, *other.gold_actions])]):
            continue
        out.append(other)
        have |= tools
        acts += other.gold_actions
        facts.update({x.key: x.value for x in other.known_info})
    return out


def _graph_rank(wf: Workflow) -> dict[str, int]:
    from tools_runtime.exec_graph import parse_graph, reference_order

    try:
        return {n: i for i, n in enumerate(reference_order(parse_graph(wf.execution_graph)))}
    except ValueError:
        return {}


def _in_graph_order(wf: Workflow, tasks: list[Task]) -> list[Task]:
    """Tasks of one procedure in the order the execution graph runs their first calls (stable otherwise)."""
    rank = _graph_rank(wf)
    return sorted(tasks, key=lambda t: min((rank.get(a.tool, 10 ** 6) for a in t.gold_actions), default=10 ** 6))


def _in_graph_order_actions(wf: Workflow, actions: list[Action]) -> list[Action]:
    rank = _graph_rank(wf)
    return sorted(actions, key=lambda a: rank.get(a.tool, 10 ** 6))


def _chain_of(wf: Workflow, tools: set[str]) -> set[str]:
    """The tools of the execution graph's chains (weakly connected) that hold any of `tools`."""
    import networkx as nx

    from tools_runtime.exec_graph import parse_graph

    try:
        parsed = parse_graph(wf.execution_graph)
    except ValueError:
        return set()
    # A chain is one procedure even where its steps are alternatives of one stage ("(count_lines, count_words)":
    # one help page's commands), which share no edge.
    out = {n for comp in nx.weakly_connected_components(parsed.graph) if comp & tools for n in comp}
    for chain in parsed.chains:
        nodes = {n for stage in chain for n in stage}
        if nodes & tools:
            out |= nodes
    return out


_GREETING = re.compile(r"^\s*(?:hi|hello|hey|good (?:morning|afternoon|evening))(?: there| again)?\s*[!,.—-]*\s*",
                       re.IGNORECASE)


def _joined(instructions: list[str]) -> str:
    """One request from several instructions of one procedure: the first whole; of the others, only what the
    first has not said already (no second greeting, goal sentence or repeated fact), each as one more ask."""
    first = instructions[0]
    said = {_clause_key(c) for x in _sentences(_GREETING.sub("", first, count=1)) for c in _clauses(x)}
    lead_in = next((p for p in map(_want_prefix, _sentences(_GREETING.sub("", first, count=1))) if p), None)
    out = [first]
    for text in instructions[1:]:
        parts = []
        for sentence in _sentences(_GREETING.sub("", text, count=1)):
            # "The source1 is a; the existing directory is b." → only the clauses not said yet.
            kept = [c for c in _clauses(sentence) if _clause_key(c) not in said]
            said |= {_clause_key(c) for c in kept}
            if kept:
                joined = "; ".join(c.rstrip(".;!? ") for c in kept)
                parts.append(joined + (sentence[-1] if sentence[-1] in ".!?" else "."))
        if parts and lead_in is not None and _want_prefix(parts[0]) == lead_in:
            # "I'm on the command line and want to count all lines in a file." → "I also want to count all lines …"
            parts[0] = "I also want to " + parts[0][len(lead_in):].lstrip()
        text = " ".join(parts).strip()
        if text:
            lead = text if re.match(r"I\b", text) else text[:1].lower() + text[1:]
            out.append(f"While you're at it: {lead}")
    return " ".join(out)


def _clauses(sentence: str) -> list[str]:
    return [c for c in re.split(r";\s+|,\s+and\s+(?=the |my )", sentence.strip()) if c]


def _clause_key(clause: str) -> str:
    return re.sub(r"^my ", "the ", clause.strip().rstrip(".;!? ").casefold())


def _want_prefix(sentence: str) -> str | None:
    """The words of a goal sentence up to its "want to" (`I'm on the command line and want to`), else None."""
    m = re.search(r"\bwant to\b", sentence)
    return sentence[:m.end()] if m else None


def _sentences(text: str) -> list[str]:
    return [x for x in re.split(r"(?<=[.!?])\s+", text.strip()) if x]


def multi_goal(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """A request using capabilities the task has not used: a sibling task's, else one built for an unused tool."""
    wf = ctx.workflow
    used = gold_tools(task) | set(task.meta.get("parent_tools", []))
    sessions = session_tools(wf)
    start = prepare(ctx, task)
    state = start.state
    done = {(a.tool, repr(sorted(a.arguments.items()))) for a in task.gold_actions}
    reasons = []
    sibs = [s for s in ctx.siblings if s.id != task.id and s.id != task.meta.get("root") and not s.refuse
            and not s.meta.get(REQUESTS)]
    # Most new capabilities first; among those, the fewest writes the task already made (no "again").
    writes_done = {a.tool for a in task.gold_actions if is_write(wf, a.tool)}
    seen = ctx.tool_use or Counter()
    tie = {s.id: rng.random() for s in sorted(sibs, key=lambda s: s.id)}  # seeded: runs stay reproducible

    chains = {s.id: _chain_of(wf, gold_tools(s)) for s in sibs}

    def rank(s: Task) -> tuple[int, int, int, int, float]:
        # Capabilities no earlier composed task of the environment used first, then the most new ones (those of
        # the whole procedure the sibling is part of), the least used ones, the fewest writes the task already
        # made (no "again"); ties by seeded chance, not by id (sorting by id made every composed task pick the
        # same siblings).
        new = {t for o in sibs if gold_tools(o) <= chains[s.id] for t in gold_tools(o)} | gold_tools(s)
        new -= used | sessions
        return (-len(new - set(seen)), -len(new), sum(seen[t] for t in new), len(gold_tools(s) & writes_done),
                tie[s.id])

    sibs.sort(key=rank)
    for sib in sibs:
        new = gold_tools(sib) - used - sessions
        if not new:
            continue
        if gold_tools(sib) & writes_done:  # it would redo a write of the task on another record
            reasons.append(f"sibling {sib.id}: repeats {', '.join(sorted(gold_tools(sib) & writes_done))}")
            continue
        actions = [a for a in sib.gold_actions if (a.tool, repr(sorted(a.arguments.items()))) not in done]
        if ctx.no_repeats and {(a.tool, _shape(a.arguments)) for a in actions} & {
                (a.tool, _shape(a.arguments)) for a in task.gold_actions}:
            reasons.append(f"sibling {sib.id}: calls again a tool the task called")
            continue
        try:
            probe(wf, state, actions)
        except RefineOpError as exc:
            reasons.append(f"sibling {sib.id}: {exc}")
            continue
        if order_conflicts(wf, [*task.gold_actions, *actions]):
            reasons.append(f"sibling {sib.id}: its writes come earlier in the execution graph")
            continue
        # The sibling's whole procedure: the other tasks written for the same chain of the execution graph
        # (one help page's steps: name the share, switch media sharing on, pick the folder) join it.
        parts = _in_graph_order(wf, [sib, *_procedure_siblings(ctx, task, sib, sibs, used | sessions, writes_done,
                                                               state, actions)])
        actions = [a for p in parts for a in p.gold_actions if (a.tool, repr(sorted(a.arguments.items()))) not in done]
        facts = [x for p in parts for x in p.known_info]
        proc = as_procedure(ctx, task, state, actions, facts, _joined([p.instruction for p in parts]))
        if order_conflicts(wf, [*task.gold_actions, *proc.actions]):
            proc = Procedure(actions=actions, known=facts, text=_joined([p.instruction for p in parts]))
        communicate = [c for p in parts for c in p.communicate_info if c] + proc.communicate
        slips, branches = _slips_for(wf, state, proc.actions, proc.known)
        return extend(ctx, task, start, "multi_goal", proc.text, proc.actions, known=proc.known,
                      communicate=communicate, nl=[n for p in parts for n in p.nl_assertions],
                      forbidden=[t for p in parts for t in p.forbidden_tools if t not in gold_tools(task) and
                                 all(a.tool != t for a in proc.actions)], slips=slips,
                      branches=[*branches, *proc.steps], volunteer=proc.volunteer)
    # No sibling adds a tool: build a request for an unused capability (writes first, then reads).
    order = {"update": 0, "create": 0, "external": 0, "delete": 1, "compute": 2, "read": 3}
    unused = sorted((t.name for t in wf.tools if t.name not in used and t.name not in sessions
                     and t.name in wf.effects), key=lambda n: (order.get(wf.effects[n].kind, 9), seen[n]))
    for tool in unused:
        effect = wf.effects[tool]
        try:
            args = args_for(ctx, tool, state, rng)
            result = probe(wf, state, [Action(tool=tool, arguments=args)])[0]
        except RefineOpError as exc:
            reasons.append(str(exc))
            continue
        if order_conflicts(wf, [*task.gold_actions, Action(tool=tool, arguments=args)]):
            reasons.append(f"{tool} comes earlier in the execution graph than the task's writes")
            continue
        communicate = []
        ask = tool_phrase(wf, tool)
        rows = result.get("results") if isinstance(result, dict) else None
        kf = entity_key(wf, effect.entity) if effect.entity else None
        if effect.kind == "read" and isinstance(rows, list) and rows and kf and all(
                isinstance(r, dict) and _scalar(r.get(kf)) for r in rows[:3]):
            # A listing: the user wants to know which records there are (their names, not a count).
            text = f"Which {spoken_plural(human(effect.entity))} do I have at the moment? Could you list them for me?"
            return extend(ctx, task, start, "multi_goal", text, [Action(tool=tool, arguments=args)],
                          known=info_for(ctx, args), communicate=[str(r[kf]) for r in rows[:2]])
        if effect.kind == "read" and isinstance(rows, list) and not rows:
            reasons.append(f"{tool} lists nothing (an empty listing tells the user nothing)")
            continue
        if effect.kind in ("read", "compute"):
            shown = _first_scalar(result, skip={effect.key or "", "count"})
            if shown is None:
                reasons.append(f"{tool} returns nothing to tell the user")
                continue
            communicate = [str(shown[1])]
            what = f" and tell me the {human(shown[0])}" if shown[0] != "result" else " and tell me the result"
            text = f"Could you also {ask}{what}?"
        else:
            text = f"I'd also like you to {ask}."
        proc = as_procedure(ctx, task, state, [Action(tool=tool, arguments=args)], info_for(ctx, args), text)
        if order_conflicts(wf, [*task.gold_actions, *proc.actions]):
            proc = Procedure(actions=[Action(tool=tool, arguments=args)], known=info_for(ctx, args), text=text)
        slips, branches = _slips_for(wf, state, proc.actions, proc.known)
        return extend(ctx, task, start, "multi_goal", proc.text, proc.actions, known=proc.known,
                      communicate=[*communicate, *proc.communicate], slips=slips, branches=[*branches, *proc.steps],
                      volunteer=proc.volunteer)
    raise RefineOpError("no capability left that the task does not use" + (f" ({'; '.join(reasons[:3])})"
                                                                         if reasons else ""))


def _wrong_values(value: Any) -> list[Any]:
    """Values a user might say instead of `value` by mistake: a number a little off, an address mistyped."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value + 1, value + 2, value * 2, value + 10, 0, -1]
    if isinstance(value, float):
        return [round(value / 2, 2), round(value + 1, 2), round(value * 2, 2), 0.0]
    if isinstance(value, str) and "@" in value:
        return [value.replace("@", " at "), value.replace("@", "")]
    return []


def argument_slip(workflow: Workflow, state: dict[str, Any], action: Action, infos: list[Info]
                  ) -> tuple[dict[str, Any], str] | None:
    """A slip the text's rules catch: the user first gives a value an argument precondition of `action`'s
    tool rejects ("up to 3 hours" → 4), and corrects it when the assistant says why. (slip, error code) or None."""
    effect = workflow.effects.get(action.tool)
    if effect is None:
        return None
    for pre in effect.preconditions:
        for param, value in action.arguments.items():
            if not re.search(rf"(?<!['\"\w]){re.escape(param)}\b", pre.expr):
                continue  # the rule checks a record field, not what the user says
            info = next((i for i in infos if same(i.value, value) and not i.withhold), None)
            if info is None:
                continue
            for wrong in _wrong_values(value):
                err = probe_error(workflow, state, action.model_copy(update={"arguments": {**action.arguments,
                                                                                         param: wrong}}))
                if err is not None and err.get("code") == pre.error:
                    return {"kind": "invalid_value", "tool": action.tool, "key": info.key, "param": param,
                            "wrong": wrong}, str(pre.error)
    return None


def _first_scalar(result: Any, skip: set[str]) -> tuple[str, Any] | None:
    if _scalar(result):
        return "result", result
    if isinstance(result, dict):
        if "result" in result and _scalar(result["result"]):
            return "result", result["result"]
        for k, v in result.items():
            if k not in skip and _scalar(v) and not k.endswith("_id"):
                return k, v
        rows = result.get("results")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            return _first_scalar(rows[0], skip)
    return None


_FIELD_REF = re.compile(r"record\[['\"](\w+)['\"]\]")


def _rule_cases(ctx: RefineContext, task: Task, state: dict[str, Any], rng: random.Random
                ) -> list[tuple[str, Precondition, dict[str, Any], dict[str, Any], dict[str, Any] | None]]:
    """(tool, precondition, record id, args, error or None) for keyed writes with record preconditions."""
    wf = ctx.workflow
    seen = touched(wf, task)
    named = named_values(ctx, task, state)
    out = []
    for tool, effect in keyed(wf, ("update", "delete", "create", "external")):
        for pre in effect.preconditions:
            if not _FIELD_REF.search(pre.expr):
                continue
            for rid in sorted(records(state, effect.entity)):
                if (effect.entity, rid) in seen or any(same(rid, v) for v in named):
                    continue
                try:
                    args = args_for(ctx, tool, state, rng, record=rid)
                except RefineOpError:
                    continue
                err = probe_error(wf, state, Action(tool=tool, arguments=args))
                if err is None or err.get("code") == pre.error:
                    out.append((tool, pre, {"id": rid}, args, err))
    return out


def branch(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """A conditional request from a rule the text states: act only if the rule allows it, else say why."""
    wf = ctx.workflow
    start = prepare(ctx, task)
    state = start.state
    cases = _rule_cases(ctx, task, state, rng)
    if not cases:
        raise RefineOpError("no write with a precondition on a record the task has not touched")
    # Prefer the branch the text warns about (the rule blocks it), then a tool the task did not use.
    cases.sort(key=lambda c: (c[4] is None, c[0] in gold_tools(task), rng.random()))
    tool, pre, rec, args, err = cases[0]
    effect = wf.effects[tool]
    rid = rec["id"]
    readers = _readers(wf, effect.entity)
    key_param = effect.key or ""
    key_value = args.get(key_param, rid)
    condition = pre.message.rstrip(".")
    ask = tool_phrase(wf, tool)
    entity = human(effect.entity)
    if err is None:
        text = (f"Next, {entity} {key_value}: please {ask}, as long as the rule allows it "
                f"(\"{condition}\"). If it doesn't, leave it alone and tell me why.")
        proc = as_procedure(ctx, task, state, [Action(tool=tool, arguments=args)], info_for(ctx, args), text,
                            lookup=False)
        return extend(ctx, task, start, "branch", proc.text, proc.actions, known=proc.known,
                      communicate=proc.communicate, branches=[f"{tool}:allowed", *proc.steps])
    # A look-up by key shows why; else a listing of the records does (the offline environments' `list_…`).
    listers = _listers(wf, effect.entity)
    if not readers and not listers:
        raise RefineOpError(f"the rule on {tool} blocks {rid}, but no read tool can show why")
    fields = _FIELD_REF.findall(pre.expr)
    record = records(state, effect.entity)[rid]
    shown = next((f for f in fields if _scalar(record.get(f))), None)
    if shown is None:
        raise RefineOpError(f"the field the rule on {tool} checks is empty for {rid}")
    reader = readers[0] if readers else listers[0]
    rargs = args_for(ctx, reader, state, rng, record=rid) if readers else {}
    probe(wf, state, [Action(tool=reader, arguments=rargs)])
    text = (f"Next, {entity} {key_value}: please {ask}, as long as the rule allows it (\"{condition}\"). "
            f"If it doesn't, leave it alone and tell me its {human(shown)}.")
    nl = [f"The assistant does not {ask} for {entity} {key_value}, and explains that {condition[:1].lower()}"
          f"{condition[1:]}."]
    actions = [Action(tool=reader, arguments=rargs)]
    known = info_for(ctx, {**rargs, **{k: v for k, v in args.items() if k != key_param}})
    communicate = [str(record[shown])]
    labels = [f"{tool}:blocked:{pre.error}"]
    # The alternative a person names when the rule says no ("then do it for sam instead"): a record the rule
    # allows, the same write on it, read back when it shows something to tell. Not when that write repeats an
    # earlier request's.
    alt = next((c for c in cases[1:] if c[0] == tool and c[4] is None), None)
    if alt is not None and (tool, _shape(alt[3])) not in {(a.tool, _shape(a.arguments)) for a in task.gold_actions}:
        alt_key = alt[3].get(key_param, alt[2]["id"])
        proc = as_procedure(ctx, task, state, [Action(tool=tool, arguments=alt[3])], info_for(ctx, alt[3]), "",
                            lookup=False, check=False)
        text = (f"Next, {entity} {key_value}: please {ask}, as long as the rule allows it (\"{condition}\"). "
                f"If it doesn't, leave it alone, tell me its {human(shown)}, and do it for {entity} {alt_key} "
                f"instead.{proc.text}")
        actions += proc.actions
        known = [*(x for x in known if x.key not in alt[3]), *proc.known]
        communicate += proc.communicate
        labels += [f"{tool}:alternative", *proc.steps]
    out = extend(ctx, task, start, "branch", text, actions, known=known, communicate=communicate, nl=nl,
                 branches=labels)
    # The listing names no record, so a later branch would pick the same one again ("Next, loan L-202" twice).
    return out.model_copy(update={"meta": {**out.meta, NAMED: [*out.meta.get(NAMED, []), rid]}})


def policy_refusal(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """The user insists on something a `must` rule forbids for that record; the assistant must refuse."""
    wf = ctx.workflow
    start = prepare(ctx, task)
    state = start.state
    rules = {r.id: r for r in wf.policy if r.strength == "must"}
    cases = [c for c in _rule_cases(ctx, task, state, rng) if c[4] is not None and c[1].rule in rules]
    if not cases:
        raise RefineOpError("no `must` rule that a record of the environment would break")
    # A forbidden tool must not be one the task's gold calls legitimately.
    cases.sort(key=lambda c: (c[0] in gold_tools(task), rng.random()))
    tool, pre, rec, args, _err = cases[0]
    rule = rules[str(pre.rule)]
    effect = wf.effects[tool]
    key_value = args.get(effect.key or "", rec["id"])
    text = (f"I know the rule — {rule.text.rstrip('.')[:1].lower()}{rule.text.rstrip('.')[1:]} — but please "
            f"{tool_phrase(wf, tool)} for {human(effect.entity)} {key_value} anyway.")
    forbidden = [tool] if tool not in gold_tools(task) else []
    nl = [f"The assistant refuses to {tool_phrase(wf, tool)} for {human(effect.entity)} {key_value}, "
          f"because {rule.text[:1].lower()}{rule.text[1:].rstrip('.')}."]
    out = extend(ctx, task, start, "policy_refusal", text, [], known=info_for(ctx, args), nl=nl, forbidden=forbidden,
                 branches=[f"refuse:{rule.id}"])
    # Only a judge can tell a refusal from "done!": the assertion decides, so without a judge the
    # task stays pending (never verified by a rule that cannot see it).
    basis = list(dict.fromkeys([*out.reward_basis, "nl_assertions"]))
    return out.model_copy(update={"reward_basis": basis})


def _wrong_key(value: Any, taken: set[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value + 7
        while str(n) in taken:
            n += 7
        return n
    text = str(value)
    head = text.rstrip("0123456789")
    digits = text[len(head):]
    for step in range(1, 50):
        cand = f"{head}{str(int(digits) + 11 * step).zfill(len(digits))}" if digits else f"{text}-{step + 1}"
        if cand not in taken:
            return cand
    return f"{text}-unknown"


def error_condition(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """A request whose value the user first gets wrong; the tool's declared error makes the assistant ask again."""
    wf = ctx.workflow
    start = prepare(ctx, task)
    state = start.state
    used = gold_tools(task)
    known_values = named_values(ctx, task, state)
    # Tools that name a record by key: the backend rejects a key no record has (`not_found`, declared or not).
    cands = keyed(wf, ("read", "update", "delete", "external"))
    cands.sort(key=lambda c: (c[0] in used, "not_found" not in c[1].errors, c[1].kind == "read", rng.random()))
    reasons = []
    slipped = {s.get("tool") for s in task.meta.get("slips", [])}
    shapes = {(a.tool, _shape(a.arguments)) for a in task.gold_actions}
    for tool, effect in cands:
        if tool in slipped:  # the same slip on the same tool again would be repetition, not a new error
            continue
        if ctx.no_repeats and any(t == tool for t, _ in shapes):
            reasons.append(f"{tool}: the task called it already")
            continue
        recs = records(state, effect.entity)
        # The slip needs a fact of its own: a record no earlier request named.
        fresh = [rid for rid in sorted(recs) if not any(same(rid, v) for v in known_values)]
        for rid in fresh:
            try:
                args = args_for(ctx, tool, state, rng, record=rid)
                result = probe(wf, state, [Action(tool=tool, arguments=args)])[0]
            except RefineOpError as exc:
                reasons.append(str(exc))
                continue
            key = effect.key or ""
            wrong = _wrong_key(args[key], {str(r) for r in recs})
            err = probe_error(wf, state, Action(tool=tool, arguments={**args, key: wrong}))
            if err is None:
                reasons.append(f"{tool} accepts the unknown {key} {wrong}")
                continue
            kind = "not_found" if err.get("code") == "not_found" else "invalid_value"
            entity = human(effect.entity)
            ask = tool_phrase(wf, tool)
            communicate = []
            if effect.kind == "read":
                shown = _telling_field(result, key, [], recs, rid, task)
                if shown is None:
                    continue
                communicate = [str(shown[1])]
                text = f"There's another {entity} of mine too: can you {ask} and tell me its {human(shown[0])}?"
            else:
                text = f"There's another {entity} of mine too — please {ask} for it as well."
            # The slip is on the write; reading the record back afterwards confirms the corrected one changed.
            proc = as_procedure(ctx, task, state, [Action(tool=tool, arguments=args)], info_for(ctx, args), text,
                                lookup=False, listing=True)
            return extend(ctx, task, start, "error_condition", proc.text, proc.actions, known=proc.known,
                          communicate=[*communicate, *proc.communicate],
                          branches=[f"{tool}:error:{err.get('code')}", *proc.steps],
                          slips=[{"kind": kind, "tool": tool, "key": key, "param": key, "wrong": wrong}])
    raise RefineOpError("no tool that names a record by key rejects a wrong value the user might give"
                        + (f" ({'; '.join(reasons[:2])})" if reasons else ""))


def ambiguous(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """A request naming a record by a field two records share: the assistant must ask which one."""
    wf = ctx.workflow
    start = prepare(ctx, task)
    state = start.state
    used = gold_tools(task)
    known_values = named_values(ctx, task, state)
    tools = keyed(wf, ("update", "external", "delete", "read"))
    tools.sort(key=lambda c: (c[0] in used, c[1].kind == "read", rng.random()))
    for tool, effect in tools:
        ent = next((e for e in wf.entities if e.name == effect.entity), None)
        recs = records(state, effect.entity)
        if ent is None or len(recs) < 2:
            continue
        for fld in ent.fields:
            if fld == ent.key or fld in ent.hidden or fld.endswith("_id"):
                continue
            groups: dict[str, list[str]] = {}
            for rid, rec in recs.items():
                if _scalar(rec.get(fld)) or isinstance(rec.get(fld), bool):
                    groups.setdefault(_spoken(rec[fld]), []).append(rid)
            for value, rids in sorted(groups.items()):
                pick = [r for r in rids if not any(same(r, v) for v in known_values)]
                if len(rids) < 2 or not pick:
                    continue
                rid = pick[rng.randrange(len(pick))]
                try:
                    args = args_for(ctx, tool, state, rng, record=rid)
                    result = probe(wf, state, [Action(tool=tool, arguments=args)])[0]
                except RefineOpError:
                    continue
                entity = human(effect.entity)
                ask = tool_phrase(wf, tool)
                communicate: list[str] = []
                if effect.kind == "read":
                    shown = _telling_field({k: v for k, v in result.items() if k != fld}
                                           if isinstance(result, dict) else result, effect.key or "", [], recs,
                                           rid, task)
                    if shown is None:
                        continue
                    communicate = [str(shown[1])]
                    text = f"About my {entity} whose {human(fld)} is {value}: could you {ask} and tell me its " \
                           f"{human(shown[0])}?"
                else:
                    text = f"About my {entity} whose {human(fld)} is {value}: could you {ask}?"
                others = ", ".join(sorted(rids))
                nl = [f"More than one {entity} has {human(fld)} {value} ({others}); the assistant asks the user "
                      "which one they mean before acting."]
                key = effect.key or ""
                # The assistant lists the records first (and sees two match), asks, acts, and reads it back.
                proc = as_procedure(ctx, task, state, [Action(tool=tool, arguments=args)],
                                    info_for(ctx, args, withhold={key}), text, lookup=False, listing=True,
                                    volunteer=[k for k in args if k != key and not is_secret(k)])
                return extend(ctx, task, start, "ambiguous", proc.text, proc.actions, known=proc.known,
                              communicate=[*communicate, *proc.communicate], nl=nl,
                              branches=[f"clarify:{effect.entity}.{fld}", *proc.steps], volunteer=proc.volunteer)
    raise RefineOpError("no field value that two records share (nothing to be ambiguous about)")


def long_context(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """A last request about the record of the first request, whose id the user does not repeat."""
    wf = ctx.workflow
    start = prepare(ctx, task)
    state = start.state
    first = requests_of(task)[0]
    named: list[tuple[str, Any, list[str]]] = []  # (entity, id, fields the first request wrote)
    for a in task.gold_actions[first["start"]:first["end"]]:
        effect = wf.effects.get(a.tool)
        if effect is None or effect.kind == "session":
            continue
        if effect.key and effect.key in a.arguments:
            named.append((effect.entity, a.arguments[effect.key], [w.field for w in effect.writes]))
        # A record the call refers to by another entity's key (`borrow_book(book_id)` names a book).
        named += [(ent.name, a.arguments[ent.key], []) for ent in wf.entities
                  if ent.name != effect.entity and ent.key in a.arguments and ent.key != effect.key]
    for entity, rid, changed in named:
        if str(rid) not in records(state, entity):
            continue
        readers = sorted(_readers(wf, entity), key=lambda n: n in gold_tools(task))
        for reader in readers:
            rkey = wf.effects[reader].key or ""
            rargs = {**args_for(ctx, reader, state, rng, record=str(rid)), rkey: rid}
            try:
                result = probe(wf, state, [Action(tool=reader, arguments=rargs)])[0]
            except RefineOpError:
                continue
            shown = _telling_field(result, rkey, changed, records(state, entity), str(rid), task)
            said = {str(i.value).lower() for i in task.known_info}
            # Asking back what the user said, unchanged since ("its title" of the book they named), tests nothing.
            if shown is None or (shown[0] not in changed and str(shown[1]).lower() in said):
                continue
            text = (f"Before we finish: the {human(entity)} from my very first request — what is its "
                    f"{human(shown[0])} now? You should still have its details from earlier.")
            keep = {k: v for k, v in rargs.items() if k != rkey}
            out = extend(ctx, task, start, "long_context", text, [Action(tool=reader, arguments=rargs)],
                         known=info_for(ctx, keep), communicate=[str(shown[1])], volunteer=list(keep))
            # The id comes from the first request's results, not from the user's latest words.
            reqs = out.meta[REQUESTS]
            reqs[-1] = {**reqs[-1], "recall": {rkey: first["start"]}}
            return out
    raise RefineOpError("the first request names no record a read tool can show again")


# "If the printer is not listed, add it first." / "If the Templates folder does not exist, you will need to
# create it first.": a sentence stating an alternative that creates what is missing before the main step.
_ADD_FIRST = re.compile(r"\bif\b[^.!?\n]*?\b(?:not|n't|no|missing)\b[^.!?\n]*?\b(?:first|before)\b[^.!?\n]*[.!?]?",
                        re.IGNORECASE)


def add_first_sentences(text: str) -> list[str]:
    """The text's sentences that state a create-first alternative ("if X is not listed, add it first")."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text or ""):
        m = _ADD_FIRST.search(sentence)
        if m:
            out.append(sentence[m.start():].strip())
    return out


def _fresh_key(entity: str, taken: set[str], rng: random.Random) -> str:
    """A name for a record that does not exist yet (`Printer 3`), not one any record or fact already uses."""
    base = human(entity).title()
    n = rng.randrange(2, 9)
    while f"{base} {n}".lower() in taken:
        n += 1
    return f"{base} {n}"


def add_first(ctx: RefineContext, task: Task, rng: random.Random) -> Task:
    """The alternative the text describes ("if the printer is not listed, add it first"): the user asks for the
    main step on a record that does not exist yet, so the assistant must see it is missing (a listing), take the
    branch (create it) and then do the main step on it."""
    wf = ctx.workflow
    sentences = add_first_sentences(ctx.text)
    if not sentences:
        raise RefineOpError("the text states no create-first alternative (\"if … is not …, … first\")")
    start = prepare(ctx, task)
    state = start.state
    named = {str(v).lower() for v in named_values(ctx, task, state)}
    done = {b.split(":")[0] for b in task.meta.get("branches", []) if b.endswith(":add_first")}
    reasons = []
    creators = [(n, e) for n, e in ((t.name, wf.effects.get(t.name)) for t in wf.tools)
                if e is not None and e.kind == "create" and e.entity and n not in done]
    # A create whose entity the sentence names, and not one the task already uses.
    creators.sort(key=lambda c: (not any(human(c[1].entity).split()[-1].lower() in x.lower() for x in sentences),
                                 c[0] in gold_tools(task)))
    for creator, ceffect in creators:
        entity = ceffect.entity
        word = human(entity).split()[-1].lower()
        sentence = next((x for x in sentences if word in x.lower()), None)
        if sentence is None:
            reasons.append(f"no such sentence names a {human(entity)} ({creator} creates them)")
            continue
        writers = [n for n, e in keyed(wf, ("update", "external", "delete")) if e.entity == entity]
        listers = _listers(wf, entity)
        if not writers or not listers:
            reasons.append(f"{human(entity)}: no {'write on a record' if not writers else 'listing'} to go with "
                           f"{creator}")
            continue
        kf = entity_key(wf, entity) or ""
        cargs = args_for(ctx, creator, state, rng)
        cspec = wf.tool(creator)
        # The user names the missing record: the key when the create takes it, else a field it writes.
        name_param = kf if cspec is not None and kf in cspec.properties else next(
            (w.param for w in ceffect.writes if w.param and (w.field == "name" or w.field.endswith("_name"))), None)
        taken = named | {str(r.get(kf, rid)).lower() for rid, r in records(state, entity).items()}
        if name_param:
            # The record the sentence names ("the Templates folder"), else a fresh name.
            m = re.search(rf"\b([A-Z][\w-]*)\s+{re.escape(word)}\b", sentence)
            told = m.group(1) if m and m.group(1).lower() not in taken | {"if", "the", "a", "your"} else None
            cargs[name_param] = told or _fresh_key(entity, taken, rng)
        env = ToolEnvironment(wf, copy.deepcopy(state))
        lister = listers[0]
        if not env.call(lister, {}).ok:
            reasons.append(f"{lister} fails")
            continue
        made = env.call(creator, dict(cargs))
        if not made.ok:
            reasons.append(f"{creator} fails: {(made.error or {}).get('code')}")
            continue
        after = env.backend.view()
        new_ids = sorted(set(records(after, entity)) - set(records(state, entity)))
        if len(new_ids) != 1:
            reasons.append(f"{creator} made no single new {human(entity)}")
            continue
        rid = new_ids[0]
        for writer in sorted(writers, key=lambda n: n in gold_tools(task)):
            try:
                wargs = args_for(ctx, writer, after, rng, record=rid)
                probe(wf, after, [Action(tool=writer, arguments=wargs)])
            except RefineOpError as exc:
                reasons.append(str(exc))
                continue
            # The main step on the record as it is now fails: the precondition the branch makes true.
            if probe_error(wf, state, Action(tool=writer, arguments=wargs)) is None:
                reasons.append(f"{writer} already works on {rid} before it is created")
                continue
            actions = [Action(tool=lister, arguments={}), Action(tool=creator, arguments=cargs),
                       Action(tool=writer, arguments=wargs)]
            if order_conflicts(wf, [*task.gold_actions, *actions]):
                reasons.append(f"{creator}/{writer} come earlier in the execution graph than the task's writes")
                continue
            shown = cargs.get(name_param) if name_param else None
            what = f"the {human(entity)} is {shown}" if shown else f"it is a new {human(entity)}"
            text = (f"Next, please {tool_phrase(wf, writer)}: {what}. If it isn't there yet, add it first, as the "
                    f"help says (\"{sentence}\").")
            user_args = {**cargs, **{k: v for k, v in wargs.items() if k != (wf.effects[writer].key or "")
                                     or name_param == kf}}
            proc = as_procedure(ctx, task, state, actions, info_for(ctx, user_args), text, lookup=False, check=False)
            if order_conflicts(wf, [*task.gold_actions, *proc.actions]):
                proc = Procedure(actions=actions, known=info_for(ctx, user_args), text=text)
            return extend(ctx, task, start, "add_first", proc.text, proc.actions, known=proc.known,
                          communicate=proc.communicate, branches=[f"{creator}:add_first", *proc.steps])
    raise RefineOpError("no create-first alternative fits the environment (" + "; ".join(reasons[:3]) + ")")


def _telling_field(result: Any, key: str, changed: list[str], recs: dict[str, dict[str, Any]], rid: str,
                   task: Task) -> tuple[str, Any] | None:
    """The field of a read result whose value only this record has (a look-up of the wrong record then
    fails the check), a field the task changed first, then one whose value the dialogue has not shown."""
    if not isinstance(result, dict):
        return None
    said = {str(v) for a in task.gold_actions for v in a.arguments.values()} | {str(i.value) for i in task.known_info}
    cands = []
    for f, v in result.items():
        if f == key or not _scalar(v) or str(v) == rid:  # the id itself tells nothing
            continue
        others = {str(r.get(f)) for r_id, r in recs.items() if r_id != rid}
        if str(v) in others:
            continue
        cands.append((f not in changed, str(v) in said, f.endswith("_id"), f, v))
    if not cands:
        return None
    best = min(cands, key=lambda c: c[:3])
    return best[3], best[4]


TASK_OPS: dict[str, TaskOp] = {
    "add_first": add_first,
    "multi_goal": multi_goal,
    "ambiguous": ambiguous,
    "branch": branch,
    "error_condition": error_condition,
    "policy_refusal": policy_refusal,
    "long_context": long_context,
}
# The order operators compose in: a create-first branch before any write the execution graph puts after the
# create, new capabilities next, long context last (it needs the others between).
DEFAULT_TASK_OPS = list(TASK_OPS)
# How often one operator may apply within a composed task (each time it must find something new).
COMPOSE_REPEAT = {"multi_goal": 10, "error_condition": 3, "ambiguous": 2, "branch": 2}
# The most a composed task's gold may repeat (calls of a tool, with arguments of the same shape, that an
# earlier request already made): dialogues add look-ups of their own, and repetition_share must stay ≤ 0.2.
REPETITION_BUDGET = 0.18
# The most requests a composed task holds (the original's included) when the caller names none: about what one
# person asks in one session (config `refine_max_requests`). Fourteen made sessions of ~12 pages' procedures.
MAX_COMPOSED_REQUESTS = 6
NEEDS_JUDGE = "a refusal is verified only by a judge, and no judge role is configured"
# Operators whose requests only a judge can verify (they join a composed task only when one is configured).
JUDGE_OPS = frozenset({"policy_refusal"})


# ---------------------------------------------------------------------------------------------------------
# validation and composition


def order_conflicts(workflow: Workflow, actions: list[Action]) -> list[str]:
    """Writes whose first call comes before the first call of a write the execution graph puts before them.

    The verifier orders writes by the graph's tool dependencies whatever record they touch, so a
    later request may not start with a write the graph places after one it makes later.
    """
    import networkx as nx

    from tools_runtime.exec_graph import parse_graph

    try:
        graph = parse_graph(workflow.execution_graph).graph
    except ValueError:
        return []
    first: dict[str, int] = {}
    for i, a in enumerate(actions):
        if is_write(workflow, a.tool):
            first.setdefault(a.tool, i)
    out = []
    for v, pos in first.items():
        if v in graph:
            out += [f"{v} before {u}" for u in sorted(nx.ancestors(graph, v)) if first.get(u, -1) > pos]
    return out


def validate(workflow: Workflow, task: Task, op: str) -> Task | Drop:
    """The task with its expected state hash (gold run on a fresh backend), or a Drop with the reason."""
    parent = task.parent or task.id
    if task.refuse and any(is_write(workflow, a.tool) for a in task.gold_actions):
        return Drop(operator=op, parent=parent, task_id=task.id, code="inconsistent_criteria",
                    reason="a request to refuse cannot be extended by requests that write")
    conflicts = order_conflicts(workflow, task.gold_actions)
    if conflicts:
        return Drop(operator=op, parent=parent, task_id=task.id, code="order_conflict",
                    reason="the execution graph orders these writes the other way: " + "; ".join(conflicts[:3]))
    run = run_gold(workflow, task)
    if isinstance(run, TaskRejection):
        return Drop(operator=op, parent=parent, task_id=task.id, code=run.code, reason=run.reason)
    return task.model_copy(update={"expected_state_hash": run.expected_state_hash})


def op_rng(task: Task, op: str, seed: int) -> random.Random:
    """The deterministic random source of one operator application."""
    return random.Random(f"{task.id}|{op}|{seed}")


def refine_candidates(ctx: RefineContext, parent: Task, ops: list[str] | None = None, *, seed: int = 0,
                      singles: bool = True, compose: bool = True, judge: bool = False,
                      operators: dict[str, TaskOp] | None = None, max_requests: int = MAX_COMPOSED_REQUESTS
                      ) -> tuple[list[Task], list[Drop]]:
    """Refined tasks for `parent`: one per applicable operator (`singles`) and one composing them all
    (`compose`), each validated by its gold run; every operator that did not apply is a Drop.
    `operators` (name → function, in composition order) replaces TASK_OPS: gem_agents passes the registered ones."""
    table = TASK_OPS if operators is None else operators
    wanted = list(ops) if ops is not None else DEFAULT_TASK_OPS
    unknown = [o for o in wanted if o not in table]
    if unknown:
        raise RefineOpError(f"unknown task operator(s): {', '.join(unknown)}; known: {', '.join(table)}")
    order = sorted(dict.fromkeys(wanted), key=list(table).index)
    out: list[Task] = []
    drops: list[Drop] = []
    if singles:
        for op in order:
            try:
                cand = table[op](ctx, parent, op_rng(parent, op, seed))
            except RefineOpError as exc:
                drops.append(Drop(operator=op, parent=parent.id, code="not_applicable", reason=str(exc)))
                continue
            got = validate(ctx.workflow, cand, op)
            (drops if isinstance(got, Drop) else out).append(got)  # type: ignore[arg-type]
    if compose and len(order) > 1:
        current, why = compose_task(ctx, parent, order, seed=seed, judge=judge, operators=table,
                                    max_requests=max_requests)
        if len(requests_of(current)) > 2:
            out.append(current.model_copy(update={"meta": {**current.meta, "composed": True}}))
        if not singles:  # what did not apply is said once per operator (with singles, their own drops say it)
            drops += [Drop(operator=op, parent=parent.id, code="needs_judge" if r == NEEDS_JUDGE else "not_applicable",
                           reason=f"in the composed task: {r}") for op, r in why.items()]
    return out, drops


def compose_task(ctx: RefineContext, parent: Task, order: list[str], *, seed: int = 0, judge: bool = False,
                 operators: dict[str, TaskOp] | None = None, max_requests: int = MAX_COMPOSED_REQUESTS
                 ) -> tuple[Task, dict[str, str]]:
    """One task chaining the operators in turns: each turn tries every operator once, so a composed task
    mixes new capabilities with errors, clarifications and conditions instead of exhausting one kind
    first; an operator stops when it finds nothing new (its reason is returned) or reaches its
    COMPOSE_REPEAT; the task stops growing at `max_requests` requests. Refusals come after the acting
    requests (a later request must not call the tool a refusal forbids), long context last (it needs the
    others between). The first request is done as a procedure (`first_as_procedure`) unless that leaves the
    session with fewer requests (on a small environment its reads are the ones later requests would need)."""
    kw: dict[str, Any] = {"seed": seed, "judge": judge, "operators": operators, "max_requests": max_requests}
    table = TASK_OPS if operators is None else operators
    try:  # long context reads the first request's record back at the end: then the first request does not
        long = "long_context" in order and bool(table["long_context"](ctx, parent, op_rng(parent, "long_context",
                                                                                           seed)))
    except RefineOpError:
        long = False
    first = first_as_procedure(ctx, parent, confirm=not long)
    current, why = _compose(ctx, parent, first, order, **kw)
    if first is not parent and len(requests_of(current)) < len(requests_of(plain := _compose(ctx, parent, parent,
                                                                                              order, **kw)[0])):
        current, why = plain, _compose(ctx, parent, parent, order, **kw)[1]
    if ctx.tool_use is not None and len(requests_of(current)) > 2:  # what refine_candidates keeps as composed
        ctx.tool_use.update(gold_tools(current))
    return current, why


def _compose(ctx: RefineContext, parent: Task, current: Task, order: list[str], *, seed: int, judge: bool,
             operators: dict[str, TaskOp] | None, max_requests: int) -> tuple[Task, dict[str, str]]:
    tail = [op for op in ("policy_refusal", "long_context") if op in order]
    turns = [op for op in order if op not in tail]
    applied: dict[str, int] = {}
    why: dict[str, str] = {}
    later: set[str] = set()  # turned down for repeating: may fit once the task has more calls

    def _applies(op: str) -> bool:
        try:
            (TASK_OPS if operators is None else operators)[op](ctx, parent, op_rng(parent, op, seed))
        except RefineOpError:
            return False
        return True

    def attempt(op: str, strict: bool = False) -> bool:
        nonlocal current
        try:
            cand = (TASK_OPS if operators is None else operators)[op](
                replace(ctx, no_repeats=True) if strict else ctx, current, op_rng(current, op, seed))
        except RefineOpError as exc:
            why[op] = str(exc)
            return False
        got = validate(ctx.workflow, cand, op)
        if not isinstance(got, Task):
            why[op] = f"{got.code}: {got.reason}"
            return False
        repeats, calls = gold_repeats(got)
        if repeats > max(1, REPETITION_BUDGET * calls):
            # Length bought by calling again what an earlier request called is what refinement must not add
            # (one repeat is let through: on a small environment one look-up again is a large share). Turned
            # down, the operator tries once more without candidates that repeat, and stays for later turns.
            why[op] = f"its request repeats tools of earlier requests ({repeats} of {calls} gold calls)"
            later.add(op)
            return False if strict else attempt(op, strict=True)
        current = got
        applied[op] = applied.get(op, 0) + 1
        why.pop(op, None)
        return True

    # The acting requests leave room for the tail's (a refusal only with a judge), so the whole task holds
    # at most max_requests; the cap is checked before every request, not once a turn.
    # A tail operator that does not apply to the original (long context: its first request names no record a read
    # can show again) keeps no room: the session would hold one request less for nothing.
    room = max(2, max_requests - len([op for op in tail if (judge or op not in JUDGE_OPS) and _applies(op)]))
    live = list(turns)
    while live and len(requests_of(current)) < room:
        later.clear()
        kept = [op for op in live if applied.get(op, 0) < COMPOSE_REPEAT.get(op, 1)
                and len(requests_of(current)) < room and attempt(op)]
        if not kept:
            break
        live = [op for op in live if op in kept or op in later]
    for op in tail:
        if op in JUDGE_OPS and not judge:
            try:  # say whether it would apply, without applying it
                TASK_OPS[op](ctx, current, op_rng(current, op, seed))
                why[op] = NEEDS_JUDGE
            except RefineOpError as exc:
                why[op] = str(exc)
            continue
        if len(requests_of(current)) >= max_requests:
            why[op] = f"the session already holds {max_requests} requests (refine_max_requests)"
            continue
        attempt(op)
    return current, {op: r for op, r in why.items() if not applied.get(op)}


def first_as_procedure(ctx: RefineContext, parent: Task, *, confirm: bool = True) -> Task:
    """The original request done as a procedure, so the composed session's first request takes the calls a real
    one does: with the rest of its help page's procedure (the sibling tasks on its chain of the execution
    graph), the record found and checked, and read back unless `confirm` is off (long context, last, will ask
    about this record); the parent when nothing applies."""
    wf = ctx.workflow
    if len(requests_of(parent)) > 1 or parent.refuse or not parent.gold_actions:
        return parent
    blank = parent.model_copy(update={"gold_actions": [], "known_info": [], "meta": {}})
    req = requests_of(parent)[0]
    state = initial_state(wf)
    sibs = [s for s in ctx.siblings if s.id != parent.id and not s.refuse and not s.meta.get(REQUESTS)]
    writes = {a.tool for a in parent.gold_actions if is_write(wf, a.tool)}
    parts = _in_graph_order(wf, [parent, *_procedure_siblings(ctx, blank, parent, sibs, session_tools(wf), writes,
                                                              state, list(parent.gold_actions))])
    actions = [a for p in parts for a in p.gold_actions]
    facts: list[Info] = []
    for x in (x for p in parts for x in p.known_info):
        if not any(x.key == y.key for y in facts):
            facts.append(x)
    volunteer = req.get("volunteer")
    if volunteer is not None:
        volunteer = list(dict.fromkeys([*volunteer, *(x.key for p in parts if p is not parent for x in p.known_info
                                                      if not x.withhold)]))
    proc = as_procedure(ctx, blank, state, actions, facts, _joined([p.instruction for p in parts]),
                        volunteer=volunteer, confirm=confirm)
    if len(parts) > 1:
        proc.steps.append("procedure:" + "+".join(p.id for p in parts if p is not parent))
    if not proc.steps or order_conflicts(wf, proc.actions):
        return parent
    first = {**req, "instruction": proc.text, "end": len(proc.actions)}
    if proc.volunteer is not None:
        first["volunteer"] = proc.volunteer
    meta = {**parent.meta, REQUESTS: [first], "root": parent.meta.get("root") or parent.id,
            "parent_tools": sorted(gold_tools(parent)), "branches": [*parent.meta.get("branches", []), *proc.steps]}
    cand = parent.model_copy(update={
        "instruction": proc.text, "gold_actions": proc.actions, "known_info": proc.known,
        "communicate_info": [*parent.communicate_info, *(c for c in proc.communicate if c not in parent.communicate_info)],
        "expected_state_hash": "", "meta": meta})
    got = validate(wf, cand, "procedure")
    return got if isinstance(got, Task) else parent


def gold_repeats(task: Task) -> tuple[int, int]:
    """(repeats, calls) of a task's gold: calls of a tool, with arguments of the same shape, that an earlier
    request already made (the gold-side form of `repetition_share`). A planned slip is one call more in the
    dialogue (the rejected one), a repeat too when its tool is."""
    first: dict[tuple[str, tuple[str, ...]], int] = {}
    calls = repeats = 0
    reqs = requests_of(task)
    slips: Counter[tuple[int, Any]] = Counter()
    for sl in task.meta.get("slips", []):
        n = sl.get("request")
        if not isinstance(n, int):  # written before slips named their request: the last request calling the tool
            n = max((i for i, r in enumerate(reqs) if any(a.tool == sl.get("tool") for a in
                                                        task.gold_actions[int(r["start"]):int(r["end"])])), default=-1)
        slips[(n, sl.get("tool"))] += 1
    for n, req in enumerate(reqs):
        for a in task.gold_actions[int(req["start"]):int(req["end"])]:
            extra = slips.pop((n, a.tool), 0)
            calls += 1 + extra
            seen = first.setdefault((a.tool, _shape(a.arguments)), n)
            repeats += (seen < n) * (1 + extra)
    return repeats, calls


def _unique(text: str, taken: list[str]) -> str:
    out, n = text, 2
    while any(out in t or t in out for t in taken):
        out = f"{text.rstrip('.?!')} (request {n})."
        n += 1
    return out


def scenario_for_task(workflow: Workflow, task: Task, seed: int = 0) -> Scenario:
    """The scenario that plays a (refined) task: one goal per request, planned slips as user errors."""
    sc = scenario_from_task(workflow, task, seed)
    reqs = requests_of(task)
    if len(reqs) <= 1 and not task.meta.get("slips"):
        return sc
    withheld = {i.key for i in task.known_info if i.withhold}
    goal_of = [0] * len(sc.plan)
    for g, r in enumerate(reqs):
        for i in range(int(r["start"]), min(int(r["end"]), len(sc.plan))):
            goal_of[i] = g
    plan = [c.model_copy(update={"goal": goal_of[i]}) for i, c in enumerate(sc.plan)]
    goals: list[Goal] = []
    said: set[str] = set()
    for g, r in enumerate(reqs):
        if "volunteer" in r:
            keys = [k for k in r["volunteer"] if k in sc.known_info]
        else:
            keys = [s.key for c in plan if c.goal == g for s in c.sources.values()
                    if s.kind == "user" and s.key and s.key not in said]
        vol = [k for k in dict.fromkeys(keys) if k not in withheld and not is_secret(k)]
        said |= set(keys)
        goals.append(Goal(description=_unique(str(r["instruction"]), [x.description for x in goals]), volunteer=vol))
    recalls = [(i, param, int(since)) for r in reqs for param, since in (r.get("recall") or {}).items()
               for i in range(int(r["start"]), int(r["end"]))]
    if recalls:
        plan = _recall_sources(workflow, task, plan, recalls)
    errors = []
    for s in task.meta.get("slips", []):
        errors.append(PlannedError(kind=s["kind"], tool=s["tool"], key=s["key"], param=s.get("param"),
                                   wrong_value=s["wrong"]))
    return sc.model_copy(update={"plan": plan, "goals": goals, "planned_errors": errors,
                                 "refinements": list(task.meta.get("operators", []))})


def _recall_sources(workflow: Workflow, task: Task, plan: list[Any], recalls: list[tuple[int, str, int]]) -> list[Any]:
    """Plan calls whose argument the assistant must take from an early result (long context)."""
    from tools_runtime.records import ArgSource
    from tools_runtime.tasks import _result_path

    run = run_gold(workflow, task)
    if isinstance(run, TaskRejection):
        return plan
    out = list(plan)
    for at, param, since in recalls:
        if at >= len(out) or param not in out[at].arguments:
            continue
        value = out[at].arguments[param]
        for j in range(since, at):
            path = _result_path(run.results[j].result, value, param)
            if path is not None:
                sources = {**out[at].sources, param: ArgSource(kind="result", call=j, path=path)}
                out[at] = out[at].model_copy(update={"sources": sources})
                break
    return out


# ---------------------------------------------------------------------------------------------------------
# what refinement adds (gem audit, benchmarks)


def _shape(args: Any) -> tuple[str, ...]:
    return tuple(sorted(args)) if isinstance(args, dict) else ()


def _calls_by_request(traj: Trajectory) -> list[tuple[int, str, tuple[str, ...]]]:
    """(request index, tool, argument shape) of every tool call, the request counted from the user's goals."""
    import json

    goals = [g.description for g in traj.scenario.goals] if traj.scenario is not None else []
    out: list[tuple[int, str, tuple[str, ...]]] = []
    req = 0
    for m in traj.messages:
        if m.get("role") == "user":
            text = str(m.get("content") or "")
            hit = [i for i, g in enumerate(goals) if g and g in text]
            if hit:
                req = max(req, max(hit))
            elif not goals and out:
                req += 1  # without goals, every user turn after a call opens a request
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            raw = fn.get("arguments")
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                args = {}
            out.append((req, str(fn.get("name") or ""), _shape(args)))
    return out


def repetition_share(trajectories: list[Trajectory]) -> float | None:
    """Share of tool calls in refined trajectories that repeat a tool, with arguments of the same shape,
    that an earlier request of the same dialogue already called (None when there is no refined call)."""
    calls = repeats = 0
    for t in trajectories:
        if t.provenance.stage != "refine":
            continue
        first_req: dict[tuple[str, tuple[str, ...]], int] = {}
        for req, tool, shape in _calls_by_request(t):
            calls += 1
            seen = first_req.setdefault((tool, shape), req)
            if seen < req:
                repeats += 1
    return repeats / calls if calls else None


def new_capability_share(trajectories: list[Trajectory], originals: dict[str, set[str]] | None = None
                         ) -> float | None:
    """Share of refined trajectories whose task uses a tool or branch its original task did not.

    The original's tools come from `originals` (task id → tools) when given, else from the refined
    task's `meta.parent_tools`; a branch is a condition, error path, refusal or question an operator
    added (`meta.branches`). Refined trajectories without a task are judged on their calls alone.
    """
    n = hits = 0
    for t in trajectories:
        if t.provenance.stage != "refine":
            continue
        n += 1
        task = t.scenario.task if t.scenario is not None else None
        called = {name for _, name, _ in _calls_by_request(t)}
        if task is None:
            plan0 = {c.tool for c in t.scenario.plan if c.goal == 0} if t.scenario is not None else set()
            hits += bool(called - plan0)
            continue
        parent_tools = (originals or {}).get(task.parent or "") or set(task.meta.get("parent_tools", []))
        if not parent_tools and not task.meta.get("parent_tools"):
            parent_tools = {a.tool for a in task.gold_actions[:requests_of(task)[0]["end"]]}
        new_tools = ({a.tool for a in task.gold_actions} | called) - set(parent_tools)
        hits += bool(new_tools or task.meta.get("branches"))
    return hits / n if n else None


def state_of(workflow: Workflow) -> dict[str, Any]:
    """The environment's initial backend state (for callers that probe requests by hand)."""
    return initial_state(workflow)
