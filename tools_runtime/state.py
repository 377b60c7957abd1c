"""Canonical JSON, state hashes and state diffs — shared by every backend and the verifier."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

_ATOMS = frozenset({str, int, float, bool, type(None)})


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars); anything else is handed to `copy.deepcopy`.

    Backends copy their whole state per tool call and per snapshot; deepcopy's memo and dispatch made
    that ~12 % of the engine's CPU (docs/throughput.md). JSON state has no shared or cyclic parts, so a
    plain recursive copy is the same copy at a fraction of the cost.
    """
    cls = type(value)
    if cls is dict:
        return {k: v if type(v) in _ATOMS else json_copy(v) for k, v in value.items()}
    if cls is list:
        return [v if type(v) in _ATOMS else json_copy(v) for v in value]
    if cls in _ATOMS:
        return value
    return copy.deepcopy(value)


def to_jsonable(value: Any, _depth: int = 0, _path: frozenset[int] = frozenset()) -> Any:
    """Turn arbitrary Python state (sets, tuples, objects with __dict__) into plain JSON values.

    Back-references (a directory's `parent`) would recurse forever, so an object already on the
    current path is written as `"<cycle>"`.
    """
    if _depth > 64:
        return repr(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if id(value) in _path:
        return "<cycle>"
    path = _path | {id(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1, path) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, _depth + 1, path) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, _depth + 1, path) for v in value]
        return sorted(items, key=canonical_json)
    if hasattr(value, "__dict__"):
        return {k: to_jsonable(v, _depth + 1, path) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def canonical_json(value: Any) -> str:
    """Deterministic compact JSON (sorted keys), the basis of every hash and comparison."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def state_hash(state: Any) -> str:
    """SHA-256 of the canonical JSON of a state (as tau2 compares databases)."""
    return hashlib.sha256(canonical_json(state).encode()).hexdigest()


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def diff_states(before: Any, after: Any, path: str = "", out: list[dict[str, Any]] | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
    """The changes from `before` to `after` as JSON-pointer paths: add, remove and replace."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            p = f"{path}/{_escape(key)}"
            if key not in after:
                out.append({"op": "remove", "path": p, "old": before[key]})
            elif key not in before:
                out.append({"op": "add", "path": p, "new": after[key]})
            elif before[key] != after[key]:
                diff_states(before[key], after[key], p, out, limit)
        return out
    if before != after:
        out.append({"op": "replace", "path": path or "/", "old": before, "new": after})
    return out


def get_path(state: Any, path: str) -> Any:
    """Read a value at a dotted or slash path (`collections.order.ORD-1.status`); KeyError if absent."""
    cur = state
    for part in [p for p in path.replace("/", ".").split(".") if p]:
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
            else:
                raise KeyError(f"no '{part}' in path '{path}'")
        else:
            raise KeyError(f"'{part}' of a non-container in path '{path}'")
    return cur


def set_path(state: Any, path: str, value: Any) -> None:
    """Write a value at a dotted or slash path, creating missing dictionaries on the way."""
    parts = [p for p in path.replace("/", ".").split(".") if p]
    if not parts:
        raise KeyError("empty path")
    cur = state
    for part in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(part)]
        else:
            cur = cur.setdefault(part, {})
    if isinstance(cur, list):
        cur[int(parts[-1])] = value
    else:
        cur[parts[-1]] = value
