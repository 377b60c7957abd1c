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
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

KINDS = ("provider", "stage", "pipeline", "refine_operator", "export_format", "role")
ENTRY_POINT_GROUP = "gem_agents.plugins"

# Modules whose import registers the built-ins of a kind. Kept as data (not discovery by file
# name) so that the set of built-ins is written in one place and reviewed like code.
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {kind: () for kind in KINDS}
BUILTIN_MODULES["stage"] = ("gem_agents.stages.relevance", "gem_agents.stages.extract", "gem_agents.stages.tasks",
                            "gem_agents.stages.simulate", "gem_agents.stages.refine", "gem_agents.synthesizer.stage")
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

    def _do(target: T) -> T:
        origin = getattr(target, "__module__", "") or ""
        held = _REGISTRY[kind].get(name)
        if held is not None and held is not target and not replace:
            raise RegistryError(f"{kind} {name!r} is registered twice: by {_ORIGIN.get((kind, name), '?')} "
                                f"and by {origin or '?'}")
        _REGISTRY[kind][name] = target
        _ORIGIN[(kind, name)] = origin
        return target

    if obj is not None:
        return _do(obj)
    return _do


def _ensure_loaded(kind: str) -> None:
    if kind not in _loaded_builtins:
        _loaded_builtins.add(kind)
        for module in BUILTIN_MODULES.get(kind, ()):
            importlib.import_module(module)
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


def plugin_setup(fn: Callable[[], None]) -> Callable[[], None]:
    """Mark a no-argument function as an entry point's set-up hook (called once at plugin load)."""
    fn.__gem_plugin_setup__ = True  # type: ignore[attr-defined]
    return fn


__all__ = ["BUILTIN_MODULES", "ENTRY_POINT_GROUP", "KINDS", "RegistryError", "get", "load_plugins", "names",
           "plugin_setup", "register"]
