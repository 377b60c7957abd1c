"""Everything one run needs, built once from (config, run dir): store, model hub, roles, stages, graph.

`open_run` is also the entry point for other engines (a Ray worker builds its own context from the
same config and run dir and calls `process_document`). The pipeline is picked here, by the
config's `pipeline` key, from the registry (`gem_agents/stages/pipelines.py`): its stages' preflight
runs, then its registered stages are bound to this run's hub, roles and run directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.config import RunConfig
from gem_agents.models.client import Completer
from gem_agents.models.hub import ModelHub
from gem_agents.registry import RegistryError, get
from gem_agents.roles_factory import make_roles
from gem_agents.run.checkpointer import open_checkpointer
from gem_agents.run.store import RunStore
from gem_agents.stages.base import StageEnv
from graphs.pipeline import PipelineStages, build_pipeline_graph
from graphs.roles import Roles

CACHE_NAME = "model_cache.sqlite"
CHECKPOINTS_NAME = "checkpoints.sqlite"


class PipelineUnavailable(RuntimeError):
    """The config names a pipeline that is not registered, or one whose stages refuse the config."""


@dataclass
class RunContext:
    """The run's shared objects; `checkpointer` is None when progress is not checkpointed."""

    config: RunConfig
    run_dir: Path
    hub: ModelHub
    roles: Roles
    store: RunStore | None = None
    graph: Any = None
    checkpointer: Any = None
    stages: PipelineStages | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pipeline_problems(cfg: RunConfig) -> list[str]:
    """Why the config's pipeline cannot run: not registered, or its stages' preflight ([] when it can)."""
    try:
        pipeline = get("pipeline", cfg.pipeline)
    except RegistryError as exc:
        return [f"pipeline {cfg.pipeline!r} is not available in this installation ({exc})"]
    return pipeline.preflight(cfg)


def pipeline_stages(ctx: RunContext) -> PipelineStages:
    """The stage functions of `ctx.config.pipeline`, bound to this run."""
    if problems := pipeline_problems(ctx.config):
        raise PipelineUnavailable("\n".join(problems))
    env = StageEnv(config=ctx.config, hub=ctx.hub, roles=ctx.roles, run_dir=ctx.run_dir)
    return get("pipeline", ctx.config.pipeline).bind(env)


@asynccontextmanager
async def open_run(config: RunConfig, run_dir: str | Path, *, cache_path: str | Path | None = None,
                   completers: dict[str, Completer] | None = None, checkpoint: bool = True,
                   store: bool = True) -> AsyncIterator[RunContext]:
    """Build a run's context; closes the store, cache and checkpointer on exit."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    hub = ModelHub(config, cache_path or run_dir / CACHE_NAME, completers=completers)
    ctx = RunContext(config=config, run_dir=run_dir, hub=hub, roles=make_roles(hub),
                     store=RunStore(run_dir) if store else None)
    try:
        ctx.stages = pipeline_stages(ctx)
        if checkpoint:
            with open_checkpointer(run_dir / CHECKPOINTS_NAME) as saver:
                ctx.checkpointer = saver
                ctx.graph = build_pipeline_graph(saver)
                yield ctx
        else:
            ctx.graph = build_pipeline_graph()
            yield ctx
    finally:
        hub.close()
        if ctx.store is not None:
            ctx.store.close()
