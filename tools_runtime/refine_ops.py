"""Refinement operators (docs/design.md §3.6): make a scenario harder, keeping a reference plan that runs.

Each operator takes a Scenario and a seeded `random.Random` and returns a new Scenario whose plan
still executes on its initial state; none of them calls a model. They extend the plan through the
scenario planner (`_Planner.resume`), so every new call is chosen against the backend state the
earlier calls left, and every value it needs comes from the user or from an earlier result:

chain_goals       the user comes back with follow-up requests about other records
add_tools         related read tools on the same entities (used in a closing overview), a log_out
                  where the workflow logs in, and distractors the assistant must not call
withhold_info     facts the user no longer volunteers: the assistant has to ask for them
plan_errors       transient / permission / not-found / invalid-value errors to recover from
change_mind       the user changes a value they just set, or cancels what was just created
state_dependency  a late request needs a value read early in the conversation

An operator that does not apply (no update to change, no session to expire…) raises RefineOpError
with the reason; `apply_ops` records it and goes on with the next operator. `check_scenario` says
why a (refined) scenario is unusable: a plan that does not replay, facts or goals it lacks, errors
on calls it never makes, distractors it needs.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from tools_runtime.backend import same
from tools_runtime.binding import Binding, bind_tools
from tools_runtime.exec_graph import parse_graph, stages
from tools_runtime.executor import ToolEnvironment, execute_call, session_required
from tools_runtime.records import ArgSource, Goal, PlannedCall, PlannedError, Scenario
from tools_runtime.scenario import ScenarioError, _Planner, is_secret
from tools_runtime.seeding import fake_value
from tools_runtime.toolspec import ToolSpec


class RefineOpError(ValueError):
    """An operator that cannot be applied to this scenario; the message says why."""


Operator = Callable[..., Scenario]

FOLLOW_UPS = [
    "Thanks! Now I'd like to do the same for a different {entity}.",
    "Great. One more: please do that again, this time for another {entity}.",
    "Perfect. Could you also handle one more {entity} the same way?",
    "Thank you. I have yet another {entity} that needs the same thing.",
    "And after that, the same again for another {entity}, please.",
]


# -- shared helpers -------------------------------------------------------------------------------
def human(name: str) -> str:
    """`wifi_network` → `wifi network`."""
    return name.split("@")[0].replace("_", " ")


def plural(word: str) -> str:
    """A cheap English plural that `binding.singular` turns back into `word`."""
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh", "z")):
        return word + "es"
    return word + "s"


def spoken_plural(words: str) -> str:
    """A plural for prose: a phrase already plural ("sharing settings") stays as it is, never "settingses"."""
    if words.endswith("s") and not words.endswith(("ss", "us", "is")):
        return words
    return plural(words)


def last_goal(scenario: Scenario) -> int:
    """Index of the last goal the plan works on."""
    return max((c.goal for c in scenario.plan), default=0)


def planner_for(scenario: Scenario, rng: random.Random) -> _Planner:
    """A planner after the scenario's plan, still on its last goal (call `new_goal` for another)."""
    try:
        planner = _Planner.resume(scenario, rng)
    except ScenarioError as exc:
        raise RefineOpError(f"the reference plan does not replay: {exc}") from exc
    planner.goal = last_goal(scenario)
    # Records earlier goals worked on are avoided by later ones ("another order", not the same).
    bindings = planner.bindings
    for call, result in zip(scenario.plan, _results_quiet(scenario), strict=False):
        b = bindings.get(call.tool)
        if b is None or b.op in ("session", "compute"):
            continue
        hit = _id_in(result, b.id_field)
        if hit is not None:
            planner.avoid.add((b.entity, str(hit[0])))
    return planner


def _results_quiet(scenario: Scenario) -> list[Any]:
    try:
        return plan_results(scenario)
    except RefineOpError:
        return []


def goal_keys(plan: list[PlannedCall], goal: int) -> list[str]:
    """The user facts the calls of one goal need, in first-use order."""
    keys: list[str] = []
    for call in plan:
        if call.goal != goal:
            continue
        for src in call.sources.values():
            if src.kind == "user" and src.key and src.key not in keys:
                keys.append(src.key)
    return keys


