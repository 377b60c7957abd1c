"""The `scripted` provider: any role played by the deterministic offline implementation, no model.

A scripted role has no client (`ModelHub.client(role)` is None) and every stage falls back to its
offline stand-in, listed here so the CLI and the docs say the same thing.
"""

from __future__ import annotations

from gem_agents.config import ROLE_NAMES, RunConfig
from gem_agents.registry import Provider, register

# No factory: a scripted role has no client, and each stage runs its offline stand-in.
register("provider", "scripted", Provider(name="scripted", factory=None,
                                          description="the deterministic offline stand-ins (no model)"))

STANDINS: dict[str, str] = {
    "filter": "the deterministic pre-filter and rule-based labels (stages/prefilter.py, stages/relevance.py)",
    "extract": "the rule-based extractor (stages/offline_extractor.py)",
    "task": "the offline task writer: tasks from the environment's text-grounded state (stages/tasks.py)",
    "user": "the scripted user: states the goals, answers from the scenario (user/scripted.py)",
    "assistant": "the scripted assistant: plans calls from the execution graph (policies/scripted_assistant.py)",
    "tool_env": "the stateful backend alone; no model proposes results (tools_runtime/executor.py)",
    "refine": "the deterministic refinement operators (tools_runtime/refine_ops.py)",
    "synthesizer": "the pipeline's own trajectory as the one-shot answer (no distilled model)",
    "judge": "no judge: nl_assertions stay pending and the rules alone assign blame",
}


def scripted_roles(config: RunConfig) -> list[str]:
    """The roles of a config that run without a model."""
    return [r for r in ROLE_NAMES if getattr(config.roles, r).provider == "scripted"]


def all_scripted(config: RunConfig) -> RunConfig:
    """A copy of `config` with every role switched to the scripted provider (the offline mode)."""
    roles = {r: {"provider": "scripted"} for r in ROLE_NAMES}
    return config.model_copy(update={"roles": type(config.roles).model_validate(roles)})
