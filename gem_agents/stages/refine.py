"""Stage 4: complexity refinement — re-plan a harder scenario, simulate it again, keep it only if verified.

Offline (`client=None`) the deterministic operators of `tools_runtime.refine_ops` make the harder
scenario. With a model client, the model reads the scenario (and the dialogue so far) and proposes
which operators to apply with which arguments, as JSON validated by pydantic (`Proposal`); the same
operators apply it, so every new call is planned against the backend state. Either way the refined
scenario is simulated again with the run's roles and verified; an unverified refinement is dropped
with its reasons and never exported.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gem_agents.config import RunConfig
from gem_agents.models.client import ModelCallError, ModelClient
from gem_agents.prompting import fill, json_object_in, load_prompt, prompts_hash
from gem_agents.registry import register
from gem_agents.stages.base import GraphStep, Stage, StageEnv
from gem_agents.stages.refine_operators import known_operators, scenario_operators, task_operators
from gem_agents.stages.relevance import wants_json_schema
from graphs.roles import Roles
from graphs.rollouts import run_dialogue
from tools_runtime.environment import ValueSource
from tools_runtime.records import Document, Scenario, Trajectory, Workflow
from tools_runtime.refine_ops import DEFAULT_OPS, RefineOpError, apply_ops, check_scenario
from tools_runtime.refine_tasks import (
    BRANCH_OPS,
    JUDGE_OPS,
    MAX_COMPOSED_REQUESTS,
    Drop,
    RefineContext,
    extend,
    refine_candidates,
    scenario_for_task,
    source_in,
    validate,
)
from tools_runtime.tasks import Action, Info, Task
from tools_runtime.toolspec import ToolSpec, ToolSpecError, normalize_tool

PROMPTS = "gem_agents.stages"
# The model roles stage 4 uses besides the dialogue roles: the refiner, and the optional judge that scores
# each refined dialogue and decides its nl_assertions (`gem refine` opens both when the config sets them).
ERROR_KINDS = ("transient", "permission", "not_found", "invalid_value")


class RefineResult(BaseModel):
    """A refinement's outcome: the refined scenario and its verified trajectory, or the reasons it was dropped."""

    scenario: Scenario | None = None
    trajectory: Trajectory | None = None
    rejected: list[str] = Field(default_factory=list)
    ops: list[str] = Field(default_factory=list)


class OpRequest(BaseModel):
    """One operator the model asks for, with its arguments (fields an operator does not use are ignored)."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["chain_goals", "add_tools", "withhold_info", "plan_errors", "change_mind", "state_dependency"]
    count: int | None = Field(default=None, ge=1, le=4)
    goal_texts: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    distractors: list[dict[str, Any]] | None = None
    keys: list[str] | None = None
    kinds: list[Literal["transient", "permission", "not_found", "invalid_value"]] | None = None
    modes: list[Literal["modify", "undo"]] | None = None


class Proposal(BaseModel):
    """The model's refinement proposal."""

    model_config = ConfigDict(extra="forbid")

    ops: list[OpRequest] = Field(min_length=1)
    persona: str | None = None


PROPOSAL_SCHEMA: dict[str, Any] = Proposal.model_json_schema()


def _tool_specs(raw: list[dict[str, Any]] | None, where: str) -> list[ToolSpec] | None:
    if raw is None:
        return None
    out = []
    for i, obj in enumerate(raw):
        try:
            out.append(normalize_tool(obj, where=f"{where}[{i}]"))
        except ToolSpecError as exc:
            raise RefineOpError(str(exc)) from exc
    return out


def proposal_params(proposal: Proposal) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The operator names and keyword arguments a proposal asks for."""
    ops: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    for i, req in enumerate(proposal.ops):
        if req.op in ops:
            raise RefineOpError(f"ops[{i}]: {req.op} is asked for twice")
        ops.append(req.op)
        kw: dict[str, Any] = {}
        if req.op == "chain_goals":
            kw = {"count": req.count or 1, "texts": req.goal_texts}
        elif req.op == "add_tools":
            kw = {"tools": _tool_specs(req.tools, f"ops[{i}].tools"),
                  "distractors": _tool_specs(req.distractors, f"ops[{i}].distractors")}
        elif req.op == "withhold_info" and req.keys is not None:
            kw = {"keys": req.keys}
        elif req.op == "plan_errors" and req.kinds:
            kw = {"kinds": list(req.kinds)}
            if req.tools is not None:
                kw["tools"] = [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in req.tools]
        elif req.op == "change_mind" and req.modes:
            kw = {"modes": list(req.modes)}
        params[req.op] = {k: v for k, v in kw.items() if v is not None}
    return ops, params


def parse_proposal(text: str) -> Proposal:
    """The proposal in a model's answer (a JSON object, possibly inside a code fence)."""
    data = json_object_in(text)
    try:
        return Proposal.model_validate(data)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from exc


