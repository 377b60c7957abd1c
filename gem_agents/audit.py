"""`gem audit`: how grounded, how useful and how varied a run's output is, measured from its store.

Each figure answers one question a reader of the data would ask (issue 14, "Measured"):

- `grounding`: do the values the dialogues use come from the text? Initial-state values, gold-action
  argument values and user known-info values are counted; a value is text-grounded when its
  provenance is a span of the document (a `text` source whose quote really occurs in the stored
  text) or, for gold arguments and known info, when it equals a text-grounded state value (a gold
  argument also when it equals a text-grounded known-info value or is a string found in the text).
  Booleans and nulls are not counted (they are never a span of a text).
- `noop_tool_share`: tools that change nothing and return nothing (UI gestures dressed as tools).
- `compute_correct`: compute-tool results in the trajectories that equal their formula on the
  arguments, evaluated again here by the runtime's safe formula evaluator.
- `system_prompt_share`: verified (export-eligible) trajectories whose first message is a system
  message.
- `template_diversity`: distinct assistant-message templates (digits, quoted values and entity
  values masked) over assistant messages; scripted dialogue reuses a handful of templates.
- `funnel`: documents → relevant → environment valid → tasks valid → rollouts verified, with the
  reasons for each drop.
- `blame`: who failed rollouts are attributed to (Verdict.blame).
- `refinement`: what stage 4 added (issue 17): `repetition_share` (refined tool calls repeating a tool,
  with arguments of the same shape, that an earlier request of the dialogue already called; target
  ≤ 0.2), `new_capability_share` (refined tasks using a tool or branch their original did not), the
  complexity of the verified refined trajectories beside the paper's (46 messages, 8.6 tool types,
  16.3 calls) with each environment's ceiling (its number of tools), and per operator: produced,
  simulated, verified and dropped, with the drop reasons (from the refine stage's `refinement:` lines),
  and in how many verified composed tasks it took part.
- `relevance`: precision and recall of the relevance decision against a label of the input
  documents (e.g. `machine_procedure`; documents whose label is null are left out).

Read-only: the store is opened read-only and nothing in the run directory is written.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.io import iter_json_lines
from gem_agents.run.store import RunStore
from tools_runtime.environment import WRITE_EFFECTS, ToolEffect, ValueSource
from tools_runtime.records import Trajectory, Workflow
from tools_runtime.refine_tasks import new_capability_share, repetition_share
from tools_runtime.stats import mean_stats
from tools_runtime.tasks import Task

# Result keys that say only that a call happened; a result made of nothing else carries no data.
STATUS_KEYS = frozenset({"status", "ok", "success", "message", "done", "result_code"})
# Digits, quoted spans and entity values are masked so that two messages differing only in them are
# one template.
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_QUOTED = re.compile(r"\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|‘[^’\n]{1,200}’|`[^`\n]{1,200}`|(?<!\w)'[^'\n]{1,200}'(?!\w)")
_SPACES = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------------------------
# loading


@dataclass
class RunData:
    """What the audit reads from one run directory."""

    docs: list[dict[str, Any]]
    trajectories: list[tuple[str, Trajectory]]
    workflows: dict[str, Workflow] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """Whether any output of the run came from the offline stand-ins."""
        return any(t.provenance.offline for _, t in self.trajectories) or any(t.offline for t in self.tasks.values())


def stored_tasks(store: RunStore) -> tuple[list[Task], list[dict[str, Any]]]:
    """Tasks and task rejections the store keeps apart from trajectories (newer stores), else none."""
    tasks: list[Task] = []
    rejections: list[dict[str, Any]] = []
    reader = getattr(store, "tasks", None)
    if callable(reader):
        for item in reader():
            rec = item.get("task", item) if isinstance(item, dict) else item
            if isinstance(rec, Task):
                tasks.append(rec)
            elif isinstance(rec, dict):
                try:
                    tasks.append(Task.model_validate(rec))
                except ValueError:
                    continue
    reader = getattr(store, "task_rejections", None)
    if callable(reader):
        for item in reader():
            rejections.append(item if isinstance(item, dict) else item.model_dump())
    return tasks, rejections


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory's documents, environments, tasks and trajectories (read-only)."""
    store = RunStore(run_dir, readonly=True)
    try:
        docs = store.documents()
        kinds = store.trajectory_kinds()
        trajs = [(kinds.get(t.id, "original"), t) for t in store.trajectories()]
        tasks, rejections = stored_tasks(store)
    finally:
        store.close()
    return run_data(docs, trajs, tasks, rejections)


