"""Merge the environments extracted from several documents of one product area into one environment.

A real application covers many help pages: the printing panel has one page on setting the default
printer, one on cancelling a job, one on printing a booklet. Each page gives an environment of its own;
`merge_environments` unions them so that a refined multi-goal task can combine the procedures of
several texts. What clashes is renamed, never silently overwritten:

- an entity two documents both define is shared when its schema is the same and no record of one
  contradicts a record of the other (same key, other values); otherwise the later one is renamed
  (`printer_2`) along with every effect and `refs[...]` that names it;
- a tool two documents both define is shared when its spec and effect are the same (after the entity
  renames); otherwise the later one is renamed (`set_default_printer_2`);
- policy rule ids are per document (`r1` in every offline environment), so a rule is shared only when its
  text is the same, else renamed (`r1_2`), with its preconditions' links;
- the execution graphs are unioned chain by chain (`;`), the steps concatenated (a task's `cites` are
  shifted by its document's offset).

`MergedEnvironment.sources` keeps each tool's source document (a shared tool: the first that defined it),
and the rename maps let `remap_task` move a document's task onto the merged environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from tools_runtime.environment import Entity, Rule, StateRecord, ToolEffect, ValueSource
from tools_runtime.exec_graph import format_graph, graph_from_chains, parse_graph, validate_graph
from tools_runtime.records import Workflow
from tools_runtime.tasks import Task
from tools_runtime.toolspec import ToolSpec


class MergeError(ValueError):
    """Environments that cannot be merged (another backend kind, or graphs that form a cycle together)."""


class MergedEnvironment(BaseModel):
    """One environment from several documents, with what was renamed per document and each tool's source."""

    workflow: Workflow
    docs: list[str]
    sources: dict[str, str] = Field(default_factory=dict)
    tools: dict[str, dict[str, str]] = Field(default_factory=dict)
    entities: dict[str, dict[str, str]] = Field(default_factory=dict)
    rules: dict[str, dict[str, str]] = Field(default_factory=dict)
    step_offset: dict[str, int] = Field(default_factory=dict)
    text_offset: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)

    def renamed(self) -> list[str]:
        """One line per renamed name: `doc: tool a → b`."""
        out = []
        for kind, table in (("tool", self.tools), ("entity", self.entities), ("rule", self.rules)):
            for doc, names in table.items():
                out += [f"{doc}: {kind} {a} → {b}" for a, b in names.items() if a != b]
        return out


def _free(name: str, taken: set[str]) -> str:
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _records_agree(ent: Entity, mine: list[StateRecord], theirs: list[StateRecord]) -> bool:
    """No record of `mine` has the key of a record of `theirs` with another value in a field both have."""
    by_key = {str(r.values.get(ent.key)): r.values for r in theirs}
    for r in mine:
        other = by_key.get(str(r.values.get(ent.key)))
        if other is not None and any(other[f] != v for f, v in r.values.items() if f in other):
            return False
    return True


def _compatible(held: Entity, ent: Entity) -> bool:
    """One entity seen by two pages: the same key, and every field both declare declared alike (the settings
    panel one page switches sharing on in and another page the secure shell)."""
    return held.key == ent.key and all(held.fields[f] == ent.fields[f] for f in set(held.fields) & set(ent.fields))


def _rename_refs(expr: str, entities: dict[str, str]) -> str:
    for old, new in entities.items():
        if old != new:
            expr = re.sub(rf"refs\[(['\"]){re.escape(old)}\1\]", f"refs['{new}']", expr)
    return expr


def _effect_renamed(effect: ToolEffect, entities: dict[str, str], rules: dict[str, str]) -> ToolEffect:
    pres = [p.model_copy(update={"expr": _rename_refs(p.expr, entities),
                                 "rule": rules.get(p.rule, p.rule) if p.rule else p.rule})
            for p in effect.preconditions]
    return effect.model_copy(update={"entity": entities.get(effect.entity, effect.entity), "preconditions": pres})


def _shifted(source: ValueSource, by: int) -> ValueSource:
    if source.span is None or not by:
        return source
    return source.model_copy(update={"span": (source.span[0] + by, source.span[1] + by)})


