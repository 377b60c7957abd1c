"""The plain dialogue loop (bulk runs) and the compiled LangGraph graph (`gem debug`, checkpoints)
produce identical trajectories: same nodes, routes, reducers and step budget."""

import asyncio
import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError

from graphs.dialogue import SimContext, build_dialogue_graph, initial_state, run_plain
from graphs.roles import Roles
from graphs.rollouts import default_graph, run_dialogue
from tests.helpers import SCRIPTED, example, example_names
from tools_runtime.records import PlannedError
from tools_runtime.scenario import build_scenario


def _both(sc, roles=SCRIPTED, graph=None, **kwargs):
    """(plain-loop trajectory, graph trajectory) as canonical JSON."""
    plain = asyncio.run(run_dialogue(sc, roles, **kwargs))
    graphed = asyncio.run(run_dialogue(sc, roles, graph=graph or default_graph(), **kwargs))
    dump = lambda t: json.dumps(t.model_dump(mode="json"), sort_keys=True)  # noqa: E731
    return dump(plain), dump(graphed), plain


@pytest.mark.parametrize("name", example_names())
def test_plain_loop_and_graph_give_identical_trajectories(name):
    for seed in (0, 1, 2):
        a, b, traj = _both(build_scenario(example(name), seed))
        assert a == b, (name, seed)
        assert traj.verdict.passed and traj.steps


def test_identical_with_a_checkpointed_graph_and_planned_errors():
    sc = build_scenario(example("support_ticket"), 0)
    sc = sc.model_copy(update={"planned_errors": [PlannedError(kind="transient", tool="get_ticket")]})
    a, b, traj = _both(sc, graph=build_dialogue_graph(checkpointer=InMemorySaver()))
    assert a == b
    assert traj.stats.errors_recovered == 1  # the planned error really happened on both paths


def test_identical_when_budgets_end_the_dialogue():
    sc = build_scenario(example("bank_transfer"), 0)
    for kwargs in ({"max_user_turns": 1}, {"max_tool_rounds": 1}, {"max_user_turns": 2, "max_tool_rounds": 2}):
        a, b, traj = _both(sc, **kwargs)
        assert a == b, kwargs
        assert not traj.verdict.passed, kwargs


def test_identical_when_the_user_never_stops():
    async def chatty_user(view):
        return {"role": "user", "content": f"and one more thing ({view.turn})"}

    async def polite_assistant(view):
        return {"role": "assistant", "content": "Noted."}

    roles = Roles(user=chatty_user, assistant=polite_assistant)
    a, b, traj = _both(build_scenario(example("shop_return"), 0), roles, max_user_turns=5)
    assert a == b
    assert traj.stats.user_turns == 5


def test_step_limit_trips_at_the_same_step_on_both_paths():
    sc = build_scenario(example("shop_return"), 0)

    async def outcome(run, k):
        try:
            state = await run(k)
        except GraphRecursionError:
            return "limit"
        return json.dumps(state["messages"], sort_keys=True)

    async def plain(k):
        return await run_plain(initial_state(sc), SimContext(scenario=sc, roles=SCRIPTED), k)

    async def graphed(k):
        return await default_graph().ainvoke(initial_state(sc), {"recursion_limit": k},
                                             context=SimContext(scenario=sc, roles=SCRIPTED))

    async def compare():
        seen = set()
        for k in range(2, 40):
            p, g = await outcome(plain, k), await outcome(graphed, k)
            assert p == g, k
            seen.add(p == "limit")
        return seen

    assert asyncio.run(compare()) == {True, False}  # the range covers both sides of the limit
