"""Draft and revise: a small model plays extraction and task writing by correcting the rule-based draft.

A 0.5B/1.5B model asked for a whole environment in one go writes long JSON that runs past its token
budget or names UI gestures (docs/providers.md). Here it gets the offline extractor's draft (or the
offline writer's tasks) beside the text and answers, under a JSON-schema grammar with bounded
lengths, only what a reader of the text decides: tool names and descriptions, which drafted tools are
not real capabilities, the title; for tasks, the user's request in their own words and a persona.
The revision is applied to the draft and held to the same validators as a full model answer; the
exact errors go back in repair rounds. The result is marked as played by the model
(`decided_by="model_revised"`, tasks `operator="model_revised"`, not offline). When the model's
revision never validates, the document is rejected with the errors, as a full model answer would be.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gem_agents.models.client import ModelClient
from gem_agents.prompting import fill, load_prompt
from gem_agents.stages import ExtractionResult
from gem_agents.stages.offline_extractor import extract_offline, snake
from gem_agents.stages.relevance import PROMPTS
from gem_agents.stages.tasks import unrelated_write
from tools_runtime.env_validate import errors as env_errors
from tools_runtime.env_validate import ground_sources, validate_environment
from tools_runtime.records import Document, Relevance, Workflow
from tools_runtime.tasks import Task
from tools_runtime.workflow_io import WorkflowError, workflow_from_dict

NAME_MAX = 40
DESCRIPTION_MAX = 160
INSTRUCTION_MAX = 240


def revision_schema(names: list[str]) -> dict[str, Any]:
    """What the model answers about an environment draft: one entry per drafted tool, in order."""
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 80},
            "tools": {"type": "array", "minItems": len(names), "maxItems": len(names), "items": {
                "type": "object",
                "properties": {
                    "draft": {"type": "string", "enum": names},
                    "name": {"type": "string", "maxLength": NAME_MAX},
                    "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
                    "real_tool": {"type": "boolean"},
                },
                "required": ["draft", "name", "description", "real_tool"],
                "additionalProperties": False}},
        },
        "required": ["title", "tools"],
        "additionalProperties": False,
    }


def draft_view(workflow: Workflow) -> str:
    """The draft as the model reads it: title, then one line per tool with its effect and parameters."""
    lines = [f"title: {workflow.title}"]
    for t in workflow.tools:
        eff = workflow.effects.get(t.name)
        params = ", ".join(t.parameters.get("properties", {})) or "none"
        # The draft's descriptions carry the rules' working notes ("Text: …", "In the UI: …"): only the
        # first sentence is shown, so the model writes a description rather than copying the notes.
        first = re.split(r"(?<=\.)\s|\s(?:Text|In the UI):", t.description, maxsplit=1)[0].strip()
        lines.append(f"- {t.name} ({eff.kind if eff else 'tool'}; parameters: {params}): {first}")
    return "\n".join(lines)


def _rename(value: Any, names: dict[str, str]) -> Any:
    """`value` with every dict key or string equal to an old tool name replaced by its new name."""
    if isinstance(value, dict):
        return {names.get(k, k) if isinstance(k, str) else k: _rename(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def _graph_without(graph: str, dropped: set[str], names: dict[str, str]) -> str:
    """The execution graph with dropped tools removed (empty stages too) and the others renamed."""
    stages = []
    for stage in re.findall(r"\(([^()]*)\)", graph):
        kept = [names.get(n.strip(), n.strip()) for n in stage.split(",") if n.strip() and n.strip() not in dropped]
        if kept:
            stages.append("(" + ", ".join(kept) + ")")
    return "->".join(stages)


def apply_revision(draft: Workflow, answer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The draft's data with the model's names, descriptions, title and drops applied; plus problems found."""
    problems: list[str] = []
    raw = answer.get("tools")
    items: list[Any] = raw if isinstance(raw, list) else []
    by_draft = {str(i.get("draft")): i for i in items if isinstance(i, dict)}
    names: dict[str, str] = {}
    dropped: set[str] = set()
    descriptions: dict[str, str] = {}
    taken = {t.name for t in draft.tools}
    for t in draft.tools:
        item = by_draft.get(t.name)
        if item is None:
            problems.append(f"tool '{t.name}' of the draft is missing from your answer")
            continue
        session = (effect := draft.effects.get(t.name)) is not None and effect.kind == "session"
        if item.get("real_tool") is False and not session:  # the sign-in stays: the later writes require it
            dropped.add(t.name)
            continue
        new = snake(str(item.get("name") or "").split())[:NAME_MAX].strip("_")
        if new and new != t.name:
            if new in taken:
                problems.append(f"name '{new}' (for '{t.name}') is already used by another tool")
            else:
                taken.discard(t.name)
                taken.add(new)
                names[t.name] = new
        desc = str(item.get("description") or "").strip()
        if desc:
            descriptions[t.name] = desc[:DESCRIPTION_MAX]
    if len(dropped) == len(draft.tools):
        problems.append("every tool was marked real_tool=false; keep at least the tools that change something")
        dropped = set()
    data = draft.model_dump(mode="json")
    data["tools"] = [{**t, "description": descriptions.get(t["name"], t["description"])}
                     for t in data["tools"] if t["name"] not in dropped]
    data["effects"] = {k: v for k, v in data.get("effects", {}).items() if k not in dropped}
    graph = _graph_without(data["execution_graph"], dropped, names)
    data["user_tools"] = [n for n in data.get("user_tools", []) if n not in dropped]
    data = _rename({k: v for k, v in data.items() if k not in ("execution_graph", "steps", "title", "id",
                                                                "doc_id", "domain", "platform")}, names) | {
        k: data[k] for k in ("steps", "id", "doc_id", "domain", "platform") if k in data}
    data["execution_graph"] = graph
    title = str(answer.get("title") or "").strip()
    data["title"] = title[:80] if title else draft.title
    return data, problems


