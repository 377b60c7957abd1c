"""One place that builds every role's client for a run: shared cache, meter and endpoint limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gem_agents import registry
from gem_agents.config import ROLE_NAMES, RoleConfig, RunConfig
from gem_agents.models.cache import CallCache
from gem_agents.models.client import Completer, ModelClient
from gem_agents.models.usage import UsageMeter


def make_completer(cfg: RoleConfig, role: str = "") -> Completer:
    """The completer of the provider registered under `cfg.provider` (its factory imports its own extras)."""
    spec = registry.provider(cfg.provider)
    if spec.factory is None:
        raise ValueError(f"provider {cfg.provider!r} has no completer: a {cfg.provider} role runs its offline "
                         "stand-in (see gem_agents/providers/scripted_provider.py)")
    return spec.factory(cfg, role)


def endpoint_of(cfg: RoleConfig) -> tuple[str, str, str]:
    """What roles share one concurrency limit by: the provider, its server or model file, the model."""
    spec = registry.provider(cfg.provider)
    return cfg.provider, spec.endpoint(cfg) if spec.endpoint is not None else "", cfg.model


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
        return registry.provider(self.role(name).provider).factory is None and name not in self._completers

    def client(self, name: str) -> ModelClient | None:
        """The client for a role, or None when the role is scripted."""
        if self.is_scripted(name):
            return None
        if name not in self._clients:
            cfg = self.role(name)
            limiter = self._limits.setdefault(endpoint_of(cfg), asyncio.Semaphore(cfg.concurrency))
            complete = self._completers.get(name) or make_completer(cfg, name)
            self._clients[name] = ModelClient(name, cfg, complete, cache=self.cache, meter=self.meter,
                                              limiter=limiter)
        return self._clients[name]

    def close(self) -> None:
        """Close the cache, and let each provider in use free what it pools (connections, engines)."""
        if self.cache is not None:
            self.cache.close()
        for name in sorted({c.cfg.provider for c in self._clients.values()}):
            close = registry.provider(name).close
            if close is not None:
                close()