def run_data(docs: list[dict[str, Any]], trajs: list[tuple[str, Trajectory]], tasks: Iterable[Task] = (),
             rejections: Iterable[dict[str, Any]] = ()) -> RunData:
    """RunData from records already read from a store (the report reads them once for both)."""
    data = RunData(docs=docs, trajectories=trajs, rejections=list(rejections))
    for d in docs:
        if d.get("text"):
            data.texts[d["doc_id"]] = d["text"]
        if d.get("workflow"):
            try:
                wf = Workflow.model_validate(d["workflow"])
            except ValueError:
                continue
            data.workflows[wf.id] = wf
    for task in tasks:
        data.tasks.setdefault(task.id, task)
    for _, t in trajs:
        if t.scenario is not None:
            if t.scenario.task is not None:
                data.tasks.setdefault(t.scenario.task.id, t.scenario.task)
            data.workflows.setdefault(t.scenario.workflow.id, t.scenario.workflow)
    return data


def _text_of(data: RunData, wf: Workflow | None, doc_id: str = "") -> str | None:
    """The stored source text of an environment (by segment id, then parent id); None when not kept."""
    for key in ((wf.id if wf else ""), (wf.doc_id if wf else ""), doc_id):
        if key and key in data.texts:
            return data.texts[key]
    return None


# ---------------------------------------------------------------------------------------------------------
# value helpers


def _norm_text(s: str) -> str:
    s = s.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("…", "...")
    return _SPACES.sub(" ", s).strip().casefold()


def _scalars(value: Any) -> Iterator[Any]:
    """The scalar leaves of a value (lists and dicts flattened), booleans and nulls left out."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _scalars(v)
    elif counted(value):
        yield value


def value_key(value: Any) -> str:
    """A comparison key: numbers by value (1 == 1.0 == "1"), strings by case- and space-folded text."""
    if isinstance(value, bool):
        return f"b:{value}"
    if isinstance(value, int | float):
        return f"n:{float(value)!r}"
    s = _norm_text(str(value))
    try:
        f = float(s)
    except ValueError:
        return f"s:{s}"
    return f"n:{f!r}" if math.isfinite(f) else f"s:{s}"


def counted(value: Any) -> bool:
    """Whether a value is counted by `grounding`: booleans and nulls are never a span of a text."""
    return value is not None and not isinstance(value, bool)


def source_in_text(source: ValueSource | None, value: Any, text: str | None) -> bool:
    """Whether a value's provenance is a span of the text: a `text` source whose quote (or value) occurs in it.

    The runtime's own provenance check (env_validate.check_source) decides, so the audit and the
    environment validator never disagree. Without a stored text (an older run) the declared kind is
    taken at its word.
    """
    if source is None or source.kind != "text":
        return False
    if text is None:
        return True
    from tools_runtime.env_validate import check_source

    return check_source(value, source, text)[0].kind == "text"


def literal_in_text(value: Any, text: str | None) -> bool:
    """Whether a string value (3+ characters) occurs in the text (case- and whitespace-insensitive)."""
    if text is None or not isinstance(value, str) or len(value.strip()) < 3:
        return False
    from tools_runtime.env_validate import find_span

    return find_span(value, text) is not None


# ---------------------------------------------------------------------------------------------------------
# grounding


def _share(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _env_text_values(wf: Workflow, text: str | None) -> set[str]:
    """Comparison keys of an environment's text-grounded initial-state values."""
    out: set[str] = set()
    for rec in wf.initial_state:
        for name, value in rec.values.items():
            if source_in_text(rec.sources.get(name), value, text):
                out.update(value_key(v) for v in _scalars(value))
    return out


