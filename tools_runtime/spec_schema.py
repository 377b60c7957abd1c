"""The published JSON Schemas of an environment (a Workflow with its spec fields) and of a Task.

The extraction and task roles answer in these schemas (structured output), so they stay within what
a llama.cpp JSON grammar can enforce: every `$ref` is inlined (the models are not recursive), every
string and list has a bound, and free-form parts (a tool's parameter schema, an argument value) are
plain objects or any value. `docs/formats/*.schema.json` are these functions' output, written by
`write_schemas`; a test keeps them equal.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tools_runtime.environment import SPEC_VERSION
from tools_runtime.formula import MAX_EXPR_CHARS
from tools_runtime.records import Workflow
from tools_runtime.tasks import Task

SHORT = 120  # identifiers: names, keys, codes, fields
LONG = 1_000  # sentences, descriptions, quotes
# A grammar expands `{0,n}` into about n rules, so bounds stay as small as the content allows.
LONGER = {"execution_graph": 2_000, "instruction": 2_000, "formula": MAX_EXPR_CHARS, "expr": MAX_EXPR_CHARS}
MAX_ITEMS = 200
_SHORT_NAMES = {"id", "name", "key", "entity", "field", "param", "tool", "code", "kind", "match", "rule",
                "error", "env_id", "task_id", "doc_id", "spec_version", "domain", "platform", "operator", "parent"}


def _inline(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 40:
        raise ValueError("schema nesting too deep to inline (a recursive model?)")
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            merged = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs, depth + 1)
        return {k: _inline(v, defs, depth + 1) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, depth + 1) for v in node]
    return node


def _bound(node: Any, name: str = "") -> Any:
    """Add length bounds to every string and list that has none (named by the property they hold)."""
    if isinstance(node, list):
        return [_bound(v, name) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {p: _bound(s, p) for p, s in v.items()}
        elif k in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[k] = _bound(v, name)
        else:
            out[k] = v
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out and "const" not in out:
        out["maxLength"] = SHORT if name in _SHORT_NAMES else LONGER.get(name, LONG)
    if out.get("type") == "array" and "maxItems" not in out and "prefixItems" not in out:
        out["maxItems"] = MAX_ITEMS
    return out


def model_schema(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    """A model's JSON Schema with every `$ref` inlined and every string and list bounded."""
    raw = model.model_json_schema()
    defs = raw.get("$defs", {})
    body = _bound(_inline(raw, defs))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "description": description, **{k: v for k, v in body.items() if k not in ("title", "description")}}


def environment_schema() -> dict[str, Any]:
    """The JSON Schema of an environment spec (a Workflow with effects, entities, initial state, policy)."""
    return model_schema(Workflow, f"gem-agents environment (spec version {SPEC_VERSION})",
                        "Capability-level tools with declared effects on typed entities, an initial state whose "
                        "values carry their provenance, the policy, and the execution graph.")


def task_schema() -> dict[str, Any]:
    """The JSON Schema of a Task (instruction, known info, gold actions, criteria)."""
    return model_schema(Task, f"gem-agents task (spec version {SPEC_VERSION})",
                        "One user goal in one environment: the instruction, what the user knows, the gold "
                        "actions and the criteria that judge the dialogue.")


SCHEMAS = {"environment.schema.json": environment_schema, "task.schema.json": task_schema}


def write_schemas(folder: str | Path) -> list[Path]:
    """Write every published schema into `folder` (docs/formats); the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fn in SCHEMAS.items():
        path = out / name
        path.write_text(json.dumps(fn(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m tools_runtime.spec_schema docs/formats
    import sys

    for p in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "docs/formats"):
        print(p)
