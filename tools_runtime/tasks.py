"""Tasks: what one simulated user wants done in an environment, and how success is judged.

A task is written by the `task` role (or its offline stand-in, or a refinement operator) from the
text and the environment. The user simulator sees `instruction`, `persona` and `known_info` only;
the assistant never sees the task; the verifier judges the dialogue against the expected outcome:
`gold_actions` replayed on a fresh backend give the expected state, `communicate_info` lists the
values the assistant must tell the user, `nl_assertions` are for the judge. `reward_basis` says which
verdict components decide the reward. A task with no criterion at all is never simulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools_runtime.environment import ValueSource

Component = Literal["state", "actions", "communicate", "claims", "policy", "nl_assertions"]
DEFAULT_BASIS: tuple[Component, ...] = ("state", "actions", "communicate", "claims", "policy")


class _Task(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Action(_Task):
    """One gold tool call: the tool and its concrete arguments."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Info(_Task):
    """One value the user knows, and where it came from (the text, the state, or invented)."""

    key: str
    value: Any
    source: ValueSource = Field(default_factory=ValueSource)
    withhold: bool = False


class Task(_Task):
    """One user goal in one environment, with its expected outcome and criteria."""

    id: str
    env_id: str
    instruction: str
    persona: str = ""
    cites: list[int] = Field(default_factory=list)
    known_info: list[Info] = Field(default_factory=list)
    unknown_info: list[str] = Field(default_factory=list)
    gold_actions: list[Action] = Field(default_factory=list)
    expected_state_hash: str = ""
    communicate_info: list[str] = Field(default_factory=list)
    nl_assertions: list[str] = Field(default_factory=list)
    forbidden_tools: list[str] = Field(default_factory=list)
    refuse: bool = False
    reward_basis: list[Component] = Field(default_factory=lambda: list(DEFAULT_BASIS))
    operator: str = ""
    parent: str | None = None
    offline: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)

    def known(self) -> dict[str, Any]:
        """The user's facts as a plain mapping (key → value)."""
        return {i.key: i.value for i in self.known_info}


class TaskRejection(_Task):
    """A task that was discarded before simulation, with its reason code and text."""

    task_id: str
    code: str
    reason: str


# ---------------------------------------------------------------------------------------------------------
# gold execution: a task's gold actions run on a fresh backend from the environment's initial state.
# records.py imports this module (Scenario.task), so the workflow-side imports happen inside functions.

if TYPE_CHECKING:
    from tools_runtime.records import Scenario, Workflow


class GoldResult(_Task):
    """One executed gold action: its result or error, and the state changes it made."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    state_diff: list[dict[str, Any]] = Field(default_factory=list)


class GoldRun(_Task):
    """A task's gold actions executed: the expected end state, its hash and every call's result."""

    task_id: str
    initial_state_hash: str
    expected_state_hash: str
    end_state: dict[str, Any]
    results: list[GoldResult] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the gold actions change the state (a `state` criterion exists)."""
        return self.initial_state_hash != self.expected_state_hash


class TaskRejected(ValueError):
    """Raised by `scenario_from_task` for a task that must not be simulated; carries the rejection."""

    def __init__(self, rejection: TaskRejection):
        self.rejection = rejection
        super().__init__(f"task {rejection.task_id} rejected ({rejection.code}): {rejection.reason}")


def _reject(task: Task, code: str, reason: str) -> TaskRejection:
    return TaskRejection(task_id=task.id, code=code, reason=reason)


def is_write(workflow: Workflow, tool: str) -> bool:
    """True when `tool` changes state: its declared effect, else its name binding."""
    from tools_runtime.binding import bind_tool
    from tools_runtime.environment import WRITE_EFFECTS

    effect = workflow.effects.get(tool)
    if effect is not None:
        return effect.kind in WRITE_EFFECTS
    spec = workflow.tool(tool)
    return spec is not None and bind_tool(spec).op not in ("read", "compute")


