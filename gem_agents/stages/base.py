"""What a stage is: one small object, with one home, that `gem run` and the per-stage command share.

A `Stage` names the run-config keys it reads, the model roles it asks for, a `preflight` check of
a config (problems found before any document is read, worded the same by every command) and its
async run step `run(env, *inputs)`. `gem run` composes registered stages into a `Pipeline`
(`gem_agents/stages/pipelines.py`); `gem filter`, `gem extract` and `gem refine` parse their
arguments, read their input and call the same registered stage. A stage is registered where it
is defined: `register("stage", name, Stage(...))`.

`StageEnv` is what a run step may use: the config, the model clients by role (None: offline), the
dialogue roles, the run directory and one semaphore bounding the rollouts in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gem_agents.config import RunConfig

if TYPE_CHECKING:
    from gem_agents.models.client import ModelClient
    from gem_agents.models.hub import ModelHub
    from graphs.roles import Roles

GraphStep = Callable[..., Awaitable[Any]]


@dataclass
class StageEnv:
    """One run's (or one command's) dependencies of the stage run steps; `hub=None` is offline."""

    config: RunConfig
    hub: ModelHub | None = None
    roles: Roles | None = None
    run_dir: Path | None = None
    # Rollouts of every document share it, so `concurrency.rollouts` bounds dialogues across a run.
    rollout_sem: asyncio.Semaphore | None = None
    # Per-run state two stages of one pipeline hand each other (e.g. the one-shot answer to its verifier).
    shared: dict[str, Any] = field(default_factory=dict)

    def client(self, role: str) -> ModelClient | None:
        """The model client of `role`, or None when the role is scripted or the env is offline."""
        return self.hub.client(role) if self.hub is not None else None

    @property
    def sem(self) -> asyncio.Semaphore:
        """The rollout semaphore (made on first use, sized by `concurrency.rollouts`)."""
        if self.rollout_sem is None:
            self.rollout_sem = asyncio.Semaphore(self.config.concurrency.rollouts)
        return self.rollout_sem

    @property
    def dialogue_roles(self) -> Roles:
        """The roles that play dialogues; the caller builds them (`roles_factory.make_roles`)."""
        if self.roles is None:
            raise RuntimeError("this stage plays dialogues: build its StageEnv with roles")
        return self.roles


def no_problems(cfg: RunConfig) -> list[str]:
    """The preflight of a stage with nothing to check."""
    return []


@dataclass
class Stage:
    """One stage: name, config keys read, model roles, preflight, run step, and how the graph calls it.

    `graph_step(stage, env)` turns the run step into the function `graphs.pipeline.PipelineStages`
    expects; None means the run step already has that shape (called as `run(env, *inputs)`). The run
    step is looked up on each call, so replacing `stage.run` changes every path that uses the stage.
    """

    name: str
    run: Callable[..., Awaitable[Any]]
    roles: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    preflight: Callable[[RunConfig], list[str]] = no_problems
    graph_step: Callable[[Stage, StageEnv], GraphStep] | None = None
    summary: str = ""

    def bind(self, env: StageEnv) -> GraphStep:
        """The graph's function for this stage in `env`."""
        if self.graph_step is not None:
            return self.graph_step(self, env)

        async def step(*inputs: Any) -> Any:
            return await self.run(env, *inputs)

        return step


__all__ = ["GraphStep", "Stage", "StageEnv", "no_problems"]