def new_goal_record(plan: list[PlannedCall], goal: int, description: str) -> Goal:
    """A Goal whose user volunteers every non-secret fact its calls need."""
    return Goal(description=description, volunteer=[k for k in goal_keys(plan, goal) if not is_secret(k)])


def unique_text(text: str, goals: list[Goal]) -> str:
    """Goal texts are found in the transcript by substring, so no goal may contain another."""
    text = text.strip()
    if not text.endswith((".", "!", "?")):
        text += "."
    base = text.rstrip(".!?")
    n = 2
    out = text
    # Each candidate ends differently from `text` and from every earlier candidate, so none
    # contains another and the loop ends after at most len(goals) + 1 tries.
    while any(out in g.description or g.description in out for g in goals):
        out = f"{base} (request {n})."
        n += 1
    return out


def finish(scenario: Scenario, planner: _Planner, descriptions: list[str], tag: str,
           **update: Any) -> Scenario:
    """The scenario with the planner's plan, facts and the new goals' descriptions."""
    goals = list(scenario.goals)
    # Facts that calls appended to existing goals need for the first time are volunteered there.
    for g, goal in enumerate(goals):
        fresh = [k for k in goal_keys(planner.plan, g) if k not in scenario.known_info and not is_secret(k)
                 and k not in goal.volunteer]
        if fresh:
            goals[g] = goal.model_copy(update={"volunteer": [*goal.volunteer, *fresh]})
    first_new = len(goals)
    for i, text in enumerate(descriptions):
        goals.append(new_goal_record(planner.plan, first_new + i, unique_text(text, goals)))
    if any(c.goal >= len(goals) for c in planner.plan):
        raise RefineOpError("a planned call belongs to a goal nobody states")
    data = {"plan": list(planner.plan), "known_info": dict(planner.known), "goals": goals,
            "refinements": [*scenario.refinements, tag], **update}
    return scenario.model_copy(update=data)


def plan_results(scenario: Scenario) -> list[Any]:
    """The result of every reference call, replayed on a fresh backend."""
    env = ToolEnvironment(scenario.workflow, copy.deepcopy(scenario.initial_state))
    out = []
    for i, call in enumerate(scenario.plan):
        rec = env.call(call.tool, call.arguments)
        if not rec.ok:
            raise RefineOpError(f"reference plan step {i} ({call.tool}) fails: {rec.error}")
        out.append(rec.result)
    return out


def batch_sizes(scenario: Scenario) -> list[int]:
    """How many calls the scripted assistant sends together with each plan call (upper bound).

    The same rule as the assistant's batching; asking for missing facts can only cut a batch
    shorter. Planned errors go only on calls sent alone, so an error never strands a sibling result.
    """
    try:
        stage_of = {n: i for i, st in enumerate(stages(parse_graph(scenario.workflow.execution_graph))) for n in st}
    except ValueError:
        stage_of = {}
    plan = scenario.plan
    size = [1] * len(plan)
    first = 0
    while first < len(plan):
        end = first + 1
        tools = {plan[first].tool}
        while end < len(plan):
            call = plan[end]
            same_stage = stage_of.get(call.tool, -1) == stage_of.get(plan[first].tool, -2)
            depends = any(s.kind == "result" and s.call is not None and s.call >= first
                          for s in call.sources.values())
            if not same_stage or depends or call.goal != plan[first].goal or call.tool in tools:
                break
            tools.add(call.tool)
            end += 1
        for i in range(first, end):
            size[i] = end - first
        first = end
    return size


