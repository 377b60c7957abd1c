"""A deterministic task drafted from an environment alone (no model): the fallback when no task is given.

`gem simulate` on an environment file without tasks, and tests, still need something to play. The
draft walks the execution graph's reference order and picks each argument from the environment's own
initial state: the record a call is about (its key, its credentials), records other arguments refer
to, numbers a formula needs, and fresh plausible values only for what a write sets. Values taken from
a record carry that record's provenance into `known_info`, so a text-grounded state gives a
text-grounded task. The draft is run as gold; a draft that fails (a precondition it broke) is redrawn.
"""

from __future__ import annotations

import random
from typing import Any

from tools_runtime.backend import same
from tools_runtime.binding import QUERY_ARGS
from tools_runtime.environment import Entity, ToolEffect, ValueSource
from tools_runtime.exec_graph import parse_graph, reference_order
from tools_runtime.executor import ToolEnvironment
from tools_runtime.records import Workflow
from tools_runtime.seeding import fake_value
from tools_runtime.tasks import Action, GoldRun, Info, Task, run_gold

TRIES = 40
REDRAWS = 8
_NAME_FIELDS = ("name", "title", "product", "ssid", "subject", "label", "file_name", "printer_name")


class DraftError(ValueError):
    """No task could be drafted from the environment; the message says why (the last failure)."""


class _Draft:
    def __init__(self, workflow: Workflow, rng: random.Random):
        self.wf = workflow
        self.rng = rng
        self.entities = {e.name: e for e in workflow.entities}
        self.env = ToolEnvironment(workflow, None)
        self.sources = {}  # (entity, rid) -> {field: ValueSource}
        for rec in workflow.initial_state:
            ent = self.entities.get(rec.entity)
            if ent is not None and ent.key in rec.values:
                self.sources[(rec.entity, str(rec.values[ent.key]))] = rec.sources
        self.focus: dict[str, str] = {}
        self.results: list[Any] = []
        self.known: dict[str, Info] = {}
        self.actions: list[Action] = []

    # -- the world as it is now -------------------------------------------------------------
    def records(self, entity: str) -> dict[str, dict[str, Any]]:
        return self.env.backend.view()["collections"].get(entity, {})

    def focused(self, entity: str) -> tuple[str, dict[str, Any]] | None:
        recs = self.records(entity)
        if not recs:
            return None
        if self.focus.get(entity) not in recs:
            self.focus[entity] = self.rng.choice(sorted(recs))
        rid = self.focus[entity]
        return rid, recs[rid]

    def in_results(self, value: Any) -> bool:
        def walk(node: Any, depth: int = 0) -> bool:
            if depth > 4:
                return False
            if isinstance(node, dict):
                return any(walk(v, depth + 1) for v in node.values())
            if isinstance(node, list):
                return any(walk(v, depth + 1) for v in node[:20])
            return not isinstance(node, bool) and node is not None and same(node, value)
        return any(walk(r) for r in self.results)

    def know(self, key: str, value: Any, source: ValueSource | None = None) -> None:
        if self.in_results(value):
            return  # the assistant finds it in a tool result; the user need not know it
        name = key
        n = 2
        while name in self.known and not same(self.known[name].value, value):
            name = f"{key}_{n}"
            n += 1
        self.known.setdefault(name, Info(key=name, value=value, source=source or ValueSource()))

    def from_record(self, entity: str, field: str) -> tuple[Any, ValueSource] | None:
        hit = self.focused(entity)
        if hit is None or field not in hit[1]:
            return None
        src = self.sources.get((entity, hit[0]), {}).get(field, ValueSource())
        return hit[1][field], src

    # -- one call -------------------------------------------------------------------------
    def referenced(self, param: str, own: str) -> Entity | None:
        for ent in self.entities.values():
            if ent.name != own and (param == ent.key or param == f"{ent.name}_id") and self.records(ent.name):
                return ent
        return None

    def choose(self, tool: str, effect: ToolEffect | None, param: str, schema: dict[str, Any],
               required: bool) -> tuple[bool, Any, ValueSource | None]:
        ent = self.entities.get(effect.entity) if effect else None
        written = {w.param: w.field for w in effect.writes if w.param} if effect else {}
        kind = effect.kind if effect else ""
        if effect is not None and param == effect.key and ent is not None and kind != "create":
            hit = self.from_record(ent.name, effect.match or ent.key)
            if hit is not None:
                return True, hit[0], hit[1]
        if kind == "session" and ent is not None:
            hit = self.from_record(ent.name, param)
            if hit is not None:
                return True, hit[0], hit[1]
        if kind == "read" and ent is not None and effect is not None and not effect.key:
            if not required:
                return False, None, None
            field = param if param not in QUERY_ARGS else next((f for f in _NAME_FIELDS if f in ent.fields), None)
            if field is not None:
                hit = self.from_record(ent.name, field)
                if hit is not None:
                    return True, hit[0], hit[1]
        other = self.referenced(param, effect.entity if effect else "")
        if other is not None:
            hit = self.from_record(other.name, other.key)
            if hit is not None:
                return True, hit[0], hit[1]
        if not required and self.rng.random() < 0.5:
            return False, None, None
        if kind in ("compute", "read") or param not in written:
            for name in sorted(self.focus):
                hit = self.from_record(name, param)
                if hit is not None and isinstance(hit[0], int | float | str) and not isinstance(hit[0], bool):
                    return True, hit[0], hit[1]
        current = None
        if kind == "update" and ent is not None and param in written:
            hit = self.from_record(ent.name, written[param])
            current = hit[0] if hit else None
        value = fake_value(param, schema, self.rng)
        for _ in range(3):
            if current is None or not same(value, current):
                break
            value = fake_value(param, schema, self.rng)
        return True, value, None

    def step(self, tool: str) -> None:
        spec = self.wf.tool(tool)
        assert spec is not None
        effect = self.wf.effects.get(tool)
        for _ in range(REDRAWS):
            # A call a precondition refuses is redrawn: the values drawn fresh change each time; the
            # records the story is about stay (a whole new draft changes those).
            args: dict[str, Any] = {}
            origin: dict[str, ValueSource | None] = {}
            for param, schema in spec.properties.items():
                use, value, source = self.choose(tool, effect, param, schema if isinstance(schema, dict) else {},
                                                 param in spec.required)
                if use:
                    args[param] = value
                    origin[param] = source
            rec = self.env.call(tool, args)
            if rec.ok:
                break
            if all(origin[p] is not None for p in args):
                break  # nothing was drawn: a redraw would make the same call
        if not rec.ok:
            raise DraftError(f"{tool}({args}) fails: {(rec.error or {}).get('message', '')}")
        for param, value in args.items():
            self.know(param, value, origin[param])
        self.actions.append(Action(tool=tool, arguments=args))
        self.results.append(rec.result)
        ent = self.entities.get(effect.entity) if effect else None
        if ent is not None and isinstance(rec.result, dict):
            rows = rec.result.get("results")
            row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else rec.result
            if ent.key in row and str(row[ent.key]) in self.records(ent.name):
                self.focus[ent.name] = str(row[ent.key])


