"""Tasks on environments: gold actions give the expected state, bad tasks are rejected, scenarios play them."""

from pathlib import Path

import pytest

from tests.helpers import rollout
from tools_runtime.executor import ToolEnvironment
from tools_runtime.scenario import replay_plan
from tools_runtime.tasks import (
    Action,
    GoldRun,
    Info,
    Task,
    TaskRejected,
    TaskRejection,
    run_gold,
    scenario_from_task,
)
from tools_runtime.workflow_io import load_workflow

ENVS = Path(__file__).resolve().parents[2] / "examples" / "environments"
SIGN_IN = Action(tool="sign_in", arguments={"username": "maria.k", "password": "Lamp-2024!"})


def shop():
    return load_workflow(ENVS / "shop_return.json")


def lamp_task(**kw):
    base = dict(
        id="lamp-return", env_id="shop_return_env",
        instruction="I want to return the Aeron desk lamp I ordered; it arrived damaged. Refund it as store credit "
                    "and email me the label.",
        known_info=[Info(key="username", value="maria.k"), Info(key="password", value="Lamp-2024!"),
                    Info(key="product", value="Aeron desk lamp"), Info(key="reason", value="damaged"),
                    Info(key="refund_method", value="store_credit"), Info(key="email", value="maria.k@example.com")],
        gold_actions=[SIGN_IN,
                      Action(tool="search_orders", arguments={"query": "Aeron desk lamp"}),
                      Action(tool="request_return", arguments={"order_id": "ORD-4821", "reason": "damaged"}),
                      Action(tool="set_refund_method", arguments={"order_id": "ORD-4821", "method": "store_credit"}),
                      Action(tool="calculate_refund", arguments={"price": 49.9, "restocking_fee_percent": 10}),
                      Action(tool="email_return_label", arguments={"order_id": "ORD-4821",
                                                                   "email": "maria.k@example.com"})],
        communicate_info=["44.91"])
    base.update(kw)
    return Task(**base)


def test_gold_run_gives_the_expected_end_state_and_results():
    wf = shop()
    run = run_gold(wf, lamp_task())
    assert isinstance(run, GoldRun) and run.changed
    order = run.end_state["collections"]["order"]["ORD-4821"]
    assert order["return_status"] == "requested" and order["refund_method"] == "store_credit"
    assert [r.ok for r in run.results] == [True] * 6 and run.results[4].result == {"result": 44.91}
    assert len(run.end_state["collections"]["return_label"]) == 1
    env = ToolEnvironment(wf, None)  # the same calls by hand reach the same hash
    for a in lamp_task().gold_actions:
        env.call(a.tool, a.arguments)
    assert env.backend.state_hash() == run.expected_state_hash
    assert run_gold(wf, lamp_task()).expected_state_hash == run.expected_state_hash  # fresh backend every time


@pytest.mark.parametrize("change, code", [
    ({"gold_actions": [SIGN_IN, Action(tool="request_return", arguments={"order_id": "ORD-4790", "reason": "damaged"})]},
     "gold_failed"),  # outside the 30-day window: the precondition refuses it
    ({"gold_actions": [Action(tool="get_order", arguments={"order_id": "ORD-4821"})]}, "gold_failed"),  # no session
    ({"gold_actions": [SIGN_IN, Action(tool="refund_now", arguments={})]}, "unknown_tool"),
    ({"gold_actions": [SIGN_IN, Action(tool="request_return", arguments={"order_id": "ORD-4821", "reason": "meh"})]},
     "invalid_arguments"),
    ({"forbidden_tools": ["email_return_label"]}, "forbidden_in_gold"),
    ({"gold_actions": [SIGN_IN, Action(tool="get_order", arguments={"order_id": "ORD-4821"})],
      "communicate_info": []}, "empty_criteria"),
    ({"env_id": "another_env"}, "wrong_environment"),
])
def test_bad_tasks_are_rejected_with_their_reason(change, code):
    out = run_gold(shop(), lamp_task(**change))
    assert isinstance(out, TaskRejection) and out.code == code and out.task_id == "lamp-return" and out.reason
    with pytest.raises(TaskRejected) as exc:
        scenario_from_task(shop(), lamp_task(**change), 0)
    assert exc.value.rejection.code == code


