"""The `judge` role (optional, any provider): scores a dialogue with a written rubric and decides what rules cannot.

It reads the text, the environment, the task and the dialogue, and answers JSON (`JudgeAnswer`): a
score from 1 to 5 with a reason for each rubric criterion (prompts/judge_rubric.txt: grounded in the
text, natural user turns, helpful assistant turns, policy followed), a verdict with a reason for each
of the task's `nl_assertions`, and — for a failed rollout — who is to blame.

`judge_callable` turns an answer into the `Judge` callable that tools_runtime's verifier takes
(components.check_nl_assertions, blame.assign_blame), so tools_runtime never calls a model;
`apply_judge` re-verifies a trajectory with it and records the scores, the prompt and rubric hashes
and the model in `provenance.judge`, which `gem export --min-judge X` gates on.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gem_agents.models.client import ModelClient
from gem_agents.prompting import fill, json_object_in, load_prompt, prompts_hash
from tools_runtime.records import Trajectory, Workflow
from tools_runtime.verification.components import Judge, task_of
from tools_runtime.verification.verify import verify

PROMPTS = "gem_agents.stages"
CRITERIA = ("grounded_in_text", "natural_user", "helpful_assistant", "policy_followed")


class Score(BaseModel):
    """One rubric criterion's score (1–5) and the reason for it."""

    model_config = ConfigDict(extra="ignore")

    score: int = Field(ge=1, le=5)
    reason: str = Field(min_length=1)


class AssertionVerdict(BaseModel):
    """The judge's decision on one natural-language assertion."""

    model_config = ConfigDict(extra="ignore")

    assertion: str
    passed: bool
    reason: str = ""


class JudgeAnswer(BaseModel):
    """The judge's JSON answer."""

    model_config = ConfigDict(extra="ignore")

    scores: dict[Literal["grounded_in_text", "natural_user", "helpful_assistant", "policy_followed"], Score]
    nl_assertions: list[AssertionVerdict] = Field(default_factory=list)
    blame: Literal["assistant", "user", "environment", "task"] | None = None
    blame_reason: str = ""

    def overall(self) -> float:
        """The mean score scaled to 0–1 (1 → 0.0, 5 → 1.0)."""
        vals = [s.score for s in self.scores.values()]
        return round((sum(vals) / len(vals) - 1) / 4, 4) if vals else 0.0


JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {"type": "object", "properties": {
            c: {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                 "reason": {"type": "string"}},
                "required": ["score", "reason"]} for c in CRITERIA},
            "required": list(CRITERIA)},
        "nl_assertions": {"type": "array", "items": {"type": "object", "properties": {
            "assertion": {"type": "string"}, "passed": {"type": "boolean"}, "reason": {"type": "string"}},
            "required": ["assertion", "passed", "reason"]}},
        "blame": {"type": ["string", "null"], "enum": ["assistant", "user", "environment", "task", None]},
        "blame_reason": {"type": "string"},
    },
    "required": ["scores", "nl_assertions", "blame"],
}


class JudgeError(ValueError):
    """A judge answer that could not be used (after the repair round)."""


def judge_hash() -> str:
    """Fingerprint of the judge prompt and rubric (recorded in provenance)."""
    return prompts_hash(load_prompt(PROMPTS, "judge.txt"), load_prompt(PROMPTS, "judge_rubric.txt"))


def _dialogue(messages: list[dict[str, Any]]) -> str:
    lines = []
    for i, m in enumerate(messages):
        calls = "; ".join(f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
                          for c in m.get("tool_calls") or [])
        content = str(m.get("content") or "").replace("\n", " ")
        lines.append(f"[{i}] {m.get('role')}: {content[:700]}" + (f" [calls {calls}]" if calls else ""))
    return "\n".join(lines)


def judge_prompt(traj: Trajectory, workflow: Workflow | None = None, text: str = "") -> str:
    """The judge's prompt for one trajectory."""
    from gem_agents.stages.refine import environment_json, policy_text

    scenario = traj.scenario
    wf = workflow or (scenario.workflow if scenario is not None else None)
    task = task_of(scenario) if scenario is not None else None
    task_body = "(unknown)"
    if task is not None and scenario is not None:
        task_body = json.dumps({"instruction": task.instruction or " ".join(g.description for g in scenario.goals),
                                "known_info": {i.key: i.value for i in task.known_info} or scenario.known_info,
                                "gold_actions": [a.model_dump() for a in task.gold_actions],
                                "communicate_info": task.communicate_info, "refuse": task.refuse,
                                "forbidden_tools": task.forbidden_tools}, ensure_ascii=False, default=str)
    assertions = "\n".join(f"- {a}" for a in (task.nl_assertions if task else [])) or "(none)"
    verdict = traj.verdict
    if verdict is None:
        verification = "(not verified)"
    elif verdict.passed:
        verification = "PASSED"
    else:
        verification = "FAILED: " + "; ".join(f"{f.code}: {f.reason}" for f in verdict.failures[:6])
    return fill(load_prompt(PROMPTS, "judge.txt"), rubric=load_prompt(PROMPTS, "judge_rubric.txt"),
                text=(text or ("\n".join(wf.steps) if wf else ""))[:8000],
                environment=environment_json(wf) if wf else "{}", policy=policy_text(wf) if wf else "",
                task=task_body, dialogue=_dialogue(traj.messages), assertions=assertions, verification=verification)


