"""Environment validation: every problem of an environment spec, named by path, before anything runs.

An extraction (a model's answer or the offline stand-in's) is checked for: the schema and unique
names (the workflow reader), an execution graph that is acyclic over defined tools, effects that
refer to existing tools, entities, parameters and fields, formulas and preconditions the safe
evaluator accepts and that read only the tool's parameters, an initial state valid against its
entity schemas, provenance (a value marked `text` must occur in the document), and UI gestures
(`click_ok`, `open_file_menu`, zero-argument no-effect actions) that should have been folded into
the capability they complete. `grounding` measures the share of values whose provenance is the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel

from tools_runtime.effects import collection_name, state_problems
from tools_runtime.environment import Entity, StateRecord, ToolEffect, ValueSource, entity_schema
from tools_runtime.exec_graph import parse_graph, validate_graph
from tools_runtime.formula import RESERVED, FormulaError, check_formula, formula_arg_keys
from tools_runtime.records import Workflow
from tools_runtime.tasks import Task
from tools_runtime.toolspec import ToolSpec
from tools_runtime.workflow_io import WorkflowError, workflow_from_dict

Severity = Literal["error", "warning"]


class EnvIssue(BaseModel):
    """One problem of an environment: where (a dotted path), what kind (`code`) and why."""

    path: str
    code: str
    reason: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} [{self.code}]"


# ---------------------------------------------------------------------------------------------------------
# UI gestures: tools a real service would not expose (the click that completes a capability)

_GESTURE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(click|press|tap|double_click|right_click|hover|scroll|swipe|drag|highlight)(_|$)"),
     "a pointer or key gesture"),
    (re.compile(r"^open_.*_(menu|dialog|tab|window|panel|page|screen|app|settings)$"),
     "opening a menu or screen"),
    (re.compile(r"^(open|close|go_to|goto|navigate_to|navigate|return_to|exit)_"), "navigating the interface"),
    (re.compile(r"^select_.*_(tab|menu|option|button|item|icon)$"), "selecting an interface element"),
    (re.compile(r"^(type|enter|input|fill_in|paste)(_|$)"), "typing into a field"),
    (re.compile(r"^(wait|confirm_dialog|ok|cancel_dialog|dismiss_dialog)(_|$)"), "a dialog or pause"),
]


def ui_gesture_reason(tool: ToolSpec, effect: ToolEffect | None = None) -> str | None:
    """Why `tool` looks like a UI gesture rather than a capability, or None."""
    name = tool.name.lower()
    for pattern, what in _GESTURE_PATTERNS:
        if pattern.search(name):
            if effect is not None and effect.kind != "read" and tool.properties and pattern.pattern.startswith(
                    ("^(open|close", "^(type|enter")):
                continue  # `enter_shipping_address(address)` with a declared write is a capability
            return (f"'{tool.name}' is {what}, not a capability a service exposes; fold it into the tool it "
                    "completes (its effect and arguments belong there)")
    if not tool.properties and effect is None:
        return (f"'{tool.name}' takes no argument and declares no effect: a no-op action; fold it into the "
                "capability it completes or declare what it changes")
    return None


# ---------------------------------------------------------------------------------------------------------
# provenance: where in the document a quoted value is


@lru_cache(maxsize=16)
def _normalise(text: str) -> tuple[str, tuple[int, ...]]:
    """Case-folded text with whitespace runs collapsed to one space, and each char's original offset."""
    out: list[str] = []
    index: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if out and not space:
                out.append(" ")
                index.append(i)
            space = True
            continue
        space = False
        for c in ch.casefold():
            out.append(c)
            index.append(i)
    return "".join(out), tuple(index)


def find_span(quote: Any, text: str) -> tuple[int, int] | None:
    """The [start, end) span of `quote` in `text`, case- and whitespace-insensitive; None if absent."""
    q = str(quote).strip().strip("\"'“”‘’`").strip()
    if not q or not text:
        return None
    norm_q, _ = _normalise(q)
    norm_t, index = _normalise(text)
    pos = norm_t.find(norm_q)
    if pos < 0:
        return None
    end = pos + len(norm_q) - 1
    return index[pos], index[end] + 1


