"""A Hugging Face `datasets` dataset on disk (`Dataset.load_from_disk(out)`), columns id, kind, messages, tools.

`messages` and `tools` keep their exact JSON shape (the `Json` feature of recent datasets; older
versions get JSON strings), so `messages` + `tools` feed TRL's chat-template path unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gem_agents.export.records import openai_record, verified_trajectories
from gem_agents.io import check_output
from gem_agents.registry import register


@register("export_format", "hf")
def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict[str, Any]:
    """Save the verified trajectories of `run_dir` as a dataset folder `out` (replaced when it exists)."""
    try:
        import datasets
    except ImportError as exc:
        raise RuntimeError("the hf format needs the 'export' extra: pip install 'gem-agents[export]'") from exc
    datasets.disable_progress_bars()
    rows = []
    for kind, traj in verified_trajectories(run_dir, include_offline=include_offline):
        rec = openai_record(traj)
        rows.append({"id": traj.id, "kind": kind, "messages": rec["messages"], "tools": rec["tools"]})
    json_feature = getattr(datasets, "Json", None)
    if json_feature is not None:
        features = datasets.Features({"id": datasets.Value("string"), "kind": datasets.Value("string"),
                                      "messages": datasets.List(json_feature()),
                                      "tools": datasets.List(json_feature())})
        encoding = "json_feature"
    else:  # pragma: no cover - older datasets
        rows = [{**r, "messages": json.dumps(r["messages"]), "tools": json.dumps(r["tools"])} for r in rows]
        features = datasets.Features({k: datasets.Value("string") for k in ("id", "kind", "messages", "tools")})
        encoding = "json_string"
    ds = datasets.Dataset.from_list(rows, features=features)
    check_output(out, folder=True)  # never a run directory, a symlink or a device
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.save_to_disk(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"format": "hf", "out": str(out), "trajectories": len(rows), "encoding": encoding}
