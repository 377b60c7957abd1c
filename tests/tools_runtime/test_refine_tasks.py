"""Refinement into new tasks: operators from the environment, gold-validated, simulated and verified again."""

from __future__ import annotations

import asyncio
import json

import pytest

from gem_agents.config import RunConfig
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.stages.refine import refine_task_prompt, refine_to_tasks, simulate_task
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text
from graphs.rollouts import run_dialogue
from tools_runtime.records import Provenance, Trajectory
from tools_runtime.refine_ops import RefineOpError
from tools_runtime.refine_tasks import (
    TASK_OPS,
    RefineContext,
    ambiguous,
    branch,
    error_condition,
    long_context,
    multi_goal,
    new_capability_share,
    policy_refusal,
    refine_candidates,
    repetition_share,
    requests_of,
    scenario_for_task,
    validate,
)
from tools_runtime.tasks import Action, Task, scenario_from_task
from tools_runtime.workflow_io import load_workflow

SCRIPTED = make_roles(None)


def run(coro):
    return asyncio.run(coro)


def env(name: str):
    wf = load_workflow(f"examples/environments/{name}.json")
    tasks = [Task.model_validate_json(line) for line in open(f"examples/environments/{name}.tasks.jsonl")
             if line.strip()]
    return wf, tasks


def ctx_for(name: str) -> tuple[RefineContext, list[Task]]:
    wf, tasks = env(name)
    return RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks), tasks


def by_id(tasks: list[Task], tid: str) -> Task:
    return next(t for t in tasks if t.id == tid)


def rng(seed: int = 0):
    import random

    return random.Random(seed)


def test_multi_goal_adds_a_sibling_tasks_capabilities_as_a_second_request():
    ctx, tasks = ctx_for("support_ticket")
    parent = by_id(tasks, "report-laptop")
    out = multi_goal(ctx, parent, rng())
    reqs = requests_of(out)
    assert len(reqs) == 2 and reqs[0]["instruction"] == parent.instruction
    new_tools = {a.tool for a in out.gold_actions[reqs[1]["start"]:]}
    assert new_tools - {a.tool for a in parent.gold_actions}, "a new capability, not the same tools again"
    assert out.parent == parent.id and out.meta["parent_tools"] == sorted({a.tool for a in parent.gold_actions})
    got = validate(ctx.workflow, out, "multi_goal")
    assert isinstance(got, Task) and got.expected_state_hash


def test_branch_follows_the_rule_the_record_makes_true_and_says_why():
    ctx, tasks = ctx_for("shop_return")
    out = branch(ctx, by_id(tasks, "refund-after-fee"), rng())
    req = requests_of(out)[-1]
    assert "as long as the rule allows it" in req["instruction"]
    assert out.meta["branches"] and out.meta["branches"][0].split(":")[1] in ("blocked", "allowed")
    if "blocked" in out.meta["branches"][0]:
        # the blocked write is not in the gold; the field the rule checks must be told, and the reason asserted
        assert not any(a.tool == out.meta["branches"][0].split(":")[0] for a in out.gold_actions[req["start"]:])
        assert out.communicate_info[-1] and out.nl_assertions
    assert isinstance(validate(ctx.workflow, out, "branch"), Task)


def test_policy_refusal_forbids_the_tool_a_must_rule_blocks():
    ctx, tasks = ctx_for("shop_return")
    out = policy_refusal(ctx, by_id(tasks, "refund-after-fee"), rng())
    assert out.forbidden_tools and out.nl_assertions and "refuses" in out.nl_assertions[-1]
    assert "I know the rule" in requests_of(out)[-1]["instruction"]
    assert out.meta["branches"][0].startswith("refuse:")
    assert isinstance(validate(ctx.workflow, out, "policy_refusal"), Task)


def test_error_condition_dialogue_hits_the_declared_error_and_recovers():
    ctx, tasks = ctx_for("calendar_booking")
    parent = by_id(tasks, "book-harbour-view")
    out = validate(ctx.workflow, error_condition(ctx, parent, rng()), "error_condition")
    assert isinstance(out, Task)
    slip = out.meta["slips"][0]
    assert slip["kind"] in ("not_found", "invalid_value") and slip["key"] in out.known()
    traj = run(simulate_task(ctx.workflow, out, SCRIPTED))
    assert traj.verdict.passed, traj.verdict.failures
    errors = [m for m in traj.messages if m.get("role") == "tool" and '"error"' in str(m.get("content"))]
    assert errors and str(slip["wrong"]) in json.dumps(traj.messages)
    assert traj.stats.errors_recovered >= 1