def run_gold(workflow: Workflow, task: Task) -> GoldRun | TaskRejection:
    """Execute `task`'s gold actions on a fresh backend; the expected outcome, or why the task is rejected."""
    from tools_runtime.environment import EnvironmentSpecError
    from tools_runtime.executor import ToolEnvironment, initial_state
    from tools_runtime.validation import validate_arguments

    if task.env_id and task.env_id not in (workflow.id, workflow.doc_id):
        return _reject(task, "wrong_environment", f"the task is for environment '{task.env_id}', not '{workflow.id}'")
    tools = {t.name: t for t in workflow.tools}
    for i, action in enumerate(task.gold_actions):
        if action.tool not in tools:
            return _reject(task, "unknown_tool", f"gold action {i} calls '{action.tool}', which the environment "
                                                 f"does not define (tools: {', '.join(sorted(tools))})")
        if action.tool in task.forbidden_tools:
            return _reject(task, "forbidden_in_gold", f"gold action {i} calls '{action.tool}', which the task forbids")
        problems = validate_arguments(tools[action.tool], action.arguments)
        if problems:
            return _reject(task, "invalid_arguments", f"gold action {i} ({action.tool}): "
                                                      + "; ".join(p.message for p in problems))
    try:
        start = initial_state(workflow) if workflow.backend.kind == "sim" else None
    except EnvironmentSpecError as exc:
        return _reject(task, "invalid_environment", f"the initial state does not load: {exc}")
    env = ToolEnvironment(workflow, start)
    first_hash = env.backend.state_hash()
    results = []
    for i, action in enumerate(task.gold_actions):
        rec = env.call(action.tool, dict(action.arguments))
        results.append(GoldResult(tool=action.tool, arguments=dict(action.arguments), ok=rec.ok, result=rec.result,
                                  error=rec.error, state_diff=rec.state_diff))
        if not rec.ok:
            err = rec.error or {}
            return _reject(task, "gold_failed", f"gold action {i} ({action.tool}) fails: "
                                                f"{err.get('code', 'error')}: {err.get('message', '')}")
    run = GoldRun(task_id=task.id, initial_state_hash=first_hash, expected_state_hash=env.backend.state_hash(),
                  end_state=env.backend.view(), results=results)
    basis = set(task.reward_basis)
    criteria = []
    # Signing in alone is no outcome: a state criterion needs a change to the records themselves.
    if basis & {"state", "actions"} and _records_changed(start, run.end_state, run.changed):
        criteria.append("state")
    if "communicate" in basis and task.communicate_info:
        criteria.append("communicate")
    if "nl_assertions" in basis and task.nl_assertions:
        criteria.append("nl_assertions")
    if "policy" in basis and (task.refuse or task.forbidden_tools):
        criteria.append("policy")
    if not criteria:
        return _reject(task, "empty_criteria", "the task has no criterion: its gold actions change nothing and it "
                                               "names no value to communicate, no assertion and no refusal")
    return run


def _records_changed(start: dict[str, Any] | None, end: dict[str, Any], changed: bool) -> bool:
    if start is None or "collections" not in end:
        return changed  # a Python backend: any change of its state counts
    from tools_runtime.state import canonical_json

    return canonical_json(start.get("collections", {})) != canonical_json(end.get("collections", {}))


def _result_path(result: Any, value: Any, param: str, depth: int = 0) -> str | None:
    """The dotted path of `value` inside a tool result (a field named like `param` first)."""
    from tools_runtime.backend import same

    if depth > 3:
        return None
    if isinstance(result, dict):
        items = sorted(result.items(), key=lambda kv: (kv[0] != param, not str(param).endswith(str(kv[0]))))
        for key, val in items:
            if isinstance(val, dict | list):
                sub = _result_path(val, value, param, depth + 1)
                if sub is not None:
                    return f"{key}.{sub}"
            elif not isinstance(val, bool) and val is not None and same(val, value):
                return str(key)
    elif isinstance(result, list):
        for i, val in enumerate(result[:20]):
            sub = _result_path(val, value, param, depth + 1)
            if sub is not None:
                return f"{i}.{sub}"
    return None


def scenario_from_task(workflow: Workflow, task: Task, seed: int = 0) -> Scenario:
    """The Scenario that plays `task`: its gold actions as the plan, its facts as the user's; TaskRejected if invalid."""
    import random

    from tools_runtime.backend import same
    from tools_runtime.executor import initial_state
    from tools_runtime.records import ArgSource, Goal, PlannedCall, Scenario
    from tools_runtime.scenario import PERSONAS, is_secret

    run = run_gold(workflow, task)
    if isinstance(run, TaskRejection):
        raise TaskRejected(run)
    known = task.known()
    plan = []
    for i, action in enumerate(task.gold_actions):
        sources: dict[str, ArgSource] = {}
        for param, value in action.arguments.items():
            key = param if param in known and same(known[param], value) else next(
                (k for k, v in known.items() if same(v, value) and not isinstance(v, bool)), None)
            if key is not None:
                sources[param] = ArgSource(kind="user", key=key)
                continue
            hit = next(((j, p) for j in range(i) if run.results[j].ok
                        and (p := _result_path(run.results[j].result, value, param)) is not None), None)
            if hit is not None:
                sources[param] = ArgSource(kind="result", call=hit[0], path=hit[1])
            else:
                sources[param] = ArgSource(kind="const")
        plan.append(PlannedCall(tool=action.tool, arguments=dict(action.arguments), sources=sources, goal=0))
    rng = random.Random(f"{workflow.id}|{task.id}|{seed}")
    volunteer = [i.key for i in task.known_info if not i.withhold and not is_secret(i.key)]
    start = initial_state(workflow) if workflow.backend.kind == "sim" else {}
    return Scenario(
        id=f"{workflow.id}:{task.id}:s{seed}",
        workflow=workflow,
        seed=seed,
        persona=task.persona or rng.choice(PERSONAS),
        goals=[Goal(description=task.instruction, volunteer=volunteer)],
        known_info=known,
        initial_state=start,
        plan=plan,
        task=task,
    )
