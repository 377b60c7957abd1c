import pytest

from tests.helpers import example, example_names
from tools_runtime.records import Workflow
from tools_runtime.scenario import ScenarioError, build_scenario, replay_plan
from tools_runtime.state import canonical_json


@pytest.mark.parametrize("name", example_names())
def test_same_seed_same_scenario_and_plan_runs(name):
    wf = example(name)
    a, b = build_scenario(wf, 3), build_scenario(wf, 3)
    assert canonical_json(a.model_dump()) == canonical_json(b.model_dump())
    assert a.plan and [c.tool for c in a.plan][0]
    env = replay_plan(a)
    assert env.backend.state_hash() != ""


def test_different_seeds_differ():
    wf = example("shop_return")
    assert build_scenario(wf, 1).initial_state != build_scenario(wf, 2).initial_state


def test_values_from_results_are_marked_as_such():
    sc = build_scenario(example("shop_return"), 0)
    by_tool = {c.tool: c for c in sc.plan}
    # The order id comes from the search, the return id from the created return: state-dependent.
    assert by_tool["get_order_details"].sources["order_id"].kind == "result"
    assert by_tool["update_refund_method"].sources["return_id"].kind == "result"
    assert by_tool["login"].sources["password"].kind == "user"
    assert "password" not in sc.goals[0].volunteer  # secrets are asked for, not volunteered


def test_unusable_workflow_is_rejected_with_reason():
    wf = example("shop_return")
    bad = Workflow.model_validate({**wf.model_dump(), "execution_graph": "(login)->(nope)"})
    with pytest.raises(ScenarioError, match="nope"):
        build_scenario(bad, 0)
