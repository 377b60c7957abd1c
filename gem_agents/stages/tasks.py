"""Stage 3a, the `task` role: K tasks per environment, each validated and its gold executed before simulation.

A task (tools_runtime.tasks.Task) is what one user wants done in an environment: an instruction in
the user's own words grounded in the text (it cites the steps it exercises), a persona, what the user
knows (each value with its provenance) and what the assistant must ask or look up, and the expected
outcome — gold actions executed on a fresh backend (`run_gold`) plus the values the assistant must
tell the user. A task that does not validate, whose gold fails, or that has no criterion is discarded
with a TaskRejection and never simulated.

`write_tasks` asks a model (prompts/task.txt; JSON matching TASK_SCHEMA, one repair round with the
rejections); `write_tasks_offline` is the deterministic stand-in: values from the environment's
text-grounded state and parameter examples, instructions from the text's own step sentences and the
title, held to the same checks and marked `offline`. Its first task is the text's whole procedure
(`procedure_task`: the goal in the user's words, the calls in the execution graph's order), then one
task per write.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from pydantic import ValidationError

from gem_agents.models.client import ModelCallError, ModelClient
from gem_agents.prompting import fill, load_prompt
from gem_agents.registry import register
from gem_agents.stages.base import Stage, StageEnv
from gem_agents.stages.offline_env import source_for
from gem_agents.stages.plausible import plausible_value
from gem_agents.stages.relevance import PROMPTS, wants_json_schema
from gem_agents.user.dialogue_text import be
from tools_runtime.env_validate import ground_task
from tools_runtime.environment import ValueSource
from tools_runtime.records import Document, Workflow
from tools_runtime.scenario import PERSONAS, is_secret
from tools_runtime.tasks import Action, Info, Task, TaskRejection, run_gold

# The model answers in this schema: the Task fields a writer decides (ids, env and offline are ours).
# Flat and without $ref so grammar-constrained decoders accept it.
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "instruction": {"type": "string"},
                    "persona": {"type": "string"},
                    "cites": {"type": "array", "items": {"type": "integer"}},
                    "known_info": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "value": {},
                                       "quote": {"type": "string"}, "withhold": {"type": "boolean"}},
                        "required": ["key", "value", "quote", "withhold"]}},
                    "unknown_info": {"type": "array", "items": {"type": "string"}},
                    "gold_actions": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"}},
                        "required": ["tool", "arguments"]}},
                    "communicate_info": {"type": "array", "items": {"type": "string"}},
                    "refuse": {"type": "boolean"},
                },
                "required": ["instruction", "persona", "cites", "known_info", "unknown_info", "gold_actions",
                             "communicate_info"],
            },
        },
    },
    "required": ["tasks"],
}


# ---------------------------------------------------------------------------------------------------------
# checking


_FILLER_WORDS = frozenset("with from this that your what want need please could would should help have them "
                          "they there then when which into onto also just like make sure able about".split())


def _content_words(*texts: str) -> set[str]:
    """Content words, singular (`rooms` → `room`), of names and sentences."""
    words = re.findall(r"[a-z0-9]+", " ".join(texts).replace("_", " ").lower())
    return {w[:-1] if w.endswith("s") and len(w) > 4 else w for w in words if len(w) > 3 and w not in _FILLER_WORDS}


def unrelated_write(instruction: str, task: Task, workflow: Workflow) -> str | None:
    """A gold write the request never asks for ("log in to the portal" answered by `create_room`), else None.

    Related means the request shares a word with the tool's name, its record or the text's step it
    does (for a description without a step: its words the page title does not have), or says one of
    the values it writes.
    """
    said = _content_words(instruction)
    for action in task.gold_actions:
        effect = workflow.effects.get(action.tool)
        if effect is None or effect.kind in ("read", "session", "compute"):
            continue
        spec = workflow.tool(action.tool)
        desc = spec.description if spec else ""
        about = _content_words(action.tool, effect.entity or "", _step_text(desc))
        if not _step_text(desc):  # a model-written description: its own words, not the page title's every tool shares
            # Where it is done ("Add in office portal") says nothing about what it does.
            what = re.sub(r"\b(?:in|on|from|under|at|via)\s+(?:the\s+)?[^.;(]*", " ", desc)
            about |= _content_words(what) - _content_words(workflow.title)
        values = [str(v) for v in action.arguments.values() if isinstance(v, str | int | float)
                  and not isinstance(v, bool)]
        if not about & said and not any(v.lower() in instruction.lower() for v in values if len(v) > 2):
            return f"the request never asks for what {action.tool} does (it shares no word with the tool, its " \
                   "record or its step)"
    return None


def check_tasks(workflow: Workflow, tasks: list[Task]) -> tuple[list[Task], list[TaskRejection]]:
    """(valid tasks with their expected state hash, rejections): gold actions executed on a fresh backend."""
    valid: list[Task] = []
    rejected: list[TaskRejection] = []
    for task in tasks:
        why = unrelated_write(task.instruction, task, workflow)
        if why is not None:
            rejected.append(TaskRejection(task_id=task.id, code="unrelated_instruction", reason=why))
            continue
        run = run_gold(workflow, task)
        if isinstance(run, TaskRejection):
            rejected.append(run)
            continue
        valid.append(task.model_copy(update={"expected_state_hash": run.expected_state_hash}))
    return valid, rejected


def tasks_from_answer(data: Any, workflow: Workflow, text: str, *, prefix: str = "t") -> tuple[list[Task],
                                                                                               list[TaskRejection]]:
    """Tasks from a model's parsed answer; an item that does not validate becomes a rejection."""
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return [], [TaskRejection(task_id=f"{workflow.id}:{prefix}0", code="unparsable",
                                  reason="the answer has no `tasks` list")]
    tasks: list[Task] = []
    rejected: list[TaskRejection] = []
    for i, item in enumerate(items):
        tid = f"{workflow.id}:{prefix}{i}"
        if not isinstance(item, dict):
            rejected.append(TaskRejection(task_id=tid, code="invalid_task", reason="not an object"))
            continue
        known = []
        for info in item.get("known_info") or []:
            if isinstance(info, dict) and "key" in info:
                quote = str(info.get("quote") or "")
                src = source_for(text, quote) if quote else ValueSource(kind="invented")
                known.append({"key": info["key"], "value": info.get("value"), "source": src.model_dump(),
                              "withhold": bool(info.get("withhold"))})
        body = {k: v for k, v in item.items() if k in ("instruction", "persona", "cites", "unknown_info",
                                                         "gold_actions", "communicate_info", "refuse")}
        try:
            task = Task.model_validate({**body, "id": tid, "env_id": workflow.id, "known_info": known})
            tasks.append(ground_task(task, text)[0])
        except ValidationError as exc:
            rejected.append(TaskRejection(task_id=tid, code="invalid_task",
                                          reason="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                           for e in exc.errors()[:4])))
    return tasks, rejected


# ---------------------------------------------------------------------------------------------------------
# the model writer


def task_messages(workflow: Workflow, doc: Document, k: int) -> list[dict[str, Any]]:
    """The first message of a task-writing call: the text, the environment and K."""
    env = {"tools": [t.to_openai()["function"] for t in workflow.tools],
           "effects": {n: e.model_dump(exclude_defaults=True) for n, e in workflow.effects.items()},
           "entities": [e.model_dump(exclude_defaults=True) for e in workflow.entities],
           "initial_state": [r.values for r in workflow.initial_state],
           "policy": [r.text for r in workflow.policy]}
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(workflow.steps))
    return [{"role": "user", "content": fill(load_prompt(PROMPTS, "task.txt"), k=str(k), text=doc.text, steps=steps,
                                            environment=json.dumps(env, ensure_ascii=False, indent=1))}]


def _parse_json(text: str) -> Any:
    text = text.strip()
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if m:
        text = m.group(1)
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start > 0:
        text = text[start:]
    return json.loads(text)


async def write_tasks(workflow: Workflow, doc: Document, client: ModelClient, *, k: int = 3,
                      repair_rounds: int = 1) -> tuple[list[Task], list[TaskRejection]]:
    """The `task` role for one environment: ask, validate, execute gold; rejections go back once."""
    if client.cfg.draft == "offline":  # a small model rewrites the offline writer's tasks (stages/draft_revise.py)
        from gem_agents.stages.draft_revise import revise_tasks
        drafts, drafts_rejected = write_tasks_offline(workflow, doc.text, k=k)
        return await revise_tasks(workflow, doc, client, drafts, repair_rounds=repair_rounds), drafts_rejected
    json_mode = wants_json_schema(client.cfg)
    messages = task_messages(workflow, doc, k)
    valid: list[Task] = []
    rejected: list[TaskRejection] = []
    for attempt in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=TASK_SCHEMA if json_mode else None, schema_name="tasks",
                                  stage="task")
        try:
            data = _parse_json(reply.text)
        except ValueError as exc:
            round_rejected = [TaskRejection(task_id=f"{workflow.id}:a{attempt}", code="unparsable",
                                            reason=f"the answer is not JSON: {exc}")]
            round_valid: list[Task] = []
        else:
            tasks, round_rejected = tasks_from_answer(data, workflow, doc.text, prefix=f"a{attempt}t")
            round_valid, gold_rejected = check_tasks(workflow, tasks)
            round_rejected += gold_rejected
        valid += round_valid
        rejected += round_rejected
        if len(valid) >= k or not round_rejected:
            break
        errors = "\n".join(f"- {r.task_id}: {r.code}: {r.reason}" for r in round_rejected)
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": f"These tasks were rejected:\n{errors}\nWrite {k - len(valid)} "
                                                "replacement task(s) in the same JSON format."}]
    return valid[:k], rejected


