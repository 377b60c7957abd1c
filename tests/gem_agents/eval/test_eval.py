"""`gem eval`: pass^k, the gold player's ceiling on τ², BFCL and our tasks, agreement with the benchmarks' checkers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.eval.runner import EvalInputError, load_items, pass_hat_k
from tools_runtime.adapters.bfcl import transcript_from_plan
from tools_runtime.records import PlannedCall
from tools_runtime.verification.verify import verify

runner = CliRunner()
REPO = Path(__file__).resolve().parents[3]


def test_pass_hat_k_is_the_unbiased_estimator():
    # Task A passed 2 of 2, B 0 of 2, C 1 of 2.
    assert pass_hat_k([2, 0, 1], 2, 1) == pytest.approx((1 + 0 + 0.5) / 3)
    assert pass_hat_k([2, 0, 1], 2, 2) == pytest.approx(1 / 3)
    assert pass_hat_k([3], 4, 2) == pytest.approx(3 / 6)  # C(3,2) / C(4,2)
    assert pass_hat_k([], 4, 1) == 0.0


def _eval(args: list[str], out: Path) -> dict:
    res = runner.invoke(app, ["eval", *args, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(res.output) == summary
    return summary


def test_gold_player_scores_one_on_tau2_mock(shared_dir, tmp_path):
    tasks = shared_dir / "data" / "bench" / "tau2" / "mock" / "tasks.json"
    s = _eval([str(tasks), "--trials", "2"], tmp_path)
    assert s["tasks"] == 9 and s["trials"] == 2
    assert s["pass_hat_k"] == {"1": 1.0, "2": 1.0}
    assert [x["task_id"] for x in s["skipped"]] == ["update_task_with_history_and_env_assertions"]
    assert s["user"]["provider"] == "scripted" and s["user"]["seeds"] == [0, 1]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and all(r["passed"] and r["components"]["state"]["passed"] for r in rows)
    assert s["components"]["state"] == 1.0 and s["blame"] == {}


def test_gold_player_scores_one_on_bfcl(bfcl_dir, tmp_path):
    pytest.importorskip("bfcl_eval")
    s = _eval([str(bfcl_dir), "--trials", "1", "--limit", "12"], tmp_path)
    assert s["tasks"] == 12 and s["pass_hat_k"] == {"1": 1.0}


def test_gold_player_scores_one_on_example_environment_tasks(tmp_path):
    for tasks in sorted((REPO / "examples" / "environments").glob("*.tasks.jsonl")):
        s = _eval([str(tasks), "--trials", "2"], tmp_path / tasks.stem)
        assert s["pass_hat_k"] == {"1": 1.0, "2": 1.0}, (tasks.name, s)


def test_a_bad_tasks_argument_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text("{}\n")
    with pytest.raises(EvalInputError):
        load_items(bad)
    res = runner.invoke(app, ["eval", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such file" in res.output


def _perturbed(plan: list[PlannedCall], kind: str) -> list[PlannedCall] | None:
    calls = [c.model_copy(deep=True) for c in plan]
    if kind == "drop" and calls:
        del calls[len(calls) // 2]
    elif kind == "repeat" and calls:
        calls.insert(0, calls[0].model_copy(deep=True))
    elif kind == "arg":
        key = next((k for k, v in (calls[-1].arguments if calls else {}).items() if isinstance(v, str)), None)
        if key is None:
            return None
        calls[-1].arguments[key] += "_x"
    else:
        return None
    return calls


def test_state_component_agrees_with_tau2_db_hashes(shared_dir):
    from tools_runtime.adapters.tau2 import db_check, load_tau2

    agree = total = changed = 0
    for _task, sc in load_tau2(shared_dir / "data" / "bench" / "tau2" / "mock" / "tasks.json"):
        for kind in ("drop", "repeat", "arg"):
            calls = _perturbed(sc.plan, kind)
            if calls is None:
                continue
            messages, _ = transcript_from_plan(sc, calls)
            ours = verify(messages, sc)[0].components["state"].passed
            theirs = db_check(sc, [(c.tool, c.arguments) for c in calls])
            total += 1
            agree += ours == theirs
            changed += not theirs
    assert total >= 15 and 0 < changed < total
    assert agree == total


def test_state_component_agrees_with_bfcl_state_checker(bfcl_dir):
    pytest.importorskip("bfcl_eval")
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import state_checker

    from tools_runtime.adapters.bfcl import load_func_docs, load_tasks, task_scenario

    docs = load_func_docs(bfcl_dir)
    agree = total = changed = 0
    for t, a in load_tasks(bfcl_dir)[:25]:
        sc = task_scenario(t, a, docs)
        _, gt = transcript_from_plan(sc, sc.plan)
        for kind in ("drop", "repeat", "arg"):
            calls = _perturbed(sc.plan, kind)
            if calls is None:
                continue
            messages, backend = transcript_from_plan(sc, calls)
            ours = verify(messages, sc)[0].components["state"].passed
            theirs = state_checker({type(i).__name__: i for i in backend.instances},
                                   {type(i).__name__: i for i in gt.instances})["valid"]
            total += 1
            agree += ours == theirs
            changed += not theirs
    assert total >= 50 and 0 < changed < total
    assert agree == total


def test_tau2_tasks_keep_their_criteria(shared_dir):
    from tools_runtime.adapters.tau2 import load_tau2

    by_id = {t.id: (t, sc) for t, sc in load_tau2(shared_dir / "data" / "bench" / "tau2" / "mock" / "tasks.json")}
    impossible, sc = by_id["impossible_task_1"]
    assert impossible.reward_basis == ["state", "actions"] and impossible.meta["compare_args"] == {"0": []}
    # A transfer with any summary satisfies ACTION; no transfer does not.
    messages, _ = transcript_from_plan(sc, [PlannedCall(tool="transfer_to_human_agents",
                                                        arguments={"summary": "other words"})])
    assert verify(messages, sc)[0].passed
    messages, _ = transcript_from_plan(sc, [])
    v = verify(messages, sc)[0]
    assert not v.passed and "missing_required_call" in v.codes()
    _, sc = by_id["create_task_1"]
    wrong = copy.deepcopy(sc.plan)
    wrong[0].arguments["user_id"] = "user_9"
    v = verify(transcript_from_plan(sc, wrong)[0], sc)[0]
    assert not v.passed and v.blame is not None


def test_a_model_assistant_is_evaluated_through_an_openai_endpoint(tmp_path):
    """The config's assistant on a (fake) OpenAI endpoint: tokens, pins and per-trial verdicts recorded."""
    from gem_agents.testing.fake_openai import FakeOpenAIServer
    from gem_agents.testing.role_responder import RoleResponder
    from tools_runtime.tasks import Task, scenario_from_task
    from tools_runtime.workflow_io import load_workflow

    tasks = REPO / "examples" / "environments" / "support_ticket.tasks.jsonl"
    wf = load_workflow(REPO / "examples" / "environments" / "support_ticket.json")
    scenarios = [scenario_from_task(wf, Task.model_validate_json(line), t)
                 for line in tasks.read_text().splitlines() for t in range(2)]
    with FakeOpenAIServer(RoleResponder(scenarios)) as srv:
        cfg = tmp_path / "cfg.yaml"
        role = {"provider": "openai", "model": "fake-model", "base_url": srv.base_url}
        cfg.write_text(json.dumps({"roles": {"assistant": role}}))  # YAML reads JSON
        s = _eval([str(tasks), "--config", str(cfg), "--trials", "2"], tmp_path / "out")
    assert s["assistant"] == {"provider": "openai", "model": "fake-model"}
    assert s["tokens"]["calls"] > 0 and s["tokens"]["input_tokens"] > 0
    assert s["tasks"] == 2 and set(s["pass_hat_k"]) == {"1", "2"}
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("state" in r["components"] for r in rows)
    assert all(r["blame"] is None if r["passed"] else r["blame"] for r in rows)


def test_a_folder_of_tasks_files_is_every_example_environment_task():
    items = load_items(REPO / "examples" / "environments")
    assert len(items) == 13 and all(i.scenario is not None and not i.skip for i in items)
    assert "bank_transfer/pay-rent" in {i.task_id for i in items}
    assert {i.scenario.workflow.id for i in items if i.scenario} >= {"bank_transfer_env", "shop_return_env"}
