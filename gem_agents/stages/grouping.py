"""Environment grouping: the help pages of one product area become one environment.

A help corpus comes in product areas (gnome-help's `printing-*`, `bluetooth-*`, `files-*` pages; the tldr
pages of one shell). One page gives a small environment (often two tools); a real application covers all
of its area's pages. Grouping is a pipeline (`pipeline: grouped`) over *group documents*:

1. `group_documents` (`gem group IN -o OUT`) turns the documents of one area into one document whose text
   is the pages one after another and whose `meta.parts` keeps each page (id, text, where it starts);
   a document alone in its area stays as it is.
2. The `grouped_extract` stage runs the configured filter and extract stages on every part, as they
   would run on the page alone, and merges the environments (`tools_runtime.env_merge`): clashing
   names renamed, each tool's source page kept (`groups/<id>.json` in the run directory). The merged
   environment must pass the same validator (`tools_runtime.env_validate`) as any other.
3. Every page's tasks (the tasks stage on the page's own environment) move onto the merged environment
   (`remap_task`) and their gold is executed again there. A page whose task no longer runs (its records met
   another page's: a directory one page creates already exists on another) is merged again with its
   entities kept apart; what still fails is rejected with the reason. The `grouped_tasks` stage hands these
   tasks on. So every task comes from one page's text, and refinement (`multi_goal` takes sibling tasks)
   combines procedures of several pages.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gem_agents.registry import get, register
from gem_agents.stages import ExtractionResult
from gem_agents.stages.base import Stage, StageEnv
from tools_runtime.env_merge import MergedEnvironment, MergeError, merge_environments, remap_task
from tools_runtime.env_validate import errors, validate_environment
from tools_runtime.records import Document, Relevance, Workflow
from tools_runtime.refine_tasks import Drop, validate
from tools_runtime.tasks import Task, TaskRejection

# A product area from a document id: gnome-help's page prefix (`gnome-help:printing-setup` → printing),
# every tldr page (one shell). Other ids form no group.
AREA_PATTERNS = (re.compile(r"^(gnome-help:[a-z0-9]+)-"), re.compile(r"^(tldr):"))
# A product from a document id: every gnome-help page is one product (the GNOME desktop, whose users do
# several of its procedures in one session), every tldr page one shell. Other ids form no group.
PRODUCT_PATTERNS = (re.compile(r"^(gnome-help):"), re.compile(r"^(tldr):"))
GROUP_BY = ("area", "product")
PART_SEPARATOR = "\n\n"


def _first_group(patterns: tuple[re.Pattern[str], ...], doc_id: str) -> str | None:
    return next((m.group(1) for m in (p.match(doc_id) for p in patterns) if m), None)


def product_area(doc_id: str) -> str | None:
    """The product area a document id belongs to, or None when it belongs to none."""
    return _first_group(AREA_PATTERNS, doc_id)


def product_of(doc_id: str) -> str | None:
    """The product a document id belongs to (all gnome-help pages: one desktop), or None when none."""
    return _first_group(PRODUCT_PATTERNS, doc_id)


def group_documents(docs: list[Document], *, min_size: int = 2, by: str = "area") -> list[Document]:
    """One document per product area (or product, `by="product"`) with at least `min_size` pages (in
    first-seen order); the rest unchanged."""
    if by not in GROUP_BY:
        raise ValueError(f"group by {by!r}: expected one of {', '.join(GROUP_BY)}")
    key_of = product_area if by == "area" else product_of
    areas: OrderedDict[str, list[Document]] = OrderedDict()
    out: list[Document | str] = []
    for doc in docs:
        area = key_of(doc.id)
        if area is None:
            out.append(doc)
            continue
        if area not in areas:
            areas[area] = []
            out.append(area)
        areas[area].append(doc)
    result = []
    for item in out:
        if isinstance(item, Document):
            result.append(item)
            continue
        members = areas[item]
        if len(members) < min_size:
            result += members
            continue
        parts, offset, texts = [], 0, []
        for d in members:
            parts.append({"id": d.id, "text": d.text, "offset": offset, "title": d.meta.get("title", "")})
            texts.append(d.text)
            offset += len(d.text) + len(PART_SEPARATOR)
        result.append(Document(id=f"group:{item}", text=PART_SEPARATOR.join(texts), source="group",
                               meta={"title": f"{item} ({len(members)} pages)", "parts": parts}))
    return result


def parts_of(doc: Document) -> list[Document]:
    """The pages a group document holds (empty for an ordinary document)."""
    raw = doc.meta.get("parts")
    if not isinstance(raw, list):
        return []
    return [Document(id=str(p["id"]), text=str(p["text"]), meta={"title": p.get("title", ""),
                                                                   "offset": int(p.get("offset", 0))})
            for p in raw if isinstance(p, dict) and "id" in p and "text" in p]


@dataclass
class Group:
    """A group document's pages with their environments, the merged environment and the pages' tasks on it."""

    parts: list[tuple[Document, Workflow]] = field(default_factory=list)
    merged: MergedEnvironment | None = None
    rejected: list[str] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    task_rejections: list[TaskRejection] = field(default_factory=list)


async def extract_group(env: StageEnv, doc: Document) -> Group:
    """Filter and extract every page of `doc` as the run would alone, then merge (once per run and document)."""
    key = f"group:{doc.id}"
    held = env.shared.get(key)
    if isinstance(held, Group):
        return held
    group = Group()
    filter_stage, extract_stage = get("stage", "filter"), get("stage", "extract")
    for part in parts_of(doc):
        rel: Relevance = await filter_stage.run(env, part)
        if not rel.multi_step:
            group.rejected.append(f"group: {part.id}: not a procedure ({rel.summary[:80]})")
            continue
        res = await extract_stage.run(env, part, rel)
        if res.workflow is None:
            group.rejected.append(f"group: {part.id}: no environment ({'; '.join(res.rejected[:2])})")
            continue
        group.parts.append((part, res.workflow))
    if group.parts:
        own: dict[str, tuple[list[Task], list[TaskRejection]]] = {}
        tasks_stage = get("stage", "tasks")
        for part, part_wf in group.parts:
            own[part.id] = await tasks_stage.run(env, part, part_wf)
        apart: set[str] = set()
        try:
            for _ in range(2):  # once more with the pages whose tasks broke kept apart
                group.merged = merge_environments(
                    [(p.id, wf) for p, wf in group.parts], env_id=doc.id, title=str(doc.meta.get("title") or doc.id),
                    text_offsets={p.id: int(p.meta.get("offset", 0)) for p, _ in group.parts}, apart=apart)
                group.tasks, group.task_rejections, broken = _moved_tasks(group.merged, own)
                if not broken - apart:
                    break
                apart |= broken
        except MergeError as exc:
            group.rejected.append(f"group: {exc}")
            group.merged = None
        else:
            assert group.merged is not None
            group.rejected += [f"group: {d}: left out: {why}" for d, why in group.merged.skipped.items()]
            problems = errors(validate_environment(group.merged.workflow, doc.text))
            if problems:
                group.rejected += [f"group: merged environment invalid: {i}" for i in problems[:5]]
                group.merged = None
    env.shared[key] = group
    _write_provenance(env, doc, group)
    return group


def _moved_tasks(merged: MergedEnvironment, own: dict[str, tuple[list[Task], list[TaskRejection]]]
                 ) -> tuple[list[Task], list[TaskRejection], set[str]]:
    """Every page's tasks on the merged environment with their gold run again; the pages whose gold broke."""
    tasks: list[Task] = []
    rejected: list[TaskRejection] = []
    broken: set[str] = set()
    for page, (page_tasks, why) in own.items():
        if page not in merged.docs:
            continue
        rejected += why
        for task in page_tasks:
            got = validate(merged.workflow, remap_task(task, merged, page), "group")
            if isinstance(got, Drop):
                broken.add(page)
                rejected.append(TaskRejection(task_id=task.id, code=f"group_{got.code}",
                                              reason=f"on the merged environment: {got.reason}"))
            else:
                tasks.append(got)
    return tasks, rejected, broken