# ---------------------------------------------------------------------------------------------------------
# the offline writer

OPENERS = ["Hi,", "Hello!", "Hey,", "Good morning.", "Hi there —", "Hello again,"]
ASKS = ["Could you {step}?", "Can you please {step}?", "I need you to {step}.", "Would you {step} for me?",
        "Please {step}."]
# For a step that opens with a clause ("In the General tab, check Reverse"): quote the page instead.
QUOTE_ASKS = ["The help page says: \"{step}\". Can you do that for me?", "According to the guide: \"{step}\" — "
              "could you take care of it?", "I read that I should do this: \"{step}\". Please handle it."]
def _step_text(description: str) -> str:
    """The text's own step sentence(s) a tool description quotes."""
    m = re.search(r"Text: (.*?)(?:\. In the UI:|\.$)", description)
    return m.group(1) if m else ""


_YOU_VERBS = r"(?:do|don't|would|want|need|have|can|will|wish|like|prefer|use|see|type|chose|choose|select)"


def as_user_words(step: str) -> str:
    """A step the page addresses to its reader, as the user says it ("your passwords" → "my passwords")."""
    s = re.sub(r"\byourself\b", "myself", step)
    s = re.sub(r"\byours\b", "mine", s)
    s = re.sub(r"\byour\b", "my", re.sub(r"\bYour\b", "My", s))
    s = re.sub(r"\byou are\b", "I am", s)
    s = re.sub(r"\byou're\b", "I'm", s)
    return re.sub(rf"\byou(?=\s+{_YOU_VERBS}\b)", "I", s)


