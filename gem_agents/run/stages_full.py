"""The stage functions of the `full` pipeline (filter → extract → tasks → simulate → refine), bound to a run.

Each function closes over the run's model hub, roles and limits and has the signature the
pipeline graph expects (`graphs.pipeline.PipelineStages`). Rollouts of every document share one
semaphore, so `concurrency.rollouts` bounds the dialogues in flight across the whole run.

Funnel records (read by `gem audit`): each document row of the run store keeps its relevance
(`multi_step`, `decided_by`), its environment (`workflow`, or the extraction's reasons), and its
`reasons` (including `task rejected: CODE: …` lines); the store's `tasks` table keeps every task
written (valid ones, which were simulated, and TaskRejections with code and reason, which were
not); each trajectory's provenance carries `task_id` and `offline` (true when an offline stand-in
wrote the environment or the task, or scripted roles played it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gem_agents.models.client import ModelCallError
from gem_agents.stages.extract import check_simulatable, extract_workflow
from gem_agents.stages.judge import judge_all
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.relevance import judge_relevance
from gem_agents.stages.tasks import write_tasks, write_tasks_offline
from graphs.pipeline import PipelineStages
from graphs.rollouts import run_dialogue
from tools_runtime.records import Document, Failure, Provenance, Relevance, Trajectory, Verdict, Workflow
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.tasks import Task, TaskRejected, TaskRejection, scenario_from_task

if TYPE_CHECKING:
    from gem_agents.run.context import RunContext

# The rule-based extractor names one tool per step; more than this is never a useful scenario.
OFFLINE_MAX_TOOLS = 12


def _error_trajectory(scenario_id: str, workflow: Workflow, rollout: int, seed: int, exc: BaseException,
                      stage: str) -> Trajectory:
    return Trajectory(id=f"{scenario_id}:r{rollout}", scenario_id=scenario_id, workflow_id=workflow.id, messages=[],
                      verdict=Verdict(passed=False, failures=[Failure(code="rollout_error",
                                                                      reason=f"{type(exc).__name__}: {exc}")]),
                      provenance=Provenance(stage=stage, seed=seed, rollout=rollout, doc_id=workflow.doc_id))


def make_stages(ctx: RunContext) -> PipelineStages:
    """The full pipeline's stages for one run."""
    cfg = ctx.config
    hub = ctx.hub
    filter_client = hub.client("filter")
    extract_client = hub.client("extract")
    refine_client = hub.client("refine")
    task_client = hub.client("task")
    judge_client = hub.client("judge")  # optional: rubric scores, nl_assertions, unresolved blame
    # Offline output is never mistaken for model data: any offline stand-in or scripted role marks it.
    scripted_dialogue = ctx.roles.name == "scripted"
    offline_env = extract_client is None
    rollout_sem = asyncio.Semaphore(cfg.concurrency.rollouts)

    async def filter_stage(doc: Document) -> Relevance:
        return await judge_relevance(doc, filter_client, use_prefilter=cfg.prefilter or filter_client is None,
                                     reask_rounds=cfg.limits.reask_rounds)

    async def extract_stage(doc: Document, rel: Relevance) -> tuple[Workflow | None, list[str]]:
        try:
            if extract_client is None:
                result = extract_offline(doc, max_tools=min(OFFLINE_MAX_TOOLS, cfg.limits.max_tools),
                                         domain=rel.domain, platform=rel.platform)
                if result.workflow is not None and not result.workflow.effects:
                    errors = await check_simulatable(result.workflow, rollout=True)
                    if errors:
                        return None, errors
                return result.workflow, result.rejected
            result = await extract_workflow(doc, extract_client, relevance=rel, repair_rounds=cfg.limits.repair_rounds,
                                            max_tools=cfg.limits.max_tools, rollout=True)
        except ModelCallError as exc:
            return None, [f"model call failed: {exc}"]
        return result.workflow, result.rejected

    async def tasks_stage(doc: Document, workflow: Workflow) -> tuple[list[Task], list[TaskRejection]]:
        if task_client is None:
            return write_tasks_offline(workflow, doc.text, k=cfg.tasks_per_env, seed=cfg.seed)
        try:
            return await write_tasks(workflow, doc, task_client, k=cfg.tasks_per_env,
                                     repair_rounds=cfg.limits.repair_rounds)
        except ModelCallError as exc:
            return [], [TaskRejection(task_id=f"{workflow.id}:t", code="model_call_failed", reason=str(exc))]

    def _mark(traj: Trajectory, task: Task | None) -> Trajectory:
        offline = offline_env or scripted_dialogue or bool(task and task.offline)
        prov = traj.provenance.model_copy(update={"offline": offline, "task_id": task.id if task else ""})
        return traj.model_copy(update={"provenance": prov})

    async def one_rollout(workflow: Workflow, i: int, task: Task | None = None) -> Trajectory:
        seed = cfg.seed + i
        async with rollout_sem:
            try:
                scenario = scenario_from_task(workflow, task, seed) if task else build_scenario(workflow, seed)
            except (ScenarioError, TaskRejected) as exc:
                return _mark(_error_trajectory(f"{workflow.id}:s{seed}", workflow, i, seed, exc, "simulate"), task)
            try:
                traj = await run_dialogue(scenario, ctx.roles, rollout=i, max_user_turns=cfg.limits.max_user_turns,
                                          max_tool_rounds=cfg.limits.max_tool_rounds)
            except Exception as exc:  # noqa: BLE001 — one bad rollout never sinks its siblings
                traj = _error_trajectory(scenario.id, workflow, i, seed, exc, "simulate")
            return _mark(traj, task)

    async def simulate_stage(workflow: Workflow, tasks: list[Task] | None = None) -> tuple[list[Trajectory], list[str]]:
        if tasks is None:  # no task writer: the workflow's own scenario (older runs, synthesizer checks)
            trajs = await asyncio.gather(*(one_rollout(workflow, i) for i in range(cfg.rollouts)))
        else:
            trajs = await asyncio.gather(*(one_rollout(workflow, i, task) for task in tasks
                                           for i in range(cfg.rollouts)))
        if judge_client is not None:
            judged, why = await judge_all(judge_client, [t for t in trajs if t.messages], workflow)
            return judged + [t for t in trajs if not t.messages], why
        return list(trajs), []

    async def refine_stage(workflow: Workflow, originals: list[Trajectory],
                           doc: Document) -> tuple[list[Trajectory], list[str]]:
        from gem_agents.stages.refine import refine, refine_to_tasks  # lazy: stage 4 lives in its own module
        from tools_runtime.refine_tasks import TASK_OPS

        # Grounded tasks refine into new tasks (issue 17); the other tasks of the environment are the
        # capabilities a multi-goal refinement may add.
        siblings = [t.scenario.task for t in originals if t.scenario is not None and t.scenario.task is not None]
        # The text a model refiner or judge reads comes from the checkpointed state, never from memory of an
        # earlier stage: a document resumed at refinement in a new process must refine exactly as it would have.
        text = doc.text if refine_client is not None or judge_client is not None else ""
        task_ops = [o for o in cfg.refine_ops if o in TASK_OPS] or None

        async def one(i: int, traj: Trajectory) -> tuple[list[Trajectory], list[str]]:
            if traj.scenario is None:
                return [], [f"{traj.id}: no scenario recorded"]
            async with rollout_sem:
                try:
                    if traj.scenario.task is not None and workflow.effects:
                        got = await refine_to_tasks(workflow, traj, ctx.roles, text=text, siblings=siblings,
                                                    ops=task_ops, seed=cfg.seed + i, client=refine_client,
                                                    judge=judge_client)
                        return got.trajectories, got.drop_lines()
                    res = await refine(traj.scenario, ctx.roles, rounds=cfg.refine_rounds, ops=list(cfg.refine_ops),
                                       seed=cfg.seed + i, client=refine_client)
                except ModelCallError as exc:
                    return [], [f"model call failed: {exc}"]
            return ([res.trajectory] if res.trajectory is not None else []), list(res.rejected)

        verified = [t for t in originals if t.verdict and t.verdict.passed]
        results = await asyncio.gather(*(one(i, t) for i, t in enumerate(verified)))
        refined = [t for ts, _ in results for t in ts]
        reasons = sorted({r for _, rs in results for r in rs})
        if judge_client is not None:  # refinements of grounded tasks were judged before they were kept
            judged = [t for t in refined if not t.provenance.judge]
            again, why = await judge_all(judge_client, judged, workflow, text)
            refined = [t for t in refined if t.provenance.judge] + again
            reasons += why
        return refined, reasons

    return PipelineStages(filter=filter_stage, extract=extract_stage, simulate=simulate_stage,
                          refine=refine_stage if cfg.refine_rounds > 0 else None, tasks=tasks_stage)