# -- chain goals ----------------------------------------------------------------------------------
def chain_goals(scenario: Scenario, rng: random.Random, count: int = 2, texts: list[str] | None = None) -> Scenario:
    """The user comes back `count` times to do the first goal again for other records."""
    bindings = bind_tools(scenario.tools)
    first = [c.tool for c in scenario.plan if c.goal == 0 and bindings[c.tool].op != "session"]
    if not first:
        raise RefineOpError("the first goal has no call to repeat")
    entity = next((bindings[t].entity for t in first if bindings[t].op in ("read", "update", "delete")),
                  bindings[first[0]].entity)
    out = scenario
    added = 0
    for k in range(count):
        planner = planner_for(out, rng)
        planner.new_goal()
        try:
            login = next((c.tool for c in out.plan if bindings.get(c.tool) and bindings[c.tool].op == "session"
                          and bindings[c.tool].mode == "login"), None)
            if login and not planner.backend.state["session"].get("logged_in"):
                planner.add(login)  # signed out by an earlier refinement: sign in again first
            for tool in first:
                planner.add(tool)
        except ScenarioError:
            break
        n = len(out.goals)
        if texts and k < len(texts):
            text = texts[k]
        else:
            start = rng.randrange(len(FOLLOW_UPS))
            options = [FOLLOW_UPS[(start + j) % len(FOLLOW_UPS)].format(entity=human(entity))
                       for j in range(len(FOLLOW_UPS))]
            said = {g.description for g in out.goals}
            text = next((t for t in options if t not in said), options[0])
        out = finish(out, planner, [text.replace("{entity}", human(entity))], f"chain_goals:{n}")
        added += 1
    if not added:
        raise RefineOpError("no follow-up goal could be planned on this state")
    return out


# -- add tools ------------------------------------------------------------------------------------
def _read_by_id(bindings: dict[str, Binding], entity: str) -> str | None:
    return next((n for n, b in bindings.items() if b.entity == entity and b.op == "read" and b.selectors), None)


def _list_read(bindings: dict[str, Binding], entity: str) -> str | None:
    return next((n for n, b in bindings.items() if b.entity == entity and b.op == "read" and not b.selectors), None)


def related_tools(scenario: Scenario, limit: int = 5) -> list[ToolSpec]:
    """Read tools on the entities the plan touches that the workflow lacks (get-by-id, list)."""
    bindings = bind_tools(scenario.tools)
    names = {t.name for t in scenario.tools}
    state = ToolEnvironment(scenario.workflow, copy.deepcopy(scenario.initial_state))
    for call in scenario.plan:
        state.call(call.tool, call.arguments)
    collections = state.backend.view().get("collections", {}) if hasattr(state.backend, "view") else {}
    entities: list[str] = []
    for call in scenario.plan:
        b = bindings[call.tool]
        if b.op not in ("session", "compute") and b.entity not in entities and b.entity in collections:
            entities.append(b.entity)
    firsts: list[ToolSpec] = []
    seconds: list[ToolSpec] = []
    for entity in entities:
        out: list[ToolSpec] = []
        words = human(entity)
        id_field = f"{entity}_id"
        id_type = "string"
        for t in scenario.tools:
            schema = t.properties.get(id_field)
            if isinstance(schema, dict) and schema.get("type") == "integer":
                id_type = "integer"
        real_ids = [r for r in collections.get(entity, {}) if r != "default"]
        if real_ids and _read_by_id(bindings, entity) is None and f"get_{entity}_details" not in names:
            out.append(ToolSpec(name=f"get_{entity}_details", description=f"Get one {words} by its id, with all fields.",
                                parameters={"type": "object", "properties": {
                                    id_field: {"type": id_type, "description": f"The {words} id."}},
                                    "required": [id_field]}))
        lister = f"list_{plural(entity)}"
        if _list_read(bindings, entity) is None and lister not in names:
            out.append(ToolSpec(name=lister, description=f"List the {spoken_plural(words)} on the account.",
                                parameters={"type": "object", "properties": {
                                    "limit": {"type": "integer", "minimum": 1, "maximum": 50,
                                              "description": "At most this many results."}},
                                    "required": []}))
        # One tool per entity before a second one for any entity: more entities, more variety.
        firsts += out[:1]
        seconds += out[1:]
    return (firsts + seconds)[:limit]


