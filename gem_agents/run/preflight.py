"""Checks a run config must pass before any document is read: can each model role reach its endpoint?

A config can be valid YAML and still unusable: an `openai` role with no `base_url` would call
api.openai.com, which needs a key, and a key variable that is not set fails every call. Found here,
they stop the run at once with the role named, instead of failing every document one retry at a time.
"""

from __future__ import annotations

import os

from gem_agents.config import ROLE_NAMES, RunConfig


def endpoint_problems(cfg: RunConfig, source: str = "config") -> list[str]:
    """Why model roles cannot reach their endpoints, one line per role, naming `source` and the key."""
    problems = []
    for name in ROLE_NAMES:
        role = getattr(cfg.roles, name)
        if role.provider != "openai":
            continue
        where = f"{source}: roles.{name}"
        if not role.base_url and not role.api_key_env:
            problems.append(f"{where}: provider 'openai' has no base_url, so it would call api.openai.com, and no "
                            "api_key_env names the variable holding its key; set base_url to your server (e.g. "
                            "http://localhost:8000/v1 for `vllm serve`) or api_key_env")
        elif role.api_key_env and not os.environ.get(role.api_key_env):
            problems.append(f"{where}.api_key_env: environment variable {role.api_key_env} is not set")
    return problems
