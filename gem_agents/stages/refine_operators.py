"""The refinement operators as registry entries, and the lookups every caller resolves names through.

The built-in operators are plain functions in `tools_runtime` (which may not import gem_agents):
the scenario operators of `refine_ops.OPS` and the task operators of `refine_tasks.TASK_OPS`. They
are registered here, in their composition order, as `refine_operator`s; a plugin registers its own
`RefineOperator` the same way and is then accepted by `refine_ops:` and `gem refine --ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gem_agents import registry
from gem_agents.registry import RefineOperator, register
from tools_runtime.refine_ops import OPS
from tools_runtime.refine_tasks import TASK_OPS

TARGETS = ("scenario", "task")

for _name, _fn in OPS.items():
    register("refine_operator", _name, RefineOperator(name=_name, target="scenario", apply=_fn,
                                                      description=(_fn.__doc__ or "").strip().split("\n")[0]))
for _name, _task_fn in TASK_OPS.items():
    register("refine_operator", _name, RefineOperator(name=_name, target="task", apply=_task_fn,
                                                      description=(_task_fn.__doc__ or "").strip().split("\n")[0]))


def operators(target: str) -> dict[str, Callable[..., Any]]:
    """Name → function of every registered operator on `target`, built-ins first in their composition order."""
    if target not in TARGETS:
        raise ValueError(f"unknown operator target {target!r}; targets are {', '.join(TARGETS)}")
    builtin = list(OPS if target == "scenario" else TASK_OPS)
    found = {n: registry.get("refine_operator", n) for n in registry.names("refine_operator")}
    order = [n for n in builtin if n in found] + sorted(n for n in found if n not in builtin)
    return {n: found[n].apply for n in order if found[n].target == target}


def scenario_operators() -> dict[str, Callable[..., Any]]:
    """The operators that rewrite a scenario (tools_runtime.refine_ops.apply_ops takes this mapping)."""
    return operators("scenario")


def task_operators() -> dict[str, Callable[..., Any]]:
    """The operators that rewrite a grounded task (tools_runtime.refine_tasks.refine_candidates takes this)."""
    return operators("task")


def known_operators() -> list[str]:
    """Every registered operator name, scenario operators first."""
    return [*scenario_operators(), *task_operators()]


def unknown_operators(names: Iterable[str]) -> list[str]:
    """The names among `names` that no registered operator has (empty when all are known)."""
    known = set(registry.names("refine_operator"))
    return [n for n in names if n not in known]


__all__ = ["known_operators", "operators", "scenario_operators", "task_operators", "unknown_operators"]
