"""The stateful simulated backend: typed in-memory collections that extracted tools act on.

A tool never gets a result the state contradicts: reads return stored records, writes change
them, and broken preconditions (no such record, not logged in, duplicate key, already cancelled)
come back as realistic error results, never as exceptions. State is plain JSON:

    {"collections": {entity: {record_id: {field: value}}},
     "session": {"logged_in": bool, "user": str | None, "credentials": {user: password}},
     "counters": {entity: int}}
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from tools_runtime.binding import QUERY_ARGS, Binding, bind_tools
from tools_runtime.environment import Entity, ToolEffect
from tools_runtime.state import canonical_json, diff_states, json_copy, state_hash
from tools_runtime.toolspec import ToolSpec


@dataclass
class Outcome:
    """What a backend returns for one call: a result, or an error with a code and a message."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    diff: list[dict[str, Any]] = field(default_factory=list)


def error(code: str, message: str, param: str | None = None) -> Outcome:
    """A failed outcome in the shape every backend and the executor use."""
    err: dict[str, Any] = {"code": code, "message": message}
    if param:
        err["param"] = param
    return Outcome(ok=False, error=err)


class Backend(Protocol):
    """What the executor needs from any backend (ours, or a user's Python class)."""

    def execute(self, tool: str, arguments: dict[str, Any]) -> Outcome: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snap: dict[str, Any]) -> None: ...

    def view(self) -> dict[str, Any]: ...

    def state_hash(self) -> str: ...


def empty_state() -> dict[str, Any]:
    """A backend state with no records and nobody logged in."""
    return {"collections": {}, "session": {"logged_in": False, "user": None, "credentials": {}}, "counters": {}}


def human(entity: str) -> str:
    """`cart_item` → `Cart item`, for error messages."""
    return entity.replace("_", " ").capitalize()


def same(a: Any, b: Any) -> bool:
    """Loose equality used to match records: case-insensitive strings, '12' equals 12."""
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str | int | float) and isinstance(b, str | int | float):
        return str(a).strip().casefold() == str(b).strip().casefold()
    return a == b


def id_prefix(entity: str) -> str:
    """A short upper-case prefix for generated record ids (`order` → `ORD`)."""
    letters = "".join(w[:3] for w in entity.split("_"))[:5]
    return letters.upper() or "REC"


