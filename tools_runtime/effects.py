"""Declared effects: how the simulated backend executes a tool whose environment spec says what it does.

A tool with a `ToolEffect` (environment.py) is executed from its declaration, never from its name:

    read      the record named by the key parameter (`match` names the field compared, else the
              entity's key), or every record matching the arguments that are entity fields
              (query-like arguments search text fields); returns the `returns` fields
    create    a new record from the writes; its key from the key parameter, a written key field,
              or a generated id; a taken key is a `conflict`
    update    the writes applied to the record named by the key parameter (idempotent: writing the
              same values twice leaves the same state)
    delete    removes the record named by the key parameter, or applies its writes (soft delete,
              `status = cancelled`) when it declares some
    session   sign in (the account named by the key parameter must exist and every other argument
              that is one of its fields must match) or sign out (tools named logout/sign_out/…)
    compute   `{"result": formula(args)}`; no state change
    external  an outbound effect (an e-mail sent, a payment wired) recorded as a record of the
              effect's entity, or of `outbox`, so a verifier can check it happened

`requires_session` refuses the call until somebody signs in; each precondition is a safe expression
(formula.py) over `args`, `record` (the keyed record, `{}` when none) and `session`, and a failed one
returns its declared error code and message. Written records are validated against their entity's
schema before they are stored, so the state never holds a value its schema forbids. State keeps no
counters for declared effects: generated ids count the existing records.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tools_runtime.backend import Outcome, credential_args, error, human, id_prefix, same
from tools_runtime.binding import LOGOUT_VERBS, QUERY_ARGS, _verb_of, split_name
from tools_runtime.environment import Entity, EnvironmentSpecError, ToolEffect, record_issues
from tools_runtime.formula import FormulaError, evaluate
from tools_runtime.state import diff_states, json_copy

OUTBOX = "outbox"
LIMIT_ARGS = ("limit", "max_results", "top_k", "page_size")


def is_signout(tool: str) -> bool:
    """True when a session tool ends the session (`logout`, `sign_out`, `log_out`, `disconnect`)."""
    verb, _ = _verb_of(split_name(tool))
    return verb in LOGOUT_VERBS


def collection_name(effect: ToolEffect) -> str:
    """The collection an effect acts on (`outbox` for an external effect that names no entity)."""
    if effect.entity:
        return effect.entity
    return OUTBOX if effect.kind == "external" else ""


def record_id(entity: Entity, values: dict[str, Any]) -> str:
    """The id a record is stored under: its key field's value, as a string."""
    return str(values[entity.key])