def _countable(value: Any) -> bool:
    # Booleans and nulls are never a span of a text; they are not counted either way.
    return value is not None and not isinstance(value, bool) and not isinstance(value, dict | list)


def check_source(value: Any, source: ValueSource, text: str | None) -> tuple[ValueSource, str | None]:
    """The source with its span filled in, or downgraded to `invented` (with the reason) when not in the text."""
    if source.kind != "text":
        return source, None
    if text is None:
        return source, None
    for quote in (source.quote, value):
        if quote in ("", None) or isinstance(quote, bool):
            continue
        span = find_span(quote, text)
        if span is not None:
            return ValueSource(kind="text", quote=text[span[0]:span[1]], span=span), None
    shown = source.quote or value
    return ValueSource(kind="invented", quote=source.quote), f"marked as from the text, but {shown!r} does not occur in it"


def ground_sources(workflow: Workflow, text: str | None) -> tuple[Workflow, list[EnvIssue]]:
    """A copy of `workflow` whose text sources carry their spans; sources not found become `invented`."""
    issues: list[EnvIssue] = []
    records = []
    for i, rec in enumerate(workflow.initial_state):
        sources = dict(rec.sources)
        for field, src in rec.sources.items():
            fixed, why = check_source(rec.values.get(field), src, text)
            sources[field] = fixed
            if why:
                issues.append(EnvIssue(path=f"initial_state[{i}].sources.{field}", code="provenance", reason=why,
                                       severity="warning"))
        records.append(StateRecord(entity=rec.entity, values=rec.values, sources=sources))
    return workflow.model_copy(update={"initial_state": records}), issues


def ground_task(task: Task, text: str | None) -> tuple[Task, list[EnvIssue]]:
    """A copy of `task` whose known-info text sources carry spans; those not found become `invented`."""
    issues: list[EnvIssue] = []
    infos = []
    for i, info in enumerate(task.known_info):
        fixed, why = check_source(info.value, info.source, text)
        if why:
            issues.append(EnvIssue(path=f"known_info[{i}].source", code="provenance", reason=why, severity="warning"))
        infos.append(info.model_copy(update={"source": fixed}))
    return task.model_copy(update={"known_info": infos}), issues


class Grounding(BaseModel):
    """How many values have text provenance, overall and per part (state, gold arguments, known info)."""

    values: int = 0
    text_values: int = 0
    parts: dict[str, list[int]] = {}

    @property
    def share(self) -> float:
        """Share of counted values whose provenance is a span of the text (0.0 when none counted)."""
        return self.text_values / self.values if self.values else 0.0

    def add(self, part: str, grounded: bool) -> None:
        """Count one value of `part`."""
        self.values += 1
        self.text_values += int(grounded)
        counts = self.parts.setdefault(part, [0, 0])
        counts[0] += int(grounded)
        counts[1] += 1


def _same_text(a: Any, b: Any) -> bool:
    return str(a).strip().casefold() == str(b).strip().casefold()


def grounding(workflow: Workflow, tasks: Iterable[Task] = (), text: str | None = None) -> Grounding:
    """Share of initial-state values, gold-action argument values and known-info values whose source is the text.

    A value counts as grounded when its source says `text` (and, when `text` is given, its quote or
    value occurs there); a gold argument, which has no source of its own, when it equals a grounded
    state or known-info value or occurs in the text. Booleans, nulls and structured values are not
    counted.
    """
    g = Grounding()
    grounded_values: list[Any] = []
    for rec in workflow.initial_state:
        for field, value in rec.values.items():
            if not _countable(value):
                continue
            src = rec.sources.get(field, ValueSource())
            fixed, _ = check_source(value, src, text)
            g.add("state", fixed.kind == "text")
            if fixed.kind == "text":
                grounded_values.append(value)
    for task in tasks:
        known_grounded: list[Any] = []
        for info in task.known_info:
            if not _countable(info.value):
                continue
            fixed, _ = check_source(info.value, info.source, text)
            g.add("known_info", fixed.kind == "text")
            if fixed.kind == "text":
                known_grounded.append(info.value)
        for action in task.gold_actions:
            for value in action.arguments.values():
                if not _countable(value):
                    continue
                ok = any(_same_text(value, v) for v in [*grounded_values, *known_grounded])
                if not ok and text is not None and len(str(value).strip()) >= 2:
                    ok = find_span(value, text) is not None
                g.add("gold_arguments", ok)
    return g