def refine_prompt(scenario: Scenario, trajectory: Trajectory | None = None) -> str:
    """The refiner's prompt for one scenario."""
    tools = "\n".join(f"- {t.name}: {t.description} params={json.dumps(t.properties, sort_keys=True)}"
                      for t in scenario.tools)
    goals = "\n".join(f"{i}. {g.description}" for i, g in enumerate(scenario.goals))
    plan = "\n".join(f"{i}. [goal {c.goal}] {c.tool}({json.dumps(c.arguments, ensure_ascii=False)})"
                     for i, c in enumerate(scenario.plan))
    facts = ", ".join(scenario.known_info) or "(none)"
    dialogue = "(not simulated yet)"
    if trajectory is not None:
        lines = []
        for m in trajectory.messages[:40]:
            calls = ", ".join(c.get("function", {}).get("name", "?") for c in m.get("tool_calls") or [])
            content = str(m.get("content") or "")[:200].replace("\n", " ")
            lines.append(f"{m.get('role')}: {content}" + (f" [calls {calls}]" if calls else ""))
        dialogue = "\n".join(lines)
    return fill(load_prompt(PROMPTS, "refine.txt"), title=scenario.workflow.title or scenario.workflow.id,
                tools=tools, goals=goals, plan=plan, facts=facts, dialogue=dialogue)


async def propose(client: ModelClient, scenario: Scenario, trajectory: Trajectory | None = None,
                  repair_rounds: int = 1) -> tuple[Proposal | None, list[str]]:
    """Ask the model for a proposal; a malformed one goes back with the errors (bounded rounds)."""
    json_mode = wants_json_schema(client.cfg)
    messages: list[dict[str, Any]] = [{"role": "user", "content": refine_prompt(scenario, trajectory)}]
    errors: list[str] = []
    for _ in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=PROPOSAL_SCHEMA if json_mode else None,
                                  schema_name="refinement", stage="refine")
        try:
            return parse_proposal(reply.text), []
        except ValueError as exc:
            errors = [f"unusable proposal: {exc}"]
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": "That answer could not be used:\n- " + "\n- ".join(errors)
                     + "\nAnswer again with one JSON object of the form shown."}]
    return None, errors


def turn_budget(scenario: Scenario) -> int:
    """A user-turn budget that fits the refined scenario (each goal may take several turns)."""
    return max(24, 4 * len(scenario.goals) + len(scenario.known_info) + 8)


async def verify_refinement(refined: Scenario, roles: Roles, *, rollout: int = 0) -> tuple[Trajectory | None, list[str]]:
    """Simulate the refined scenario and verify it: (trajectory, []) or (None, the reasons)."""
    problems = check_scenario(refined)
    if problems:
        return None, [f"invalid refined scenario: {p}" for p in problems]
    traj = await run_dialogue(refined, roles, rollout=rollout, stage="refine",
                              max_user_turns=turn_budget(refined))
    if traj.verdict is not None and traj.verdict.passed:
        return traj, []
    failures = traj.verdict.failures if traj.verdict is not None else []
    return None, [f"unverified: {f.code}: {f.reason}" for f in failures] or ["unverified: no verdict"]