def _as_request(sentence: str) -> str:
    """An imperative step as the tail of a request: leading clause kept, first letter lowered."""
    s = sentence.strip().rstrip(".")
    s = re.sub(r"^(?:Depending on your system, |Alternatively, |Then |Now |Finally, )", "", s)
    return s[:1].lower() + s[1:] if s else s


def _goal(title: str) -> str:
    """The user's purpose in their words, from the page title ("Set the default printer" → "set …")."""
    t = title.strip().rstrip(".")
    if not t:
        return ""
    first = t.split()[0].lower()
    while first in ("how", "what", "why") and re.match(r"^how (?:do i|to)\s+", t, flags=re.IGNORECASE):
        t = re.sub(r"^how (?:do i|to)\s+", "", t, flags=re.IGNORECASE)  # "How to how to hack" → hack
        first = t.split()[0].lower() if t else ""
    t = re.sub(r"\byour\b", "my", re.sub(r"\bYour\b", "My", t))  # the page speaks to the user; the user speaks
    from gem_agents.stages.offline_extractor import VERBS

    # A title that names a thing rather than an action ("Templates for commonly-used document types",
    # "Printing a booklet") is no verb phrase after "I want to".
    plural_noun = first.endswith("s") and not first.endswith("ss") and first not in VERBS
    if first.endswith("ing") or first in ("a", "an", "the") or plural_noun:
        return f"sort out {t[:1].lower() + t[1:]}"
    return t[:1].lower() + t[1:]