def merge_environments(parts: list[tuple[str, Workflow]], *, env_id: str, title: str = "",
                       text_offsets: dict[str, int] | None = None, apart: Iterable[str] = ()) -> MergedEnvironment:
    """One environment holding every part's tools, entities, records and rules, clashes renamed (see the module).

    `text_offsets` (document → where its text starts in the merged document's text) shifts the spans
    the records' values are quoted from. The entities of the documents in `apart` are never shared (renamed
    on a clash): a page whose task no longer runs once its records meet another page's keeps its own."""
    text_offsets = text_offsets or {}
    apart = set(apart)
    if not parts:
        raise MergeError("nothing to merge")
    if any(wf.backend.kind != "sim" for _, wf in parts):
        raise MergeError("only environments on the simulated backend can be merged")
    entities: dict[str, Entity] = {}
    owner: dict[str, str] = {}  # the document that defined each entity first
    records: dict[str, list[StateRecord]] = {}
    tools: dict[str, ToolSpec] = {}
    effects: dict[str, ToolEffect] = {}
    rules: dict[str, Rule] = {}
    chains: list[list[list[str]]] = []
    steps: list[str] = []
    user_tools: list[str] = []
    out = MergedEnvironment(workflow=parts[0][1], docs=[d for d, _ in parts])
    for doc, wf in parts:
        ent_map: dict[str, str] = {}
        for ent in wf.entities:
            mine = [r for r in wf.initial_state if r.entity == ent.name]
            held = entities.get(ent.name)
            if held is None or (doc not in apart and owner.get(ent.name) not in apart and _compatible(held, ent)
                                and _records_agree(ent, mine, records[ent.name])):
                ent_map[ent.name] = ent.name
            else:
                ent_map[ent.name] = _free(ent.name, set(entities))
        rule_map: dict[str, str] = {}
        for rule in wf.policy:
            held_rule = rules.get(rule.id)
            rule_map[rule.id] = rule.id if held_rule is None or held_rule.text == rule.text else _free(rule.id, set(rules))
        tool_map: dict[str, str] = {}
        for spec in wf.tools:
            effect = wf.effects.get(spec.name)
            eff = _effect_renamed(effect, ent_map, rule_map) if effect is not None else None
            held_spec = tools.get(spec.name)
            same_tool = held_spec is not None and held_spec == spec and effects.get(spec.name) == eff
            tool_map[spec.name] = spec.name if held_spec is None or same_tool else _free(spec.name, set(tools))
        # The graph must stay acyclic with the chains already merged (a shared tool ordered both ways would not).
        try:
            own = parse_graph(wf.execution_graph).chains if wf.execution_graph.strip() else []
        except ValueError as exc:
            out.skipped[doc] = f"its execution graph does not parse: {exc}"
            continue
        renamed_chains = [[[tool_map.get(n, n) for n in stage] for stage in chain] for chain in own]
        trial = graph_from_chains([*chains, *renamed_chains]) if chains or renamed_chains else None
        if trial is not None and any(i.code == "cycle" for i in validate_graph(trial)):
            out.skipped[doc] = "its execution graph orders a shared tool the other way (a cycle when merged)"
            continue
        # Commit this part.
        for ent in wf.entities:
            name = ent_map[ent.name]
            if name not in entities:
                entities[name] = ent.model_copy(update={"name": name})
                records[name] = []
                owner[name] = doc
            else:  # shared: the fields of both pages
                held = entities[name]
                entities[name] = held.model_copy(update={
                    "fields": {**held.fields, **{f: v for f, v in ent.fields.items() if f not in held.fields}},
                    "hidden": sorted({*held.hidden, *ent.hidden})})
            by = text_offsets.get(doc, 0)
            for rec in wf.initial_state:
                if rec.entity != ent.name:
                    continue
                sources = {k: _shifted(v, by) for k, v in rec.sources.items()}
                key = str(rec.values.get(ent.key))
                same_key = next((i for i, r in enumerate(records[name]) if str(r.values.get(ent.key)) == key), None)
                if same_key is None:
                    records[name].append(rec.model_copy(update={"entity": name, "sources": sources}))
                else:  # the same record as another page sees it: its fields joined
                    r0 = records[name][same_key]
                    records[name][same_key] = r0.model_copy(update={
                        "values": {**rec.values, **r0.values}, "sources": {**sources, **r0.sources}})
        for rule in wf.policy:
            rid = rule_map[rule.id]
            if rid not in rules:
                rules[rid] = rule.model_copy(update={"id": rid, "tools": [tool_map.get(t, t) for t in rule.tools]})
        for spec in wf.tools:
            name = tool_map[spec.name]
            if name in tools:
                continue
            tools[name] = spec.model_copy(update={"name": name})
            effect = wf.effects.get(spec.name)
            if effect is not None:
                effects[name] = _effect_renamed(effect, ent_map, rule_map)
            out.sources[name] = doc
        user_tools += [tool_map.get(t, t) for t in wf.user_tools if tool_map.get(t, t) not in user_tools]
        chains += renamed_chains
        out.step_offset[doc] = len(steps)
        steps += list(wf.steps)
        out.tools[doc] = tool_map
        out.entities[doc] = ent_map
        out.rules[doc] = rule_map
    kept = [wf for d, wf in parts if d not in out.skipped]
    if not kept:
        raise MergeError("no environment could be merged: " + "; ".join(out.skipped.values()))
    first = kept[0]
    state = [r for name in entities for r in records[name]]
    graph = format_graph(graph_from_chains(chains)).replace("\n", "; ") if chains else ""
    out.workflow = Workflow(
        id=env_id, doc_id=env_id, title=title or first.title, steps=steps, execution_graph=graph,
        tools=list(tools.values()), domain=first.domain, platform=first.platform, effects=effects,
        entities=list(entities.values()), initial_state=state, policy=list(rules.values()), user_tools=user_tools)
    out.docs = [d for d, _ in parts if d not in out.skipped]
    out.text_offset = {d: text_offsets.get(d, 0) for d in out.docs}
    return out


def remap_task(task: Task, merged: MergedEnvironment, doc: str) -> Task:
    """`task`, written for `doc`'s environment, on the merged one: renamed tools, rules' tools, shifted cites.

    Its expected state must be computed again (the merged environment has more records): the caller runs
    its gold (`tools_runtime.refine_tasks.validate`)."""
    tool_map = merged.tools.get(doc, {})
    actions = [a.model_copy(update={"tool": tool_map.get(a.tool, a.tool)}) for a in task.gold_actions]
    meta: dict[str, Any] = {**task.meta, "source_doc": doc}
    by = merged.text_offset.get(doc, 0)
    known = [i.model_copy(update={"source": _shifted(i.source, by)}) for i in task.known_info]
    return task.model_copy(update={
        "known_info": known,
        "env_id": merged.workflow.id, "gold_actions": actions, "expected_state_hash": "",
        "forbidden_tools": [tool_map.get(t, t) for t in task.forbidden_tools],
        "cites": [c + merged.step_offset.get(doc, 0) for c in task.cites], "meta": meta})