def validate_revision(data: dict[str, Any], doc: Document) -> tuple[Workflow | None, list[str]]:
    """(workflow, []) when the revised environment parses and validates, else (None, the exact errors)."""
    try:
        workflow = workflow_from_dict(data, where="revision")
    except WorkflowError as exc:
        return None, [str(exc)]
    problems = [str(i) for i in env_errors(validate_environment(workflow, doc.text))]
    if problems:
        return None, problems
    return ground_sources(workflow, doc.text)[0], []


def revise_messages(doc: Document, draft: Workflow) -> list[dict[str, Any]]:
    """The first message of a revision call: the text and the rule-based draft."""
    return [{"role": "user", "content": fill(load_prompt(PROMPTS, "extract_revise.txt"), text=doc.text.strip(),
                                            draft=draft_view(draft))}]


def _parse(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text.strip())
    except ValueError:
        m = re.search(r"\{.*\}", text, re.DOTALL)
        try:
            data = json.loads(m.group(0)) if m else None
        except ValueError:
            data = None
    return data if isinstance(data, dict) else None


async def revise_extraction(doc: Document, client: ModelClient, *, relevance: Relevance | None = None,
                            repair_rounds: int = 1, max_tools: int = 12) -> ExtractionResult:
    """Stage 2 by draft and revise: the offline draft, corrected by the model under a grammar."""
    rel = relevance
    base = extract_offline(doc, max_tools=max_tools, domain=rel.domain if rel else "",
                           platform=rel.platform if rel else "")
    if base.workflow is None:
        return base  # no draft to revise: the rules' reasons stand (no model call made)
    draft = base.workflow
    schema = revision_schema([t.name for t in draft.tools])
    messages = revise_messages(doc, draft)
    errors: list[str] = []
    for attempt in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=schema, schema_name="revision", stage="extract")
        answer = _parse(reply.text)
        if answer is None:
            errors = ["the answer is not one JSON object"]
        else:
            data, errors = apply_revision(draft, answer)
            if not errors:
                workflow, errors = validate_revision(data, doc)
                if workflow is not None:
                    return ExtractionResult(workflow=workflow, rounds=attempt + 1, decided_by="model_revised")
        listed = "\n".join(f"- {e}" for e in errors)
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": fill(load_prompt(PROMPTS, "revise_repair.txt"), errors=listed)}]
    # The model's revision never validated: rejected with its errors, as a full model answer would be (the
    # draft is not kept: nothing offline may pass as the model's environment).
    return ExtractionResult(rounds=repair_rounds + 1, decided_by="model_revised",
                            rejected=[f"model revision rejected: {e}" for e in errors])


# ---------------------------------------------------------------------------------------------------------
# tasks


def task_revision_schema(n: int) -> dict[str, Any]:
    """What the model answers about n drafted tasks: the request in the user's words and a persona, each."""
    return {"type": "object", "properties": {"tasks": {
        "type": "array", "minItems": n, "maxItems": n, "items": {
            "type": "object",
            "properties": {"instruction": {"type": "string", "maxLength": INSTRUCTION_MAX},
                           "persona": {"type": "string", "maxLength": 60}},
            "required": ["instruction", "persona"], "additionalProperties": False}}},
        "required": ["tasks"], "additionalProperties": False}


