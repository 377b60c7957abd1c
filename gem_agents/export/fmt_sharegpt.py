"""ShareGPT JSON as LLaMA-Factory reads it (`formatting: sharegpt`, tool use).

Each record is `{"conversations": [{"from": human|gpt|function_call|observation, "value": str}],
"tools": "<JSON string of function specs>", "system": str}`. LLaMA-Factory wants the turns to
alternate (human/observation, then gpt/function_call); parallel calls go in one `function_call`
as a JSON list and their results in one `observation` as a JSON list. Assistant text sent together
with tool calls has no ShareGPT slot and is dropped (counted in the summary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gem_agents.export.records import atomic_write_text, openai_record, verified_trajectories
from gem_agents.registry import register

PROMPT_SIDE = ("human", "observation")


def _args(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def to_sharegpt(record: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """(ShareGPT record or None when it cannot alternate, texts dropped) for one OpenAI chat record."""
    system = ""
    turns: list[dict[str, str]] = []
    dropped = 0
    pending_results: list[str] = []

    def flush_results() -> None:
        if pending_results:
            value = pending_results[0] if len(pending_results) == 1 else json.dumps(
                [_args(r) for r in pending_results], ensure_ascii=False)
            turns.append({"from": "observation", "value": value})
            pending_results.clear()

    for m in record["messages"]:
        role = m["role"]
        if role != "tool":
            flush_results()
        if role == "system":
            system = m["content"] if not system else system + "\n\n" + m["content"]
        elif role == "user":
            turns.append({"from": "human", "value": m["content"]})
        elif role == "assistant" and m.get("tool_calls"):
            dropped += bool(m["content"].strip())
            calls = [{"name": c["function"]["name"], "arguments": _args(c["function"]["arguments"])}
                     for c in m["tool_calls"]]
            turns.append({"from": "function_call",
                          "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
        elif role == "assistant":
            turns.append({"from": "gpt", "value": m["content"]})
        elif role == "tool":
            pending_results.append(m["content"])
    flush_results()
    # Merge same-side neighbours (two user turns, two replies) so the turns alternate.
    merged: list[dict[str, str]] = []
    for t in turns:
        if merged and merged[-1]["from"] == t["from"] and t["from"] in ("human", "gpt"):
            merged[-1] = {"from": t["from"], "value": merged[-1]["value"] + "\n\n" + t["value"]}
        else:
            merged.append(t)
    while merged and merged[-1]["from"] in PROMPT_SIDE:  # a record ends on the model's side
        merged.pop()
    if not merged or len(merged) % 2:
        return None, dropped
    for i, t in enumerate(merged):
        if (t["from"] in PROMPT_SIDE) != (i % 2 == 0):
            return None, dropped
    tools = [t.get("function", t) for t in record["tools"]]
    out: dict[str, Any] = {"conversations": merged, "tools": json.dumps(tools, ensure_ascii=False)}
    if system:
        out["system"] = system
    return out, dropped


def from_sharegpt(rec: dict[str, Any]) -> dict[str, Any]:
    """Back to an OpenAI chat record (call ids are made up as `call_<n>`)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": rec["system"]}] if rec.get("system") else []
    last_ids: list[tuple[str, str]] = []
    n = 0
    for t in rec["conversations"]:
        if t["from"] == "human":
            messages.append({"role": "user", "content": t["value"]})
        elif t["from"] == "gpt":
            messages.append({"role": "assistant", "content": t["value"]})
        elif t["from"] == "function_call":
            calls = json.loads(t["value"])
            calls = calls if isinstance(calls, list) else [calls]
            last_ids = []
            tool_calls = []
            for c in calls:
                n += 1
                last_ids.append((f"call_{n}", c["name"]))
                args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"],
                                                                                          ensure_ascii=False)
                tool_calls.append({"id": f"call_{n}", "type": "function",
                                   "function": {"name": c["name"], "arguments": args}})
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        elif t["from"] == "observation":
            values = [t["value"]]
            if len(last_ids) > 1:
                values = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                          for v in json.loads(t["value"])]
            for (cid, name), v in zip(last_ids, values, strict=False):
                messages.append({"role": "tool", "tool_call_id": cid, "name": name, "content": v})
    tools = [{"type": "function", "function": f} for f in json.loads(rec.get("tools") or "[]")]
    return {"messages": messages, "tools": tools}


@register("export_format", "sharegpt")
def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict[str, Any]:
    """Write the verified trajectories of `run_dir` as one ShareGPT JSON array to `out`."""
    records = []
    skipped = 0
    dropped = 0
    for _, traj in verified_trajectories(run_dir, include_offline=include_offline):
        rec, d = to_sharegpt(openai_record(traj))
        dropped += d
        if rec is None:
            skipped += 1
        else:
            records.append(rec)
    atomic_write_text(out, json.dumps(records, ensure_ascii=False, indent=1))
    return {"format": "sharegpt", "out": str(out), "trajectories": len(records), "skipped": skipped,
            "dropped_texts": dropped,
            "dataset_info": {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools",
                                                                   "system": "system"}}}
