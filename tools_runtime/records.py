"""The records that flow through the pipeline (docs/design.md §4), as small pydantic models.

Document → Relevance → Workflow → Scenario → Trajectory(+Verdict, Stats). Everything here is
JSON on disk; messages use the OpenAI chat format (`tool_calls`, `tool_call_id`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools_runtime.environment import SPEC_VERSION, Entity, Rule, StateRecord, ToolEffect
from tools_runtime.tasks import Task
from tools_runtime.toolspec import ToolSpec


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Document(_Record):
    """One input text (or one segment of a longer text)."""

    id: str
    text: str
    source: str = ""
    segment: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Relevance(_Record):
    """Stage 1's answer: does the text hold a multi-step procedure on a machine?"""

    multi_step: bool
    summary: str = ""
    domain: str = ""
    platform: str = ""
    task: str = ""
    decided_by: str = "model"


class BackendRef(_Record):
    """Which executable backend runs a workflow's tools.

    `kind="sim"` is the built-in stateful simulated backend. `kind="python"` names user classes
    (`module:Class`, public methods are tools) with their initial configs, as BFCL's backends are.
    """

    kind: Literal["sim", "python"] = "sim"
    classes: list[str] = Field(default_factory=list)
    initial_config: dict[str, Any] = Field(default_factory=dict)


class Workflow(_Record):
    """Stage 2's output: the steps of a procedure, its execution graph and its tools."""

    id: str
    doc_id: str = ""
    title: str = ""
    steps: list[str] = Field(default_factory=list)
    execution_graph: str
    tools: list[ToolSpec]
    domain: str = ""
    platform: str = ""
    backend: BackendRef = Field(default_factory=BackendRef)
    # The environment spec (environment.py). Empty for third-party tool files: then the backend
    # binds tools by their names and the scenario builder seeds filler records.
    spec_version: str = SPEC_VERSION
    effects: dict[str, ToolEffect] = Field(default_factory=dict)
    entities: list[Entity] = Field(default_factory=list)
    initial_state: list[StateRecord] = Field(default_factory=list)
    policy: list[Rule] = Field(default_factory=list)
    user_tools: list[str] = Field(default_factory=list)

    def tool(self, name: str) -> ToolSpec | None:
        """The tool called `name`, or None."""
        return next((t for t in self.tools if t.name == name), None)


class ArgSource(_Record):
    """Where the value of one argument of a planned call comes from.

    `user`: a fact the user knows (`key` in Scenario.known_info); `result`: a field of the result of
    an earlier planned call (`call` index, dotted `path`); `const`: a literal the assistant may pick.
    """

    kind: Literal["user", "result", "const"]
    key: str | None = None
    call: int | None = None
    path: str | None = None


class PlannedCall(_Record):
    """One call of the reference plan, with its concrete arguments and their sources."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, ArgSource] = Field(default_factory=dict)
    goal: int = 0


class Goal(_Record):
    """Something the user wants done; the plan's calls with `goal == index` achieve it."""

    description: str
    volunteer: list[str] = Field(default_factory=list)


class PlannedError(_Record):
    """A tool error the scenario plans, which the assistant must notice and recover from.

    `transient` and `permission` are injected by the tool environment on the `occurrence`-th call of
    `tool`. `not_found` and `invalid_value` arise for real: the user first gives `wrong_value` for
    the fact `key` (the argument `param` of `tool`), the backend or the schema rejects it, and the
    user corrects it when asked again.
    """

    kind: Literal["transient", "permission", "not_found", "invalid_value"]
    tool: str
    occurrence: int = 1
    key: str | None = None
    param: str | None = None
    wrong_value: Any = None
    message: str = ""


class Scenario(_Record):
    """Everything one dialogue needs: workflow, user, goals, world state and the reference plan."""

    id: str
    workflow: Workflow
    seed: int = 0
    persona: str = ""
    goals: list[Goal] = Field(default_factory=list)
    known_info: dict[str, Any] = Field(default_factory=dict)
    initial_state: dict[str, Any] = Field(default_factory=dict)
    planned_errors: list[PlannedError] = Field(default_factory=list)
    plan: list[PlannedCall] = Field(default_factory=list)
    distractors: list[str] = Field(default_factory=list)
    refinements: list[str] = Field(default_factory=list)
    # The grounded task this scenario plays (tasks.py); None for scenarios built from a bare workflow.
    task: Task | None = None

    @property
    def tools(self) -> list[ToolSpec]:
        """The tools offered to the assistant."""
        return self.workflow.tools


class Failure(_Record):
    """One reason a trajectory failed verification."""

    code: str
    reason: str
    index: int | None = None


class ComponentVerdict(_Record):
    """The verdict of one reward component (`state`, `actions`, `communicate`, …)."""

    passed: bool
    reason: str = ""
    failures: list[Failure] = Field(default_factory=list)
    # Undecided: no judge was configured for a component only a judge can decide (`nl_assertions`).
    pending: bool = False


Blame = Literal["assistant", "user", "environment", "task"]


class Verdict(_Record):
    """The verifier's answer; `passed` is true only when `failures` is empty."""

    passed: bool
    failures: list[Failure] = Field(default_factory=list)
    final_state_hash: str = ""
    reference_state_hash: str = ""
    components: dict[str, ComponentVerdict] = Field(default_factory=dict)
    blame: Blame | None = None
    blame_reason: str = ""

    def codes(self) -> list[str]:
        """The failure codes, in order."""
        return [f.code for f in self.failures]


class Stats(_Record):
    """The complexity figures of a trajectory, as in the paper's refinement table."""

    messages: int = 0
    user_turns: int = 0
    tool_types: int = 0
    tool_calls: int = 0
    errors_recovered: int = 0


class Provenance(_Record):
    """Where a trajectory came from."""

    stage: str = "simulate"
    policy: str = "scripted"
    model: str = ""
    prompts_hash: str = ""
    seed: int = 0
    rollout: int = 0
    doc_id: str = ""
    offline: bool = False
    task_id: str = ""
    # The judge role's scores and reasons, its model and prompt hash (gem_agents/stages/judge.py); empty
    # when no judge ran. `gem export --min-judge` gates on `judge["score"]`.
    judge: dict[str, Any] = Field(default_factory=dict)


class ExecRecord(_Record):
    """One executed tool call: the call, its result or error, and the state diff it caused."""

    tool_call_id: str = ""
    name: str
    arguments: Any = None
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    state_diff: list[dict[str, Any]] = Field(default_factory=list)
    injected: bool = False
    proposed: bool = False


class Trajectory(_Record):
    """One dialogue in OpenAI chat format with its tools, verdict, stats and provenance."""

    id: str
    scenario_id: str = ""
    workflow_id: str = ""
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    verdict: Verdict | None = None
    stats: Stats = Field(default_factory=Stats)
    provenance: Provenance = Field(default_factory=Provenance)
    steps: list[ExecRecord] = Field(default_factory=list)
    scenario: Scenario | None = None
