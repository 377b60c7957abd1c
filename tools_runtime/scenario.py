"""The scenario builder: one Workflow + one seed → one Scenario with a reference plan that runs.

The builder seeds the backend, then walks the execution graph's reference order and picks each
call's arguments so the call succeeds on that state: record ids from the seeded records (the
user knows their order id), values a later call needs from an earlier result (the id a search
returned), new values for writes (the new address). Running the plan on a scratch backend proves
it executes; the verifier later replays it to get the reference final state.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from tools_runtime.backend import SimBackend, credential_args, same
from tools_runtime.binding import PAGING_ARGS, QUERY_ARGS, Binding
from tools_runtime.exec_graph import parse_graph, reference_order, validate_graph
from tools_runtime.executor import ToolEnvironment, execute_call, session_required
from tools_runtime.records import ArgSource, Goal, PlannedCall, Scenario, Workflow
from tools_runtime.seeding import fake_value, seed_state

PERSONAS = [
    "a busy parent who writes short, direct messages",
    "a retired teacher who is polite and a little unsure with technology",
    "a student who types quickly and casually",
    "a small-business owner who wants things done right the first time",
    "a software developer who is precise and impatient with vague answers",
    "a nurse on a night shift who needs this sorted quickly",
    "a traveller on a phone with a patchy connection",
    "a new employee setting things up for the first time",
]

SECRET_WORDS = ("password", "pin", "secret", "otp", "passcode", "token")


class ScenarioError(ValueError):
    """A workflow that cannot be turned into a runnable scenario; the message says why."""


def is_secret(key: str) -> bool:
    """Keys a user does not volunteer unprompted (the assistant has to ask)."""
    return any(w in key.lower() for w in SECRET_WORDS)


def goal_text(workflow: Workflow) -> str:
    """A first-person request built from the workflow's title or first step."""
    title = (workflow.title or (workflow.steps[0] if workflow.steps else workflow.id)).strip()
    title = title.lstrip("#").strip().rstrip(".")
    for prefix in ("How to ", "how to ", "To "):
        if title.startswith(prefix):
            title = title[len(prefix):]
    if not title:
        title = workflow.id.replace("_", " ")
    return f"I need to {title[0].lower()}{title[1:]}."


# Returned by the planner's argument choosers for an argument the call leaves out.
_OMIT: Any = object()


@dataclass
class _CallPlan:
    """What choosing one call's arguments shares: the tool's binding and the record it is about."""

    binding: Binding
    required: set[str]
    focus: tuple[str, dict[str, Any]] | None


