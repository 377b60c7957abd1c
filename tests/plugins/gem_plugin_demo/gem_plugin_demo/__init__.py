"""A demo plugin: the `demo_fixed` provider (fixed answers, no model, no network) and the `demo_lines` format.

Installed as a distribution with an entry point in the group `gem_agents.plugins`, it is loaded the
first time gem_agents looks up an extension, and then a config can say `provider: demo_fixed` and
`gem export --format demo_lines` works — without any change to gem_agents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gem_agents.registry import Provider, register


class FixedSettings(BaseModel):
    """The keys `demo_fixed` adds to a role's block."""

    model_config = ConfigDict(extra="forbid")

    reply: str = ""  # the content of every answer; empty: an object shaped by the requested JSON schema
    text: str = "demo answer"  # the value of every string field of that object


def from_schema(schema: dict[str, Any], text: str) -> Any:
    """A value a JSON schema accepts: every boolean true, every string `text`, every number 1."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: from_schema(v, text) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 1
    if "enum" in schema:
        return schema["enum"][0]
    return text


def fixed_completer(cfg: Any, role: str = "") -> Any:
    """A completer answering every call with the configured reply (or a schema-shaped object)."""
    reply, text = cfg.setting("reply", ""), cfg.setting("text", "demo answer")

    async def complete(messages: list[dict[str, Any]], spec: Any) -> tuple[dict[str, Any], dict[str, int]]:
        if spec.json_schema is not None and not reply:
            content = json.dumps(from_schema(spec.json_schema, text))
        else:
            content = reply or text
        return {"role": "assistant", "content": content}, {"input_tokens": sum(len(str(m.get("content") or ""))
                                                                             for m in messages) // 4,
                                                          "output_tokens": len(content) // 4}

    return complete


register("provider", "demo_fixed", Provider(
    name="demo_fixed", factory=fixed_completer, settings=FixedSettings, capabilities=frozenset({"json_schema"}),
    description="fixed answers for tests and demos (no model)"))


@register("export_format", "demo_lines")
def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict[str, Any]:
    """One JSON line per verified trajectory: its id, whether original or refined, and its message count."""
    from gem_agents.export.records import verified_trajectories
    from gem_agents.io import write_text

    rows = [json.dumps({"id": t.id, "kind": kind, "messages": len(t.messages)})
            for kind, t in verified_trajectories(run_dir, include_offline=include_offline)]
    write_text(out, "".join(r + "\n" for r in rows))
    return {"format": "demo_lines", "out": str(out), "trajectories": len(rows)}
