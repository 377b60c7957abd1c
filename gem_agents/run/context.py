"""Everything one run needs, built once from (config, run dir): store, model hub, roles, stages, graph.

`open_run` is also the entry point for other engines (a Ray worker builds its own context from the
same config and run dir and calls `process_document`). The pipeline is picked here, by the
config's `pipeline` key: each name maps to a module exposing `make_stages(ctx) -> PipelineStages`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.config import RunConfig
from gem_agents.models.client import Completer
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.run.checkpointer import open_checkpointer
from gem_agents.run.store import RunStore
from graphs.pipeline import PipelineStages, build_pipeline_graph
from graphs.roles import Roles

CACHE_NAME = "model_cache.sqlite"
CHECKPOINTS_NAME = "checkpoints.sqlite"

# The one dispatch point for `pipeline:`; a module per pipeline, imported only when chosen.
PIPELINES: dict[str, str] = {
    "full": "gem_agents.run.stages_full",
    "synthesizer": "gem_agents.run.stages_synthesizer",
}


class PipelineUnavailable(RuntimeError):
    """The config names a pipeline whose module is not installed."""


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


def pipeline_stages(ctx: RunContext) -> PipelineStages:
    """The stage functions for `ctx.config.pipeline`."""
    name = ctx.config.pipeline
    module_name = PIPELINES.get(name)
    if module_name is None:
        raise PipelineUnavailable(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise PipelineUnavailable(f"pipeline {name!r} is not available in this installation "
                                  f"(module {module_name} is missing)") from exc
    return module.make_stages(ctx)


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
