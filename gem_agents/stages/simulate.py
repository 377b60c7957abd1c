"""Stage 3b, simulation: N verified rollouts per task (or of the workflow's own scenario), then the judge.

Each rollout builds its scenario from the task (or the workflow and a seed), plays the dialogue
with the run's roles under the shared rollout semaphore and is verified by the dialogue graph. A
rollout that cannot start or raises becomes a failed trajectory (`rollout_error`), never an error
of its siblings. With a judge model, every dialogue is judged (rubric scores, nl_assertions,
unresolved blame). Offline output is never mistaken for model data: when an offline stand-in wrote
the environment or the task, or scripted roles played it, the trajectory's provenance says
`offline`.
"""

from __future__ import annotations

import asyncio

from gem_agents.registry import register
from gem_agents.stages.base import Stage, StageEnv
from gem_agents.stages.judge import judge_all
from graphs.rollouts import run_dialogue
from tools_runtime.records import Failure, Provenance, Trajectory, Verdict, Workflow
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.tasks import Task, TaskRejected, scenario_from_task


def error_trajectory(scenario_id: str, workflow: Workflow, rollout: int, seed: int, exc: BaseException,
                     stage: str) -> Trajectory:
    """A failed trajectory standing for a rollout that could not run."""
    return Trajectory(id=f"{scenario_id}:r{rollout}", scenario_id=scenario_id, workflow_id=workflow.id, messages=[],
                      verdict=Verdict(passed=False, failures=[Failure(code="rollout_error",
                                                                      reason=f"{type(exc).__name__}: {exc}")]),
                      provenance=Provenance(stage=stage, seed=seed, rollout=rollout, doc_id=workflow.doc_id))


def _mark(env: StageEnv, traj: Trajectory, task: Task | None) -> Trajectory:
    offline = (env.client("extract") is None or env.dialogue_roles.name == "scripted"
               or bool(task and task.offline))
    prov = traj.provenance.model_copy(update={"offline": offline, "task_id": task.id if task else ""})
    return traj.model_copy(update={"provenance": prov})


async def one_rollout(env: StageEnv, workflow: Workflow, i: int, task: Task | None = None) -> Trajectory:
    """Rollout `i` (seed `config.seed + i`) of a task, or of the workflow's own scenario."""
    cfg = env.config
    seed = cfg.seed + i
    async with env.sem:
        try:
            scenario = scenario_from_task(workflow, task, seed) if task else build_scenario(workflow, seed)
        except (ScenarioError, TaskRejected) as exc:
            return _mark(env, error_trajectory(f"{workflow.id}:s{seed}", workflow, i, seed, exc, "simulate"), task)
        try:
            traj = await run_dialogue(scenario, env.dialogue_roles, rollout=i,
                                      max_user_turns=cfg.limits.max_user_turns,
                                      max_tool_rounds=cfg.limits.max_tool_rounds)
        except Exception as exc:  # noqa: BLE001 — one bad rollout never sinks its siblings
            traj = error_trajectory(scenario.id, workflow, i, seed, exc, "simulate")
        return _mark(env, traj, task)


async def run_simulate(env: StageEnv, workflow: Workflow,
                       tasks: list[Task] | None = None) -> tuple[list[Trajectory], list[str]]:
    """Stage 3b in `env`: `rollouts` dialogues per task (or of the workflow), judged when a judge is set."""
    rollouts = range(env.config.rollouts)
    if tasks is None:  # no task writer: the workflow's own scenario (older runs, synthesizer checks)
        trajs = await asyncio.gather(*(one_rollout(env, workflow, i) for i in rollouts))
    else:
        trajs = await asyncio.gather(*(one_rollout(env, workflow, i, task) for task in tasks for i in rollouts))
    judge = env.client("judge")  # optional: rubric scores, nl_assertions, unresolved blame
    if judge is not None:
        judged, why = await judge_all(judge, [t for t in trajs if t.messages], workflow)
        return judged + [t for t in trajs if not t.messages], why
    return list(trajs), []


SIMULATE = register("stage", "simulate", Stage(
    name="simulate", run=run_simulate, roles=("user", "assistant", "tool_env", "judge"),
    reads=("rollouts", "seed", "limits.max_user_turns", "limits.max_tool_rounds", "concurrency.rollouts"),
    summary="N rollouts per task, each verified against the simulated backend, then judged (optional)"))