async def _one_round(current: Scenario, roles: Roles, ops: list[str], seed: int, client: ModelClient | None,
                     trajectory: Trajectory | None, rnd: int) -> tuple[Scenario | None, Trajectory | None,
                                                                       list[str], list[str]]:
    """One refinement round: (refined scenario, its trajectory, ops applied, reasons) — None when dropped."""
    reasons: list[str] = []
    if client is not None:
        proposal, errors = await propose(client, current, trajectory)
        if proposal is None:
            return None, None, [], [f"round {rnd}: {e}" for e in errors]
        try:
            proposed, params = proposal_params(proposal)
            # The caller's operator list (`--ops`, `refine_ops:`) bounds what a model may apply.
            wanted = [o for o in proposed if o in ops]
            reasons += [f"round {rnd}: not applied: {o} (not among the allowed operators)"
                        for o in proposed if o not in ops]
            refined, applied, skipped = apply_ops(current, wanted, seed=seed + rnd, params=params,
                                                  operators=scenario_operators())
        except RefineOpError as exc:
            return None, None, [], [f"round {rnd}: {exc}"]
        reasons += [f"round {rnd}: not applied: {s}" for s in skipped]
        if not applied:
            return None, None, [], reasons + [f"round {rnd}: no proposed operator could be applied"]
        if proposal.persona:
            refined = refined.model_copy(update={"persona": proposal.persona})
        traj, why = await verify_refinement(refined, roles, rollout=rnd)
        if traj is None:
            return None, None, [], reasons + [f"round {rnd}: {w}" for w in why]
        return refined, traj, applied, reasons
    # Offline: all operators; when the result does not verify, drop the last applied one and retry.
    wanted = list(ops)
    while wanted:
        refined, applied, skipped = apply_ops(current, wanted, seed=seed + rnd, operators=scenario_operators())
        if not applied:
            return None, None, [], reasons + [f"round {rnd}: no operator applies ({'; '.join(skipped)})"]
        traj, why = await verify_refinement(refined, roles, rollout=rnd)
        if traj is not None:
            return refined, traj, applied, reasons
        reasons += [f"round {rnd} with {'+'.join(applied)}: {w}" for w in why[:3]]
        wanted = [o for o in wanted if o != applied[-1]]
    return None, None, [], reasons


async def refine(scenario: Scenario, roles: Roles, *, rounds: int = 1, ops: list[str] | None = None,
                 seed: int = 0, client: ModelClient | None = None,
                 trajectory: Trajectory | None = None) -> RefineResult:
    """Refine `scenario` (offline operators, or a model when `client` is given), re-simulate, verify.

    Each round refines the last verified scenario again. The result carries the last verified
    refinement (None when no round verified) and every reason a round or an attempt was dropped.
    """
    wanted = list(ops) if ops is not None else list(DEFAULT_OPS)
    known = scenario_operators()  # the registered ones: built-ins and plugins
    unknown = [o for o in wanted if o not in known]
    if unknown:
        return RefineResult(rejected=[f"unknown operator(s): {', '.join(unknown)}; known: {', '.join(known)}"])
    if scenario.workflow.backend.kind != "sim":
        return RefineResult(rejected=[f"refinement needs the simulated backend, not {scenario.workflow.backend.kind!r}"])
    current, best = scenario, None
    applied_all: list[str] = []
    rejected: list[str] = []
    for rnd in range(max(0, rounds)):
        refined, traj, applied, reasons = await _one_round(current, roles, wanted, seed, client,
                                                           best or trajectory, rnd)
        rejected += reasons
        if refined is None or traj is None:
            break
        current, best = refined, traj
        applied_all += applied
    if best is None:
        return RefineResult(rejected=rejected or ["no refinement round ran"], ops=[])
    final = current.model_copy(update={"id": f"{scenario.id}:refined"})
    provenance = best.provenance.model_copy(update={
        "stage": "refine", "prompts_hash": prompts_hash(load_prompt(PROMPTS, "refine.txt")) if client else "",
        "model": client.model if client is not None else best.provenance.model})
    best = best.model_copy(update={"id": f"{scenario.id}:refined", "scenario_id": final.id, "scenario": final,
                                   "provenance": provenance})
    return RefineResult(scenario=final, trajectory=best, rejected=rejected, ops=applied_all)


# ---------------------------------------------------------------------------------------------------------
# Refinement into new tasks (issue 17): operators or a model propose Tasks, gold runs, simulate, verify.