def distractor_tools(scenario: Scenario, limit: int = 2) -> list[ToolSpec]:
    """Plausible tools the task never needs (destructive or off-topic): calling one fails verification."""
    bindings = bind_tools(scenario.tools)
    names = {t.name for t in scenario.tools}
    out: list[ToolSpec] = []
    seen: set[str] = set()
    for call in scenario.plan:
        b = bindings[call.tool]
        if b.op in ("session", "compute", "action") or b.entity in seen:
            continue
        seen.add(b.entity)
        name = f"delete_{b.entity}"
        if name in names or any(x.op == "delete" and x.entity == b.entity for x in bindings.values()):
            continue
        words = human(b.entity)
        out.append(ToolSpec(name=name, description=f"Permanently delete a {words}. This cannot be undone.",
                            parameters={"type": "object", "properties": {
                                f"{b.entity}_id": {"type": "string", "description": f"The {words} to delete."}},
                                "required": [f"{b.entity}_id"]}))
    out.append(ToolSpec(name="export_account_data" if "export_account_data" not in names else "export_all_data",
                        description="Export every record of the account as a file (for data requests only).",
                        parameters={"type": "object", "properties": {
                            "format": {"type": "string", "enum": ["csv", "json"]}}, "required": ["format"]}))
    return out[:limit]


LOGOUT = ToolSpec(name="log_out", description="Sign out of the account and end the session.",
                  parameters={"type": "object", "properties": {}, "required": []})


def add_tools(scenario: Scenario, rng: random.Random, tools: list[ToolSpec] | None = None,
              distractors: list[ToolSpec] | None = None, limit: int = 5) -> Scenario:
    """Add related tools and distractors; a closing request uses the related ones (then signs out).

    The user asks for an overview of what the conversation touched, which the assistant answers
    with the new read tools; where the workflow has a login and no logout, a `log_out` tool joins
    them and ends the conversation's session.
    """
    new = list(tools) if tools is not None else related_tools(scenario, limit)
    bad = list(distractors) if distractors is not None else distractor_tools(scenario)
    names = {t.name for t in scenario.tools}
    clash = [t.name for t in new + bad if t.name in names]
    if clash:
        raise RefineOpError(f"tools already exist: {', '.join(clash)}")
    twice = sorted({t.name for t in new + bad if [u.name for u in new + bad].count(t.name) > 1})
    if twice:
        raise RefineOpError(f"tools proposed more than once: {', '.join(twice)}")
    bindings = bind_tools(scenario.tools)
    logged_in = any(bindings[c.tool].op == "session" and bindings[c.tool].mode == "login" for c in scenario.plan)
    has_logout = any(b.op == "session" and b.mode == "logout" for b in bindings.values())
    closing = [LOGOUT] if tools is None and logged_in and not has_logout and LOGOUT.name not in names else []
    if not new and not closing and not bad:
        raise RefineOpError("no related tool or distractor to add")
    workflow = scenario.workflow.model_copy(update={"tools": [*scenario.workflow.tools, *new, *closing, *bad]})
    widened = scenario.model_copy(update={"workflow": workflow})
    planner = planner_for(widened, rng)
    planner.new_goal()
    used: list[str] = []
    for spec in [*new, *closing]:
        before = (list(planner.plan), copy.deepcopy(planner.backend.state), dict(planner.produced),
                  dict(planner.focus), dict(planner.known))
        try:
            planner.add(spec.name)
            used.append(spec.name)
        except ScenarioError:
            planner.plan, planner.backend.state, planner.produced, planner.focus, planner.known = before
    reads = [n for n in used if n != LOGOUT.name]
    if not used:
        raise RefineOpError("none of the added tools can be called on this state")
    entities = list(dict.fromkeys(human(planner.bindings[n].entity) for n in reads))
    if reads:
        listed = entities[0] if len(entities) == 1 else ", ".join(entities[:-1]) + " and " + entities[-1]
        text = f"Before we wrap up, could you give me a quick overview of my {listed} records?"
        if LOGOUT.name in used:
            text += " Then please sign me out."
    else:
        text = "That's everything for today — please sign me out."
    return finish(widened, planner, [text], f"add_tools:{'+'.join(used)}",
                  distractors=[*scenario.distractors, *(t.name for t in bad)])


