"""The one registration mechanism for every extension point: providers, stages, pipelines,
refinement operators, export formats and roles.

An extension registers itself with a decorator where it is defined::

    @register("export_format", "jsonl_min")
    def export(run_dir, out, *, include_offline=False): ...

Built-in extensions live in modules named in `BUILTIN_MODULES`; they are imported the first
time a kind is looked up, so a command that never touches a provider never imports one. A
third-party package adds extensions through the entry-point group `gem_agents.plugins`: each
entry point names a module (or a callable taking no arguments) whose import registers what it
provides. Entry points are only ever loaded from installed distributions, never from a run
directory, a config or a model answer, so no data file can make this import code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import FunctionType
from typing import Any, TypeVar

from pydantic import BaseModel

KINDS = ("provider", "stage", "pipeline", "refine_operator", "export_format", "role")
ENTRY_POINT_GROUP = "gem_agents.plugins"

# Modules whose import registers the built-ins of a kind. Kept as data (not discovery by file
# name) so that the set of built-ins is written in one place and reviewed like code.
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {kind: () for kind in KINDS}
BUILTIN_MODULES.update({
    # Each provider module registers a light `Provider`; its heavy imports wait for its factory.
    "provider": ("gem_agents.providers.scripted_provider", "gem_agents.providers.openai_endpoint",
                 "gem_agents.providers.vllm_provider", "gem_agents.providers.local_provider"),
    "export_format": ("gem_agents.export.fmt_openai", "gem_agents.export.fmt_sharegpt", "gem_agents.export.fmt_hf",
                      "gem_agents.export.fmt_synthesizer"),
    "refine_operator": ("gem_agents.stages.refine_operators",),
    "role": ("gem_agents.roles_factory",),
})
BUILTIN_MODULES["stage"] = ("gem_agents.stages.relevance", "gem_agents.stages.extract", "gem_agents.stages.tasks",
                            "gem_agents.stages.simulate", "gem_agents.stages.refine", "gem_agents.synthesizer.stage",
                            "gem_agents.stages.grouping")
BUILTIN_MODULES["pipeline"] = ("gem_agents.stages.pipelines",)

T = TypeVar("T")

_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_ORIGIN: dict[tuple[str, str], str] = {}
_loaded_builtins: set[str] = set()
_plugins_loaded = False


class RegistryError(ValueError):
    """An unknown kind or name, or two extensions claiming one name."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown extension kind {kind!r}; kinds are {', '.join(KINDS)}")


def register(kind: str, name: str, obj: T | None = None, *, replace: bool = False) -> Any:
    """Register `obj` as extension `name` of `kind`; without `obj`, a decorator that does it."""
    _check_kind(kind)
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise RegistryError(f"bad {kind} name {name!r}: use letters, digits, '_' or '-'")

    # Who registers: the module defining a function or class, else the module calling register().
    caller = sys._getframe(1).f_globals.get("__name__", "")

    # The built-ins first, so a name taken by one of them is refused here, not later at their import.
    _ensure_builtins(kind)

    def _do(target: T) -> T:
        origin = getattr(target, "__module__", "") if isinstance(target, (type, FunctionType)) else ""
        origin = origin or caller
        held = _REGISTRY[kind].get(name)
        if held is not None and held is not target and not replace:
            raise RegistryError(f"{kind.replace('_', ' ')} {name!r} is registered twice: by "
                                f"{_ORIGIN.get((kind, name), '?')} and by {origin or '?'}; rename one of them")
        _REGISTRY[kind][name] = target
        _ORIGIN[(kind, name)] = origin
        return target

    if obj is not None:
        return _do(obj)
    return _do


def _ensure_builtins(kind: str) -> None:
    # Marked first: the built-in modules call register() while they are being imported.
    if kind not in _loaded_builtins:
        _loaded_builtins.add(kind)
        for module in BUILTIN_MODULES.get(kind, ()):
            importlib.import_module(module)


def _ensure_loaded(kind: str) -> None:
    _ensure_builtins(kind)
    load_plugins()


