"""Checks a run config must pass before any document is read: can each model role reach its endpoint?

A config can be valid YAML and still unusable: an `openai` role with no `base_url` would call
api.openai.com, which needs a key, and a key variable that is not set fails every call. Each provider
says what it needs (its registered `preflight`); found here, problems stop the run at once with the
role named, instead of failing every document one retry at a time.
"""

from __future__ import annotations

from gem_agents import registry
from gem_agents.config import ROLE_NAMES, RunConfig


def endpoint_problems(cfg: RunConfig, source: str = "config") -> list[str]:
    """Why model roles cannot run, one line per problem, naming `source` and the key (each provider's preflight)."""
    problems = []
    for name in ROLE_NAMES:
        role = getattr(cfg.roles, name)
        check = registry.provider(role.provider).preflight
        if check is not None:
            problems += [f"{source}: roles.{name}: {problem}" for problem in check(role)]
    return problems