TASK_PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": {
        "type": "object",
        "properties": {
            "operator": {"type": "string"},
            "persona": {"type": "string"},
            "forbidden_tools": {"type": "array", "items": {"type": "string"}},
            "requests": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "instruction": {"type": "string"},
                    "known_info": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "value": {}, "quote": {"type": "string"},
                                       "withhold": {"type": "boolean"}},
                        "required": ["key", "value"]}},
                    "gold_actions": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"}},
                        "required": ["tool", "arguments"]}},
                    "communicate_info": {"type": "array", "items": {"type": "string"}},
                    "nl_assertions": {"type": "array", "items": {"type": "string"}},
                    "slip": {"type": ["object", "null"], "properties": {"key": {"type": "string"},
                                                                         "wrong": {}}},
                },
                "required": ["instruction", "known_info", "gold_actions"]}},
        },
        "required": ["operator", "requests"]}}},
    "required": ["tasks"],
}


class ProposedInfo(BaseModel):
    """A fact of the user in a model's proposal (the quote is matched to the text)."""

    model_config = ConfigDict(extra="ignore")

    key: str = Field(min_length=1)
    value: Any = None
    quote: str = ""
    withhold: bool = False


class ProposedSlip(BaseModel):
    """A value the user first gets wrong."""

    model_config = ConfigDict(extra="ignore")

    key: str
    wrong: Any = None


class ProposedRequest(BaseModel):
    """One new request of a proposed task."""

    model_config = ConfigDict(extra="ignore")

    instruction: str = Field(min_length=1)
    known_info: list[ProposedInfo] = Field(default_factory=list)
    gold_actions: list[Action] = Field(default_factory=list)
    communicate_info: list[str] = Field(default_factory=list)
    nl_assertions: list[str] = Field(default_factory=list)
    slip: ProposedSlip | None = None


class ProposedTask(BaseModel):
    """A model's refined task: the original task extended by its requests."""

    model_config = ConfigDict(extra="ignore")

    operator: str = "other"
    persona: str = ""
    requests: list[ProposedRequest] = Field(min_length=1)
    forbidden_tools: list[str] = Field(default_factory=list)


class TaskRefinement(BaseModel):
    """What refining one verified trajectory into new tasks gave: the verified refined trajectories,
    every task that was simulated, and every refinement dropped (operator, code, reason)."""

    trajectories: list[Trajectory] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    drops: list[Drop] = Field(default_factory=list)

    def drop_lines(self) -> list[str]:
        """One `OPERATOR: CODE: REASON [task ID]` line per drop (not-applicable ones too), as the run stores
        them among a document's reasons; the task id keeps two equal drops of different tasks apart, and
        `gem audit` counts them per operator."""
        return [f"{d.operator}: {d.code}: {d.reason} [task {d.task_id or d.parent}]" for d in self.drops]

    def produced(self) -> dict[str, int]:
        """Refined tasks that validated, by operator (a composed task counts once under `composed`)."""
        out: dict[str, int] = {}
        for t in self.tasks:
            name = "composed" if t.meta.get("composed") else (t.meta.get("operators") or [t.operator])[-1]
            out[name] = out.get(name, 0) + 1
        return out


