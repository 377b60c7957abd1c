"""Complexity statistics of trajectories, in the shape of the paper's refinement table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tools_runtime.records import Stats


def compute_stats(messages: list[dict[str, Any]], errors_recovered: int = 0) -> Stats:
    """Messages (system excluded), user turns, distinct tools called, tool calls."""
    names: list[str] = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and fn.get("name"):
                names.append(str(fn["name"]))
    return Stats(
        messages=sum(1 for m in messages if m.get("role") != "system"),
        user_turns=sum(1 for m in messages if m.get("role") == "user"),
        tool_types=len(set(names)),
        tool_calls=len(names),
        errors_recovered=errors_recovered,
    )


STAT_FIELDS = ("messages", "user_turns", "tool_types", "tool_calls", "errors_recovered")


def mean_stats(stats: Iterable[Stats]) -> dict[str, float]:
    """Mean of each figure over many trajectories (0 for an empty set), rounded to 2 places."""
    rows = list(stats)
    if not rows:
        return {f: 0.0 for f in STAT_FIELDS} | {"n": 0}
    out: dict[str, float] = {f: round(sum(getattr(s, f) for s in rows) / len(rows), 2) for f in STAT_FIELDS}
    out["n"] = len(rows)
    return out