def grounding(data: RunData) -> dict[str, Any]:
    """Share of initial-state, gold-argument and known-info values whose provenance is a span of the text.

    Every task of the run counts (refined tasks too); `originals` gives the same figure over the
    tasks written for the environments only (no `parent`), before refinement composed new ones.
    """
    out = _grounding(data, data.tasks.values())
    originals = [t for t in data.tasks.values() if not t.parent]
    out["tasks"] = {"all": len(data.tasks), "originals": len(originals)}
    out["originals"] = {k: v for k, v in _grounding(data, originals).items() if k in ("value", "grounded", "total")}
    return out


def _grounding(data: RunData, tasks: Iterable[Task]) -> dict[str, Any]:
    parts: dict[str, dict[str, Any]] = {name: {"grounded": 0, "total": 0}
                                        for name in ("initial_state", "gold_arguments", "known_info")}
    state_keys: dict[str, set[str]] = {}
    for wf in data.workflows.values():
        text = _text_of(data, wf)
        state_keys[wf.id] = _env_text_values(wf, text)
        for rec in wf.initial_state:
            for name, value in rec.values.items():
                n = sum(1 for _ in _scalars(value))
                parts["initial_state"]["total"] += n
                if source_in_text(rec.sources.get(name), value, text):
                    parts["initial_state"]["grounded"] += n
    for task in tasks:
        text = _text_of(data, data.workflows.get(task.env_id), task.env_id)
        env_keys = state_keys.get(task.env_id, set())
        known_keys: set[str] = set()
        for info in task.known_info:
            ok = source_in_text(info.source, info.value, text)
            for v in _scalars(info.value):
                parts["known_info"]["total"] += 1
                if ok or value_key(v) in env_keys:
                    parts["known_info"]["grounded"] += 1
                    known_keys.add(value_key(v))
        for action in task.gold_actions:
            for v in _scalars(action.arguments):
                parts["gold_arguments"]["total"] += 1
                k = value_key(v)
                if k in env_keys or k in known_keys or literal_in_text(v, text):
                    parts["gold_arguments"]["grounded"] += 1
    grounded = sum(p["grounded"] for p in parts.values())
    total = sum(p["total"] for p in parts.values())
    for p in parts.values():
        p["share"] = _share(p["grounded"], p["total"])
    return {"value": _share(grounded, total), "grounded": grounded, "total": total, "parts": parts}


# ---------------------------------------------------------------------------------------------------------
# no-op tools


def declared_noop(effect: ToolEffect) -> bool:
    """Whether a declared effect neither changes state nor returns data."""
    if effect.kind == "update":
        changes = bool(effect.writes)
    else:
        changes = effect.kind in WRITE_EFFECTS
    if effect.kind == "compute":
        returns = bool(effect.formula or effect.returns)
    elif effect.kind == "read":
        returns = bool(effect.returns or effect.entity)
    else:
        returns = bool(effect.returns)
    return not (changes or returns)


def _carries_data(result: Any) -> bool:
    if result is None or result == "" or result == {}:
        return False
    if isinstance(result, dict):
        return any(k not in STATUS_KEYS for k in result)
    return True


def noop_tool_share(data: RunData) -> dict[str, Any]:
    """Share of the environments' tools that have no effect on state and return no data.

    A tool with a declared effect is judged by its declaration; one without (third-party tools) by
    its name binding: the fallback `action` operation only records that a button was pressed. A
    tool whose every successful call in the run changed nothing and returned only a status is a
    no-op too, whatever it declared.
    """
    from tools_runtime.binding import bind_tool

    observed: dict[tuple[str, str], list[bool]] = {}
    for _, t in data.trajectories:
        wf_id = t.scenario.workflow.id if t.scenario else t.workflow_id
        for step in t.steps:
            if step.ok and not step.injected:
                did = bool(step.state_diff) or _carries_data(step.result)
                observed.setdefault((wf_id, step.name), []).append(did)
    tools = 0
    noops: list[str] = []
    for wf in data.workflows.values():
        for spec in wf.tools:
            if spec.name in wf.user_tools:
                continue
            tools += 1
            effect = wf.effects.get(spec.name)
            noop = declared_noop(effect) if effect is not None else bind_tool(spec).op == "action"
            calls = observed.get((wf.id, spec.name))
            if calls and not any(calls):
                noop = True
            if noop:
                noops.append(f"{wf.id}:{spec.name}")
    return {"value": _share(len(noops), tools), "noop": len(noops), "tools": tools, "examples": noops[:20]}