def environment_json(workflow: Workflow, limit: int = 12000) -> str:
    """The environment as the refiner and the judge read it: tools with effects, entities, records."""
    env = {"tools": [t.to_openai()["function"] for t in workflow.tools],
           "effects": {n: e.model_dump(exclude_defaults=True) for n, e in workflow.effects.items()},
           "entities": [e.model_dump(exclude_defaults=True) for e in workflow.entities],
           "initial_state": [{"entity": r.entity, **r.values} for r in workflow.initial_state]}
    text = json.dumps(env, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + " …(truncated)"


def policy_text(workflow: Workflow) -> str:
    """The policy as lines (`- [must] …`)."""
    return "\n".join(f"- [{r.strength}] {r.text}" for r in workflow.policy) or "- (no rules stated)"


def dialogue_text(messages: list[dict[str, Any]], limit: int = 80) -> str:
    """A dialogue as plain lines: every message, tool calls with their arguments, results shortened."""
    lines = []
    for m in messages[:limit]:
        role = m.get("role")
        content = str(m.get("content") or "").replace("\n", " ")
        calls = "; ".join(f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
                          for c in m.get("tool_calls") or [])
        if role == "tool":
            content = content[:300]
        lines.append(f"{role}: {content[:600]}" + (f" [calls {calls}]" if calls else ""))
    if len(messages) > limit:
        lines.append(f"… {len(messages) - limit} more messages")
    return "\n".join(lines)


def task_text(task: Task) -> str:
    """A task as the refiner reads it."""
    body = {"instruction": task.instruction, "known_info": {i.key: i.value for i in task.known_info},
            "gold_actions": [a.model_dump() for a in task.gold_actions],
            "communicate_info": task.communicate_info, "nl_assertions": task.nl_assertions}
    return json.dumps(body, ensure_ascii=False, default=str)


def refine_task_prompt(workflow: Workflow, task: Task, trajectory: Trajectory | None, text: str, k: int = 2) -> str:
    """The model refiner's prompt: the text, the environment, the policy, the task and its dialogue."""
    return fill(load_prompt(PROMPTS, "refine_task.txt"), text=text[:8000] or "\n".join(workflow.steps),
                environment=environment_json(workflow), policy=policy_text(workflow), task=task_text(task),
                dialogue=dialogue_text(trajectory.messages) if trajectory is not None else "(not simulated)",
                k=str(k))


def tasks_from_proposal(data: Any, ctx: RefineContext, parent: Task) -> tuple[list[Task], list[Drop]]:
    """Refined Tasks from a model's parsed answer (pydantic-validated), each the parent plus its requests."""
    items = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        return [], [Drop(operator="model", parent=parent.id, code="unparsable", reason="the answer has no `tasks` list")]
    out: list[Task] = []
    drops: list[Drop] = []
    for n, item in enumerate(items):
        try:
            prop = ProposedTask.model_validate(item)
        except ValidationError as exc:
            drops.append(Drop(operator=str(item.get("operator", "model")) if isinstance(item, dict) else "model",
                              parent=parent.id, code="invalid_task",
                              reason="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:4])))
            continue
        current = parent
        for req in prop.requests:
            known = [Info(key=i.key, value=i.value, withhold=i.withhold,
                          source=source_in(ctx.text, i.quote) if i.quote else ValueSource(kind="invented"))
                     for i in req.known_info]
            slips = []
            if req.slip is not None:
                value = next((i.value for i in req.known_info if i.key == req.slip.key), None)
                tool = next((a.tool for a in req.gold_actions if value is not None and value in a.arguments.values()),
                            req.gold_actions[0].tool if req.gold_actions else "")
                slips = [{"kind": "not_found", "tool": tool, "key": req.slip.key, "param": req.slip.key,
                          "wrong": req.slip.wrong}]
            current = extend(ctx, current, None, prop.operator, req.instruction, list(req.gold_actions), known=known,
                             communicate=req.communicate_info, nl=req.nl_assertions, slips=slips,
                             branches=[f"model:{prop.operator}"] if prop.operator in BRANCH_OPS else [])
        meta = {**current.meta, "model": True, "proposal": n}
        upd: dict[str, Any] = {"meta": meta, "id": f"{current.id}:m{n}", "offline": False,
                               "forbidden_tools": sorted({*current.forbidden_tools, *prop.forbidden_tools})}
        if prop.operator in JUDGE_OPS:  # only a judge can tell a refusal from "done!"
            upd["reward_basis"] = list(dict.fromkeys([*current.reward_basis, "nl_assertions"]))
        if prop.persona:
            upd["persona"] = prop.persona
        out.append(current.model_copy(update=upd))
    return out, drops


async def propose_tasks(client: ModelClient, ctx: RefineContext, parent: Task, trajectory: Trajectory | None,
                        *, k: int = 2, repair_rounds: int = 1) -> tuple[list[Task], list[Drop]]:
    """Ask the model refiner for refined tasks; validated (pydantic, then gold); rejections go back once."""
    json_mode = wants_json_schema(client.cfg)
    messages: list[dict[str, Any]] = [{"role": "user", "content": refine_task_prompt(ctx.workflow, parent, trajectory,
                                                                                  ctx.text, k)}]
    kept: list[Task] = []
    drops: list[Drop] = []
    for _ in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=TASK_PROPOSAL_SCHEMA if json_mode else None,
                                  schema_name="refined_tasks", stage="refine")
        try:
            data = parse_json_answer(reply.text)
        except ValueError as exc:
            round_drops = [Drop(operator="model", parent=parent.id, code="unparsable", reason=str(exc))]
            tasks: list[Task] = []
        else:
            tasks, round_drops = tasks_from_proposal(data, ctx, parent)
        for t in tasks:
            got = validate(ctx.workflow, t, t.operator)
            (round_drops if isinstance(got, Drop) else kept).append(got)  # type: ignore[arg-type]
        drops += round_drops
        if kept or not round_drops:
            break
        errors = "\n".join(f"- {d.task_id or d.operator}: {d.code}: {d.reason}" for d in round_drops)
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": f"These tasks were rejected:\n{errors}\nAnswer again with corrected "
                                                "tasks in the same JSON format."}]
    return kept, drops