def _record_keys(workflow: Workflow, entity: str) -> list[tuple[Any, ValueSource]]:
    ent = next((e for e in workflow.entities if e.name == entity), None)
    if ent is None:
        return []
    return [(r.values[ent.key], r.sources.get(ent.key, ValueSource())) for r in workflow.initial_state
            if r.entity == entity and ent.key in r.values]


def _current(workflow: Workflow, entity: str, field: str) -> Any:
    for r in workflow.initial_state:
        if r.entity == entity and field in r.values:
            return r.values[field]
    return None


def _value_for(workflow: Workflow, text: str, tool: str, param: str, schema: dict[str, Any], entity: str,
               field: str | None, rng: random.Random) -> tuple[Any, ValueSource]:
    """A value for one argument and its provenance: the text's labels and examples first."""
    enum = schema.get("enum") or []
    examples = schema.get("examples") or []
    if enum:
        current = _current(workflow, entity, field) if field else None
        options = [v for v in enum if v != current] or list(enum)
        value = options[rng.randrange(len(options))] if len(options) > 1 and rng.random() < 0.3 else options[0]
        return value, source_for(text, str(value))
    if examples:
        value = examples[0]
        if isinstance(value, bool):
            spec = workflow.tool(tool)
            quote = _step_text(spec.description if spec else "")
            return value, source_for(text, quote)
        return value, source_for(text, str(value))
    if schema.get("type") == "boolean":
        return True, ValueSource(kind="invented")
    if schema.get("type") == "integer":
        return int(schema.get("minimum", 1)) + 2, ValueSource(kind="invented")
    # A free-text value: the text's own (the step's "named Archive", an address it shows), else one that
    # fits the parameter's meaning and marked invented; never a filler such as "My forwarding address".
    spec = workflow.tool(tool)
    return plausible_value(param, entity, _step_text(spec.description if spec else ""), text)


def _cites(workflow: Workflow, description: str) -> list[int]:
    quoted = _step_text(description).lower()
    return [i for i, s in enumerate(workflow.steps) if s and s[:40].lower().rstrip(".") in quoted]