# ---------------------------------------------------------------------------------------------------------
# compute correctness


def _formula_value(formula: str, arguments: dict[str, Any]) -> Any:
    """The runtime's safe evaluation of a compute formula on call arguments (FormulaError when it cannot)."""
    from tools_runtime.formula import evaluate

    return evaluate(formula, arguments)


def _result_value(result: Any, effect: ToolEffect) -> Any:
    if not isinstance(result, dict):
        return result
    for key in (*effect.returns[:1], "result", "value"):
        if key in result:
            return result[key]
    values = [v for k, v in result.items() if k not in STATUS_KEYS]
    return values[0] if len(values) == 1 else result


def same_value(a: Any, b: Any) -> bool:
    """Equal as results: numbers within a relative 1e-6 (rounded results pass at 2 decimals), else exactly."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return value_key(a) == value_key(b)
    if math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9):
        return True
    return round(x, 2) == round(y, 2) and (x != int(x) or y != int(y))


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def compute_correct(data: RunData) -> dict[str, Any]:
    """Share of successful compute-tool calls whose result equals the tool's formula on the arguments."""
    correct = calls = 0
    wrong: list[dict[str, Any]] = []
    for _, t in data.trajectories:
        wf = t.scenario.workflow if t.scenario else data.workflows.get(t.workflow_id)
        if wf is None:
            continue
        for step in t.steps:
            effect = wf.effects.get(step.name)
            if effect is None or effect.kind != "compute" or not step.ok or step.injected:
                continue
            calls += 1
            args = _args(step.arguments)
            got = _result_value(step.result, effect)
            try:
                want = _formula_value(effect.formula or "", args) if effect.formula else None
            except Exception as exc:  # noqa: BLE001 — a formula that cannot run on these args is a wrong result
                want = f"<{type(exc).__name__}: {exc}>"
            if want is not None and same_value(got, want):
                correct += 1
            elif len(wrong) < 20:
                wrong.append({"trajectory": t.id, "tool": step.name, "arguments": args, "result": got,
                              "formula": effect.formula, "expected": want})
    return {"value": _share(correct, calls), "correct": correct, "calls": calls, "wrong": wrong}


# ---------------------------------------------------------------------------------------------------------
# system prompt and templates


def _eligible(data: RunData) -> list[tuple[str, Trajectory]]:
    """Trajectories an export would take (verified), offline ones included so offline runs are measured."""
    return [(k, t) for k, t in data.trajectories if t.verdict is not None and t.verdict.passed]


def system_prompt_share(data: RunData) -> dict[str, Any]:
    """Share of export-eligible trajectories whose first message is a non-empty system message."""
    eligible = _eligible(data)
    with_system = sum(1 for _, t in eligible if t.messages and t.messages[0].get("role") == "system"
                      and str(t.messages[0].get("content") or "").strip())
    return {"value": _share(with_system, len(eligible)), "with_system": with_system, "trajectories": len(eligible)}


def _entity_values(t: Trajectory, data: RunData) -> list[str]:
    """The strings a template masks for one trajectory: state, known facts, call arguments and results."""
    values: set[str] = set()
    sc = t.scenario
    wf = sc.workflow if sc else data.workflows.get(t.workflow_id)
    pools: list[Any] = []
    if wf is not None:
        pools += [r.values for r in wf.initial_state]
    if sc is not None:
        pools += [sc.initial_state, sc.known_info]
        if sc.task is not None:
            pools += [i.value for i in sc.task.known_info]
            pools += [a.arguments for a in sc.task.gold_actions]
    for step in t.steps:
        pools += [_args(step.arguments), step.result]
    for v in _scalars(pools):
        if isinstance(v, str) and len(v.strip()) >= 2:
            values.add(v.strip())
    return sorted(values, key=len, reverse=True)