def parse_json_answer(text: str) -> Any:
    """The JSON object of a model's answer (possibly inside a code fence)."""
    return json_object_in(text)


def task_turn_budget(scenario: Scenario) -> int:
    """User turns for a refined task: several per request, one per fact it may have to ask for."""
    return max(24, 5 * len(scenario.goals) + len(scenario.known_info) + 8)


async def simulate_task(workflow: Workflow, task: Task, roles: Roles, *, seed: int = 0, rollout: int = 0,
                        max_tool_rounds: int | None = None) -> Trajectory:
    """One dialogue of a refined task (one goal per request), verified."""
    sc = scenario_for_task(workflow, task, seed)
    kwargs: dict[str, Any] = {"max_tool_rounds": max_tool_rounds} if max_tool_rounds else {}
    return await run_dialogue(sc, roles, rollout=rollout, stage="refine", max_user_turns=task_turn_budget(sc), **kwargs)


async def refine_to_tasks(workflow: Workflow, original: Trajectory, roles: Roles, *, text: str = "",
                          siblings: list[Task] | None = None, ops: list[str] | None = None, seed: int = 0,
                          client: ModelClient | None = None, singles: bool = False, compose: bool = True,
                          k: int = 2, offline: bool | None = None, judge: ModelClient | None = None,
                          max_requests: int = MAX_COMPOSED_REQUESTS, tool_use: Counter[str] | None = None
                          ) -> TaskRefinement:
    """Refine a verified trajectory's task into new tasks, simulate each again and keep the verified ones.

    Offline (`client=None`) the operators of `tools_runtime.refine_tasks` write the tasks; with a
    client the model refiner does, seeing the dialogue, the text, the environment and the policy. With a
    `judge` client, each refined dialogue is judged before it is kept (nl_assertions, scores, blame).
    """
    out = TaskRefinement()
    parent = original.scenario.task if original.scenario is not None else None
    if parent is None:
        out.drops.append(Drop(operator="all", parent=original.id, code="no_task",
                              reason="the trajectory carries no task to refine"))
        return out
    ctx = RefineContext(workflow=workflow, text=text or "\n".join(workflow.steps), siblings=list(siblings or []),
                        tool_use=tool_use)
    try:
        if client is None:
            cands, drops = refine_candidates(ctx, parent, ops, seed=seed, singles=singles, compose=compose,
                                             judge=judge is not None, operators=task_operators(),
                                             max_requests=max_requests)
        else:
            cands, drops = await propose_tasks(client, ctx, parent, original, k=k)
    except RefineOpError as exc:
        out.drops.append(Drop(operator="all", parent=parent.id, code="invalid_operators", reason=str(exc)))
        return out
    out.drops += drops
    await _simulate_refined(out, workflow, original, parent, cands, roles, seed=seed, client=client, offline=offline,
                            judge=judge, text=ctx.text)
    if client is None and compose and not singles and not out.trajectories:
        # The composed task did not verify: fall back to one refined task per operator.
        try:
            more, _ = refine_candidates(ctx, parent, ops, seed=seed, singles=True, compose=False,
                                        operators=task_operators())
        except RefineOpError:
            more = []
        await _simulate_refined(out, workflow, original, parent, more, roles, seed=seed, client=None,
                                offline=offline, first=len(out.tasks), judge=judge, text=ctx.text)
    return out