def load_plugins() -> list[str]:
    """Import every installed `gem_agents.plugins` entry point once; returns their names."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    names: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001 — a broken plugin is named, not a traceback
            raise RegistryError(f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}") \
                from exc
        # An entry point names a module (its import registered what it has) or a set-up function.
        if getattr(loaded, "__gem_plugin_setup__", False):
            loaded()
        names.append(ep.name)
    return names


def get(kind: str, name: str) -> Any:
    """The extension `name` of `kind`; RegistryError naming the known ones when it does not exist."""
    _check_kind(kind)
    _ensure_loaded(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY[kind])) or "none"
        raise RegistryError(f"unknown {kind.replace('_', ' ')} {name!r}; available: {known}") from None


def names(kind: str) -> list[str]:
    """The registered names of one kind, sorted."""
    _check_kind(kind)
    _ensure_loaded(kind)
    return sorted(_REGISTRY[kind])


def unregister(kind: str, name: str) -> None:
    """Forget one registration (tests that register throw-away extensions clean up with it)."""
    _check_kind(kind)
    _REGISTRY[kind].pop(name, None)
    _ORIGIN.pop((kind, name), None)


def origin(kind: str, name: str) -> str:
    """The module that registered `name` of `kind` (for error messages and `gem --version`-style listings)."""
    get(kind, name)
    return _ORIGIN.get((kind, name), "")


@dataclass(frozen=True)
class Provider:
    """A model provider: what `roles.<role>.provider: <name>` selects.

    `factory(cfg, role)` returns the completer `(messages, CallSpec) -> (message, usage)` and is the
    only place a provider imports its heavy dependencies (an SDK, llama.cpp, vLLM), so registering
    one costs nothing. `settings` is the pydantic model of the keys this provider adds to a role's
    block (validated with extra keys forbidden; their values become attributes of the RoleConfig);
    `validate(cfg)` raises ValueError for combinations a schema cannot say; `preflight(cfg)` returns
    problems to report before a run starts (an unreachable endpoint, a key variable not set);
    `capabilities` says what it does natively (`tools`, `json_schema`, `grammar`); `endpoint(cfg)` names
    the server or model file whose concurrency limit roles share; `close()` frees pooled resources.
    `factory` None means the role runs its offline stand-in and has no client.
    """

    name: str
    factory: Callable[[Any, str], Any] | None
    settings: type[BaseModel] | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    validate: Callable[[Any], None] | None = None
    preflight: Callable[[Any], list[str]] | None = None
    endpoint: Callable[[Any], str] | None = None
    close: Callable[[], None] | None = None
    description: str = ""


@dataclass(frozen=True)
class RefineOperator:
    """A refinement operator: what `refine_ops:` in a config and `gem refine --ops` name.

    `target` says what it rewrites: a `scenario` operator is `apply(scenario, rng, **params) ->
    Scenario` (tools_runtime/refine_ops.py); a `task` operator is `apply(ctx, task, rng) -> Task`
    (tools_runtime/refine_tasks.py), for trajectories of grounded tasks. Either raises
    tools_runtime's RefineOpError when it does not apply. Operators compose in registration order.
    """

    name: str
    target: str  # "scenario" | "task"
    apply: Callable[..., Any]
    description: str = ""


def provider(name: str) -> Provider:
    """The registered Provider called `name` (RegistryError listing the known ones otherwise)."""
    spec = get("provider", name)
    if not isinstance(spec, Provider):
        raise RegistryError(f"provider {name!r} is registered as a {type(spec).__name__}, not a Provider")
    return spec


def plugin_setup(fn: Callable[[], None]) -> Callable[[], None]:
    """Mark a no-argument function as an entry point's set-up hook (called once at plugin load)."""
    fn.__gem_plugin_setup__ = True  # type: ignore[attr-defined]
    return fn


__all__ = ["BUILTIN_MODULES", "ENTRY_POINT_GROUP", "KINDS", "Provider", "RefineOperator", "RegistryError", "get",
           "load_plugins", "names", "origin", "plugin_setup", "provider", "register", "unregister"]
