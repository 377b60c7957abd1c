"""Refined requests as procedures: look-up → check → write → confirm, each simulated and verified again.

A person names a record as they know it (a loan by its book's title), so the assistant finds it before it
writes; it reads the record back when asked what it shows now; a read the dialogue does not need (the user
gave the key) may be skipped by a real assistant without failing verification.
"""

from __future__ import annotations

import asyncio
import json

from gem_agents.roles_factory import make_roles
from graphs.rollouts import run_dialogue
from tools_runtime.refine_tasks import (
    RefineContext,
    Start,
    as_procedure,
    described_rows,
    extend,
    info_for,
    prepare,
    scenario_for_task,
    validate,
)
from tools_runtime.tasks import Action, Task
from tools_runtime.verification.replay import call_name_args, tool_calls_of
from tools_runtime.verification.verify import verify
from tools_runtime.workflow_io import load_workflow

SCRIPTED = make_roles(None)
LIBRARY = "benchmarks/environments/library_account"


def library() -> tuple[RefineContext, Task, Start]:
    wf = load_workflow(f"{LIBRARY}.json")
    tasks = [Task.model_validate_json(x) for x in open(f"{LIBRARY}.tasks.jsonl") if x.strip()]
    ctx = RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks)
    parent = next(t for t in tasks if t.id == "borrow-kindred")
    return ctx, parent, prepare(ctx, parent)


def new_request(ctx: RefineContext, parent: Task, start: Start, tool: str, args: dict, text: str,
                **kw) -> Task:
    """`parent` with one more request: the write `tool(args)` wrapped as a procedure, validated by its gold."""
    proc = as_procedure(ctx, parent, start.state, [Action(tool=tool, arguments=args)], info_for(ctx, args), text, **kw)
    task = extend(ctx, parent, start, "multi_goal", proc.text, proc.actions, known=proc.known,
                  communicate=proc.communicate, volunteer=proc.volunteer, branches=proc.steps)
    got = validate(ctx.workflow, task, "multi_goal")
    assert isinstance(got, Task), got
    return got