def _offline_task(workflow: Workflow, text: str, tool: str, n: int, seed: int) -> Task:
    rng = random.Random(f"{workflow.id}|{tool}|{seed}|{n}")
    spec = workflow.tool(tool)
    effect = workflow.effects[tool]
    assert spec is not None
    known: list[Info] = []
    args: dict[str, Any] = {}
    unknown: list[str] = []
    writes = {w.param: w.field for w in effect.writes if w.param}
    for param, schema in spec.properties.items():
        if effect.key == param:
            keys = _record_keys(workflow, effect.entity)
            if keys and effect.kind != "create":
                value, src = keys[rng.randrange(len(keys))]
            else:
                value, src = _value_for(workflow, text, tool, param, schema, effect.entity, None, rng)
        else:
            value, src = _value_for(workflow, text, tool, param, schema, effect.entity, writes.get(param), rng)
        args[param] = value
        known.append(Info(key=param, value=value, source=src, withhold=is_secret(param)))
    gold = [Action(tool=tool, arguments=args)]
    if effect.requires_session:
        login = next((n for n, e in workflow.effects.items() if e.kind == "session"), None)
        if login is not None:
            lspec = workflow.tool(login)
            largs = {}
            for p, sch in (lspec.properties if lspec else {}).items():
                v, src = _value_for(workflow, text, login, p, sch, "", None, rng)
                largs[p] = v
                known.append(Info(key=p, value=v, source=src, withhold=True))
            gold.insert(0, Action(tool=login, arguments=largs))
    step = _as_request(_step_text(spec.description)) or spec.description.split(".")[0].lower()
    purpose = _goal(workflow.title)
    opener = OPENERS[rng.randrange(len(OPENERS))]
    from gem_agents.stages.offline_extractor import VERBS

    step = as_user_words(step)
    first = step.split(" ", 1)[0].lower() if step else ""
    raw = [r for r in _step_text(spec.description).split("; ") if r.strip()]
    if (first in VERBS and ";" not in step) or not raw:  # nothing to quote: never an empty quotation
        ask = ASKS[rng.randrange(len(ASKS))].format(step=step)
    else:
        quoted = "; ".join(raw[:2]) + ("; …" if len(raw) > 2 else "")
        ask = QUOTE_ASKS[rng.randrange(len(QUOTE_ASKS))].format(step=quoted)
    said_values = [i for i in known if not i.withhold and str(i.value).lower() not in step.lower()
                   and not isinstance(i.value, bool)]
    detail = ""
    if said_values and any(str(i.value).lower() not in ask.lower() for i in said_values[:3]):
        detail = " " + "; ".join(f"the {i.key.replace('_', ' ')} {be(i.key)} {i.value}" for i in said_values[:3]
                                 if str(i.value).lower() not in ask.lower())
        detail = detail[:1] + detail[1:2].upper() + detail[2:] + "."
    instruction = f"{opener} I want to {purpose}. {ask}{detail}" if purpose else f"{opener} {ask}{detail}"
    communicate: list[str] = []
    if effect.kind == "create" and effect.returns:
        unknown.append(f"the {effect.entity.replace('_', ' ')} the assistant creates")
    if any(i.withhold for i in known):
        unknown.append("the assistant has to ask for the password")
    return Task(id=f"{workflow.id}:o{n}", env_id=workflow.id, instruction=instruction,
                persona=PERSONAS[rng.randrange(len(PERSONAS))], cites=_cites(workflow, spec.description),
                known_info=known, unknown_info=unknown, gold_actions=gold, communicate_info=communicate,
                operator="offline_writer", offline=True)


def _lookup_task(workflow: Workflow, text: str, n: int, seed: int) -> Task | None:
    """A question the environment answers by a read: the current value of a text-grounded field."""
    rng = random.Random(f"{workflow.id}|lookup|{seed}")
    for rec in workflow.initial_state:
        for fld, value in rec.values.items():
            src = rec.sources.get(fld)
            ent = next((e for e in workflow.entities if e.name == rec.entity), None)
            if ent is None or fld == ent.key or src is None or src.kind != "text" or not isinstance(value, str):
                continue
            reader = next((t for t, e in workflow.effects.items() if e.kind == "read" and e.entity == rec.entity),
                          None)
            if reader is None:
                continue
            label = fld.replace("_", " ")
            where = "in" if ent.key == "panel" else "for"  # "in Multitasking", "for kim"
            instruction = (f"{OPENERS[rng.randrange(len(OPENERS))]} before I change anything {where} "
                           f"{rec.values.get(ent.key, workflow.title)}, what is the {label} set to right now?")
            return Task(id=f"{workflow.id}:o{n}", env_id=workflow.id, instruction=instruction,
                        persona=PERSONAS[rng.randrange(len(PERSONAS))], unknown_info=[f"the current {label}"],
                        gold_actions=[Action(tool=reader, arguments={})], communicate_info=[value],
                        operator="offline_writer", offline=True)
    return None


