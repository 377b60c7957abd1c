"""Run an assistant on a set of tasks K times each and score it: pass^k, components, blame, tokens.

Task sources (`load_items`):
- a run directory (its valid tasks, each on the environment its document produced);
- a tasks JSONL (one Task per line) with its environment (`--env`, or `<name>.json` beside
  `<name>.tasks.jsonl`);
- a folder of `<name>.tasks.jsonl` files, each beside its `<name>.json` environment (examples/environments:
  every example workflow's tasks in one evaluation);
- τ²-bench's `tasks.json` (its folder is the domain: db.json, policy.md) through adapters/tau2.py;
- BFCL multi-turn base (the data folder, or its `BFCL_v4_multi_turn_base.json`) through adapters/bfcl.py.

pass^k is the unbiased estimator τ²-bench uses: for a task with n trials of which c passed,
C(c, k) / C(n, k), averaged over tasks.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

from gem_agents.io import InputError, iter_json_lines, load_json_file
from tools_runtime.records import Scenario, Trajectory

STORE_NAME = "run.sqlite"


@dataclass
class EvalItem:
    """One task to evaluate: its scenario (trial 0), where it came from, and why it is skipped (if it is)."""

    task_id: str
    scenario: Scenario | None
    source: str
    skip: str = ""


class EvalInputError(ValueError):
    """TASKS is none of the supported sources; the message says what was expected."""


def pass_hat_k(successes: list[int], trials: int, k: int) -> float:
    """Mean over tasks of C(c, k) / C(n, k): the chance that k fresh trials of a task all pass."""
    if not successes or k > trials or k < 1:
        return 0.0
    return sum(comb(c, k) / comb(trials, k) for c in successes) / len(successes)


def _is_bfcl(path: Path) -> bool:
    return path.name.startswith("BFCL_v4_multi_turn_base") or (path / "BFCL_v4_multi_turn_base.json").exists()


def load_items(path: Path, *, env: Path | None = None, domain: str | None = None,
               limit: int | None = None) -> list[EvalItem]:
    """The tasks of `path` as evaluation items (see the module docstring for the sources)."""
    from gem_agents.run.store import STORE_NAME as RUN_STORE

    if not path.exists():
        raise EvalInputError(f"{path}: no such file or folder")
    if path.is_dir() and (path / RUN_STORE).exists():
        items = _from_run(path)
    elif _is_bfcl(path):
        items = _from_bfcl(path if path.is_dir() else path.parent)
    elif path.is_file() and path.suffix == ".json" and _looks_tau2(path):
        items = _from_tau2(path, domain)
    elif path.is_file() and path.suffix == ".jsonl":
        items = _from_tasks_jsonl(path, env)
    elif path.is_dir() and any(path.glob("*.tasks.jsonl")):
        # Task ids are unique per environment only: prefix each with its environment file's name.
        items = [EvalItem(f"{f.name.removesuffix('.tasks.jsonl')}/{i.task_id}", i.scenario, i.source, i.skip)
                 for f in sorted(path.glob("*.tasks.jsonl")) for i in _from_tasks_jsonl(f, None)]
    else:
        raise EvalInputError(f"{path}: not a run directory, a tasks JSONL (or a folder of them), τ²'s tasks.json "
                             "or BFCL multi-turn data")
    return items[:limit] if limit else items


def _looks_tau2(path: Path) -> bool:
    try:
        data = load_json_file(path, "tasks file")
    except (OSError, ValueError):
        return False
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "evaluation_criteria" in data[0]


def _scenario_item(workflow: Any, task: Any, source: str) -> EvalItem:
    from tools_runtime.tasks import TaskRejected, scenario_from_task

    try:
        return EvalItem(task.id, scenario_from_task(workflow, task, 0), source)
    except TaskRejected as exc:
        return EvalItem(task.id, None, source, skip=f"{exc.rejection.code}: {exc.rejection.reason}")


def _from_run(run_dir: Path) -> list[EvalItem]:
    from gem_agents.run.store import RunStore
    from tools_runtime.records import Workflow

    store = RunStore(run_dir, readonly=True)
    try:
        workflows: dict[str, Workflow] = {}
        for doc in store.documents():
            if doc.get("workflow"):
                wf = Workflow.model_validate(doc["workflow"])
                workflows[wf.id] = workflows[doc["doc_id"]] = wf
        items = []
        for task in store.tasks():
            workflow = workflows.get(task.env_id)
            items.append(_scenario_item(workflow, task, "run") if workflow is not None else
                         EvalItem(task.id, None, "run", skip=f"no environment {task.env_id!r} in the run"))
        return items
    finally:
        store.close()


def _from_tasks_jsonl(path: Path, env: Path | None) -> list[EvalItem]:
    from tools_runtime.tasks import Task
    from tools_runtime.workflow_io import WorkflowError, load_workflow

    if env is None and path.name.endswith(".tasks.jsonl"):
        env = path.with_name(path.name.removesuffix(".tasks.jsonl") + ".json")
    if env is None or not env.is_file():
        raise EvalInputError(f"{path}: give the environment with --env"
                             + (f" (looked for {env})" if env is not None else ""))
    try:
        wf = load_workflow(env)
    except WorkflowError as exc:
        raise EvalInputError(str(exc)) from None
    items = []
    try:
        lines = list(iter_json_lines(path, "tasks JSONL"))
    except InputError as exc:
        raise EvalInputError(str(exc)) from None
    for row in lines:
        if row.error:
            raise EvalInputError(f"{path}:{row.line}: {row.error}")
        try:
            task = Task.model_validate(row.value)
        except ValueError as exc:
            raise EvalInputError(f"{path}:{row.line}: not a task: {exc}") from None
        items.append(_scenario_item(wf, task, "tasks"))
    return items


def _from_tau2(path: Path, domain: str | None) -> list[EvalItem]:
    from tools_runtime.adapters.tau2 import load_tau2

    try:
        pairs = load_tau2(path, domain)
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None
    items = []
    for task, sc in pairs:
        skip = "" if task.reward_basis else f"its reward basis has only what we cannot check ({task.meta['unsupported']})"
        items.append(EvalItem(task.id, sc, "tau2", skip=skip))
    return items


def _from_bfcl(folder: Path) -> list[EvalItem]:
    from tools_runtime.adapters.bfcl import load_func_docs, load_tasks, task_scenario

    docs = load_func_docs(folder)
    items = []
    for task, answer in load_tasks(folder):
        sc = task_scenario(task, answer, docs)
        items.append(EvalItem(sc.id, sc, "bfcl", skip="" if sc.plan else "no ground truth"))
    return items


def result_row(item: EvalItem, trial: int, traj: Trajectory) -> dict[str, Any]:
    """One line of results.jsonl."""
    v = traj.verdict
    blame: str | None = v.blame if v else None
    if v is not None and not v.passed and blame is None:
        # A rollout that crashed (a model endpoint gone) was never verified: blame the failing role.
        from tools_runtime.verification.blame import blame_for_rollout_error

        blame = blame_for_rollout_error(v.failures[0].reason if v.failures else "")
    return {
        "task_id": item.task_id, "source": item.source, "trial": trial, "passed": bool(v and v.passed),
        "components": {k: {"passed": c.passed, "pending": c.pending} for k, c in (v.components if v else {}).items()},
        "blame": blame, "blame_reason": (v.blame_reason or (v.failures[0].reason if v.failures else "")) if v else "",
        "failures": [f.code for f in v.failures] if v else [], "messages": len(traj.messages),
        "tool_calls": traj.stats.tool_calls, "trajectory_id": traj.id,
    }


def summarise(rows: list[dict[str, Any]], trials: int, *, skipped: list[EvalItem], tokens: dict[str, int],
              wall_s: float, pins: dict[str, Any]) -> dict[str, Any]:
    """summary.json: pass^1 and pass^K, per-component pass rates, blame counts, tokens, wall time."""
    by_task: dict[str, int] = {}
    for r in rows:
        by_task[r["task_id"]] = by_task.get(r["task_id"], 0) + int(r["passed"])
    successes = list(by_task.values())
    comp_n: Counter[str] = Counter()
    comp_ok: Counter[str] = Counter()
    for r in rows:
        for name, c in r["components"].items():
            if not c["pending"]:
                comp_n[name] += 1
                comp_ok[name] += int(c["passed"])
    return {
        "tasks": len(by_task), "trials": trials,
        "pass_hat_k": {str(k): round(pass_hat_k(successes, trials, k), 4) for k in sorted({1, trials})},
        "components": {k: round(comp_ok[k] / comp_n[k], 4) for k in sorted(comp_n)},
        "blame": dict(Counter(r["blame"] for r in rows if r["blame"])),
        "tokens": tokens, "wall_s": round(wall_s, 2),
        "skipped": [{"task_id": i.task_id, "reason": i.skip} for i in skipped],
        **pins,
    }


async def run_eval(items: list[EvalItem], roles: Any, trials: int, *, concurrency: int = 8,
                   max_user_turns: int = 24, max_tool_rounds: int = 16,
                   on_done: Any = None) -> list[tuple[EvalItem, int, Trajectory]]:
    """Every evaluable item, `trials` times (trial t uses seed t)."""
    from graphs.rollouts import simulate

    # Trial-major: a run cut short has scored every task as many times as it got through (pass^1 over all tasks).
    jobs = [(item, t) for t in range(trials) for item in items if item.scenario is not None and not item.skip]
    scenarios = [item.scenario.model_copy(update={"seed": t}) for item, t in jobs]  # type: ignore[union-attr]
    t0 = time.time()
    trajs = await simulate(scenarios, lambda sc: roles, concurrency=concurrency, on_done=on_done,
                           max_user_turns=max_user_turns, max_tool_rounds=max_tool_rounds)
    del t0
    return [(item, t, traj) for (item, t), traj in zip(jobs, trajs, strict=True)]