def _communicate(draft: _Draft) -> list[str]:
    """What the assistant must tell the user when the task only looks things up: the last answer."""
    for action, res in zip(reversed(draft.actions), reversed(draft.results), strict=True):
        effect = draft.wf.effects.get(action.tool)
        if effect is None or effect.kind not in ("read", "compute") or not isinstance(res, dict):
            continue
        if effect.kind == "compute" and "result" in res:
            return [str(res["result"])]
        rows = res.get("results")
        row = (rows[0] if rows and isinstance(rows[0], dict) else {}) if isinstance(rows, list) else res
        key = draft.entities[effect.entity].key if effect.entity in draft.entities else None
        given = list(action.arguments.values())
        for field in effect.returns or sorted(row):
            v = row.get(field)
            if field != key and isinstance(v, str | int | float) and not isinstance(v, bool) \
                    and not any(same(v, g) for g in given):
                return [str(v)]
    return []


def draft_task(workflow: Workflow, seed: int = 0, *, task_id: str | None = None) -> Task:
    """A task that walks the environment's reference order with values from its initial state; DraftError if none runs."""
    from tools_runtime.scenario import goal_text

    order = reference_order(parse_graph(workflow.execution_graph))
    last = "no attempt"
    for attempt in range(TRIES):
        rng = random.Random(f"{workflow.id}|draft|{seed}|{attempt}")
        draft = _Draft(workflow, rng)
        try:
            for tool in order:
                draft.step(tool)
        except DraftError as exc:
            last = str(exc)
            continue
        task = Task(id=task_id or f"{workflow.id}-draft-s{seed}", env_id=workflow.id,
                    instruction=goal_text(workflow), cites=list(range(len(workflow.steps))),
                    known_info=list(draft.known.values()), gold_actions=draft.actions,
                    operator="draft", offline=True, meta={"drafted": True, "attempt": attempt})
        run = run_gold(workflow, task)
        if not isinstance(run, GoldRun) and run.code == "empty_criteria":
            # Nothing changes: the task is a question, and its answer is what the user must hear.
            task = task.model_copy(update={"communicate_info": _communicate(draft)})
            run = run_gold(workflow, task)
        if isinstance(run, GoldRun):
            return task.model_copy(update={"expected_state_hash": run.expected_state_hash})
        last = f"{run.code}: {run.reason}"
    raise DraftError(f"no runnable task could be drafted for '{workflow.id}' in {TRIES} tries; last: {last}")