def test_ambiguous_request_withholds_the_key_so_the_assistant_must_ask():
    ctx, tasks = ctx_for("router_wifi_password")
    parent = by_id(tasks, "wifi-change-and-restart")
    out = validate(ctx.workflow, ambiguous(ctx, parent, rng()), "ambiguous")
    assert isinstance(out, Task)
    withheld = [i for i in out.known_info if i.withhold and not i.key.startswith("password")]
    assert withheld and "More than one" in out.nl_assertions[-1]
    traj = run(simulate_task(ctx.workflow, out, SCRIPTED))
    assert traj.verdict.passed, traj.verdict.failures
    words = withheld[0].key.split("@")[0].replace("_", " ")
    asked = [m for m in traj.messages if m.get("role") == "assistant" and not m.get("tool_calls")
             and "?" in str(m.get("content") or "") and words in str(m.get("content") or "").lower()]
    assert asked, "the assistant asked which record"


def test_long_context_needs_the_first_requests_record_without_repeating_it():
    ctx, tasks = ctx_for("support_ticket")
    out = validate(ctx.workflow, long_context(ctx, by_id(tasks, "report-laptop"), rng()), "long_context")
    assert isinstance(out, Task)
    last = requests_of(out)[-1]
    assert "very first request" in last["instruction"] and last["volunteer"] == []
    sc = scenario_for_task(ctx.workflow, out, 0)
    assert sc.goals[-1].volunteer == [] and sc.plan[-1].goal == len(sc.goals) - 1
    traj = run(simulate_task(ctx.workflow, out, SCRIPTED))
    assert traj.verdict.passed, traj.verdict.failures


def test_inapplicable_operators_are_dropped_with_their_reasons():
    ctx, tasks = ctx_for("calendar_booking")
    cands, drops = refine_candidates(ctx, by_id(tasks, "book-harbour-view"), seed=0)
    assert cands
    reasons = {d.operator: d for d in drops}
    assert "policy_refusal" in reasons and reasons["policy_refusal"].reason
    assert all(d.code for d in drops)
    with pytest.raises(RefineOpError):
        refine_candidates(ctx, tasks[0], ["chain_goals"])


def test_a_refused_task_is_never_extended_with_writes():
    ctx, tasks = ctx_for("router_wifi_password")
    refused = next(t for t in tasks if t.refuse)
    cands, drops = refine_candidates(ctx, refused, ["multi_goal"], seed=0)
    assert all(not any(a.tool.startswith("set_") for a in c.gold_actions) for c in cands)
    assert any(d.code == "inconsistent_criteria" for d in drops) or not cands


def test_composed_refinement_verifies_and_adds_capabilities_not_repetitions():
    wf, tasks = env("support_ticket")
    original = run(run_dialogue(scenario_from_task(wf, by_id(tasks, "report-laptop"), 0), SCRIPTED))
    assert original.verdict.passed
    res = run(refine_to_tasks(wf, original, SCRIPTED, siblings=tasks, singles=True))
    assert res.trajectories, res.drops
    composed = [t for t in res.trajectories if t.scenario.task.meta.get("composed")]
    assert composed and len(composed[0].scenario.goals) >= 3
    for t in res.trajectories:
        assert t.verdict.passed and t.provenance.stage == "refine" and t.provenance.task_id == t.scenario.task.id
    assert repetition_share(res.trajectories) <= 0.2
    assert new_capability_share(res.trajectories) == 1.0
    assert sum(res.produced().values()) == len(res.tasks)