def assistant_template(content: str, entity_values: Iterable[str] = ()) -> str:
    """An assistant message with entity values, quoted values and digits masked, spaces and case folded."""
    s = content
    values = sorted({v for v in entity_values if v}, key=len, reverse=True)  # longest first: "New York City"
    if values:
        s = re.sub("|".join(re.escape(v) for v in values), "<v>", s, flags=re.IGNORECASE)
    s = _QUOTED.sub("<q>", s)
    s = _NUMBER.sub("<n>", s)
    return _SPACES.sub(" ", s).strip().casefold()


def template_diversity(data: RunData) -> dict[str, Any]:
    """Distinct assistant-message templates over assistant messages with text (tool-call-only ones left out)."""
    templates: Counter[str] = Counter()
    for _, t in data.trajectories:
        values: list[str] | None = None
        for m in t.messages:
            if m.get("role") != "assistant":
                continue
            content = str(m.get("content") or "").strip()
            if not content:
                continue
            if values is None:
                values = _entity_values(t, data)
            templates[assistant_template(content, values)] += 1
    n = sum(templates.values())
    return {"value": _share(len(templates), n), "templates": len(templates), "assistant_messages": n,
            "most_common": [{"template": k[:160], "count": c} for k, c in templates.most_common(5)]}


# ---------------------------------------------------------------------------------------------------------
# funnel, blame, relevance


def reason_key(reason: str) -> str:
    """A grouping key for a drop reason: its text up to the first detail, numbers masked."""
    head = re.split(r"[:(]", reason, maxsplit=2)
    key = head[0].strip()
    if key in ("extraction rejected", "refinement", "no rollout verified", "task rejected") and len(head) > 1:
        key = f"{key}: {head[1].strip()}"
    return re.sub(r"\d+", "N", key)[:90] or "unknown"


def _doc_reasons(d: dict[str, Any]) -> list[str]:
    if d["status"] == "failed":
        return [reason_key(d.get("error") or "error")]
    return [reason_key(r) for r in (d.get("reasons") or [])[:1]] or [d.get("stage") or "rejected"]


def funnel(data: RunData) -> dict[str, Any]:
    """documents → relevant → environment valid → tasks valid → rollouts verified, with drop reasons."""
    docs = data.docs
    relevant = [d for d in docs if (d.get("relevance") or {}).get("multi_step")]
    not_relevant: Counter[str] = Counter()
    for d in docs:
        rel = d.get("relevance")
        if rel and rel.get("multi_step"):
            continue
        if rel is None:
            not_relevant.update(_doc_reasons(d))
        else:
            not_relevant[f"not relevant ({rel.get('decided_by') or 'model'})"] += 1
    env_valid = [d for d in relevant if d.get("workflow")]
    no_env: Counter[str] = Counter()
    for d in relevant:
        if not d.get("workflow"):
            no_env.update(_doc_reasons(d))
    originals = [t for k, t in data.trajectories if k == "original"]
    task_ids = {t.scenario.task.id for t in originals if t.scenario and t.scenario.task}
    task_ids |= {tid for tid, task in data.tasks.items() if not task.parent}  # refined tasks have a parent
    tasks_rejected: Counter[str] = Counter(str(r.get("code") or reason_key(str(r.get("reason", ""))))
                                           for r in data.rejections)
    env_ids_with_tasks = {data.tasks[tid].env_id for tid in task_ids if tid in data.tasks}
    no_task: Counter[str] = Counter()
    for d in env_valid:
        wf_id = (d.get("workflow") or {}).get("id", d["doc_id"])
        if task_ids and wf_id not in env_ids_with_tasks and d["status"] != "kept":
            no_task.update(_doc_reasons(d))
    verified = [t for t in originals if t.verdict and t.verdict.passed]
    failed: Counter[str] = Counter()
    for t in originals:
        if t.verdict is not None and not t.verdict.passed:
            failed[t.verdict.codes()[0] if t.verdict.failures else "failed"] += 1
    refined = [t for k, t in data.trajectories if k == "refined"]
    return {
        "documents": len(docs),
        "relevant": len(relevant),
        "environment_valid": len(env_valid),
        "tasks_valid": len(task_ids),
        "tasks_rejected": sum(tasks_rejected.values()),
        "rollouts": len(originals),
        "rollouts_verified": len(verified),
        "refined_verified": sum(1 for t in refined if t.verdict and t.verdict.passed),
        "drops": {
            "not_relevant": dict(not_relevant.most_common()),
            "no_environment": dict(no_env.most_common()),
            "tasks_rejected": dict(tasks_rejected.most_common()),
            "environment_without_task": dict(no_task.most_common()),
            "rollout_failed": dict(failed.most_common()),
        },
    }