# ---------------------------------------------------------------------------------------------------------
# the validator


def _formula_issues(expr: str | None, path: str, params: set[str], what: str) -> list[EnvIssue]:
    if expr is None:
        return []
    try:
        check_formula(expr)
        unknown = sorted(formula_arg_keys(expr) - params - RESERVED)
    except FormulaError as exc:
        return [EnvIssue(path=path, code="bad_formula", reason=f"{what} is refused: {exc}")]
    if unknown:
        return [EnvIssue(path=path, code="bad_formula",
                         reason=f"{what} reads {unknown}, which are not parameters of the tool ({sorted(params)})")]
    return []


def _effect_issues(name: str, effect: ToolEffect, tool: ToolSpec, entities: dict[str, Entity],
                   has_session_tool: bool, rule_ids: set[str]) -> list[EnvIssue]:
    base = f"effects.{name}"
    params = set(tool.properties)
    issues: list[EnvIssue] = []
    ent = entities.get(effect.entity) if effect.entity else None
    if effect.entity and ent is None:
        issues.append(EnvIssue(path=f"{base}.entity", code="unknown_entity",
                               reason=f"entity '{effect.entity}' is not defined (entities: {sorted(entities)})"))
    needs_entity = effect.kind in ("read", "create", "update", "delete")
    if needs_entity and not effect.entity:
        issues.append(EnvIssue(path=f"{base}.entity", code="missing_entity",
                               reason=f"a {effect.kind} effect must name the entity it acts on"))
    if effect.key is not None and effect.key not in params:
        issues.append(EnvIssue(path=f"{base}.key", code="unknown_param",
                               reason=f"key parameter '{effect.key}' is not a parameter of {name} ({sorted(params)})"))
    elif effect.key is not None and effect.kind in ("update", "delete") and effect.key not in tool.required:
        issues.append(EnvIssue(path=f"{base}.key", code="optional_key", severity="warning",
                               reason=f"key parameter '{effect.key}' should be required"))
    if effect.kind == "delete" and effect.key is None:
        issues.append(EnvIssue(path=f"{base}.key", code="missing_key",
                               reason="a delete effect needs the key parameter naming the record"))
    fields = set(ent.fields) if ent else set()
    if ent is not None:
        if effect.match is not None and effect.match not in fields:
            issues.append(EnvIssue(path=f"{base}.match", code="unknown_field",
                                   reason=f"match field '{effect.match}' is not a field of '{ent.name}'"))
        for i, f in enumerate(effect.returns):
            if f not in fields:
                issues.append(EnvIssue(path=f"{base}.returns[{i}]", code="unknown_field",
                                       reason=f"returned field '{f}' is not a field of '{ent.name}'"))
    for i, w in enumerate(effect.writes):
        where = f"{base}.writes[{i}]"
        if ent is not None and w.field not in fields:
            issues.append(EnvIssue(path=f"{where}.field", code="unknown_field",
                                   reason=f"written field '{w.field}' is not a field of '{ent.name}'"))
        if w.param is not None and w.param not in params:
            issues.append(EnvIssue(path=f"{where}.param", code="unknown_param",
                                   reason=f"'{w.param}' is not a parameter of {name} ({sorted(params)})"))
        if sum(x is not None for x in (w.param, w.formula)) > 1:
            issues.append(EnvIssue(path=where, code="ambiguous_write",
                                   reason="a write takes its value from a parameter or a formula, not both"))
        issues += _formula_issues(w.formula, f"{where}.formula", params, "the write's formula")
    if effect.kind in ("update",) and not effect.writes and not (params - {effect.key}) & (fields or params):
        issues.append(EnvIssue(path=f"{base}.writes", code="no_effect",
                               reason=f"{name} is an update that writes nothing"))
    if effect.kind == "compute":
        if not effect.formula:
            issues.append(EnvIssue(path=f"{base}.formula", code="missing_formula",
                                   reason="a compute effect needs the formula of its result"))
        issues += _formula_issues(effect.formula, f"{base}.formula", params, "the formula")
    elif effect.formula is not None:
        issues.append(EnvIssue(path=f"{base}.formula", code="unused_formula", severity="warning",
                               reason=f"only compute effects use `formula`; {effect.kind} ignores it"))
    for i, pre in enumerate(effect.preconditions):
        issues += _formula_issues(pre.expr, f"{base}.preconditions[{i}].expr", params, "the precondition")
        if pre.rule is not None and pre.rule not in rule_ids:
            issues.append(EnvIssue(path=f"{base}.preconditions[{i}].rule", code="unknown_rule",
                                   reason=f"rule '{pre.rule}' is not in the policy ({sorted(rule_ids)})"))
    if effect.requires_session and not has_session_tool:
        issues.append(EnvIssue(path=f"{base}.requires_session", code="no_session_tool",
                               reason="the tool requires a session but no tool signs in"))
    return issues