class _Planner:
    """Walks the reference order once, choosing arguments and recording where they come from."""

    def __init__(self, workflow: Workflow, rng: random.Random, state: dict[str, Any]):
        self.workflow = workflow
        self.rng = rng
        self.tools = {t.name: t for t in workflow.tools}
        self.env = ToolEnvironment(workflow, state)
        assert isinstance(self.env.backend, SimBackend)
        self.backend: SimBackend = self.env.backend
        self.bindings = self.backend.bindings
        self.focus: dict[str, str] = {}
        self.avoid: set[tuple[str, str]] = set()
        self.produced: dict[str, tuple[int, str, Any]] = {}
        self.known: dict[str, Any] = {}
        self.plan: list[PlannedCall] = []
        self.goal = 0
        self.goal_keys: dict[int, set[str]] = {}

    @classmethod
    def resume(cls, scenario: Scenario, rng: random.Random) -> _Planner:
        """A planner positioned after `scenario`'s plan, to extend it (refinement)."""
        planner = cls(scenario.workflow, rng, copy.deepcopy(scenario.initial_state))
        planner.known = dict(scenario.known_info)
        for call in scenario.plan:
            b = planner.bindings[call.tool]
            for src in call.sources.values():
                if src.kind == "user" and src.key:
                    planner.goal_keys.setdefault(call.goal, set()).add(src.key)
            rec = execute_call(planner.backend, planner.tools, call.tool, call.arguments)
            if not rec.ok:
                raise ScenarioError(f"reference call {call.tool} fails: {rec.error}")
            planner.plan.append(call)
            planner.remember(len(planner.plan) - 1, b, rec.result)
        planner.goal = max((c.goal for c in scenario.plan), default=-1) + 1
        return planner

    def new_goal(self) -> None:
        """Later calls belong to the next goal and talk about different records."""
        self.avoid |= set(self.focus.items())
        self.focus = {}
        self.goal += 1

    # -- where values come from ------------------------------------------------------------
    def focus_record(self, entity: str) -> tuple[str, dict[str, Any]] | None:
        records = self.backend.collection(entity)
        if not records:
            return None
        if entity not in self.focus or self.focus[entity] not in records:
            fresh = [r for r in sorted(records) if (entity, r) not in self.avoid] or sorted(records)
            self.focus[entity] = self.rng.choice(fresh)
        rid = self.focus[entity]
        return rid, records[rid]

    def user_key(self, param: str, value: Any, entity: str) -> str:
        # A later goal about another record reuses the words ("order id") with a new value: the
        # key gets an `@goal` suffix that is never shown to anyone (see dialogue_text.humanize).
        # Two values under the same words within one goal get visible numbers instead (`source 2`).
        candidates = [param, f"{entity}_{param}" if not param.startswith(entity) else param]
        candidates += [f"{c}@{self.goal}" for c in candidates] + [f"{param}_{n}" for n in range(2, 50)]
        for key in candidates:
            if key in self.known and not (same(self.known[key], value) and type(self.known[key]) is type(value)):
                continue
            if self.clashes(key, value):
                continue
            self.known[key] = value
            self.goal_keys.setdefault(self.goal, set()).add(key)
            return key
        raise ScenarioError(f"too many values for {param!r}")

    def clashes(self, key: str, value: Any) -> bool:
        """True when another fact of the current goal is shown with the same words but another value.

        Within one goal the user states facts as `- words: value` lines, so two values under the
        same words would be ambiguous; the second one gets visible words of its own (`source 2`).
        """
        words = _shown(key)
        for other in self.goal_keys.get(self.goal, ()):
            if other != key and _shown(other) == words and not same(self.known.get(other), value):
                return True
        return False

    def from_produced_or_user(self, param: str, value: Any, entity: str) -> ArgSource:
        hit = self.produced.get(param)
        if hit is not None and same(hit[2], value):
            return ArgSource(kind="result", call=hit[0], path=hit[1])
        return ArgSource(kind="user", key=self.user_key(param, value, entity))

    def record_with(self, entity: str, param: str) -> tuple[str, dict[str, Any]] | None:
        """A record of `entity` that has a value for `param` (fresh ones first)."""
        records = self.backend.collection(entity)
        ids = sorted(records, key=lambda r: ((entity, r) in self.avoid, r))
        for rid in ids:
            rec = records[rid]
            if param in rec or any(param.endswith(f) or f.endswith(param) for f in rec):
                return rid, rec
        return None

    def record_value(self, rid: str, rec: dict[str, Any], b: Binding, param: str) -> Any:
        if param in (b.id_field, "id"):
            return _typed_id(rid, self.tools[b.tool].properties.get(param))
        if param in rec:
            return rec[param]
        for field, value in rec.items():
            if param.endswith(field) or field.endswith(param):
                return value
        return None

    # -- one call --------------------------------------------------------------------------
    def choose(self, b: Binding) -> tuple[dict[str, Any], dict[str, ArgSource]]:
        """Arguments for the next call of `b`'s tool and where each comes from (some optionals left out)."""
        spec = self.tools[b.tool]
        focus = self.focus_record(b.entity) if b.op in ("read", "update", "delete") else None
        call = _CallPlan(binding=b, required=set(spec.required), focus=focus)
        args: dict[str, Any] = {}
        sources: dict[str, ArgSource] = {}
        for param, schema in spec.properties.items():
            value, source = self.choose_argument(call, param, schema if isinstance(schema, dict) else {})
            if value is _OMIT:
                continue
            args[param] = value
            sources[param] = source or ArgSource(kind="user", key=self.user_key(param, value, b.entity))
        return args, sources

    def choose_argument(self, call: _CallPlan, param: str, schema: dict[str, Any]) -> tuple[Any, ArgSource | None]:
        """(value or _OMIT, its source; None: the user states it) for one parameter of the call."""
        b = call.binding
        optional = param not in call.required
        if b.op == "session":
            if b.mode == "logout" and optional:
                return _OMIT, None
            return self.session_value(b, param, schema), None
        if param.endswith("_id") and param[:-3] != b.entity and self.backend.collection(param[:-3]) \
                and param != b.id_field:
            other = self.focus_record(param[:-3])
            assert other is not None
            value = _typed_id(other[0], schema)
            return value, self.from_produced_or_user(param, value, param[:-3])
        if b.op in ("read", "update", "delete") and (param in b.selectors or param in b.filters):
            value = self.selector_value(call, param, schema, optional)
            if value is _OMIT:
                return _OMIT, None
            return value, self.from_produced_or_user(param, value, b.entity)
        if optional and self.rng.random() < 0.5:
            return _OMIT, None
        return self.new_value(param, schema, call.focus), None

    def session_value(self, b: Binding, param: str, schema: dict[str, Any]) -> Any:
        """A login argument: a seeded user's name or secret, or a fake value for the other arguments."""
        login_user, login_secret = credential_args(list(self.tools[b.tool].properties))
        creds = self.backend.state["session"].get("credentials") or {}
        if creds and param in (login_user, login_secret):
            user = sorted(creds)[0]
            return user if param == login_user else creds[user]
        return fake_value(param, schema, self.rng)

    def selector_value(self, call: _CallPlan, param: str, schema: dict[str, Any], optional: bool) -> Any:
        """The value that picks the focused record (its id, a query, a field); _OMIT leaves it out."""
        b, focus = call.binding, call.focus
        if param in PAGING_ARGS or focus is None:
            return _OMIT if optional else fake_value(param, schema, self.rng)
        if param in QUERY_ARGS:
            query = _query_for(focus[1])
            if query is None:
                return _OMIT if optional else str(focus[0])
            return query
        value = self.record_value(focus[0], focus[1], b, param)
        if value is None and not optional:
            # The focused record (say, one just created) lacks this field: talk about a record
            # that has it instead, for this argument and the ones after it.
            other = self.record_with(b.entity, param)
            if other is not None:
                self.focus[b.entity] = other[0]
                call.focus = other
                value = self.record_value(other[0], other[1], b, param)
        if value is None:
            return _OMIT if optional else fake_value(param, schema, self.rng)
        if b.op == "read" and optional and param in b.filters:
            return _OMIT
        return value

    def new_value(self, param: str, schema: dict[str, Any], focus: tuple[str, dict[str, Any]] | None) -> Any:
        """A fake value for a field the call sets, unlike the focused record's current one when it can."""
        current = focus[1].get(param) if focus else None
        value = fake_value(param, schema, self.rng)
        for _ in range(3):
            if current is None or not same(value, current):
                break
            value = fake_value(param, schema, self.rng)
        return value

    def add(self, tool: str, fixed: dict[str, tuple[Any, ArgSource]] | None = None) -> PlannedCall:
        """Plan the next call of `tool` (`fixed` pins some arguments and their sources)."""
        b = self.bindings[tool]
        args, sources = self.choose(b)
        for param, (value, source) in (fixed or {}).items():
            args[param] = value
            sources[param] = source
        rec = execute_call(self.backend, self.tools, tool, args)
        if not rec.ok:
            raise ScenarioError(f"reference call {tool}({args}) fails on the seeded state: {rec.error}")
        idx = len(self.plan)
        call = PlannedCall(tool=tool, arguments=args, sources=sources, goal=self.goal)
        self.plan.append(call)
        self.remember(idx, b, rec.result)
        return call

    def remember(self, idx: int, b: Binding, result: Any) -> None:
        if not isinstance(result, dict):
            return
        rows = result.get("results")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            # A search's first hit is the record the conversation is about from now on.
            for key, value in rows[0].items():
                self.produced[key] = (idx, f"results.0.{key}", value)
            rid = rows[0].get(b.id_field)
            if rid is not None:
                self.focus[b.entity] = str(rid)
            return
        for key, value in result.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                self.produced[key] = (idx, key, value)
        if b.op == "create" and b.id_field in result:
            self.focus[b.entity] = str(result[b.id_field])