def blame_counts(data: RunData) -> dict[str, int]:
    """Failed rollouts by blame (assistant, user, environment, task; `unattributed` when none was set)."""
    counts: Counter[str] = Counter()
    for _, t in data.trajectories:
        if t.verdict is not None and not t.verdict.passed:
            counts[t.verdict.blame or "unattributed"] += 1
    return dict(counts.most_common())


# The paper's complexity of trajectories after refinement (messages, tool types, tool calls).
PAPER_REFINED = {"messages": 46.0, "tool_types": 8.6, "tool_calls": 16.3}
# Codes of drops that happened after a refined task was simulated (the others never reached a dialogue).
SIMULATED_DROPS = frozenset({"unverified", "rollout_error"})
# `refinement: OPERATOR: CODE: REASON`, as `TaskRefinement.drop_lines` writes them into a document's reasons.
_DROP_LINE = re.compile(r"^refinement: (?P<op>[\w+]+): (?P<code>[a-z_]+): (?P<reason>.*)$", re.DOTALL)


def operator_of(task: Task | None) -> str:
    """The operator a refined task is counted under: `composed`, else the last operator it applied."""
    if task is None:
        return "legacy"
    if task.meta.get("composed"):
        return "composed"
    ops = task.meta.get("operators") or [task.operator or "other"]
    return str(ops[-1])


def _drop_operator(op: str) -> str:
    return "composed" if "+" in op else op


def _complexity(trajs: list[Trajectory]) -> dict[str, Any]:
    m = mean_stats(t.stats for t in trajs)
    return {"n": m["n"], "messages": m["messages"], "tool_types": m["tool_types"], "tool_calls": m["tool_calls"],
            "user_turns": m["user_turns"], "errors_recovered": m["errors_recovered"]}


def refinement(data: RunData) -> dict[str, Any]:
    """What refinement added: repetition, new capabilities, complexity vs the paper, and each operator's funnel."""
    refined = [t for k, t in data.trajectories if k == "refined" or t.provenance.stage == "refine"]
    verified = [t for t in refined if t.verdict is not None and t.verdict.passed]
    originals = {tid: {a.tool for a in task.gold_actions} for tid, task in data.tasks.items() if not task.parent}
    composed = [t for t in verified if t.scenario is not None and t.scenario.task is not None
                and t.scenario.task.meta.get("composed")]
    ops: dict[str, dict[str, Any]] = {}

    def row(op: str) -> dict[str, Any]:
        return ops.setdefault(op, {"produced": 0, "simulated": 0, "verified": 0, "dropped": 0, "drop_codes": {},
                                   "examples": [], "in_composed": 0})

    for t in composed:  # how many verified composed tasks each operator took part in
        for op in set(t.scenario.task.meta.get("operators") or []):  # type: ignore[union-attr]
            row(str(op))["in_composed"] += 1

    for t in verified:
        r = row(operator_of(t.scenario.task if t.scenario is not None else None))
        r["produced"] += 1
        r["simulated"] += 1
        r["verified"] += 1
    for d in data.docs:
        for line in d.get("reasons") or []:
            m = _DROP_LINE.match(str(line))
            if m is None:
                continue
            r = row(_drop_operator(m["op"]))
            code = m["code"]
            r["dropped"] += 1
            r["drop_codes"][code] = r["drop_codes"].get(code, 0) + 1
            if code in SIMULATED_DROPS:
                r["produced"] += 1
                r["simulated"] += 1
            if len(r["examples"]) < 2:
                r["examples"].append(f"{code}: {m['reason'][:160]}")
    ceilings = {}
    for t in verified:
        wf = t.scenario.workflow if t.scenario is not None else data.workflows.get(t.workflow_id)
        if wf is not None:
            ceilings[wf.id] = len(wf.tools)
    rep = repetition_share(verified)
    newcap = new_capability_share(verified, originals)
    return {
        "refined": len(refined), "verified": len(verified),
        "repetition_share": None if rep is None else round(rep, 3),
        "repetition_share_composed": None if (rc := repetition_share(composed)) is None else round(rc, 3),
        "new_capability_share": None if newcap is None else round(newcap, 3),
        "complexity": _complexity(verified), "complexity_composed": _complexity(composed), "paper": PAPER_REFINED,
        "tool_ceiling": {"environments": len(ceilings),
                         "mean": round(sum(ceilings.values()) / len(ceilings), 2) if ceilings else None,
                         "below_paper": sum(1 for n in ceilings.values() if n < PAPER_REFINED["tool_types"])},
        "operators": dict(sorted(ops.items())),
    }


