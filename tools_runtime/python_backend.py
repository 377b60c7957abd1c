"""A user's Python classes as an executable backend: their public methods are the tools.

This is how BFCL's backends (`bfcl-eval`: GorillaFileSystem, TravelAPI, …) and tau2-style
environments plug in. The state of such objects is not JSON, so a snapshot is the replay log
(initial config + successful calls) and restoring re-creates the instances and replays it; the
state a person sees and the hash come from the instances' public attributes, which is also what
BFCL compares.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Any

from tools_runtime.backend import Outcome, error
from tools_runtime.state import diff_states, state_hash, to_jsonable


class UntrustedBackend(ValueError):
    """A Python backend named by data (a trajectory, a run record, a cache, a model answer): never imported."""


# Class paths a person allowed in this process: named by a workflow file they passed on the command line,
# an explicit flag, or the code that calls us. Anything else that names a class is data, and data never
# imports code (a trajectory line naming `code:InteractiveInterpreter` would otherwise run what it likes).
_TRUSTED: set[str] = set()


def trust_classes(paths: list[str] | tuple[str, ...]) -> None:
    """Allow these `module:Class` paths to be imported as backends (a user's own choice)."""
    _TRUSTED.update(paths)


def is_trusted(paths: list[str] | tuple[str, ...]) -> bool:
    """True when every class path was allowed by `trust_classes`."""
    return all(p in _TRUSTED for p in paths)


def load_class(path: str) -> type:
    """Import `package.module:ClassName` (a user's configured backend, never model output)."""
    if path not in _TRUSTED:
        raise UntrustedBackend(
            f"backend class {path!r} comes from data, not from a workflow file you passed: a Python backend "
            "is only imported from a workflow given on the command line (--workflow) or by the calling code")
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"backend class must look like 'package.module:ClassName', got {path!r}")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"{path!r}: no class {class_name!r} in module {module_name!r}")
    return cls


def public_methods(obj: Any) -> dict[str, Any]:
    """Public bound methods of an instance: the tools it offers."""
    return {name: m for name, m in inspect.getmembers(obj, inspect.ismethod) if not name.startswith("_")}


class PythonBackend:
    """Backend over instances of user classes; `initial_config` maps class name → scenario dict."""

    def __init__(self, classes: list[type] | list[str], initial_config: dict[str, Any] | None = None):
        self.classes = [load_class(c) if isinstance(c, str) else c for c in classes]
        self.initial_config = copy.deepcopy(initial_config or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._fresh()

    def _fresh(self) -> None:
        self.instances = []
        for cls in self.classes:
            inst = cls()
            loader = getattr(inst, "_load_scenario", None)
            if callable(loader):
                loader(copy.deepcopy(self.initial_config.get(cls.__name__, {})))
            self.instances.append(inst)
        self.methods: dict[str, Any] = {}
        for inst in self.instances:
            for name, method in public_methods(inst).items():
                self.methods.setdefault(name, method)

    def _call(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        method = self.methods.get(tool)
        if method is None:
            return error("unknown_tool", f"Unknown tool '{tool}'.")
        try:
            result = method(**arguments)
        except TypeError as exc:
            return error("invalid_arguments", str(exc))
        except Exception as exc:  # a user's backend raising is a tool error, never a crash
            return error("execution_error", f"{type(exc).__name__}: {exc}")
        result = to_jsonable(result)
        # BFCL's backends report failures as a returned {"error": "..."} rather than raising.
        if isinstance(result, dict) and set(result) == {"error"}:
            return error("execution_error", str(result["error"]))
        return Outcome(ok=True, result=result)

    def execute(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        """Call the method named `tool`; record it for replay when it succeeded."""
        before = self.view()
        out = self._call(tool, arguments)
        if out.ok:
            self.calls.append((tool, copy.deepcopy(arguments)))
            out.diff = diff_states(before, self.view())
        return out

    def snapshot(self) -> dict[str, Any]:
        """The replay log: enough to rebuild this exact state."""
        return {"initial_config": copy.deepcopy(self.initial_config),
                "calls": [[t, copy.deepcopy(a)] for t, a in self.calls]}

    def restore(self, snap: dict[str, Any]) -> None:
        """Re-create the instances and replay the logged calls."""
        self.initial_config = copy.deepcopy(snap.get("initial_config", {}))
        self.calls = []
        self._fresh()
        for tool, args in snap.get("calls", []):
            self.execute(tool, args)

    def view(self) -> dict[str, Any]:
        """Public attributes of every instance, as JSON."""
        return {type(inst).__name__: to_jsonable(inst) for inst in self.instances}

    def state_hash(self) -> str:
        """Hash of the public attributes."""
        return state_hash(self.view())