def pseudo_number(*parts: Any) -> float:
    """A stable number derived from the arguments (compute tools need a deterministic answer)."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()
    return round(int(digest[:8], 16) % 100000 / 100, 2)


class SimBackend:
    """The built-in backend: tools bound by name/schema to operations on JSON collections."""

    def __init__(self, tools: list[ToolSpec], state: dict[str, Any] | None = None,
                 session_required: set[str] | frozenset[str] = frozenset(),
                 effects: dict[str, ToolEffect] | None = None, entities: list[Entity] | None = None):
        from tools_runtime.effects import EffectRunner  # effects.py builds on this module

        self.tools = {t.name: t for t in tools}
        self.bindings = bind_tools(tools, session_required)
        # Tools with a declared effect (environment spec) run from it; the rest keep the name binding.
        self.effects = EffectRunner({k: v for k, v in (effects or {}).items() if k in self.tools},
                                    list(entities or []))
        self.state = json_copy(state) if state is not None else empty_state()
        for key, default in empty_state().items():
            self.state.setdefault(key, default)

    # -- the Backend protocol -------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state."""
        return json_copy(self.state)

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state with a snapshot."""
        self.state = json_copy(snap)

    def view(self) -> dict[str, Any]:
        """The state as a person reads it (the same JSON)."""
        return self.state

    def state_hash(self) -> str:
        """The canonical hash of the state."""
        return state_hash(self.state)

    def execute(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        """Run one already-validated call and return its outcome with the state diff."""
        if tool in self.effects.effects:
            return self.effects.run(self.state, tool, arguments)
        b = self.bindings.get(tool)
        if b is None:
            return error("unknown_tool", f"Unknown tool '{tool}'.")
        session = self.state["session"]
        if b.requires_session and not session.get("logged_in"):
            return error("unauthorized", "Authentication required: please log in first.")
        touched = self._touched(b)
        before = copy.deepcopy(touched)
        handler = _HANDLERS[b.op]
        out = handler(self, b, arguments)
        if out.ok:
            out.diff = [dict(d, path=f"{prefix}{d['path']}") for prefix, old, new in zip(
                touched.keys(), before.values(), self._touched(b).values(), strict=True)
                for d in diff_states(old, new)]
        return out

    # -- helpers used by the operation handlers --------------------------------------------
    def _touched(self, b: Binding) -> dict[str, Any]:
        # Only the parts an operation can change are compared, so a diff costs O(collection).
        cols = self.state["collections"]
        return {
            f"/collections/{b.entity}": cols.get(b.entity, {}),
            "/session": self.state["session"],
            "/counters": self.state["counters"],
        }

    def collection(self, entity: str, create: bool = False) -> dict[str, dict[str, Any]]:
        """The records of one entity (created empty on demand when `create`)."""
        cols = self.state["collections"]
        if create:
            return cols.setdefault(entity, {})
        return cols.get(entity, {})

    def find(self, b: Binding, selectors: dict[str, Any]) -> list[str]:
        """Ids of the records of `b.entity` matching every selector."""
        records = self.collection(b.entity)
        if not selectors:
            return sorted(records)
        hits = []
        for rid, rec in sorted(records.items()):
            if all(_matches_selector(rid, rec, b, k, v) for k, v in selectors.items()):
                hits.append(rid)
        return hits

    def check_references(self, b: Binding, args: dict[str, Any]) -> Outcome | None:
        """Foreign keys (`x_id` of another seeded entity) must name an existing record."""
        cols = self.state["collections"]
        for key, value in args.items():
            if not key.endswith("_id") or key == b.id_field:
                continue
            other = key[:-3]
            if other != b.entity and other in cols and cols[other]:
                if not any(_matches_selector(rid, rec, None, key, value) for rid, rec in cols[other].items()):
                    return error("not_found", f"{human(other)} '{value}' was not found.", key)
        return None

    def new_id(self, b: Binding, args: dict[str, Any]) -> Any:
        """The id of a record about to be created (given by the caller, or the next counter)."""
        if b.id_field in args:
            return args[b.id_field]
        counters = self.state["counters"]
        counters[b.entity] = counters.get(b.entity, 0) + 1
        spec = self.tools.get(b.tool)
        id_schema = spec.properties.get(b.id_field, {}) if spec else {}
        if id_schema.get("type") == "integer":
            return 1000 + counters[b.entity]
        return f"{id_prefix(b.entity)}-{9000 + counters[b.entity]}"


def _matches_selector(rid: str, rec: dict[str, Any], b: Binding | None, key: str, value: Any) -> bool:
    if (b is not None and key == b.id_field) or key == "id":
        return same(rid, value) or same(rec.get(key, rec.get("id")), value)
    if key in rec:
        return same(rec[key], value)
    # A selector the record type lacks (e.g. `file_name` vs field `name`) matches by suffix.
    for field_name, field_value in rec.items():
        if key.endswith(field_name) or field_name.endswith(key):
            return same(field_value, value)
    return same(rid, value)


def _record_out(b: Binding, rid: Any, rec: dict[str, Any]) -> dict[str, Any]:
    return {b.id_field: rid, **{k: v for k, v in rec.items() if k != b.id_field}}


def _op_read(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    records = be.collection(b.entity)
    if b.selectors:
        key = b.selectors[0]
        hits = be.find(b, {key: args[key]}) if key in args else []
        if not hits:
            return error("not_found", f"{human(b.entity)} '{args.get(key)}' was not found.", key)
        return Outcome(ok=True, result=_record_out(b, hits[0], records[hits[0]]))
    results = []
    limit = None
    for rid, rec in sorted(records.items()):
        ok = True
        for key, value in args.items():
            if key in ("limit", "max_results", "top_k", "page_size") and isinstance(value, int):
                limit = value
                continue
            if key in QUERY_ARGS:
                ok = isinstance(value, str) and any(
                    value.strip().casefold() in str(v).casefold() for v in [rid, *rec.values()] if isinstance(v, str | int))
            elif key in rec or key.endswith("_id"):
                ok = _matches_selector(rid, rec, b, key, value)
            if not ok:
                break
        if ok:
            results.append(_record_out(b, rid, rec))
    if limit is not None and limit >= 0:
        results = results[:limit]
    return Outcome(ok=True, result={"results": results, "count": len(results)})


def _op_create(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    bad_ref = be.check_references(b, args)
    if bad_ref:
        return bad_ref
    records = be.collection(b.entity, create=True)
    if b.id_field in args and any(same(r, args[b.id_field]) for r in records):
        return error("conflict", f"{human(b.entity)} '{args[b.id_field]}' already exists.", b.id_field)
    rid = be.new_id(b, args)
    rec = {k: copy.deepcopy(v) for k, v in args.items() if k != b.id_field}
    records[str(rid)] = rec
    return Outcome(ok=True, result=_record_out(b, rid, rec))


def _new_field(rec: dict[str, Any], b: Binding, key: str) -> str:
    # `new_name` writes the field the selector names (`file_name`) when the record has no `name`.
    if not key.startswith("new_"):
        return key
    bare = key[4:]
    if bare in rec:
        return bare
    for sel in b.selectors:
        if sel.endswith(bare) and sel in rec:
            return sel
    return bare


def _op_update(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    selectors = {k: args[k] for k in b.selectors if k in args}
    records = be.collection(b.entity, create=not selectors)
    if selectors:
        hits = be.find(b, selectors)
        if not hits:
            key = next(iter(selectors))
            return error("not_found", f"{human(b.entity)} '{selectors[key]}' was not found.", key)
        rid = hits[0]
    else:
        rid = "default"
        records.setdefault(rid, {})
    rec = records[rid]
    for key in b.values:
        if key in args:
            rec[_new_field(rec, b, key)] = copy.deepcopy(args[key])
    if b.mode:
        rec["enabled"] = b.mode == "enable"
    return Outcome(ok=True, result=_record_out(b, rid, rec))


def _op_delete(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    selectors = {k: args[k] for k in b.selectors if k in args}
    records = be.collection(b.entity)
    if not selectors and records:
        # `clear_cart()`: no selector means every record of the entity.
        ids = sorted(records)
        for rid in ids:
            if b.mode == "cancel":
                records[rid]["status"] = "cancelled"
            else:
                del records[rid]
        return Outcome(ok=True, result={"status": "cancelled" if b.mode == "cancel" else "deleted",
                                        "count": len(ids)})
    hits = be.find(b, selectors) if selectors else []
    if not hits:
        key = next(iter(selectors), None)
        what = f" '{selectors[key]}'" if key else ""
        return error("not_found", f"{human(b.entity)}{what} was not found.", key)
    rid = hits[0]
    if b.mode == "cancel":
        if records[rid].get("status") == "cancelled":
            return error("conflict", f"{human(b.entity)} '{rid}' is already cancelled.", next(iter(selectors)))
        records[rid]["status"] = "cancelled"
        return Outcome(ok=True, result={b.id_field: rid, "status": "cancelled"})
    del records[rid]
    return Outcome(ok=True, result={b.id_field: rid, "status": "deleted"})


def credential_args(names: list[str]) -> tuple[str | None, str | None]:
    """Which arguments of a login tool carry the user name and the secret."""
    user = secret = None
    for key in names:
        k = key.lower()
        if secret is None and any(s in k for s in ("pass", "pin", "secret", "token", "otp")):
            secret = key
        elif user is None and any(s in k for s in ("user", "email", "login", "account", "name", "phone")):
            user = key
    if user is None:
        user = next((k for k in names if k != secret), None)
    return user, secret


def _op_session(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    session = be.state["session"]
    if b.mode == "logout":
        if not session.get("logged_in"):
            return error("invalid_state", "No active session: you are not logged in.")
        session["logged_in"] = False
        session["user"] = None
        return Outcome(ok=True, result={"status": "logged_out"})
    user_key, secret_key = credential_args(list(args))
    user = args.get(user_key) if user_key else None
    creds = session.get("credentials") or {}
    if creds and user is not None:
        match = next((u for u in creds if same(u, user)), None)
        if match is None:
            return error("unauthorized", f"No account found for '{user}'.", user_key)
        if secret_key and not same(creds[match], args.get(secret_key)):
            return error("unauthorized", "Invalid credentials: the password does not match.", secret_key)
    session["logged_in"] = True
    session["user"] = user
    return Outcome(ok=True, result={"status": "logged_in", "user": user})


def _op_compute(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    return Outcome(ok=True, result={"result": pseudo_number(b.tool, args), "inputs": copy.deepcopy(args)})


def _op_action(be: SimBackend, b: Binding, args: dict[str, Any]) -> Outcome:
    records = be.collection(b.entity, create=True)
    sel = next((k for k in args if k.endswith(("_id", "_name")) or k in ("id", "name")), None)
    rid = str(args[sel]) if sel else "default"
    rec = records.setdefault(rid, {})
    for key, value in args.items():
        rec[key] = copy.deepcopy(value)
    rec["last_action"] = b.verb
    rec["times"] = int(rec.get("times", 0)) + 1
    return Outcome(ok=True, result={"status": "done", "action": b.verb, "target": b.entity, **copy.deepcopy(args)})


_HANDLERS = {
    "read": _op_read,
    "create": _op_create,
    "update": _op_update,
    "delete": _op_delete,
    "session": _op_session,
    "compute": _op_compute,
    "action": _op_action,
}