def state_problems(entities: list[Entity], records: list[Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The backend state of an environment's initial records, and each problem as (path, reason)."""
    from tools_runtime.backend import empty_state

    state = empty_state()
    by_name = {e.name: e for e in entities}
    problems: list[tuple[str, str]] = []
    for i, rec in enumerate(records):
        where = f"initial_state[{i}]"
        ent = by_name.get(rec.entity)
        if ent is None:
            problems.append((f"{where}.entity", f"unknown entity '{rec.entity}' (entities: {sorted(by_name)})"))
            continue
        for field, message in record_issues(ent, rec.values):
            path = f"{where}.values.{field}" if field else f"{where}.values"
            problems.append((path, f"{rec.entity} record: {message}"))
        if ent.key not in rec.values:
            continue
        rid = record_id(ent, rec.values)
        col = state["collections"].setdefault(ent.name, {})
        if rid in col:
            problems.append((f"{where}.values.{ent.key}", f"duplicate {rec.entity} key '{rid}'"))
            continue
        col[rid] = copy.deepcopy(rec.values)
    for ent in entities:
        state["collections"].setdefault(ent.name, {})
    return state, problems


def spec_state(entities: list[Entity], records: list[Any]) -> dict[str, Any]:
    """The backend state of an environment's initial records; EnvironmentSpecError names bad ones."""
    state, problems = state_problems(entities, records)
    if problems:
        raise EnvironmentSpecError("; ".join(f"{path}: {reason}" for path, reason in problems))
    return state


class EffectRunner:
    """Executes declared effects on a backend's JSON state (the backend owns the state)."""

    def __init__(self, effects: dict[str, ToolEffect], entities: list[Entity]):
        self.effects = dict(effects)
        self.entities = {e.name: e for e in entities}

    def run(self, state: dict[str, Any], tool: str, args: dict[str, Any]) -> Outcome:
        """Execute `tool`'s declared effect on `state` (changed in place only on success)."""
        effect = self.effects[tool]
        work = json_copy(state)
        try:
            out = self._run(work, tool, effect, args)
        except FormulaError as exc:
            return error("invalid_value", f"Cannot complete {tool.replace('_', ' ')}: {exc}.")
        if out.ok:
            out.diff = diff_states(state, work)
            state.clear()
            state.update(work)
        return out

    # -- the steps shared by every kind ---------------------------------------------------
    def _run(self, state: dict[str, Any], tool: str, effect: ToolEffect, args: dict[str, Any]) -> Outcome:
        session = state.setdefault("session", {"logged_in": False, "user": None, "credentials": {}})
        if effect.requires_session and not session.get("logged_in"):
            return error("unauthorized", "Authentication required: please sign in first.")
        ent = self.entities.get(effect.entity)
        col_name = collection_name(effect)
        cols = state.setdefault("collections", {})
        if not col_name:
            records: dict[str, Any] = {}
        elif effect.kind in ("read", "compute", "session"):
            records = cols.get(col_name, {})  # a look-up never adds an empty collection to the state
        else:
            records = cols.setdefault(col_name, {})
        rid: str | None = None
        if effect.key and effect.kind in ("read", "update", "delete", "session", "compute"):
            if effect.kind == "session" and (is_signout(tool) or not col_name):
                pass  # signing out names nobody; a device login (no account entity) checks no record
            elif effect.key not in args and effect.kind == "read":
                pass  # an optional key left out: the read lists and filters instead
            elif effect.key not in args:
                return error("invalid_arguments", f"Missing required argument '{effect.key}'.", effect.key)
            else:
                rid = self._find(records, ent, effect, args[effect.key])
                if rid is None:
                    if effect.kind == "session":
                        return error("unauthorized", f"No account found for '{args[effect.key]}'.", effect.key)
                    what = human(effect.entity or col_name or "record")
                    return error("not_found", f"{what} '{args[effect.key]}' was not found.", effect.key)
        record = records.get(rid, {}) if rid is not None else {}
        refs: dict[str, Any] = {}
        if effect.kind in ("create", "external"):
            # Referential integrity: an argument named like another entity's key must name one of its
            # records (`send_invitation(booking_id)`); preconditions read them as `refs['booking']`.
            for param, value in args.items():
                other = self._referenced(param, effect.entity)
                if other is None:
                    continue
                found = self._find(state["collections"].get(other.name, {}), other,
                                   ToolEffect(kind="read", entity=other.name), value)
                if found is None:
                    return error("not_found", f"{human(other.name)} '{value}' was not found.", param)
                refs[other.name] = state["collections"][other.name][found]
        for pre in effect.preconditions:
            try:
                ok = bool(evaluate(pre.expr, args, record=record, session=session, refs=refs))
            except FormulaError:
                ok = False
            if not ok:
                # A rule on one argument names it, so the assistant can ask the user for that value again.
                named = [p for p in args if re.search(rf"(?<!['\"\w]){re.escape(p)}\b", pre.expr)]
                err = error(pre.error or "precondition_failed", pre.message, named[0] if len(named) == 1 else None)
                if pre.rule:
                    assert err.error is not None
                    err.error["rule"] = pre.rule
                return err
        handler = getattr(self, f"_{effect.kind}")
        return handler(state, tool, effect, ent, records, rid, args)

    def _referenced(self, param: str, own: str) -> Entity | None:
        """The other entity whose key an argument names (`payee_id` → payee), or None."""
        for ent in self.entities.values():
            if ent.name == own:
                continue
            # Only identifier-like names: an `email` argument is a value, even if accounts are keyed by it.
            if param == f"{ent.name}_id" or (param == ent.key and param.endswith(("_id", "_number", "_code"))):
                return ent
        return None

    def _find(self, records: dict[str, Any], ent: Entity | None, effect: ToolEffect, value: Any) -> str | None:
        field = effect.match or (ent.key if ent else None)
        for rid, rec in sorted(records.items()):
            if field and isinstance(rec, dict) and field in rec and same(rec[field], value):
                return rid
            if (field is None or (ent is not None and field == ent.key)) and same(rid, value):
                return rid
        return None

    def _project(self, ent: Entity | None, effect: ToolEffect, rec: dict[str, Any]) -> dict[str, Any]:
        hidden = set(ent.hidden) if ent else set()
        if effect.returns:
            names = ([ent.key] if ent and ent.key not in effect.returns else []) + list(effect.returns)
            return {f: copy.deepcopy(rec.get(f)) for f in names if f not in hidden}
        first = {ent.key: copy.deepcopy(rec[ent.key])} if ent and ent.key in rec and ent.key not in hidden else {}
        return first | {k: copy.deepcopy(v) for k, v in rec.items() if k not in hidden}

    def _writes(self, effect: ToolEffect, ent: Entity | None, args: dict[str, Any], rec: dict[str, Any],
                session: dict[str, Any], *, skip: str | None = None) -> None:
        if not effect.writes:
            # A spec that omits `writes` writes the arguments named like the entity's fields.
            fields = set(ent.fields) if ent else set(args)
            for k, v in args.items():
                if k in fields and k != skip:
                    rec[k] = copy.deepcopy(v)
            return
        for w in effect.writes:
            if w.param is not None:
                if w.param not in args:
                    continue  # an optional argument left out leaves the field as it is
                value = args[w.param]
            elif w.formula is not None:
                value = evaluate(w.formula, args, record=rec, session=session)
            else:
                value = w.value
            rec[w.field] = copy.deepcopy(value)

    def _invalid(self, ent: Entity | None, rec: dict[str, Any], effect: ToolEffect) -> Outcome | None:
        if ent is None:
            return None
        issues = record_issues(ent, rec)
        if not issues:
            return None
        field, message = issues[0]
        param = next((w.param for w in effect.writes if w.field == field and w.param), field or None)
        return error("invalid_value", f"Invalid {field or ent.name}: {message}.", param)

    def _new_id(self, ent: Entity | None, records: dict[str, Any], prefix_of: str) -> Any:
        integer = bool(ent and ent.fields.get(ent.key, {}).get("type") == "integer")
        n = len(records) + 1
        while True:
            rid: Any = 1000 + n if integer else f"{id_prefix(prefix_of)}-{9000 + n}"
            if str(rid) not in records:
                return rid
            n += 1

    # -- one handler per kind -------------------------------------------------------------
    def _read(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
              records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        if rid is not None:
            return Outcome(ok=True, result=self._project(ent, effect, records[rid]))
        hidden = set(ent.hidden) if ent else set()
        limit = next((args[k] for k in LIMIT_ARGS if isinstance(args.get(k), int)), None)
        hits = []
        for _, rec in sorted(records.items()):
            ok = True
            for key, value in args.items():
                if key in LIMIT_ARGS:
                    continue
                if key in QUERY_ARGS and not (ent and key in ent.fields):
                    ok = any(str(value).strip().casefold() in str(v).casefold() for f, v in rec.items()
                             if f not in hidden and isinstance(v, str | int | float))
                elif key in rec:
                    ok = same(rec[key], value)
                elif key.startswith(("min_", "max_")) and isinstance(rec.get(key[4:]), int | float) \
                        and isinstance(value, int | float):
                    # `min_seats=6` keeps rooms with at least 6 seats
                    ok = rec[key[4:]] >= value if key.startswith("min_") else rec[key[4:]] <= value
                if not ok:
                    break
            if ok:
                hits.append(self._project(ent, effect, rec))
        if isinstance(limit, int) and limit >= 0:
            hits = hits[:limit]
        return Outcome(ok=True, result={"results": hits, "count": len(hits)})

    def _create(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        rec: dict[str, Any] = {}
        if ent is not None:
            for f, schema in ent.fields.items():
                if isinstance(schema, dict) and "default" in schema:
                    rec[f] = copy.deepcopy(schema["default"])
        key_field = ent.key if ent else "id"
        self._writes(effect, ent, args, rec, state["session"])
        if effect.key and effect.key in args:
            rec[key_field] = copy.deepcopy(args[effect.key])
        if key_field not in rec or rec[key_field] in (None, ""):
            rec[key_field] = self._new_id(ent, records, effect.entity or tool)
        new_id = str(rec[key_field])
        if any(same(r, new_id) for r in records):
            return error("conflict", f"{human(effect.entity)} '{new_id}' already exists.", effect.key or key_field)
        bad = self._invalid(ent, rec, effect)
        if bad:
            return bad
        records[new_id] = rec
        return Outcome(ok=True, result=self._project(ent, effect, rec))

    def _update(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        if rid is None:
            # No key parameter: a singleton record (the router's settings) created on first write.
            rid = next(iter(sorted(records)), "default")
            records.setdefault(rid, {})
        rec = records[rid]
        self._writes(effect, ent, args, rec, state["session"], skip=effect.key)
        bad = self._invalid(ent, rec, effect)
        if bad:
            return bad
        return Outcome(ok=True, result=self._project(ent, effect, rec))

    def _delete(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        key_field = ent.key if ent else "id"
        if rid is None:
            return error("invalid_arguments", f"{tool} needs the {key_field} of the record to delete.")
        if effect.writes:
            rec = records[rid]
            self._writes(effect, ent, args, rec, state["session"], skip=effect.key)
            bad = self._invalid(ent, rec, effect)
            if bad:
                return bad
            return Outcome(ok=True, result=self._project(ent, effect, rec))
        del records[rid]
        return Outcome(ok=True, result={key_field: rid, "status": "deleted"})

    def _session(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                 records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        session = state["session"]
        if is_signout(tool):
            # Idempotent, as most services are: signing out twice leaves the same signed-out state.
            session["logged_in"] = False
            session["user"] = None
            return Outcome(ok=True, result={"status": "signed_out"})
        user: Any = args.get(effect.key) if effect.key else None
        account = records.get(rid) if rid is not None else None
        if account is None and not effect.key and len(records) == 1:
            account = next(iter(records.values()))  # a device's own login (the router's admin page)
        if account is not None:
            for param, value in args.items():
                if param != effect.key and param in account and not same(account[param], value):
                    return error("unauthorized", f"Invalid credentials: the {param.replace('_', ' ')} does not match.",
                                 param)
        if rid is not None and ent is not None and account is not None:
            user = account.get(ent.key, rid)
        elif user is None:
            user_key, _ = credential_args(list(args))
            user = args.get(user_key) if user_key else None
        session["logged_in"] = True
        session["user"] = user
        return Outcome(ok=True, result={"status": "signed_in", "user": user})

    def _compute(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                 records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        if not effect.formula:
            return error("not_implemented", f"{tool} declares no formula.")
        record = records.get(rid, {}) if rid is not None else {}
        value = evaluate(effect.formula, args, record=record, session=state["session"])
        return Outcome(ok=True, result={"result": value})

    def _external(self, state: dict[str, Any], tool: str, effect: ToolEffect, ent: Entity | None,
                  records: dict[str, Any], rid: str | None, args: dict[str, Any]) -> Outcome:
        rec: dict[str, Any] = {} if ent is not None else {"tool": tool}
        if ent is not None:
            for f, schema in ent.fields.items():
                if isinstance(schema, dict) and "default" in schema:
                    rec[f] = copy.deepcopy(schema["default"])
        if effect.writes or ent is not None:
            self._writes(effect, ent, args, rec, state["session"])
        else:
            rec.update(copy.deepcopy(args))
        key_field = ent.key if ent else "id"
        if key_field not in rec or rec[key_field] in (None, ""):
            rec[key_field] = self._new_id(ent, records, effect.entity or "message")
        bad = self._invalid(ent, rec, effect)
        if bad:
            return bad
        records[str(rec[key_field])] = rec
        return Outcome(ok=True, result={"status": "sent", key_field: rec[key_field]})