def _entity_issues(entities: list[Entity]) -> list[EnvIssue]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    from tools_runtime.metaschema import known_valid

    issues: list[EnvIssue] = []
    seen: set[str] = set()
    for i, ent in enumerate(entities):
        where = f"entities[{i}]"
        if ent.name in seen:
            issues.append(EnvIssue(path=f"{where}.name", code="duplicate_name", reason=f"entity '{ent.name}' twice"))
        seen.add(ent.name)
        if ent.key not in ent.fields:
            issues.append(EnvIssue(path=f"{where}.key", code="unknown_field",
                                   reason=f"key '{ent.key}' is not a field of '{ent.name}' ({sorted(ent.fields)})"))
        for h in ent.hidden:
            if h not in ent.fields:
                issues.append(EnvIssue(path=f"{where}.hidden", code="unknown_field",
                                       reason=f"hidden field '{h}' is not a field of '{ent.name}'"))
        try:
            if not known_valid(schema := entity_schema(ent)):  # the fast path proves the common case
                Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            field = ".".join(str(p) for p in list(exc.path)[1:2]) or "fields"
            issues.append(EnvIssue(path=f"{where}.fields.{field}", code="bad_schema", reason=exc.message))
    return issues


def validate_environment(env: Workflow | dict[str, Any], text: str | None = None) -> list[EnvIssue]:
    """Every problem of an environment spec (errors and warnings), each with its path and reason."""
    if isinstance(env, dict):
        try:
            wf = workflow_from_dict(env, "environment", check_graph=False)
        except WorkflowError as exc:
            msg = str(exc)
            path, _, reason = msg.partition(": ")
            return [EnvIssue(path=path, code="schema", reason=reason or msg)]
    else:
        wf = env
    issues: list[EnvIssue] = []
    tools = {t.name: t for t in wf.tools}
    names = [t.name for t in wf.tools]
    for n in sorted({n for n in names if names.count(n) > 1}):
        issues.append(EnvIssue(path="tools", code="duplicate_name", reason=f"tool '{n}' is defined twice"))
    try:
        graph = parse_graph(wf.execution_graph)
        for gi in validate_graph(graph, names):
            issues.append(EnvIssue(path="execution_graph", code=f"graph_{gi.code}", reason=gi.message))
    except ValueError as exc:
        issues.append(EnvIssue(path="execution_graph", code="graph_syntax", reason=str(exc)))
    entities = {e.name: e for e in wf.entities}
    issues += _entity_issues(wf.entities)
    rule_ids = [r.id for r in wf.policy]
    for r in sorted({r for r in rule_ids if rule_ids.count(r) > 1}):
        issues.append(EnvIssue(path="policy", code="duplicate_name", reason=f"rule id '{r}' is used twice"))
    for i, rule in enumerate(wf.policy):
        for t in rule.tools:
            if t not in tools:
                issues.append(EnvIssue(path=f"policy[{i}].tools", code="unknown_tool",
                                       reason=f"rule '{rule.id}' names tool '{t}', which is not defined"))
    for t in wf.user_tools:
        if t not in tools:
            issues.append(EnvIssue(path="user_tools", code="unknown_tool", reason=f"user tool '{t}' is not defined"))
    has_session = any(e.kind == "session" for e in wf.effects.values())
    for name, effect in wf.effects.items():
        if name not in tools:
            issues.append(EnvIssue(path=f"effects.{name}", code="unknown_tool",
                                   reason=f"an effect is declared for '{name}', which is not a defined tool"))
            continue
        issues += _effect_issues(name, effect, tools[name], entities, has_session, set(rule_ids))
    for tool in wf.tools:
        why = ui_gesture_reason(tool, wf.effects.get(tool.name))
        if why:
            issues.append(EnvIssue(path=f"tools.{tool.name}", code="ui_gesture", reason=why))
        elif wf.effects and tool.name not in wf.effects:
            issues.append(EnvIssue(path=f"effects.{tool.name}", code="undeclared_effect", severity="warning",
                                   reason=f"'{tool.name}' declares no effect; the backend guesses it from its name"))
    for path, reason in state_problems(wf.entities, wf.initial_state)[1]:
        issues.append(EnvIssue(path=path, code="invalid_state", reason=reason))
    for i, rec in enumerate(wf.initial_state):
        for field in rec.sources:
            if field not in rec.values:
                issues.append(EnvIssue(path=f"initial_state[{i}].sources.{field}", code="unknown_field",
                                       reason=f"a source is given for '{field}', which the record has no value for"))
    if text is not None:
        issues += ground_sources(wf, text)[1]
    for name, effect in wf.effects.items():
        if effect.kind in ("read", "update", "delete") and effect.entity in entities and wf.initial_state and \
                not any(r.entity == collection_name(effect) for r in wf.initial_state) and \
                not any(e.kind == "create" and e.entity == effect.entity for e in wf.effects.values()):
            issues.append(EnvIssue(path=f"effects.{name}.entity", code="empty_entity", severity="warning",
                                   reason=f"no record of '{effect.entity}' exists and no tool creates one"))
    return issues