# -- withhold information ---------------------------------------------------------------------------
def withhold_info(scenario: Scenario, rng: random.Random, keys: list[str] | None = None,
                  share: float = 0.5) -> Scenario:
    """Stop volunteering some facts, so the assistant must ask for them.

    Only facts whose words no earlier goal used are withheld: the assistant then cannot find an
    older value under the same words and must ask.
    """
    said: set[str] = set()
    goals = []
    withheld: list[str] = []
    for g, goal in enumerate(scenario.goals):
        words_before = set(said)
        candidates = [k for k in goal.volunteer if human(k) not in words_before]
        if keys is not None:
            pick = [k for k in candidates if k in keys]
        else:
            n = max(1, round(len(candidates) * share)) if candidates else 0
            pick = sorted(rng.sample(candidates, n), key=candidates.index)
        withheld += pick
        goals.append(goal.model_copy(update={"volunteer": [k for k in goal.volunteer if k not in pick]}))
        said |= {human(k) for k in goal_keys(scenario.plan, g)}
    if keys is not None:
        unknown = [k for k in keys if k not in withheld]
        if unknown:
            raise RefineOpError(f"cannot withhold {', '.join(unknown)}: not volunteered, or said in an earlier goal")
    if not withheld:
        raise RefineOpError("no volunteered fact to withhold")
    return scenario.model_copy(update={"goals": goals,
                                       "refinements": [*scenario.refinements, f"withhold_info:{len(withheld)}"]})


# -- planned errors -------------------------------------------------------------------------------
def _first_use(plan: list[PlannedCall], key: str) -> int | None:
    return next((i for i, c in enumerate(plan) for s in c.sources.values() if s.kind == "user" and s.key == key), None)


