"""Tasks: what one simulated user wants done in an environment, and how success is judged.

A task is written by the `task` role (or its offline stand-in, or a refinement operator) from the
text and the environment. The user simulator sees `instruction`, `persona` and `known_info` only;
the assistant never sees the task; the verifier judges the dialogue against the expected outcome:
`gold_actions` replayed on a fresh backend give the expected state, `communicate_info` lists the
values the assistant must tell the user, `nl_assertions` are for the judge. `reward_basis` says which
verdict components decide the reward. A task with no criterion at all is never simulated.
"""

from __future__ import annotations

from typing import Any, Literal

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
