"""What every export format starts from: a run's verified trajectories as clean OpenAI chat records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from gem_agents.io import OutputError, write_text
from gem_agents.run.store import RunStore
from tools_runtime.records import Trajectory

# The keys an OpenAI chat message may carry; simulator-only keys (stop flags) are dropped.
MESSAGE_KEYS = {"system": ("role", "content"), "user": ("role", "content"),
                "assistant": ("role", "content", "tool_calls"), "tool": ("role", "tool_call_id", "name", "content")}


def clean_message(m: dict[str, Any]) -> dict[str, Any]:
    """One message with only OpenAI chat fields; content always a string; tool calls as function calls."""
    role = m.get("role", "")
    out: dict[str, Any] = {k: m[k] for k in MESSAGE_KEYS.get(role, ("role", "content")) if k in m}
    out["content"] = "" if m.get("content") is None else str(m.get("content"))
    if role == "assistant":
        calls = [{"id": c.get("id", ""), "type": "function",
                  "function": {"name": c["function"]["name"],
                               "arguments": c["function"]["arguments"] if isinstance(c["function"]["arguments"], str)
                               else json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                 for c in m.get("tool_calls") or []]
        if calls:
            out["tool_calls"] = calls
        else:
            out.pop("tool_calls", None)
    return out


def openai_record(traj: Trajectory) -> dict[str, Any]:
    """`{"messages": [...], "tools": [...]}` — the OpenAI / TRL chat record of a trajectory."""
    return {"messages": [clean_message(m) for m in traj.messages], "tools": list(traj.tools)}


# `gem export --min-judge X`: while set, trajectories whose judge score is below X (or that no judge
# scored) are left out by every format. A context variable, so the format modules need no new argument.
MIN_JUDGE: ContextVar[float | None] = ContextVar("MIN_JUDGE", default=None)


def judge_passes(traj: Trajectory, min_score: float | None) -> bool:
    """True when no gate is set, or the trajectory's judge score reaches it."""
    if min_score is None:
        return True
    score = traj.provenance.judge.get("score")
    return isinstance(score, int | float) and score >= min_score


def verified_trajectories(run_dir: str | Path, *, include_offline: bool = True) -> Iterator[tuple[str, Trajectory]]:
    """(kind, trajectory) for every verified trajectory of a run, in store order.

    `include_offline=False` leaves out what the offline stand-ins wrote (`provenance.offline`): test
    doubles' output is not training data unless asked for.
    """
    store = RunStore(run_dir, readonly=True)
    try:
        kinds = store.trajectory_kinds()
        rows = list(store.trajectories(verified_only=True))
    finally:
        store.close()
    gate = MIN_JUDGE.get()
    for t in rows:
        if (include_offline or not t.provenance.offline) and judge_passes(t, gate):
            yield kinds.get(t.id, "original"), t


def offline_verified(run_dir: str | Path) -> int:
    """How many verified trajectories of a run the offline stand-ins wrote."""
    return sum(1 for _, t in verified_trajectories(run_dir) if t.provenance.offline)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so a reader never sees half of it (io.write_text: checked target, temp file, fsync, rename)."""
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{path}: is a folder; this format writes one file (give a file path)")
    write_text(path, text)