def errors(issues: Iterable[EnvIssue]) -> list[EnvIssue]:
    """The issues that make an environment unusable (warnings left out)."""
    return [i for i in issues if i.severity == "error"]


# ---------------------------------------------------------------------------------------------------------
# task checks beyond `run_gold`: can the assistant reach the gold outcome from what it is told?


def _mentioned(value: Any, haystacks: Iterable[str]) -> bool:
    needle = str(value).strip().casefold()
    if not needle:
        return True
    return any(needle in h for h in haystacks)


def _readable(workflow: Workflow, state: dict[str, Any]) -> dict[str, Any]:
    """The parts of a state some tool can show: fields a declared read returns (all, for undeclared tools)."""
    cols = state.get("collections", {}) if isinstance(state, dict) else {}
    if not workflow.effects or any(t.name not in workflow.effects for t in workflow.tools):
        return cols
    entities = {e.name: e for e in workflow.entities}
    out: dict[str, Any] = {}
    for effect in workflow.effects.values():
        ent = entities.get(effect.entity)
        if effect.kind != "read" or ent is None:
            continue
        fields = set(effect.returns or ent.fields) | {ent.key}
        fields -= set(ent.hidden)
        rows = out.setdefault(ent.name, {})
        for rid, rec in cols.get(ent.name, {}).items():
            rows.setdefault(rid, {}).update({k: v for k, v in rec.items() if k in fields})
    return out