def _shown(key: str) -> str:
    """The words a fact is shown with (as dialogue_text.humanize writes them)."""
    return key.split("@")[0].replace("_", " ").replace("-", " ").strip().lower()


def _typed_id(rid: str, schema: Any) -> Any:
    if isinstance(schema, dict) and schema.get("type") == "integer":
        try:
            return int(rid)
        except ValueError:
            return rid
    return rid


def _query_for(record: dict[str, Any]) -> str | None:
    for key in ("name", "title", "item", "product", "product_name", "item_name", "subject", "label"):
        if isinstance(record.get(key), str):
            return record[key]
    return next((v for k, v in sorted(record.items()) if isinstance(v, str) and not k.endswith("_id")), None)


def build_scenario(workflow: Workflow, seed: int = 0, *, records_per_entity: int = 4,
                   scenario_id: str | None = None) -> Scenario:
    """Make the scenario for `workflow` and `seed` (deterministic: same inputs, same scenario)."""
    if workflow.backend.kind != "sim":
        raise ScenarioError("build_scenario needs the simulated backend; python backends bring their own plan")
    try:
        graph = parse_graph(workflow.execution_graph)
    except ValueError as exc:
        raise ScenarioError(f"execution graph: {exc}") from exc
    issues = validate_graph(graph, [t.name for t in workflow.tools])
    if issues:
        raise ScenarioError("execution graph: " + "; ".join(i.message for i in issues))
    if workflow.effects and (workflow.initial_state or workflow.entities):
        # An environment spec: play a task drafted from its own state, never keyword filler.
        from tools_runtime.env_tasks import DraftError, draft_task
        from tools_runtime.tasks import TaskRejected, scenario_from_task

        try:
            task = draft_task(workflow, seed)
            sc = scenario_from_task(workflow, task, seed)
        except (DraftError, TaskRejected) as exc:
            raise ScenarioError(str(exc)) from exc
        return sc.model_copy(update={"id": scenario_id or sc.id})
    rng = random.Random(f"{workflow.id}|{seed}")
    probe = SimBackend(workflow.tools, None, frozenset(session_required(workflow)))
    state = seed_state(workflow.tools, probe.bindings, rng, records_per_entity)
    planner = _Planner(workflow, rng, copy.deepcopy(state))
    for tool in reference_order(graph):
        planner.add(tool)
    known = planner.known
    volunteer = [k for k in known if not is_secret(k)]
    return Scenario(
        id=scenario_id or f"{workflow.id}:s{seed}",
        workflow=workflow,
        seed=seed,
        persona=rng.choice(PERSONAS),
        goals=[Goal(description=goal_text(workflow), volunteer=volunteer)],
        known_info=known,
        initial_state=state,
        plan=planner.plan,
    )


def replay_plan(scenario: Scenario) -> ToolEnvironment:
    """Run the reference plan on a fresh backend (no injected errors); the env holds the end state."""
    env = ToolEnvironment(scenario.workflow, copy.deepcopy(scenario.initial_state))
    for i, call in enumerate(scenario.plan):
        rec = env.call(call.tool, call.arguments)
        if not rec.ok:
            raise ScenarioError(f"reference plan step {i} ({call.tool}) fails: {rec.error}")
    return env