async def _simulate_refined(out: TaskRefinement, workflow: Workflow, original: Trajectory, parent: Task,
                            cands: list[Task], roles: Roles, *, seed: int, client: ModelClient | None,
                            offline: bool | None, first: int = 0, judge: ModelClient | None = None,
                            text: str = "") -> None:
    """Simulate and verify each refined task; verified ones join `out.trajectories`, the rest `out.drops`."""
    for i, task in enumerate(cands, first):
        task = task.model_copy(update={"offline": parent.offline if client is None else False})
        out.tasks.append(task)
        try:
            traj = await simulate_task(workflow, task, roles, seed=seed, rollout=i)
        except Exception as exc:  # noqa: BLE001 — one refined task never sinks the others
            out.drops.append(Drop(operator=task.operator, parent=parent.id, task_id=task.id, code="rollout_error",
                                  reason=f"{type(exc).__name__}: {exc}"))
            continue
        if judge is not None and traj.messages:
            from gem_agents.stages.judge import JudgeError, apply_judge, judge_trajectory

            try:
                traj = apply_judge(traj, await judge_trajectory(judge, traj, workflow, text or out_text(workflow)),
                                   model=judge.model)
            except JudgeError as exc:
                out.drops.append(Drop(operator=task.operator, parent=parent.id, task_id=task.id,
                                      code="judge_unusable", reason=str(exc)))
        if traj.verdict is None or not traj.verdict.passed:
            fails = traj.verdict.failures if traj.verdict is not None else []
            out.drops.append(Drop(operator=task.operator, parent=parent.id, task_id=task.id, code="unverified",
                                  reason="; ".join(f"{f.code}: {f.reason}" for f in fails[:3]) or "no verdict"))
            continue
        prov = traj.provenance.model_copy(update={
            "stage": "refine", "task_id": task.id,
            "offline": original.provenance.offline if offline is None else offline,
            "model": client.model if client is not None else traj.provenance.model,
            "prompts_hash": prompts_hash(load_prompt(PROMPTS, "refine_task.txt")) if client is not None
            else traj.provenance.prompts_hash})
        out.trajectories.append(traj.model_copy(update={"id": f"{task.id}:refined", "provenance": prov}))


def as_refine_result(res: TaskRefinement) -> RefineResult:
    """A task refinement in `gem refine`'s one-result shape: the composed verified trajectory first, else
    the richest one; every drop as a reason."""
    best = sorted(res.trajectories, key=lambda t: (not t.scenario.task.meta.get("composed") if t.scenario and
                                                   t.scenario.task else True, -t.stats.tool_calls))
    reasons = [f"{d.operator}: {d.code}: {d.reason}" for d in res.drops]
    if not best:
        return RefineResult(rejected=reasons or ["no refined task verified"])
    top = best[0]
    ops = list(top.scenario.task.meta.get("operators", [])) if top.scenario and top.scenario.task else []
    return RefineResult(scenario=top.scenario, trajectory=top, rejected=reasons, ops=ops)


def out_text(workflow: Workflow) -> str:
    """The text a judge of a refined dialogue reads when the document is not at hand: the steps."""
    return "\n".join(workflow.steps)


# ---------------------------------------------------------------------------------------------------------
# The stage object: `gem run`'s refine node and `gem refine` both run `run_refine` over RefineJobs.


def ops_problem(ops: list[str]) -> str | None:
    """Why a list of refinement operators cannot be used (None when every name is known)."""
    known = known_operators()  # registered: built-ins and plugins
    unknown = [o for o in ops if o not in known]
    if not unknown:
        return None
    return f"unknown refine operator(s): {', '.join(unknown)}; known: {', '.join(known)}"


def refine_preflight(cfg: RunConfig) -> list[str]:
    """The config's `refine_ops` must all be known operators (an unknown one would refine nothing)."""
    problem = ops_problem(cfg.refine_ops)
    return [f"refine_ops: {problem}"] if problem else []


@dataclass
class RefineJob:
    """One verified trajectory to refine (it carries the scenario it ran) and what its refiner may read."""

    workflow: Workflow
    trajectory: Trajectory
    seed: int = 0
    siblings: list[Task] = field(default_factory=list)
    text: str = ""
    # `gem refine` shows a scenario refiner the dialogue it refines; `gem run` never did (same cache keys).
    show_dialogue: bool = False
    # Shared by the jobs of one environment: which tools its earlier composed tasks called (refine_tasks.multi_goal
    # prefers others). Offline composition runs before a job's first await and the semaphore wakes jobs in order,
    # so the jobs fill it in job order and a run is reproducible.
    tool_use: Counter[str] | None = None