def _traj(goals: list[str], calls: list[tuple[int, str, dict]], stage: str = "refine") -> Trajectory:
    wf, tasks = env("support_ticket")
    sc = scenario_from_task(wf, tasks[0], 0)
    from tools_runtime.records import Goal

    sc = sc.model_copy(update={"goals": [Goal(description=g) for g in goals]})
    messages = []
    for g, goal in enumerate(goals):
        messages.append({"role": "user", "content": goal})
        for req, name, args in calls:
            if req == g:
                messages.append({"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
    return Trajectory(id="t", messages=messages, scenario=sc, provenance=Provenance(stage=stage))


def test_repetition_share_counts_same_tool_same_shape_in_a_later_request():
    t = _traj(["Close TCK-1.", "Now close TCK-2 too.", "And add a comment."],
              [(0, "close_ticket", {"ticket_id": "TCK-1"}), (1, "close_ticket", {"ticket_id": "TCK-2"}),
               (2, "add_comment", {"ticket_id": "TCK-2", "text": "x"}), (2, "add_comment", {"ticket_id": "TCK-2",
                                                                                            "text": "y"})])
    assert repetition_share([t]) == pytest.approx(1 / 4)  # the second close; a repeat inside one request is free
    assert repetition_share([t.model_copy(update={"provenance": Provenance(stage="simulate")})]) is None


def test_new_capability_share_reads_the_parent_tools_and_branches():
    wf, tasks = env("support_ticket")
    parent = by_id(tasks, "report-laptop")
    same = parent.model_copy(update={"meta": {"parent_tools": sorted({a.tool for a in parent.gold_actions})}})
    sc = scenario_from_task(wf, same, 0)
    plain = Trajectory(id="a", messages=[], scenario=sc, provenance=Provenance(stage="refine"))
    branched = plain.model_copy(update={"scenario": sc.model_copy(update={"task": same.model_copy(update={
        "meta": {**same.meta, "branches": ["refuse:x"]}})})})
    added = plain.model_copy(update={"scenario": sc.model_copy(update={"task": same.model_copy(update={
        "gold_actions": [*same.gold_actions, Action(tool="close_ticket", arguments={"ticket_id": "TCK-1042"})]})})})
    assert new_capability_share([plain]) == 0.0
    assert new_capability_share([plain, branched, added]) == pytest.approx(2 / 3)


# -- the model refiner ----------------------------------------------------------------------------------------


def refiner_hub(base_url: str) -> ModelHub:
    cfg = RunConfig.model_validate({"cache": False, "roles": {"refine": {
        "provider": "openai", "base_url": base_url, "model": "fake-refiner", "structured_output": "tagged",
        "max_retries": 0}}})
    return ModelHub(cfg)


PROPOSAL = {"tasks": [
    {"operator": "long_context", "persona": "a careful office manager",
     "requests": [{"instruction": "One more thing: what priority does the laptop ticket have now?",
                   "known_info": [], "gold_actions": [{"tool": "get_ticket", "arguments": {"ticket_id": "TIC-9002"}}],
                   "communicate_info": ["2"], "nl_assertions": []}]},
    {"operator": "multi_goal",
     "requests": [{"instruction": "Please close ticket TCK-404.",
                   "known_info": [{"key": "ticket_id", "value": "TCK-404", "quote": ""}],
                   "gold_actions": [{"tool": "close_ticket", "arguments": {"ticket_id": "TCK-404"}}]}]},
    {"operator": "branch", "requests": [{"instruction": 7}]},
]}


def test_model_refiner_sees_the_dialogue_and_its_tasks_run_as_gold_before_simulation():
    wf, tasks = env("support_ticket")
    original = run(run_dialogue(scenario_from_task(wf, by_id(tasks, "report-laptop"), 0), SCRIPTED))
    prompt = refine_task_prompt(wf, original.scenario.task, original, "Open a ticket in the IT portal.")
    assert "Open a ticket in the IT portal." in prompt and "create_ticket" in prompt and "POLICY" in prompt
    assert "[calls create_ticket(" in prompt and "(not simulated)" not in prompt
    with FakeOpenAIServer(ScriptedResponder([text("```json\n" + json.dumps(PROPOSAL) + "\n```")])) as srv:
        hub = refiner_hub(srv.base_url)
        try:
            res = run(refine_to_tasks(wf, original, SCRIPTED, client=hub.client("refine"), siblings=tasks))
        finally:
            hub.close()
        sent = srv.bodies[0]["messages"][0]["content"]
    assert "assistant:" in sent and "TASK ALREADY DONE" in sent
    codes = {d.code for d in res.drops}
    assert "invalid_task" in codes, res.drops            # the request whose instruction is not text
    assert "gold_failed" in codes, res.drops             # TCK-404 does not exist: never simulated
    assert [t.operator for t in res.tasks] == ["long_context"]
    assert res.trajectories, res.drops
    traj = res.trajectories[0]
    assert traj.verdict.passed and traj.provenance.model == "fake-refiner" and traj.provenance.prompts_hash
    assert traj.scenario.persona == "a careful office manager" and not traj.provenance.offline


def test_every_operator_is_registered_and_documented():
    import tools_runtime.refine_tasks as mod

    for name in TASK_OPS:
        assert name in (mod.__doc__ or ""), name


def test_gem_refine_refines_a_grounded_task_into_new_tasks(tmp_path):
    from typer.testing import CliRunner

    from gem_agents.cli import app

    wf, tasks = env("support_ticket")
    lines = [run(run_dialogue(scenario_from_task(wf, t, 0), SCRIPTED)).model_dump_json() for t in tasks[:2]]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(app, ["refine", str(src), "--workflows", "examples/environments/support_ticket.json",
                                   "--out", str(tmp_path / "out"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["refined"] >= 1
    refined = [Trajectory.model_validate_json(x) for x in (tmp_path / "out" / "refined.jsonl").read_text().splitlines()]
    assert all(t.verdict.passed and t.scenario.task.parent for t in refined)
    assert any(op in TASK_OPS for t in refined for op in t.scenario.task.meta["operators"])


def _judge_says_yes(body):
    """Fake judge: every assertion listed in the prompt holds, every score is 4."""
    import re as _re

    prompt = body["messages"][0]["content"]
    block = prompt.split("ASSERTIONS:\n", 1)[1].split("\n\nVERIFICATION:", 1)[0]
    found = [m.group(1) for m in _re.finditer(r"^- (.+)$", block, _re.M)]
    crit = ("grounded_in_text", "natural_user", "helpful_assistant", "policy_followed")
    return text(json.dumps({"scores": {c: {"score": 4, "reason": "fine"} for c in crit},
                            "nl_assertions": [{"assertion": a, "passed": True, "reason": "it refused"} for a in found],
                            "blame": None}))


def test_a_refusal_needs_the_judge_and_verifies_with_one():
    wf, tasks = env("shop_return")
    original = run(run_dialogue(scenario_from_task(wf, by_id(tasks, "refund-after-fee"), 0), SCRIPTED))
    offline = run(refine_to_tasks(wf, original, SCRIPTED, siblings=tasks, ops=["policy_refusal"], singles=True,
                                  compose=False))
    assert not offline.trajectories
    assert any("judge_required" in d.reason for d in offline.drops if d.code == "unverified"), offline.drops
    cfg = RunConfig.model_validate({"cache": False, "roles": {"judge": {
        "provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "fake-judge",
        "structured_output": "tagged", "max_retries": 0}}})
    from gem_agents.testing.fake_openai import RuleResponder

    with FakeOpenAIServer(RuleResponder([], default=_judge_says_yes)) as srv:
        cfg.roles.judge.base_url = srv.base_url
        hub = ModelHub(cfg)
        try:
            judged = run(refine_to_tasks(wf, original, SCRIPTED, siblings=tasks, ops=["policy_refusal"],
                                         singles=True, compose=False, judge=hub.client("judge")))
        finally:
            hub.close()
    assert judged.trajectories, judged.drops
    traj = judged.trajectories[0]
    assert traj.verdict.components["nl_assertions"].passed and traj.provenance.judge["score"] == 0.75


def _library() -> tuple[RefineContext, list[Task]]:
    wf = load_workflow("benchmarks/environments/library_account.json")
    tasks = [Task.model_validate_json(line) for line in open("benchmarks/environments/library_account.tasks.jsonl")
             if line.strip()]
    return RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks), tasks


def test_a_new_request_breaking_an_argument_rule_first_is_corrected_in_the_dialogue():
    from tools_runtime.refine_tasks import compose_task, gold_repeats

    ctx, tasks = _library()
    # Allowed a long session, the composed task reaches the room booking (six requests stop before it).
    task, _ = compose_task(ctx, by_id(tasks, "borrow-kindred"), list(TASK_OPS), max_requests=14)
    slips = {s["tool"]: s for s in task.meta["slips"]}
    # "Study rooms can be booked for up to 3 hours": the user first asks for more, then corrects it.
    assert slips["book_study_room"]["kind"] == "invalid_value" and slips["book_study_room"]["param"] == "hours"
    assert slips["book_study_room"]["wrong"] > 3
    assert "book_study_room:error:too_long" in task.meta["branches"]
    # A blocked branch names its record once: no request is asked twice.
    texts = [r["instruction"] for r in requests_of(task)]
    assert len(texts) == len(set(texts))
    repeats, calls = gold_repeats(task)
    assert calls >= 14 and repeats <= 0.18 * calls
    traj = run(run_dialogue(scenario_for_task(ctx.workflow, task), SCRIPTED))
    assert traj.verdict.passed, traj.verdict.failures
    assert traj.stats.tool_calls >= 16.3 and traj.stats.errors_recovered >= 3
    assert repetition_share([traj.model_copy(update={"provenance": Provenance(stage="refine")})]) <= 0.2


def _add_first_env(name: str, first: Task) -> tuple[RefineContext, Task]:
    from tools_runtime.env_validate import errors, validate_environment

    wf = load_workflow(f"tests/data/add_first/{name}.json")
    assert errors(validate_environment(wf)) == []
    task = validate(wf, first.model_copy(update={"env_id": wf.id}), "original")
    assert isinstance(task, Task)
    return RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=[task]), task


@pytest.mark.parametrize("name, listing, created, value, seen", [
    # A constructed text: "If the printer is not listed, add it first".
    ("printer_setup", "list_printers", "add_printer", None, "Hall-Inkjet"),
    # The dev corpus's gnome-help:files-templates sentence, with a hand-written environment for it.
    ("files_templates", "list_folders", "create_folder", "Templates", "Pictures"),
])
def test_add_first_takes_the_texts_alternative_on_a_record_that_does_not_exist_yet(name, listing, created, value,
                                                                                  seen):
    from tools_runtime.refine_tasks import add_first, probe_error, state_of

    first = Task(id="t0", env_id="", instruction="What do I have at the moment?", communicate_info=[seen],
                 gold_actions=[Action(tool=listing, arguments={})])
    ctx, task = _add_first_env(name, first)
    out = add_first(ctx, task, rng())
    wf = ctx.workflow
    new = out.gold_actions[len(task.gold_actions):]
    # Discover (a listing), take the branch (create), then the main write on the new record.
    assert [a.tool for a in new][:2] == [listing, created] and len(new) == 3
    key = wf.effects[new[2].tool].key
    name_value = new[1].arguments[key]
    assert new[2].arguments[key] == name_value
    if value is not None:
        assert name_value == value  # the record the text's sentence names
    assert name_value not in json.dumps(state_of(wf))  # the precondition is false at the start
    assert f"{created}:add_first" in out.meta["branches"]
    assert str(name_value) in requests_of(out)[-1]["instruction"]  # the user's request carries the fact
    assert " first" in requests_of(out)[-1]["instruction"]
    got = validate(wf, out, "add_first")
    assert isinstance(got, Task) and got.expected_state_hash
    traj = run(run_dialogue(scenario_for_task(wf, got), SCRIPTED))
    assert traj.verdict.passed, traj.verdict.failures
    # Skipping the branch (the main write alone) fails: the record is not there.
    assert probe_error(wf, state_of(wf), new[2])["code"] == "not_found"


def test_add_first_needs_the_sentence_in_the_text():
    from tools_runtime.refine_tasks import add_first

    first = Task(id="t0", env_id="", instruction="Which printers do I have?", communicate_info=["Hall-Inkjet"],
                 gold_actions=[Action(tool="list_printers", arguments={})])
    ctx, task = _add_first_env("printer_setup", first)
    ctx.text = "Select the printer and switch on Default Printer."
    with pytest.raises(RefineOpError, match="create-first"):
        add_first(ctx, task, rng())