def task_draft_view(workflow: Workflow, tasks: list[Task]) -> str:
    """The drafted tasks as the model reads them: what gets done, with which values the user knows."""
    out = []
    for i, t in enumerate(tasks):
        does = "; ".join(f"{a.tool}({', '.join(f'{k}={v!r}' for k, v in a.arguments.items())})"
                         for a in t.gold_actions) or "a look-up"
        facts = ", ".join(f"{k.key}={k.value!r}" for k in t.known_info) or "nothing"
        out.append(f"{i + 1}. draft request: {t.instruction}\n   what gets done: {does}\n   the user knows: {facts}")
    return "\n".join(out)


_TOOLISH = re.compile(r"\b[a-z]+_[a-z_]+\b")
_SCAFFOLD = re.compile(r"\b(?:the user knows|what gets done|draft request)\b|\b\w+=\S", re.IGNORECASE)


def check_instruction(text: str, task: Task, workflow: Workflow) -> list[str]:
    """Why a rewritten request is not usable ([] when it is): empty, names a tool, loses the user's values."""
    problems = []
    if len(text.split()) < 3:
        problems.append("the request is too short; write what the user wants in a full sentence")
    tools = {t.name for t in workflow.tools}
    named = [w for w in _TOOLISH.findall(text) if w in tools]
    if named:
        problems.append(f"the request names a tool ({', '.join(named)}); say what the user wants instead")
    params = {p for t in workflow.tools for p in t.parameters.get("properties", {})} | {k.key for k in task.known_info}
    if (fields := sorted({w for w in _TOOLISH.findall(text) if w in params})):
        problems.append(f"the request names a parameter ({', '.join(fields)}); say it in plain words")
    # The draft view's own scaffolding copied into the request reaches the user verbatim: a 1.5B wrote
    # "The user knows: account_name='alex', automatic_login=True, password='…'" and the user sent it.
    if _SCAFFOLD.search(text):
        problems.append("the request copies the draft's notes (\"the user knows\", key=value); write only "
                        "what the user says")
    # Each value the drafted request gave must survive the rewrite: a lost one becomes a question the
    # assistant asks and a model-user turn (the 1.5B dropped all five facts of the booking request).
    lost = [str(k.value) for k in task.known_info if not k.withhold and isinstance(k.value, str | int)
            and not isinstance(k.value, bool) and str(k.value) in task.instruction
            and str(k.value).casefold() not in text.casefold()]
    if lost:
        problems.append(f"the request lost the user's values ({', '.join(lost)}); say each of them")
    if (unrelated := unrelated_write(text, task, workflow)) is not None:
        problems.append(unrelated + "; ask for what the drafted request asks for")
    return problems


async def revise_tasks(workflow: Workflow, doc: Document, client: ModelClient, drafts: list[Task], *,
                       repair_rounds: int = 1) -> list[Task]:
    """Task writing by draft and revise: the model rewrites each drafted request; gold and facts stay."""
    if not drafts:
        return []
    schema = task_revision_schema(len(drafts))
    messages = [{"role": "user", "content": fill(load_prompt(PROMPTS, "task_revise.txt"), text=doc.text.strip(),
                                                 drafts=task_draft_view(workflow, drafts), k=str(len(drafts)))}]
    problems: list[str] = []
    items: list[Any] = []
    for _attempt in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=schema, schema_name="task_revision", stage="task")
        answer = _parse(reply.text)
        got = answer.get("tasks") if answer else None
        items = got if isinstance(got, list) else []
        problems = [] if len(items) == len(drafts) else [f"expected {len(drafts)} tasks, got {len(items)}"]
        for i, (item, task) in enumerate(zip(items, drafts, strict=False)):
            text = str(item.get("instruction") or "").strip() if isinstance(item, dict) else ""
            problems += [f"task {i + 1}: {p}" for p in check_instruction(text, task, workflow)]
        if not problems:
            break
        listed = "\n".join(f"- {p}" for p in problems)
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": fill(load_prompt(PROMPTS, "revise_repair.txt"), errors=listed)}]
    out: list[Task] = []
    for i, task in enumerate(drafts):
        item = items[i] if i < len(items) and isinstance(items[i], dict) else {}
        text = str(item.get("instruction") or "").strip()[:INSTRUCTION_MAX]
        bad = check_instruction(text, task, workflow)
        if bad:  # this draft's request was not rewritten usably: it stays, marked offline, with why
            out.append(task.model_copy(update={"meta": {**task.meta, "model_revision_rejected": "; ".join(bad)}}))
            continue
        persona = str(item.get("persona") or "").strip()[:60] or task.persona
        out.append(task.model_copy(update={"instruction": text, "persona": persona, "offline": False,
                                           "operator": "model_revised"}))
    return out
