"""OpenAI chat JSONL: one `{"messages": [...], "tools": [...]}` per line (TRL's `messages` + `tools`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gem_agents.export.records import atomic_write_text, openai_record, verified_trajectories
from gem_agents.registry import register


@register("export_format", "openai")
def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict[str, Any]:
    """Write every verified trajectory of `run_dir` to the JSONL file `out`."""
    lines = []
    kinds: dict[str, int] = {}
    for kind, traj in verified_trajectories(run_dir, include_offline=include_offline):
        lines.append(json.dumps(openai_record(traj), ensure_ascii=False))
        kinds[kind] = kinds.get(kind, 0) + 1
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {"format": "openai", "out": str(out), "trajectories": len(lines), "by_kind": kinds}
