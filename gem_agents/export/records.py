"""What every export format starts from: a run's verified trajectories as clean OpenAI chat records."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def verified_trajectories(run_dir: str | Path) -> Iterator[tuple[str, Trajectory]]:
    """(kind, trajectory) for every verified trajectory of a run, in store order."""
    store = RunStore(run_dir, readonly=True)
    try:
        kinds = store.trajectory_kinds()
        rows = list(store.trajectories(verified_only=True))
    finally:
        store.close()
    for t in rows:
        yield kinds.get(t.id, "original"), t


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so a reader never sees half of it (io.write_text: checked target, temp file, fsync, rename)."""
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{path}: is a folder; this format writes one file (give a file path)")
    write_text(path, text)