def _read_tasks(workflow: Workflow, text: str, k: int, seed: int) -> list[Task]:
    """For a read-only environment (a command page of look-ups): ask for a record's details."""
    out: list[Task] = []
    readers = [(t.name, workflow.effects[t.name]) for t in workflow.tools
               if (e := workflow.effects.get(t.name)) is not None and e.kind == "read" and e.key]
    for n, (tool, effect) in enumerate(readers[:k]):
        rng = random.Random(f"{workflow.id}|{tool}|{seed}")
        records = [r for r in workflow.initial_state if r.entity == effect.entity]
        ent = next((e for e in workflow.entities if e.name == effect.entity), None)
        if not records or ent is None or effect.key is None:
            continue
        rec = records[rng.randrange(len(records))]
        key_value = rec.values[ent.key]
        src = rec.sources.get(ent.key, ValueSource())
        shown = [f for f in effect.returns if f != ent.key and f in rec.values]
        spec = workflow.tool(tool)
        step = _as_request(spec.description.split(". Runs")[0]) if spec else tool.replace("_", " ")
        instruction = (f"{OPENERS[rng.randrange(len(OPENERS))]} I'm on the command line and want to {step}. "
                       f"The {effect.key.replace('_', ' ')} {be(effect.key)} {key_value}. What does it show?")
        out.append(Task(id=f"{workflow.id}:o{n}", env_id=workflow.id, instruction=instruction,
                        persona=PERSONAS[rng.randrange(len(PERSONAS))], cites=_cites(workflow, spec.description)
                        if spec else [], known_info=[Info(key=effect.key, value=key_value, source=src)],
                        gold_actions=[Action(tool=tool, arguments={effect.key: key_value})],
                        communicate_info=[str(rec.values[f]) for f in shown[:1]], operator="offline_writer",
                        offline=True))
    return out


# ---------------------------------------------------------------------------------------------------------
# the whole procedure as one task: the text's goal, its writes in the execution graph's order


def _procedure_order(workflow: Workflow) -> list[str]:
    """The procedure's calls in the graph's order: its writes and the searches and checks it names (reads with
    arguments); before the first change of a record the procedure did not make, the read that shows it (the
    text's "select the printer you want", "open the Settings page")."""
    from tools_runtime.exec_graph import parse_graph, reference_order, stages

    try:
        graph = parse_graph(workflow.execution_graph)
        order = reference_order(graph)
        parallel = stages(graph)
    except ValueError:
        return []
    effects = workflow.effects
    if any(sum(1 for t in st if t in effects and effects[t].kind != "read") > 1 for st in parallel):
        return []  # alternatives (a command page's examples), not one procedure
    listing = {e.entity: t for t, e in effects.items()
               if e.kind == "read" and not ((spec := workflow.tool(t)) is not None and spec.properties)}
    seen: set[str] = set()  # entities the procedure has looked at or made
    out: list[str] = []
    for tool in order:
        effect = effects.get(tool)
        spec = workflow.tool(tool)
        if effect is None or spec is None:
            continue
        if effect.kind == "read" and not spec.properties:
            continue
        if effect.kind in ("update", "delete") and effect.entity not in seen and effect.entity in listing:
            out.append(listing[effect.entity])
        seen.add(effect.entity)
        out.append(tool)
    return out