def parse_judge(text: str) -> JudgeAnswer:
    """The judge's answer (a JSON object, possibly in a code fence); JudgeError naming what is wrong."""
    try:
        data = json_object_in(text)
    except ValueError as exc:
        raise JudgeError(str(exc)) from exc
    try:
        answer = JudgeAnswer.model_validate(data)
    except ValidationError as exc:
        raise JudgeError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])) from exc
    missing = [c for c in CRITERIA if c not in answer.scores]
    if missing:
        raise JudgeError(f"scores missing for: {', '.join(missing)}")
    return answer


async def judge_trajectory(client: ModelClient, traj: Trajectory, workflow: Workflow | None = None, text: str = "",
                           repair_rounds: int = 1) -> JudgeAnswer:
    """Ask the judge about one trajectory; a malformed answer goes back once with what was wrong."""
    # Imported here: relevance registers a stage on import, which loads simulate, which imports this module.
    from gem_agents.stages.relevance import wants_json_schema

    json_mode = wants_json_schema(client.cfg)
    messages: list[dict[str, Any]] = [{"role": "user", "content": judge_prompt(traj, workflow, text)}]
    error = ""
    for _ in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=JUDGE_SCHEMA if json_mode else None, schema_name="judge",
                                  stage="judge", salt=traj.id)
        try:
            return parse_judge(reply.text)
        except JudgeError as exc:
            error = str(exc)
        messages = [*messages, {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": f"That answer could not be used: {error}\nAnswer again with one "
                                                "JSON object of the form shown."}]
    raise JudgeError(error)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def judge_callable(answer: JudgeAnswer) -> Judge:
    """The verifier's Judge callable, answering from a judge's answer (no model call inside tools_runtime)."""
    decided = {_norm(a.assertion): a for a in answer.nl_assertions}

    def judge(kind: str, context: dict[str, Any]) -> dict[str, Any]:
        if kind == "nl_assertion":
            hit = decided.get(_norm(str(context.get("assertion", ""))))
            if hit is None:
                return {"passed": False, "reason": "the judge did not decide this assertion"}
            return {"passed": hit.passed, "reason": hit.reason}
        if kind == "blame":
            return {"blame": answer.blame, "reason": answer.blame_reason or "decided by the judge"}
        return {}

    return judge


def apply_judge(traj: Trajectory, answer: JudgeAnswer, *, model: str = "") -> Trajectory:
    """The trajectory re-verified with the judge deciding `nl_assertions` (then part of the reward) and
    unresolved blame, with the judge's scores, reasons, prompt hash and model in `provenance.judge`."""
    out = traj
    scenario = traj.scenario
    if scenario is not None and traj.messages:
        task = task_of(scenario)
        if task.nl_assertions and "nl_assertions" not in task.reward_basis:
            task = task.model_copy(update={"reward_basis": [*task.reward_basis, "nl_assertions"]})
        judged = scenario.model_copy(update={"task": task}) if scenario.task is not None or task.nl_assertions \
            else scenario
        ended = "turn_budget" if traj.verdict and "turn_budget_exhausted" in traj.verdict.codes() else ""
        verdict = verify(traj.messages, judged, judge=judge_callable(answer), ended_by=ended)[0]
        out = traj.model_copy(update={"verdict": verdict})
    record = {"score": answer.overall(), "model": model, "prompts_hash": judge_hash(),
              "scores": {k: v.model_dump() for k, v in answer.scores.items()},
              "nl_assertions": [a.model_dump() for a in answer.nl_assertions],
              "blame": answer.blame, "blame_reason": answer.blame_reason}
    return out.model_copy(update={"provenance": out.provenance.model_copy(update={"judge": record})})


async def judge_all(client: ModelClient, trajectories: list[Trajectory], workflow: Workflow | None = None,
                    text: str = "") -> tuple[list[Trajectory], list[str]]:
    """Judge every trajectory; one the judge cannot answer keeps its verdict and gets a reason."""
    out, reasons = [], []
    for t in trajectories:
        try:
            answer = await judge_trajectory(client, t, workflow, text)
        except JudgeError as exc:
            reasons.append(f"{t.id}: judge answer unusable: {exc}")
            out.append(t)
            continue
        out.append(apply_judge(t, answer, model=client.model))
    return out, reasons