def _write_provenance(env: StageEnv, doc: Document, group: Group) -> None:
    """Each tool's source page and what was renamed, beside the run (`groups/<id>.json`)."""
    if env.run_dir is None or group.merged is None:
        return
    folder = env.run_dir / "groups"
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", doc.id)
    m = group.merged
    data: dict[str, Any] = {"id": doc.id, "pages": m.docs, "tool_sources": m.sources, "renamed": m.renamed(),
                            "left_out": m.skipped, "tools": len(m.workflow.tools)}
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))


async def run_grouped_extract(env: StageEnv, doc: Document, relevance: Relevance | None, *,
                              verify: bool = True) -> ExtractionResult:
    """Stage 2 for a group document: every page extracted and the environments merged; else the extract stage."""
    if not parts_of(doc):
        return await get("stage", "extract").run(env, doc, relevance)
    group = await extract_group(env, doc)
    if group.merged is None:
        return ExtractionResult(rejected=group.rejected or ["group: no page gave an environment"],
                                decided_by="group")
    return ExtractionResult(workflow=group.merged.workflow, rejected=group.rejected, decided_by="group")


async def run_grouped_tasks(env: StageEnv, doc: Document, workflow: Workflow
                            ) -> tuple[list[Task], list[TaskRejection]]:
    """Stage 3a for a group document: each page's tasks on its own environment, moved onto the merged one and
    executed there again; else the tasks stage."""
    if not parts_of(doc):
        return await get("stage", "tasks").run(env, doc, workflow)
    group = await extract_group(env, doc)
    if group.merged is None:
        return [], [TaskRejection(task_id=f"{doc.id}:t", code="group_unmerged", reason="; ".join(group.rejected))]
    return list(group.tasks), list(group.task_rejections)


def _grouped_graph_step(stage: Stage, env: StageEnv) -> Any:
    """The extract stage's pipeline step. Imported on use: registering extract's stages loads this module."""
    from gem_agents.stages.extract import _extract_graph_step

    return _extract_graph_step(stage, env)


GROUPED_EXTRACT = register("stage", "grouped_extract", Stage(
    name="grouped_extract", run=run_grouped_extract, roles=("filter", "extract", "task"),
    graph_step=_grouped_graph_step,
    reads=("limits.repair_rounds", "limits.max_tools"),
    summary="a group document's pages extracted one by one and merged into one environment (tools_runtime.env_merge)"))

GROUPED_TASKS = register("stage", "grouped_tasks", Stage(
    name="grouped_tasks", run=run_grouped_tasks, roles=("task",), reads=("tasks_per_env", "seed"),
    summary="each page's tasks, moved onto the merged environment and executed there again"))

__all__ = ["GROUPED_EXTRACT", "GROUPED_TASKS", "extract_group", "group_documents", "parts_of", "product_area",
           "product_of"]