def _wrong_id(value: Any, taken: set[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value + 7
        while str(n) in taken:
            n += 7
        return n
    text = str(value)
    head = text.rstrip("0123456789")
    digits = text[len(head):]
    n = int(digits) if digits else 0
    for step in range(1, 100):
        cand = f"{head}{str(n + 11 * step).zfill(len(digits))}" if digits else f"{text}-X{step}"
        if cand not in taken:
            return cand
    return text + "-unknown"


def error_candidates(scenario: Scenario) -> dict[str, list[PlannedError]]:
    """Every error this scenario could plan, by kind (only on calls the assistant sends alone)."""
    bindings = bind_tools(scenario.tools, session_required(scenario.workflow))
    sizes = batch_sizes(scenario)
    plan = scenario.plan
    has_login = any(bindings[c.tool].op == "session" and bindings[c.tool].mode == "login" for c in plan)
    env = ToolEnvironment(scenario.workflow, copy.deepcopy(scenario.initial_state))
    out: dict[str, list[PlannedError]] = {"transient": [], "permission": [], "not_found": [], "invalid_value": []}
    seen_tools: dict[str, int] = {}
    for i, call in enumerate(plan):
        b = bindings[call.tool]
        seen_tools[call.tool] = seen_tools.get(call.tool, 0) + 1
        occurrence = seen_tools[call.tool]
        state = env.backend.view()
        env.call(call.tool, call.arguments)
        if sizes[i] != 1 or b.op == "session":
            continue
        out["transient"].append(PlannedError(kind="transient", tool=call.tool, occurrence=occurrence))
        if has_login and b.requires_session:
            out["permission"].append(PlannedError(kind="permission", tool=call.tool, occurrence=occurrence))
        spec = scenario.workflow.tool(call.tool)
        props = spec.properties if spec else {}
        for param, src in call.sources.items():
            if src.kind != "user" or not src.key or _first_use(plan, src.key) != i:
                continue
            schema = found if isinstance(found := props.get(param), dict) else {}
            if isinstance(schema.get("enum"), list) and all(isinstance(v, str) for v in schema["enum"]):
                wrong = next(w for w in ("not_sure", "other_value", "unknown_option") if w not in schema["enum"])
                out["invalid_value"].append(PlannedError(kind="invalid_value", tool=call.tool, key=src.key,
                                                         param=param, wrong_value=wrong))
            refers = (b.op in ("read", "update", "delete") and param in b.selectors) or \
                     (param.endswith("_id") and param != b.id_field and param[:-3] in state.get("collections", {}))
            if refers and isinstance(call.arguments.get(param), str | int):
                entity = b.entity if param in b.selectors else param[:-3]
                taken = {str(r) for r in state.get("collections", {}).get(entity, {})}
                for rec in state.get("collections", {}).get(entity, {}).values():
                    taken |= {str(v) for v in rec.values() if isinstance(v, str | int)}
                out["not_found"].append(PlannedError(kind="not_found", tool=call.tool, key=src.key, param=param,
                                                     wrong_value=_wrong_id(call.arguments[param], taken)))
    return out


def plan_errors(scenario: Scenario, rng: random.Random, kinds: list[str] | None = None,
                tools: list[str] | None = None) -> Scenario:
    """Plan one error of each kind (where the plan allows it), each on a different call."""
    kinds = kinds or ["not_found", "invalid_value", "transient", "permission"]
    cands = error_candidates(scenario)
    used_tools = {e.tool for e in scenario.planned_errors}
    used_keys = {e.key for e in scenario.planned_errors if e.key}
    chosen: list[PlannedError] = []
    for kind in kinds:
        options = [e for e in cands.get(kind, []) if e.tool not in used_tools and (not e.key or e.key not in used_keys)
                   and (tools is None or e.tool in tools)]
        if not options:
            continue
        err = options[rng.randrange(len(options))]
        chosen.append(err)
        used_tools.add(err.tool)
        if err.key:
            used_keys.add(err.key)
    if not chosen:
        raise RefineOpError(f"no call can carry a planned error of kind {', '.join(kinds)}")
    return scenario.model_copy(update={"planned_errors": [*scenario.planned_errors, *chosen],
                                       "refinements": [*scenario.refinements,
                                                       "plan_errors:" + "+".join(e.kind for e in chosen)]})


# -- change of mind -------------------------------------------------------------------------------
def _cancel_tool(entity: str, id_type: str) -> ToolSpec:
    words = human(entity)
    return ToolSpec(name=f"cancel_{entity}", description=f"Cancel a {words} (it stays on record as cancelled).",
                    parameters={"type": "object", "properties": {
                        f"{entity}_id": {"type": id_type, "description": f"The {words} to cancel."}},
                        "required": [f"{entity}_id"]})


def change_mind(scenario: Scenario, rng: random.Random, modes: list[str] | None = None) -> Scenario:
    """The user changes their mind: set a just-updated value again, and/or cancel what was just created."""
    modes = modes or ["modify", "undo"]
    out = scenario
    done: list[str] = []
    if "modify" in modes:
        try:
            out = _modify(out, rng)
            done.append("modify")
        except RefineOpError:
            pass
    if "undo" in modes:
        try:
            out = _undo(out, rng)
            done.append("undo")
        except RefineOpError:
            pass
    if not done:
        raise RefineOpError("the plan has no update to change and no created record to cancel")
    return out


def _modify(scenario: Scenario, rng: random.Random) -> Scenario:
    bindings = bind_tools(scenario.tools)
    idx = next((i for i in range(len(scenario.plan) - 1, -1, -1)
                if bindings[scenario.plan[i].tool].op == "update" and bindings[scenario.plan[i].tool].values
                and any(v in scenario.plan[i].arguments for v in bindings[scenario.plan[i].tool].values)), None)
    if idx is None:
        raise RefineOpError("no update with a value to change")
    call = scenario.plan[idx]
    b = bindings[call.tool]
    planner = planner_for(scenario, rng)
    planner.new_goal()
    selectors = {k: call.arguments[k] for k in b.selectors if k in call.arguments}
    hits = planner.backend.find(b, selectors) if selectors else ["default"]
    if not hits or hits[0] not in planner.backend.collection(b.entity):
        raise RefineOpError(f"the record {call.tool} changed is gone")
    planner.focus[b.entity] = hits[0]
    record = planner.backend.collection(b.entity)[hits[0]]
    spec = scenario.workflow.tool(call.tool)
    props = spec.properties if spec else {}
    fixed = {}
    for k in b.selectors:
        if k in call.arguments:
            fixed[k] = (call.arguments[k], planner.from_produced_or_user(k, call.arguments[k], b.entity))
    changed = []
    for v in b.values:
        if v not in call.arguments:
            continue
        value = call.arguments[v]
        for _ in range(8):
            value = fake_value(v, props.get(v) if isinstance(props.get(v), dict) else {}, rng)
            if not same(value, call.arguments[v]) and not same(value, record.get(v)):
                break
        if same(value, call.arguments[v]):
            continue
        fixed[v] = (value, ArgSource(kind="user", key=planner.user_key(v, value, b.entity)))
        changed.append(v)
    if not changed:
        raise RefineOpError(f"no other value for {call.tool}")
    try:
        planner.add(call.tool, fixed=fixed)
    except ScenarioError as exc:
        raise RefineOpError(str(exc)) from exc
    what = " and ".join(human(v) for v in changed)
    text = f"Actually, I've changed my mind about the {what} of that {human(b.entity)} — please set it differently."
    return finish(scenario, planner, [text], "change_mind:modify")


def _undo(scenario: Scenario, rng: random.Random) -> Scenario:
    bindings = bind_tools(scenario.tools)
    results = plan_results(scenario)
    idx = next((i for i in range(len(scenario.plan) - 1, -1, -1)
                if bindings[scenario.plan[i].tool].op == "create" and isinstance(results[i], dict)
                and bindings[scenario.plan[i].tool].id_field in results[i]), None)
    if idx is None:
        raise RefineOpError("no created record to cancel")
    b = bindings[scenario.plan[idx].tool]
    canceller = next((n for n, x in bindings.items() if x.op == "delete" and x.entity == b.entity
                      and x.mode == "cancel"), None)
    if any(x.op == "delete" and x.entity == b.entity and x.mode != "cancel" for x in bindings.values()) \
            and canceller is None:
        raise RefineOpError(f"{b.entity} has a delete tool only")
    widened = scenario
    if canceller is None:
        rid = results[idx][b.id_field]
        spec = _cancel_tool(b.entity, "integer" if isinstance(rid, int) else "string")
        if spec.name in {t.name for t in scenario.tools} or spec.name in scenario.distractors:
            raise RefineOpError(f"{spec.name} exists but is not a cancel tool")
        workflow = scenario.workflow.model_copy(update={"tools": [*scenario.workflow.tools, spec]})
        widened = scenario.model_copy(update={"workflow": workflow})
        canceller = spec.name
    planner = planner_for(widened, rng)
    planner.new_goal()
    rid = results[idx][b.id_field]
    cb = planner.bindings[canceller]
    planner.focus[cb.entity] = str(rid)
    fixed = {}
    id_param = cb.selectors[0] if cb.selectors else cb.id_field
    fixed[id_param] = (rid, ArgSource(kind="result", call=idx, path=b.id_field))
    try:
        planner.add(canceller, fixed=fixed)
    except ScenarioError as exc:
        raise RefineOpError(str(exc)) from exc
    text = f"Hmm, on second thought I've changed my mind — please cancel the {human(b.entity)} you just made."
    return finish(widened, planner, [text], "change_mind:undo")


# -- state dependency -----------------------------------------------------------------------------
def _id_in(result: Any, field: str) -> tuple[Any, str] | None:
    if isinstance(result, dict):
        if field in result and isinstance(result[field], str | int):
            return result[field], field
        rows = result.get("results")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and isinstance(rows[0].get(field), str | int):
            return rows[0][field], f"results.0.{field}"
    return None


def state_dependency(scenario: Scenario, rng: random.Random) -> Scenario:
    """A last request about the record of the first goal: its id must come from an early result."""
    bindings = bind_tools(scenario.tools)
    results = plan_results(scenario)
    end_env = ToolEnvironment(scenario.workflow, copy.deepcopy(scenario.initial_state))
    for call in scenario.plan:
        end_env.call(call.tool, call.arguments)
    for i in range(max(1, len(scenario.plan) // 2)):
        for name, b in bindings.items():
            if b.op != "read" or not b.selectors or name in scenario.distractors:
                continue
            hit = _id_in(results[i], b.id_field)
            if hit is None:
                continue
            value, path = hit
            probe = execute_call(end_env.backend, end_env.tools, name, {b.selectors[0]: value})
            if not probe.ok:
                continue
            planner = planner_for(scenario, rng)
            planner.new_goal()
            try:
                planner.add(name, fixed={b.selectors[0]: (value, ArgSource(kind="result", call=i, path=path))})
            except ScenarioError:
                continue
            text = (f"Before I go — can you pull up the {human(b.entity)} from the very start of our chat again? "
                    "You should still have it from earlier.")
            return finish(scenario, planner, [text], f"state_dependency:{name}")
    raise RefineOpError("no early result names a record a read tool can show again")


OPS: dict[str, Operator] = {
    "chain_goals": chain_goals,
    "change_mind": change_mind,
    "state_dependency": state_dependency,
    "add_tools": add_tools,
    "withhold_info": withhold_info,
    "plan_errors": plan_errors,
}
# The order operators compose in: goals first, then the closing overview with the new tools (and
# sign-out), then withheld facts and errors, which can land on any goal of the final plan.
DEFAULT_OPS = list(OPS)


def op_rng(scenario: Scenario, op: str, seed: int) -> random.Random:
    """The deterministic random source of one operator application."""
    return random.Random(f"{scenario.id}|{op}|{seed}|{len(scenario.refinements)}")


def apply_ops(scenario: Scenario, ops: list[str] | None = None, seed: int = 0,
              params: dict[str, dict[str, Any]] | None = None,
              operators: dict[str, Operator] | None = None) -> tuple[Scenario, list[str], list[str]]:
    """Apply operators in DEFAULT_OPS order: (refined scenario, ops applied, reasons ops were skipped).

    `operators` (name → function, in composition order) replaces OPS: gem_agents passes the registered ones.
    """
    table = OPS if operators is None else operators
    wanted = list(ops) if ops is not None else DEFAULT_OPS
    unknown = [o for o in wanted if o not in table]
    if unknown:
        raise RefineOpError(f"unknown operator(s): {', '.join(unknown)}; known: {', '.join(table)}")
    if scenario.workflow.backend.kind != "sim":
        raise RefineOpError("refinement re-plans on the simulated backend; this workflow runs on "
                            f"a {scenario.workflow.backend.kind} backend")
    applied: list[str] = []
    skipped: list[str] = []
    out = scenario
    for name in sorted(dict.fromkeys(wanted), key=list(table).index):
        try:
            out = table[name](out, op_rng(out, name, seed), **(params or {}).get(name, {}))
            applied.append(name)
        except RefineOpError as exc:
            skipped.append(f"{name}: {exc}")
    return out, applied, skipped


def check_scenario(scenario: Scenario) -> list[str]:
    """Why a (refined) scenario is unusable ([] when its plan runs and its parts agree)."""
    problems: list[str] = []
    names = {t.name for t in scenario.tools}
    try:
        plan_results(scenario)
    except RefineOpError as exc:
        problems.append(str(exc))
    for i, call in enumerate(scenario.plan):
        if call.tool not in names:
            problems.append(f"plan step {i} calls unknown tool {call.tool!r}")
        if call.tool in scenario.distractors:
            problems.append(f"plan step {i} calls the distractor {call.tool!r}")
        if call.goal >= len(scenario.goals):
            problems.append(f"plan step {i} belongs to goal {call.goal}, but only {len(scenario.goals)} goals exist")
        for param, src in call.sources.items():
            if src.kind == "user" and src.key not in scenario.known_info:
                problems.append(f"plan step {i} ({call.tool}.{param}) needs unknown fact {src.key!r}")
            if src.kind == "result" and (src.call is None or src.call >= i):
                problems.append(f"plan step {i} ({call.tool}.{param}) reads a result of a later call")
    plan_tools = {c.tool for c in scenario.plan}
    for e in scenario.planned_errors:
        if e.tool not in plan_tools:
            problems.append(f"planned {e.kind} error on {e.tool!r}, which the plan never calls")
        if e.kind in ("not_found", "invalid_value") and e.key not in scenario.known_info:
            problems.append(f"planned {e.kind} error on unknown fact {e.key!r}")
    for d in scenario.distractors:
        if d not in names:
            problems.append(f"distractor {d!r} is not among the tools")
    texts = [g.description for g in scenario.goals]
    for i, a in enumerate(texts):
        if any(j != i and a in b for j, b in enumerate(texts)):
            problems.append(f"goal {i}'s text is part of another goal's text")
    return problems
