"""The disconnects between refinement and the simulated users (issue 17): key matching and withheld facts."""

from __future__ import annotations

import asyncio

from gem_agents.roles_factory import make_roles
from gem_agents.user.scripted import answer_keys
from graphs.rollouts import run_dialogue
from tools_runtime.records import ArgSource, Goal, Scenario
from tools_runtime.scenario import build_scenario
from tools_runtime.workflow_io import load_workflow


def scenario_with(keys: dict[str, str]) -> Scenario:
    wf = load_workflow("examples/environments/support_ticket.json")
    return Scenario(id="s", workflow=wf, goals=[Goal(description="Copy my files.")], known_info=keys)


def test_a_key_asked_literally_wins_over_a_longer_key_containing_its_words():
    sc = scenario_with({"file": "a.csv", "file_id": "notes", "file1": "b.txt", "target_file": "c.txt"})
    # The loop found in review: "file" is inside "file id", so the user answered `file id` every time.
    assert answer_keys("What is the file, please?", sc, 0) == ["file"]
    assert answer_keys("Could you tell me the file id?", sc, 0) == ["file_id"]
    assert answer_keys("What are the file and the target file?", sc, 0) == ["file", "target_file"]
    assert answer_keys("What is the file1?", sc, 0) == ["file1"]


def test_a_short_key_inside_the_longer_name_asked_is_not_answered():
    sc = scenario_with({"payee_query": "rent", "query": "lamp", "return_method": "mail"})
    assert answer_keys("Could you tell me your payee query?", sc, 0) == ["payee_query"]
    # no literal name: the words still find the key
    assert answer_keys("Which method of return do you want?", sc, 0) == ["return_method"]


def test_a_refined_dialogue_asking_for_a_short_key_ends_before_its_turn_budget():
    wf = load_workflow("examples/environments/support_ticket.json")
    sc = build_scenario(wf, 0).model_copy(update={"task": None})
    # Two facts whose words overlap, the shorter one needed by the plan and withheld.
    call = sc.plan[0]
    param = next(iter(call.arguments))
    short, long = param, f"{param}_id"
    known = {**sc.known_info, short: call.arguments[param], long: "something-else"}
    plan = [call.model_copy(update={"sources": {**call.sources, param: ArgSource(kind="user", key=short)}}),
            *sc.plan[1:]]
    goals = [g.model_copy(update={"volunteer": [k for k in g.volunteer if k != short]}) for g in sc.goals]
    sc = sc.model_copy(update={"known_info": known, "plan": plan, "goals": goals})
    traj = asyncio.run(run_dialogue(sc, make_roles(None), max_user_turns=12))
    assert "turn_budget_exhausted" not in traj.verdict.codes(), traj.verdict.failures


def test_facts_withheld_by_the_refiner_are_hidden_from_a_model_played_user():
    import random

    from gem_agents.policies.chat import user_prompt
    from tools_runtime.refine_ops import withhold_info

    sc = build_scenario(load_workflow("examples/environments/support_ticket.json"), 0).model_copy(
        update={"task": None})
    out = withhold_info(sc, random.Random(0))
    hidden = set(sc.goals[0].volunteer) - set(out.goals[0].volunteer)
    assert hidden
    before = user_prompt(sc)
    prompt = user_prompt(out)
    head, sep, tail = prompt.partition("Give these only if the assistant asks for them")
    assert sep, "withheld facts are listed apart"
    for key in hidden:
        line = f"- {key.replace('_', ' ')}: "
        assert line in tail and line not in head, (key, prompt)
        assert line in before.partition("Give these only if")[0], "before refinement the fact was volunteered"
