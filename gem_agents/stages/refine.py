"""Stage 4: complexity refinement — re-plan a harder scenario, simulate it again, keep it only if verified.

Offline (`client=None`) the deterministic operators of `tools_runtime.refine_ops` make the harder
scenario. With a model client, the model reads the scenario (and the dialogue so far) and proposes
which operators to apply with which arguments, as JSON validated by pydantic (`Proposal`); the same
operators apply it, so every new call is planned against the backend state. Either way the refined
scenario is simulated again with the run's roles and verified; an unverified refinement is dropped
with its reasons and never exported.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gem_agents.models.client import ModelClient
from gem_agents.prompting import fill, load_prompt, prompts_hash
from gem_agents.stages.relevance import wants_json_schema
from graphs.roles import Roles
from graphs.rollouts import run_dialogue
from tools_runtime.records import Scenario, Trajectory
from tools_runtime.refine_ops import DEFAULT_OPS, OPS, RefineOpError, apply_ops, check_scenario
from tools_runtime.toolspec import ToolSpec, ToolSpecError, normalize_tool

PROMPTS = "gem_agents.stages"
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
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        data = json.loads(body[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
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
            refined, applied, skipped = apply_ops(current, wanted, seed=seed + rnd, params=params)
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
        refined, applied, skipped = apply_ops(current, wanted, seed=seed + rnd)
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
    unknown = [o for o in wanted if o not in OPS]
    if unknown:
        return RefineResult(rejected=[f"unknown operator(s): {', '.join(unknown)}; known: {', '.join(OPS)}"])
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
