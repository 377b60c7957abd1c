"""branch, ambiguous and policy_refusal apply where the environment supports them, and their tasks verify.

On the hand-written environments (examples/environments) and on an environment the offline stand-ins
write from a page that states a rule as a condition on a record ("If your account type is Guest, you
cannot change this setting") and picks a record from a list (several records, two of them alike).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from gem_agents.roles_factory import make_roles
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.refine import simulate_task
from gem_agents.stages.tasks import write_tasks_offline
from tools_runtime.records import Document, Workflow
from tools_runtime.refine_tasks import TASK_OPS, RefineContext, RefineOpError, validate
from tools_runtime.tasks import Task
from tools_runtime.verification.verify import verify
from tools_runtime.workflow_io import load_workflow

ENVS = Path(__file__).resolve().parents[2] / "examples" / "environments"
PAGE = """# Let an account log in without a password
You can have the computer log one account in by itself when it starts.
1. Open the Activities overview and start typing Users.
2. Press Unlock in the top right corner and type in your password when prompted.
3. Select the account you want from the list.
4. Switch the Automatic Login switch to on.
If your account type is Guest, you cannot change this setting.
"""


def example(name: str) -> tuple[Workflow, list[Task]]:
    path = ENVS / f"{name}.json"
    tasks = [Task.model_validate_json(x) for x in path.with_suffix(".tasks.jsonl").read_text().splitlines() if x.strip()]
    return load_workflow(path), tasks


@pytest.fixture(scope="module")
def offline_env() -> tuple[Workflow, list[Task]]:
    res = extract_offline(Document(id="autologin", text=PAGE), domain="computer", platform="desktop")
    assert res.workflow is not None, res
    tasks, _ = write_tasks_offline(res.workflow, PAGE, k=3)
    assert tasks
    return res.workflow, tasks


def refined(wf: Workflow, tasks: list[Task], op: str, text: str = "") -> list[Task]:
    """The op applied to each task it applies to, each validated by its gold run."""
    out = []
    for t in tasks:
        if t.refuse:  # a refusal is not extended by requests that act
            continue
        ctx = RefineContext(workflow=wf, text=text or "\n".join(wf.steps), siblings=tasks)
        try:
            cand = TASK_OPS[op](ctx, t, random.Random(0))
        except RefineOpError:
            continue
        got = validate(wf, cand, op)
        assert isinstance(got, Task), got  # the gold of a refined task runs on a fresh backend
        out.append(got)
    return out


def simulated(wf: Workflow, task: Task):
    return asyncio.run(simulate_task(wf, task, make_roles(None)))


def test_the_offline_writer_records_the_conditional_rule_and_records_alike(offline_env):
    wf, _ = offline_env
    rule = next(r for r in wf.policy if "Guest" in r.text)
    effect = wf.effects["set_automatic_login"]
    assert [(p.expr, p.rule) for p in effect.preconditions] == [("record['account_type'] != 'Guest'", rule.id)]
    accounts = [r.values for r in wf.initial_state if r.entity == "account"]
    assert len(accounts) == 3 and [a["account_type"] for a in accounts].count("Guest") == 1
    assert len({a["automatic_login"] for a in accounts}) == 1  # "switch … to on": every account is off now
    assert "account_type" in wf.effects["list_accounts"].returns


@pytest.mark.parametrize("op", ["branch", "ambiguous"])
def test_branch_and_ambiguous_apply_offline_and_verify(offline_env, op):
    wf, tasks = offline_env
    got = refined(wf, tasks, op, PAGE)
    assert got, f"{op} applies to no task of the offline environment"
    for t in got:
        assert t.meta["branches"], t.meta
        traj = simulated(wf, t)
        assert traj.verdict.passed, (op, traj.verdict.codes())


def test_offline_branch_says_why_the_rule_blocks(offline_env):
    wf, tasks = offline_env
    t = refined(wf, tasks, "branch", PAGE)[0]
    assert t.meta["branches"][-1] == "set_automatic_login:blocked:not_permitted"
    assert t.communicate_info[-1] == "Guest" and "leave it alone" in t.meta["requests"][-1]["instruction"]


def test_ambiguous_withholds_the_key_so_the_assistant_must_ask(offline_env):
    wf, tasks = offline_env
    t = refined(wf, tasks, "ambiguous", PAGE)[0]
    key = wf.effects["set_automatic_login"].key
    last = t.meta["requests"][-1]
    assert " whose " in last["instruction"] and key not in last.get("volunteer", [])
    assert any(i.withhold for i in t.known_info if i.key.split("@")[0] == key)


def judge_says(passed: bool):
    return lambda kind, ctx: {"passed": passed, "reason": "seen"} if kind == "nl_assertion" else {}


def test_policy_refusal_applies_offline_and_verifies_only_with_a_judge(offline_env):
    wf, tasks = offline_env
    got = refined(wf, tasks, "policy_refusal", PAGE)
    assert got and all(t.meta["branches"][-1].startswith("refuse:") for t in got)
    t = got[0]
    traj = simulated(wf, t)
    assert not traj.verdict.passed and "judge_required" in traj.verdict.codes()
    assert verify(traj.messages, traj.scenario, judge=judge_says(True))[0].passed
    assert not verify(traj.messages, traj.scenario, judge=judge_says(False))[0].passed


@pytest.mark.parametrize(("env", "op"), [("shop_return", "branch"), ("support_ticket", "branch"),
                                         ("bank_transfer", "ambiguous"), ("support_ticket", "ambiguous"),
                                         ("shop_return", "policy_refusal")])
def test_each_applies_on_an_example_environment_and_verifies(env, op):
    wf, tasks = example(env)
    got = refined(wf, tasks, op)
    assert got, f"{op} applies to no task of {env}"
    passed = 0
    for t in got:
        traj = simulated(wf, t)
        judge = judge_says(True) if op == "policy_refusal" else None
        passed += verify(traj.messages, traj.scenario, judge=judge)[0].passed
    assert passed >= 1, f"no {op} refinement of {env} verified"


LARGE = Path(__file__).resolve().parents[2] / "benchmarks" / "environments" / "library_account.json"


def test_composed_refinement_reaches_the_papers_complexity_where_the_environment_has_the_tools():
    """14 tools: the composed task chains many distinct operators and stays within the repetition budget
    (allowed 14 requests; the default cap of a session is tested below)."""
    from tools_runtime.refine_tasks import REPETITION_BUDGET, compose_task, gold_repeats, repetition_share

    wf = load_workflow(LARGE)
    tasks = [Task.model_validate_json(x) for x in LARGE.with_suffix(".tasks.jsonl").read_text().splitlines() if x]
    ctx = RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks)
    task, _ = compose_task(ctx, tasks[0], list(TASK_OPS), max_requests=14)
    assert {"multi_goal", "ambiguous", "branch", "error_condition"} <= set(task.meta["operators"])
    repeats, calls = gold_repeats(task)
    assert repeats <= max(1, REPETITION_BUDGET * calls)
    task = validate(wf, task, "composed")
    assert isinstance(task, Task)
    traj = simulated(wf, task)
    assert traj.verdict.passed, traj.verdict.codes()
    st = traj.stats
    assert (st.messages, st.tool_types) >= (46, 9) and st.tool_calls >= 14, st
    assert repetition_share([traj.model_copy(update={"provenance": traj.provenance.model_copy(
        update={"stage": "refine"})})]) <= 0.2


def test_a_composed_session_holds_at_most_max_requests_acting_requests():
    from tools_runtime.refine_tasks import MAX_COMPOSED_REQUESTS, compose_task

    wf = load_workflow(LARGE)
    tasks = [Task.model_validate_json(x) for x in LARGE.with_suffix(".tasks.jsonl").read_text().splitlines() if x]
    ctx = RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks)
    default, _ = compose_task(ctx, tasks[0], list(TASK_OPS))
    small, _ = compose_task(ctx, tasks[0], list(TASK_OPS), max_requests=4)
    assert MAX_COMPOSED_REQUESTS == 6
    # The cap counts every request, long context's (last) included.
    assert 4 < len(default.meta["requests"]) <= MAX_COMPOSED_REQUESTS
    assert len(small.meta["requests"]) <= 4 < len(default.meta["requests"])


def test_composed_tasks_of_one_environment_spread_over_its_capabilities():
    """With a shared use count, later composed tasks prefer tools earlier ones did not call (seeded: same twice)."""
    from collections import Counter

    from tools_runtime.refine_tasks import compose_task, gold_tools

    wf = load_workflow(LARGE)
    tasks = [Task.model_validate_json(x) for x in LARGE.with_suffix(".tasks.jsonl").read_text().splitlines() if x]

    def tool_sets(shared: bool) -> list[frozenset[str]]:
        use: Counter[str] | None = Counter() if shared else None
        ctx = RefineContext(workflow=wf, text="\n".join(wf.steps), siblings=tasks, tool_use=use)
        return [frozenset(gold_tools(compose_task(ctx, t, list(TASK_OPS), max_requests=4)[0])) for t in tasks[:4]]

    spread, plain = tool_sets(True), tool_sets(False)
    assert spread == tool_sets(True)
    assert len(set().union(*spread)) >= len(set().union(*plain))
    assert len(set(spread)) >= len(set(plain)) and set(spread) != set(plain)


def test_a_small_environment_stops_at_its_tool_ceiling(offline_env):
    from tools_runtime.refine_tasks import compose_task, gold_repeats

    wf, tasks = offline_env
    one_step = next(t for t in tasks if not t.meta.get("procedure"))  # the whole procedure is at the ceiling already
    task, _ = compose_task(RefineContext(workflow=wf, text=PAGE, siblings=tasks), one_step, list(TASK_OPS))
    # The composed task uses every tool of the environment: its tool types are at the ceiling, not above.
    assert len({a.tool for a in task.gold_actions}) == len(wf.tools) == 3
    assert len(task.meta["requests"]) >= 3
    # Past the ceiling a request could only call a tool again: once at most on a task this small.
    assert gold_repeats(task)[0] <= 1


def test_without_a_judge_the_composed_task_leaves_the_refusal_out_and_says_so(offline_env):
    from tools_runtime.refine_tasks import refine_candidates

    wf, tasks = offline_env
    parent = next(t for t in tasks if not t.refuse and not t.meta.get("procedure"))
    ctx = RefineContext(workflow=wf, text=PAGE, siblings=tasks)
    out, drops = refine_candidates(ctx, parent, singles=False, compose=True, judge=False)
    assert out and "policy_refusal" not in out[0].meta["operators"]
    assert [d.code for d in drops if d.operator == "policy_refusal"] == ["needs_judge"]
    out, drops = refine_candidates(ctx, parent, singles=False, compose=True, judge=True)
    assert out[0].meta["operators"][-1] in ("policy_refusal", "long_context")
    assert "policy_refusal" in out[0].meta["operators"] and not [d for d in drops if d.operator == "policy_refusal"]