class _Walk:
    """The procedure's calls run one by one on a fresh backend: values chosen so each call finds what it needs."""

    def __init__(self, workflow: Workflow, text: str, rng: random.Random):
        from tools_runtime.executor import ToolEnvironment, initial_state

        self.wf, self.text, self.rng = workflow, text, rng
        self.env = ToolEnvironment(workflow, initial_state(workflow))
        self.entities = {e.name: e for e in workflow.entities}
        self.focus: dict[str, dict[str, Any]] = {}  # entity → the record the user is about
        self.values: dict[str, tuple[Any, ValueSource]] = {}  # param → the value the user gave for it
        self.made: dict[str, Any] = {}  # key field → the value a create or send returned
        self.actions: list[Action] = []

    def records(self, entity: str) -> list[dict[str, Any]]:
        return [r for _, r in sorted(self.env.backend.view()["collections"].get(entity, {}).items())]

    def record(self, entity: str) -> dict[str, Any] | None:
        if entity not in self.focus:
            recs = self.records(entity)
            if not recs:
                return None
            self.focus[entity] = recs[self.rng.randrange(len(recs))]
        return self.focus[entity]

    def value(self, tool: str, param: str, schema: dict[str, Any]) -> tuple[Any, ValueSource | None]:
        """(value, its source; None when it comes from an earlier result)."""
        effect = self.wf.effects[tool]
        if param in self.made:
            return self.made[param], None
        if param in self.values:
            return self.values[param]
        ent = self.entities.get(effect.entity)
        if ent is not None and effect.kind != "create":
            rec = self.record(ent.name)
            field = effect.match or ent.key if param == effect.key else param
            if rec is not None and field in rec and not (effect.kind == "update" and any(
                    w.param == param for w in effect.writes)):
                src = next((r.sources.get(field) for r in self.wf.initial_state if r.entity == ent.name
                            and r.values.get(ent.key) == rec.get(ent.key)), None)
                return rec[field], src or ValueSource(kind="invented")
        for other in self.entities.values():  # a reference: the record of another entity the user chose
            if other.name != effect.entity and param == other.key and (rec := self.record(other.name)) is not None:
                src = next((r.sources.get(param) for r in self.wf.initial_state if r.entity == other.name
                            and r.values.get(other.key) == rec.get(other.key)), None)
                return rec[param], src or ValueSource(kind="invented")
        writes = {w.param: w.field for w in effect.writes if w.param}
        return _value_for(self.wf, self.text, tool, param, schema, effect.entity, writes.get(param), self.rng)

    def call(self, tool: str) -> bool:
        spec = self.wf.tool(tool)
        effect = self.wf.effects[tool]
        assert spec is not None
        args: dict[str, Any] = {}
        for param, schema in spec.properties.items():
            value, src = self.value(tool, param, schema if isinstance(schema, dict) else {})
            args[param] = value
            if src is not None:
                self.values.setdefault(param, (value, src))
        rec = self.env.call(tool, args)
        if not rec.ok:
            return False
        self.actions.append(Action(tool=tool, arguments=args))
        ent = self.entities.get(effect.entity)
        if isinstance(rec.result, dict) and ent is not None:
            if effect.kind in ("create", "external") and ent.key in rec.result:
                self.made[ent.key] = rec.result[ent.key]
                if effect.kind == "create" and (new := self.env.backend.view()["collections"].get(
                        ent.name, {}).get(str(rec.result[ent.key]))) is not None:
                    self.focus[ent.name] = new
            rows = rec.result.get("results")
            if effect.kind == "read" and isinstance(rows, list) and rows and ent.name not in self.focus:
                hits = [r for r in rows if isinstance(r, dict) and ent.key in r]
                match = [r for r in self.records(ent.name) if hits and r.get(ent.key) == hits[0][ent.key]]
                if match:
                    self.focus[ent.name] = match[0]
        return True


def procedure_task(workflow: Workflow, text: str, seed: int = 0) -> Task | None:
    """The text's whole procedure as one task: the user asks for the text's goal and gives the facts its steps
    need; the gold is the procedure's calls in the execution graph's order (sign in, search, book, invite).
    None when the procedure has fewer than two calls or a call fails."""
    order = _procedure_order(workflow)
    if not any(workflow.effects[t].kind not in ("read", "session") for t in order) or len(order) < 2:
        return None
    rng = random.Random(f"{workflow.id}|procedure|{seed}")
    walk = _Walk(workflow, text, rng)
    for tool in order:
        if not walk.call(tool):
            return None
    known = [Info(key=k, value=v, source=src, withhold=is_secret(k)) for k, (v, src) in walk.values.items()]
    purpose = _goal(workflow.title)
    said = [i for i in known if not i.withhold and not isinstance(i.value, bool)]
    facts = "; ".join(f"the {i.key.replace('_', ' ')} {be(i.key)} {i.value}" for i in said)
    facts = (facts[:1].upper() + facts[1:] + ".") if facts else ""
    opener = OPENERS[rng.randrange(len(OPENERS))]
    goal = f"I want to {purpose}." if purpose else "I need help with the steps of this guide."
    instruction = " ".join(x for x in (opener, goal, facts) if x)
    # A step the goal does not name ("Switch Media Sharing to on" under "Share your music"): the user quotes it.
    for action in walk.actions:
        probe = Task(id="probe", env_id=workflow.id, instruction=instruction, gold_actions=[action])
        spec = workflow.tool(action.tool)
        step = _step_text(spec.description if spec else "").split("; ")[0]
        if step and unrelated_write(instruction, probe, workflow) is not None:
            instruction += f" The guide says: \"{as_user_words(step)}.\""
    unknown = [f"the {workflow.effects[a.tool].entity.replace('_', ' ')} the assistant creates"
               for a in walk.actions if workflow.effects[a.tool].kind == "create"]
    if any(i.withhold for i in known):
        unknown.append("the assistant has to ask for the password")
    specs = [workflow.tool(a.tool) for a in walk.actions]
    cites = sorted({c for spec in specs for c in _cites(workflow, spec.description if spec else "")})
    return Task(id=f"{workflow.id}:p0", env_id=workflow.id, instruction=instruction,
                persona=PERSONAS[rng.randrange(len(PERSONAS))], cites=cites, known_info=known,
                unknown_info=unknown, gold_actions=walk.actions, operator="offline_procedure", offline=True,
                meta={"procedure": True})


