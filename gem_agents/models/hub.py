"""One place that builds every role's client for a run: shared cache, meter and endpoint limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gem_agents.config import ROLE_NAMES, RoleConfig, RunConfig
from gem_agents.models.cache import CallCache
from gem_agents.models.client import Completer, ModelClient
from gem_agents.models.usage import UsageMeter


def make_completer(cfg: RoleConfig, role: str = "") -> Completer:
    """The provider behind a role config (imported lazily: `local` and `vllm` are extras)."""
    if cfg.provider == "openai" and cfg.http_client == "direct":
        from gem_agents.providers.openai_direct import direct_completer

        return direct_completer(cfg)
    if cfg.provider == "openai":
        from gem_agents.providers.openai_provider import openai_completer

        return openai_completer(cfg)
    if cfg.provider == "local":
        from gem_agents.providers.local_provider import local_completer

        return local_completer(cfg, role=role)
    if cfg.provider == "vllm":
        from gem_agents.providers.vllm_provider import vllm_completer

        return vllm_completer(cfg)
    if cfg.provider == "scripted":
        raise ValueError("provider 'scripted' has no completer: a scripted role runs its offline stand-in "
                         "(see gem_agents/providers/scripted_provider.py)")
    raise ValueError(f"unknown provider {cfg.provider!r}; use openai, vllm, local or scripted")


class ModelHub:
    """Clients per role; roles on the same endpoint share one concurrency limit."""

    def __init__(self, config: RunConfig, cache_path: str | Path | None = None, *, use_cache: bool | None = None,
                 completers: dict[str, Completer] | None = None):
        self.config = config
        enabled = config.cache if use_cache is None else use_cache
        self.cache = CallCache(cache_path) if enabled else None
        self.meter = UsageMeter()
        self._completers = dict(completers or {})
        self._clients: dict[str, ModelClient] = {}
        self._limits: dict[tuple[str, str, str], asyncio.Semaphore] = {}

    def role(self, name: str) -> RoleConfig:
        """The config of one role."""
        if name not in ROLE_NAMES:
            raise KeyError(f"unknown role {name!r}; roles are {', '.join(ROLE_NAMES)}")
        return getattr(self.config.roles, name)

    def is_scripted(self, name: str) -> bool:
        """True when the role runs without a model."""
        return self.role(name).provider == "scripted" and name not in self._completers

    def client(self, name: str) -> ModelClient | None:
        """The client for a role, or None when the role is scripted."""
        if self.is_scripted(name):
            return None
        if name not in self._clients:
            cfg = self.role(name)
            endpoint = (cfg.provider, cfg.base_url or cfg.model_path or "", cfg.model)
            limiter = self._limits.setdefault(endpoint, asyncio.Semaphore(cfg.concurrency))
            complete = self._completers.get(name) or make_completer(cfg, name)
            self._clients[name] = ModelClient(name, cfg, complete, cache=self.cache, meter=self.meter,
                                              limiter=limiter)
        return self._clients[name]

    def close(self) -> None:
        """Close the cache (and the direct clients' connection pools, when any was used)."""
        if self.cache is not None:
            self.cache.close()
        if any(c.cfg.http_client == "direct" for c in self._clients.values()):
            from gem_agents.providers.openai_direct import close_pools

            close_pools()
