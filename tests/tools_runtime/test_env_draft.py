"""Environments without tasks: build_scenario plays a task drafted from the environment's own state."""

import json
from pathlib import Path

import pytest

from tests.helpers import rollout
from tools_runtime.env_tasks import DraftError, draft_task
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.tasks import GoldRun, run_gold
from tools_runtime.workflow_io import load_workflow, workflow_from_dict

ENVS = Path(__file__).resolve().parents[2] / "examples" / "environments"
NAMES = sorted(p.stem for p in ENVS.glob("*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_drafted_scenario_plays_to_its_expected_state(name):
    wf = load_workflow(ENVS / f"{name}.json")
    for seed in (0, 1):
        sc = build_scenario(wf, seed)
        assert sc.task is not None and sc.task.offline and sc.task.operator == "draft"
        assert isinstance(run_gold(wf, sc.task), GoldRun)
        traj = rollout(sc)
        assert traj.steps and all(s.ok for s in traj.steps)
        assert traj.verdict.final_state_hash == sc.task.expected_state_hash


def test_draft_values_come_from_the_state_with_their_provenance():
    wf = load_workflow(ENVS / "shop_return.json")
    task = draft_task(wf, 0)
    sign_in = task.gold_actions[0]
    assert sign_in.arguments == {"username": "maria.k", "password": "Lamp-2024!"}
    order_ids = {a.arguments["order_id"] for a in task.gold_actions if "order_id" in a.arguments}
    assert order_ids == {"ORD-4821"}  # the only order the return policy accepts
    router = draft_task(load_workflow(ENVS / "router_wifi_password.json"), 0)
    net = next(i for i in router.known_info if i.key == "network_name")
    assert net.value in ("HomeNet-5G", "HomeNet-Guest")
    assert net.source.kind == ("text" if net.value == "HomeNet-5G" else "invented")


def test_values_found_in_results_are_not_user_facts():
    task = draft_task(load_workflow(ENVS / "support_ticket.json"), 0)
    created = [a for a in task.gold_actions if a.tool != "create_ticket" and "ticket_id" in a.arguments]
    assert created and all(i.key != "ticket_id" for i in task.known_info)


def test_draft_is_deterministic():
    wf = load_workflow(ENVS / "bank_transfer.json")
    assert draft_task(wf, 3) == draft_task(wf, 3)
    assert build_scenario(wf, 3) == build_scenario(wf, 3)


def test_question_only_environment_gets_a_value_to_communicate():
    data = json.loads((ENVS / "print_booklet.json").read_text())
    data["execution_graph"] = "(get_document)->(calculate_sheets)"
    task = draft_task(workflow_from_dict(data), 0)
    pages = task.gold_actions[1].arguments["page_count"]
    assert task.communicate_info == [str(-(-pages // 4))]


def test_impossible_environment_is_a_clear_scenario_error():
    data = json.loads((ENVS / "print_booklet.json").read_text())
    data["effects"]["print_document"]["preconditions"][0]["expr"] = "copies > 100"
    wf = workflow_from_dict(data)
    with pytest.raises(DraftError, match="print_document"):
        draft_task(wf, 0)
    with pytest.raises(ScenarioError, match="print_document"):
        build_scenario(wf, 0)