def test_read_only_task_with_a_value_to_communicate_is_kept():
    task = lamp_task(gold_actions=[SIGN_IN, Action(tool="get_order", arguments={"order_id": "ORD-4821"})],
                     communicate_info=["delivered"])
    run = run_gold(shop(), task)
    assert isinstance(run, GoldRun)


def test_invalid_initial_state_rejects_the_task():
    wf = shop()
    wf.initial_state[1].values["status"] = "lost"
    out = run_gold(wf, lamp_task())
    assert isinstance(out, TaskRejection) and out.code == "invalid_environment" and "initial_state[1]" in out.reason


def test_scenario_sources_say_where_each_argument_comes_from():
    sc = scenario_from_task(shop(), lamp_task(), seed=3)
    assert sc.task is not None and sc.task.id == "lamp-return"
    assert sc.goals[0].description.startswith("I want to return the Aeron desk lamp")
    assert sc.known_info["email"] == "maria.k@example.com"
    assert sc.initial_state["collections"]["order"]["ORD-4821"]["return_status"] == "none"
    src = [c.sources for c in sc.plan]
    assert src[0]["username"].kind == "user" and src[0]["username"].key == "username"
    assert src[1]["query"].kind == "user" and src[1]["query"].key == "product"
    assert src[2]["order_id"].kind == "result" and src[2]["order_id"].call == 1
    assert src[2]["order_id"].path == "results.0.order_id"
    assert src[4]["restocking_fee_percent"].kind == "const"
    assert "password" not in sc.goals[0].volunteer and "email" in sc.goals[0].volunteer
    assert replay_plan(sc).backend.state_hash() == run_gold(shop(), lamp_task()).expected_state_hash


def test_withheld_info_is_not_volunteered():
    task = lamp_task(known_info=[*lamp_task().known_info[:-1],
                                 Info(key="email", value="maria.k@example.com", withhold=True)])
    sc = scenario_from_task(shop(), task, 0)
    assert "email" not in sc.goals[0].volunteer and sc.known_info["email"] == "maria.k@example.com"


def test_scripted_roles_play_a_task_to_its_expected_state():
    wf = load_workflow(ENVS / "router_wifi_password.json")
    task = Task(id="wifi", env_id=wf.id, instruction="Please change the password of HomeNet-5G to 'blue lagoon 42' "
                                                     "and use WPA3.",
                known_info=[Info(key="admin_password", value="admin1234"), Info(key="network_name", value="HomeNet-5G"),
                            Info(key="wifi_password", value="blue lagoon 42"), Info(key="security", value="WPA3")],
                gold_actions=[Action(tool="sign_in_admin", arguments={"admin_password": "admin1234"}),
                              Action(tool="get_wifi_network", arguments={"network_name": "HomeNet-5G"}),
                              Action(tool="set_wifi_password", arguments={"network_name": "HomeNet-5G",
                                                                          "wifi_password": "blue lagoon 42",
                                                                          "security": "WPA3"})])
    run = run_gold(wf, task)
    sc = scenario_from_task(wf, task, 0)
    traj = rollout(sc)
    assert traj.steps and all(s.ok for s in traj.steps)
    assert [s.name for s in traj.steps] == [a.tool for a in task.gold_actions]
    assert traj.verdict.final_state_hash == run.expected_state_hash


def _bundled_tasks():
    for path in sorted(ENVS.glob("*.tasks.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield path, Task.model_validate_json(line)


@pytest.mark.parametrize("path, task", list(_bundled_tasks()), ids=lambda x: getattr(x, "id", ""))
def test_bundled_tasks_run_and_scripted_roles_reach_their_expected_state(path, task):
    wf = load_workflow(path.with_name(path.name.replace(".tasks.jsonl", ".json")))
    run = run_gold(wf, task)
    assert isinstance(run, GoldRun), run
    assert task.expected_state_hash == run.expected_state_hash
    traj = rollout(scenario_from_task(wf, task, 0))
    assert [s.name for s in traj.steps if s.ok] == [a.tool for a in task.gold_actions]
    assert traj.verdict.final_state_hash == run.expected_state_hash


def test_every_bundled_environment_has_tasks():
    envs = {p.stem for p in ENVS.glob("*.json")}
    with_tasks = {p.name.replace(".tasks.jsonl", "") for p in ENVS.glob("*.tasks.jsonl")}
    assert envs == with_tasks and len(envs) >= 6