def calls(messages: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for m in messages:
        for c in tool_calls_of(m):
            name, raw, _ = call_name_args(c)
            out.append((name, json.loads(raw) if isinstance(raw, str) else dict(raw or {})))
    return out


def without_call(messages: list[dict], tool: str, nth: int = 0) -> list[dict]:
    """The transcript without the `nth` assistant message calling `tool` and its tool results."""
    out, skip, seen = [], set(), 0
    for m in messages:
        ids = [call_name_args(c)[2] for c in tool_calls_of(m) if call_name_args(c)[0] == tool]
        if ids and seen == nth and len(tool_calls_of(m)) == 1:
            seen += 1
            skip.update(ids)
            continue
        seen += bool(ids)
        if m.get("role") == "tool" and str(m.get("tool_call_id")) in skip:
            continue
        out.append(m)
    return out


def test_a_look_up_request_lists_the_loans_and_writes_with_the_key_it_found():
    ctx, parent, start = library()
    task = new_request(ctx, parent, start, "return_book", {"loan_id": "L-203"}, "I've finished a book; please return it.")
    last = task.meta["requests"][-1]
    gold = [a.tool for a in task.gold_actions[last["start"]:last["end"]]]
    # The user names the loan by its book's title, never by its id: gold is the listing, then the write.
    assert gold[:2] == ["list_loans", "return_book"] and "lookup:list_loans" in task.meta["branches"]
    assert "The Left Hand of Darkness" in last["instruction"] and "L-203" not in last["instruction"]
    assert not any(i.value == "L-203" for i in task.known_info)
    sc = scenario_for_task(ctx.workflow, task)
    at = next(i for i, c in enumerate(sc.plan) if c.tool == "return_book")
    src = sc.plan[at].sources["loan_id"]
    assert src.kind == "result" and src.path is not None and src.path.startswith("results.")
    # The plan's row is not what the assistant goes by: point it at another loan, and the assistant still takes the
    # row the user described (the loan of The Left Hand of Darkness).
    wrong = sc.plan[at].model_copy(update={"sources": {**sc.plan[at].sources, "loan_id": src.model_copy(
        update={"path": "results.0.loan_id"})}})
    sc = sc.model_copy(update={"plan": [*sc.plan[:at], wrong, *sc.plan[at + 1:]]})
    traj = asyncio.run(run_dialogue(sc, SCRIPTED, stage="refine", max_user_turns=30))
    assert traj.verdict is not None and traj.verdict.passed, traj.verdict.codes()
    made = calls(traj.messages)
    assert ("return_book", {"loan_id": "L-203"}) in made
    write_at = next(i for i, m in enumerate(traj.messages) if any(n == "return_book" for n, _ in calls([m])))
    assert not any("L-203" in str(m.get("content") or "") for m in traj.messages[:write_at] if m["role"] == "user")
    # Without the listing the assistant could only have guessed the id: the look-up is needed, and the verifier
    # says so (the key was never given before the write).
    skipped = without_call(traj.messages, "list_loans", nth=len([n for n, _ in made[:made.index(
        ("return_book", {"loan_id": "L-203"}))] if n == "list_loans"]) - 1)
    verdict = verify(skipped, sc)[0]
    assert not verdict.passed and "ungrounded_argument" in verdict.codes()


def test_described_rows_picks_the_row_the_words_name():
    rows = [{"loan_id": "L-201", "title": "Parable of the Sower"}, {"loan_id": "L-203", "title": "Station Eleven"}]
    assert described_rows(rows, ["the one called Station Eleven, please"], key="loan_id") == [1]
    assert described_rows(rows, ["any of them"], key="loan_id") == []


def test_a_confirm_request_must_tell_the_value_the_read_shows():
    ctx, parent, start = library()
    task = new_request(ctx, parent, start, "renew_loan", {"loan_id": "L-201"}, "Please renew loan L-201.",
                       lookup=False, check=False)
    last = task.meta["requests"][-1]
    assert [a.tool for a in task.gold_actions[last["start"]:last["end"]]] == ["renew_loan", "list_loans"]
    told = task.communicate_info[-1]
    assert told and "Afterwards, tell me what it shows" in last["instruction"]
    sc = scenario_for_task(ctx.workflow, task)
    traj = asyncio.run(run_dialogue(sc, SCRIPTED, stage="refine", max_user_turns=30))
    assert traj.verdict is not None and traj.verdict.passed, traj.verdict.codes()
    # The same dialogue with the value left out of what the assistant says fails: the read alone is not telling.
    mute = [{**m, "content": str(m.get("content") or "").replace(told, "…")} if m["role"] == "assistant" else m
            for m in traj.messages]
    verdict = verify(mute, sc)[0]
    assert not verdict.passed and "communicate_missing" in verdict.codes()


def test_a_real_assistant_may_skip_a_read_the_dialogue_does_not_need():
    ctx, parent, start = library()
    task = new_request(ctx, parent, start, "renew_loan", {"loan_id": "L-201"},
                       "Please renew loan L-201.", lookup=False, confirm=False)
    last = task.meta["requests"][-1]
    assert [a.tool for a in task.gold_actions[last["start"]:last["end"]]] == ["list_loans", "renew_loan"]
    sc = scenario_for_task(ctx.workflow, task)
    traj = asyncio.run(run_dialogue(sc, SCRIPTED, stage="refine", max_user_turns=30))
    assert traj.verdict is not None and traj.verdict.passed, traj.verdict.codes()
    # The user gave the loan id: an assistant that renews it straight away, without the check's listing, did the job.
    renew_at = [n for n, _ in calls(traj.messages)].index("renew_loan")
    nth = len([n for n, _ in calls(traj.messages)[:renew_at] if n == "list_loans"]) - 1
    skipped = without_call(traj.messages, "list_loans", nth=nth)
    assert len(calls(skipped)) == len(calls(traj.messages)) - 1
    verdict = verify(skipped, sc)[0]
    assert verdict.passed, verdict.codes()
