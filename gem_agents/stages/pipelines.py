"""Pipelines: which registered stage fills which node of the pipeline graph, and when it runs.

`graphs.pipeline.PipelineStages` is the graph's contract (filter → extract → tasks → simulate →
refine); a `Pipeline` names, for each of those slots it uses, a registered stage, and may make a
slot depend on the config (`refine` runs only with `refine_rounds > 0`). `gem run` looks the
config's `pipeline` up in the registry, runs the preflight of every stage it will use, then binds
the stages to the run (`bind`). A new pipeline is one `register("pipeline", name, Pipeline(...))`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gem_agents.config import RunConfig
from gem_agents.registry import get, register
from gem_agents.stages.base import Stage, StageEnv
from graphs.pipeline import STAGES, PipelineStages


@dataclass
class Pipeline:
    """A pipeline: graph slot → stage name, and the slots that run only when the config says so."""

    name: str
    slots: dict[str, str]
    when: dict[str, Callable[[RunConfig], bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [s for s in self.slots if s not in STAGES]
        if bad or "filter" not in self.slots or "extract" not in self.slots or "simulate" not in self.slots:
            raise ValueError(f"pipeline {self.name!r}: slots must include filter, extract and simulate and be "
                             f"among {', '.join(STAGES)} (got {', '.join(self.slots)})")

    def stages(self, cfg: RunConfig) -> dict[str, Stage]:
        """The registered stage of each slot that runs under `cfg`."""
        return {slot: get("stage", name) for slot, name in self.slots.items()
                if slot not in self.when or self.when[slot](cfg)}

    def preflight(self, cfg: RunConfig) -> list[str]:
        """Every problem the stages that will run find in `cfg` (each said once)."""
        problems: list[str] = []
        for stage in self.stages(cfg).values():
            problems += [p for p in stage.preflight(cfg) if p not in problems]
        return problems

    def bind(self, env: StageEnv) -> PipelineStages:
        """The graph's stage functions for one run."""
        steps = {slot: stage.bind(env) for slot, stage in self.stages(env.config).items()}
        return PipelineStages(**steps)


FULL = register("pipeline", "full", Pipeline(
    name="full", slots={"filter": "filter", "extract": "extract", "tasks": "tasks", "simulate": "simulate",
                        "refine": "refine"},
    when={"refine": lambda cfg: cfg.refine_rounds > 0}))

# The pages of one product area as one environment (gem_agents/stages/grouping.py; input from `gem group`).
GROUPED = register("pipeline", "grouped", Pipeline(
    name="grouped", slots={"filter": "filter", "extract": "grouped_extract", "tasks": "grouped_tasks",
                           "simulate": "simulate", "refine": "refine"},
    when={"refine": lambda cfg: cfg.refine_rounds > 0}))

SYNTHESIZER = register("pipeline", "synthesizer", Pipeline(
    name="synthesizer", slots={"filter": "filter", "extract": "oneshot", "simulate": "verify_oneshot"}))

__all__ = ["FULL", "GROUPED", "SYNTHESIZER", "Pipeline"]