def write_tasks_offline(workflow: Workflow, text: str, *, k: int = 3, seed: int = 0) -> tuple[list[Task],
                                                                                            list[TaskRejection]]:
    """K tasks by rules: one per write capability (cycled), a look-up when the state has a text value."""
    writes = [t.name for t in workflow.tools if (e := workflow.effects.get(t.name)) is not None
              and e.kind not in ("read", "session", "compute")]
    tasks: list[Task] = []
    if not writes:
        tasks = _read_tasks(workflow, text, k, seed)
    whole = procedure_task(workflow, text, seed) if writes else None
    whole_rejected: list[TaskRejection] = []
    if whole is not None:
        checked, whole_rejected = check_tasks(workflow, [whole])
        whole = checked[0] if checked else None
    if whole is not None:
        # The text's whole procedure first: with one task per environment, that is the one simulated.
        tasks.append(whole)
    for n in range(min(k, max(len(writes), 1) * 2)):
        if not writes:
            break
        if n >= len(writes) and n == len(writes):
            lookup = _lookup_task(workflow, text, n, seed)
            if lookup is not None:
                tasks.append(lookup)
                continue
        if whole is not None and _needs_made_record(workflow, writes[n % len(writes)]):
            continue  # "send the invitation" alone has no booking to send it for: only the whole procedure does
        tasks.append(_offline_task(workflow, text, writes[n % len(writes)], n, seed + n // len(writes)))
    seen: set[str] = set()
    unique = []
    for t in tasks:
        sig = json.dumps([a.model_dump() for a in t.gold_actions], sort_keys=True, default=str)
        if sig not in seen:
            seen.add(sig)
            unique.append(t)
    valid, rejected = check_tasks(workflow, unique[:k])
    return valid, [*whole_rejected, *rejected]


def _needs_made_record(workflow: Workflow, tool: str) -> bool:
    """A tool that names, by its id, a record of a kind the initial state has none of (a booking made earlier)."""
    spec = workflow.tool(tool)
    have = {r.entity for r in workflow.initial_state}
    return spec is not None and any(p == f"{e.name}_id" and e.name not in have for p in spec.properties
                                    for e in workflow.entities)




# ---------------------------------------------------------------------------------------------------------
# The stage object: `gem run`'s tasks node.


async def run_tasks(env: StageEnv, doc: Document, workflow: Workflow) -> tuple[list[Task], list[TaskRejection]]:
    """Stage 3a in `env`: K tasks for the environment (the task model, or rules offline), each checked."""
    cfg = env.config
    client = env.client("task")
    if client is None:
        return write_tasks_offline(workflow, doc.text, k=cfg.tasks_per_env, seed=cfg.seed)
    try:
        return await write_tasks(workflow, doc, client, k=cfg.tasks_per_env, repair_rounds=cfg.limits.repair_rounds)
    except ModelCallError as exc:
        return [], [TaskRejection(task_id=f"{workflow.id}:t", code="model_call_failed", reason=str(exc))]


TASKS = register("stage", "tasks", Stage(
    name="tasks", run=run_tasks, roles=("task",), reads=("tasks_per_env", "seed", "limits.repair_rounds"),
    summary="K tasks per environment, each validated and its gold actions executed (or rejected with a code)"))