@dataclass
class RefineOutcome:
    """What refining one job gave: a scenario refinement or a refinement into new tasks."""

    job: RefineJob
    result: RefineResult | TaskRefinement

    def trajectories(self) -> list[Trajectory]:
        """Every verified refined trajectory."""
        if isinstance(self.result, TaskRefinement):
            return list(self.result.trajectories)
        return [self.result.trajectory] if self.result.trajectory is not None else []

    def reasons(self) -> list[str]:
        """Why refinements were dropped (operators that did not apply are not reasons)."""
        if isinstance(self.result, TaskRefinement):
            return self.result.drop_lines()
        return list(self.result.rejected)

    def best(self) -> RefineResult:
        """The one-result view `gem refine` reports (the composed task's trajectory first)."""
        return as_refine_result(self.result) if isinstance(self.result, TaskRefinement) else self.result


async def refine_one(env: StageEnv, job: RefineJob) -> RefineResult | TaskRefinement:
    """Refine one job: a grounded task into new tasks, any other scenario by the scenario operators."""
    cfg, traj = env.config, job.trajectory
    if traj.scenario is None:
        return RefineResult(rejected=[f"{traj.id}: no scenario recorded"])
    client = env.client("refine")
    try:
        if traj.scenario.task is not None and job.workflow.effects:
            task_ops = [o for o in cfg.refine_ops if o in task_operators()] or None
            return await refine_to_tasks(job.workflow, traj, env.dialogue_roles, text=job.text, siblings=job.siblings,
                                         ops=task_ops, seed=job.seed, client=client, judge=env.client("judge"),
                                         max_requests=cfg.refine_max_requests, tool_use=job.tool_use)
        return await refine(traj.scenario, env.dialogue_roles, rounds=cfg.refine_rounds, ops=list(cfg.refine_ops),
                            seed=job.seed, client=client, trajectory=traj if job.show_dialogue else None)
    except ModelCallError as exc:
        # An endpoint that gives up costs this trajectory only; the others go on.
        return RefineResult(rejected=[f"model call failed: {exc}"])


async def run_refine(env: StageEnv, jobs: list[RefineJob],
                     on_done: Callable[[RefineOutcome], None] | None = None) -> list[RefineOutcome]:
    """Stage 4 in `env`: refine every job (at most the rollout semaphore's worth at once), in job order."""

    async def one(job: RefineJob) -> RefineOutcome:
        async with env.sem:
            outcome = RefineOutcome(job, await refine_one(env, job))
        if on_done is not None:
            on_done(outcome)
        return outcome

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def _refine_graph_step(stage: Stage, env: StageEnv) -> GraphStep:
    async def step(workflow: Workflow, originals: list[Trajectory], doc: Document) -> tuple[list[Trajectory],
                                                                                           list[str]]:
        # Grounded tasks refine into new tasks; the other tasks of the environment are the capabilities a
        # multi-goal refinement may add.
        siblings = [t.scenario.task for t in originals if t.scenario is not None and t.scenario.task is not None]
        judge = env.client("judge")
        # The text comes from the checkpointed state, never from memory of an earlier stage: a document resumed
        # at refinement in a new process must refine exactly as it would have. The offline operators read it
        # too (a create-first alternative, the provenance of a new request's values).
        text = doc.text
        verified = [t for t in originals if t.verdict and t.verdict.passed]
        tool_use: Counter[str] = Counter()
        jobs = [RefineJob(workflow, t, seed=env.config.seed + i, siblings=siblings, text=text, tool_use=tool_use)
                for i, t in enumerate(verified)]
        outcomes = await stage.run(env, jobs)
        refined = [t for o in outcomes for t in o.trajectories()]
        reasons = sorted({r for o in outcomes for r in o.reasons()})
        if judge is not None:  # refinements of grounded tasks were judged before they were kept
            from gem_agents.stages.judge import judge_all

            again, why = await judge_all(judge, [t for t in refined if not t.provenance.judge], workflow, text)
            refined = [t for t in refined if t.provenance.judge] + again
            reasons += why
        return refined, reasons

    return step


REFINE = register("stage", "refine", Stage(
    name="refine", run=run_refine, roles=("refine", "user", "assistant", "tool_env", "judge"),
    preflight=refine_preflight, graph_step=_refine_graph_step,
    reads=("refine_rounds", "refine_max_requests", "refine_ops", "seed", "concurrency.rollouts"),
    summary="harder scenarios or new tasks from verified trajectories, simulated and verified again"))