def task_issues(workflow: Workflow, task: Task, text: str | None = None) -> list[EnvIssue]:
    """Problems of a task the gold run cannot see: unreachable arguments, unsupported values, bad cites.

    `unreachable_argument` (error): a gold argument that no one can know — not a user fact, not in the
    instruction, not in an earlier gold result, not in the environment's state, not fixed by the tool's
    schema (`composed_argument`, a warning, when it is free text around a user fact).
    `unsupported_communicate` (error): a value the assistant must tell that no tool result or
    state holds. `bad_cite` (error): a cited step that does not exist. `unused_info` (warning): a user
    fact no gold argument uses.
    """
    import json

    from tools_runtime.backend import same
    from tools_runtime.state import canonical_json
    from tools_runtime.tasks import GoldRun, run_gold

    issues: list[EnvIssue] = []
    for i, cite in enumerate(task.cites):
        if not 0 <= cite < len(workflow.steps):
            issues.append(EnvIssue(path=f"cites[{i}]", code="bad_cite",
                                   reason=f"step {cite} does not exist (the text has {len(workflow.steps)} steps)"))
    run = run_gold(workflow, task)
    if not isinstance(run, GoldRun):
        return [*issues, EnvIssue(path="gold_actions", code=run.code, reason=run.reason)]
    from tools_runtime.executor import initial_state

    known = task.known()
    start = initial_state(workflow) if workflow.backend.kind == "sim" else {}
    # What the assistant is shown before any call: the records it can look up, the policy, the tools.
    shown = [canonical_json(_readable(workflow, start)).casefold(), *(r.text.casefold() for r in workflow.policy),
             *(json.dumps(t.to_openai(), ensure_ascii=False).casefold() for t in workflow.tools)]
    state_text = canonical_json(run.end_state).casefold()
    instruction = task.instruction.casefold()
    tools = {t.name: t for t in workflow.tools}
    used: set[str] = set()
    for i, action in enumerate(task.gold_actions):
        earlier = [json.dumps(r.result, ensure_ascii=False, default=str).casefold() for r in run.results[:i]]
        props = tools[action.tool].properties
        for param, value in action.arguments.items():
            hits = [k for k, v in known.items() if same(v, value)]
            used.update(hits)
            if hits or isinstance(value, bool) or value is None:
                continue
            schema = found if isinstance(found := props.get(param), dict) else {}
            fixed = "const" in schema or ("enum" in schema and len(schema["enum"]) == 1) or \
                ("default" in schema and same(schema["default"], value))
            if fixed or _mentioned(value, [instruction, *earlier, *shown]):
                continue
            if isinstance(value, str) and " " in value.strip() and any(isinstance(v, str | int) and not isinstance(v, bool)
                                              and len(str(v)) >= 3 and str(v).casefold() in value.casefold()
                                              for v in known.values()):
                issues.append(EnvIssue(path=f"gold_actions[{i}].arguments.{param}", code="composed_argument",
                                       severity="warning",
                                       reason=f"{action.tool}({param}={value!r}) is free text built around a user "
                                              "fact; an assistant will word it differently"))
                continue
            issues.append(EnvIssue(path=f"gold_actions[{i}].arguments.{param}", code="unreachable_argument",
                                   reason=f"{action.tool}({param}={value!r}): the user does not know it, the "
                                          "instruction does not say it, and no record, rule, tool or earlier "
                                          "result holds it"))
    results = [json.dumps(r.result, ensure_ascii=False, default=str).casefold() for r in run.results]
    for i, value in enumerate(task.communicate_info):
        if not _mentioned(value, [*results, state_text]):
            issues.append(EnvIssue(path=f"communicate_info[{i}]", code="unsupported_communicate",
                                   reason=f"{value!r} is in no tool result and no record, so the assistant cannot "
                                          "know it"))
    for i, info in enumerate(task.known_info):
        if info.key not in used and not info.withhold and not _mentioned(info.value, [instruction]):
            issues.append(EnvIssue(path=f"known_info[{i}]", code="unused_info", severity="warning",
                                   reason=f"the user knows {info.key}={info.value!r} but no gold action uses it"))
    if text is not None:
        issues += ground_task(task, text)[1]
    return issues