def group_of(doc_id: str) -> str:
    """The source document of a segment id: `guide#s2` → `guide`."""
    base, sep, tail = doc_id.rpartition("#s")
    return base if sep and tail.isdigit() else doc_id


def read_labels(path: str | Path, field_name: str = "machine_procedure", id_field: str = "id") -> dict[str, Any]:
    """Document id → label from a JSONL input file (records without the field are skipped)."""
    labels: dict[str, Any] = {}
    for row in iter_json_lines(path, "labels file"):
        rec = row.value
        if isinstance(rec, dict) and field_name in rec and id_field in rec:
            labels[str(rec[id_field]).strip()] = rec[field_name]
    return labels


def relevance_pr(data: RunData, labels: dict[str, Any]) -> dict[str, Any]:
    """Precision and recall of the run's relevance decisions against boolean labels (nulls left out).

    A source document counts as predicted relevant when any of its segments was judged relevant.
    """
    predicted: dict[str, bool] = {}
    decided_by: Counter[str] = Counter()
    for d in data.docs:
        rel = d.get("relevance") or {}
        gid = group_of(d["doc_id"])
        predicted[gid] = predicted.get(gid, False) or bool(rel.get("multi_step"))
        decided_by[str(rel.get("decided_by") or "none")] += 1
    tp = fp = fn = tn = 0
    left_out = 0
    for gid, pred in predicted.items():
        gold = labels.get(gid)
        if not isinstance(gold, bool):
            left_out += 1
            continue
        tp += pred and gold
        fp += pred and not gold
        fn += (not pred) and gold
        tn += (not pred) and not gold
    return {"precision": _share(tp, tp + fp), "recall": _share(tp, tp + fn), "tp": tp, "fp": fp, "fn": fn,
            "tn": tn, "left_out": left_out, "decided_by": dict(decided_by)}


# ---------------------------------------------------------------------------------------------------------
# all together


def audit_data(data: RunData, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every audit figure of already-loaded run data."""
    out: dict[str, Any] = {
        "offline": data.offline,
        "grounding": grounding(data),
        "noop_tool_share": noop_tool_share(data),
        "compute_correct": compute_correct(data),
        "system_prompt_share": system_prompt_share(data),
        "template_diversity": template_diversity(data),
        "funnel": funnel(data),
        "blame": blame_counts(data),
        "refinement": refinement(data),
    }
    if labels:
        out["relevance"] = relevance_pr(data, labels)
    return out


def audit_run(run_dir: str | Path, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every audit figure of a run directory (see the module docstring)."""
    result = audit_data(load_run(run_dir), labels)
    return {"run_dir": str(run_dir), **result}


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The one-number form of each figure (for tables and docs)."""
    return {k: (result[k] or {}).get("value") for k in ("grounding", "noop_tool_share", "compute_correct",
                                                         "system_prompt_share", "template_diversity")}
