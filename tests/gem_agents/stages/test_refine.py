"""Stage 4: refine → re-simulate → verify, offline and with a model refiner behind a fake OpenAI server."""

from __future__ import annotations

import asyncio
import json

import pytest

from gem_agents.config import RunConfig
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.stages.refine import Proposal, parse_proposal, refine, verify_refinement
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text
from tests.helpers import SCRIPTED, example, rollout
from tools_runtime.records import PlannedError
from tools_runtime.scenario import build_scenario
from tools_runtime.verification.verify import verify


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("name", ["shop_return", "calendar_booking", "print_booklet"])
def test_offline_refinement_is_verified_and_harder(name):
    sc = build_scenario(example(name), 0)
    before = rollout(sc)
    res = run(refine(sc, make_roles(None), seed=0))
    assert res.trajectory is not None and res.scenario is not None, res.rejected
    traj = res.trajectory
    assert traj.verdict.passed and traj.provenance.stage == "refine"
    assert traj.id == f"{sc.id}:refined" and traj.scenario.id == res.scenario.id
    assert len(res.ops) >= 4 and res.scenario.refinements
    # Independently re-verified from the embedded scenario, as `gem verify` would.
    assert verify(traj.messages, traj.scenario)[0].passed
    for field in ("messages", "user_turns", "tool_calls"):
        assert getattr(traj.stats, field) > getattr(before.stats, field)
    assert traj.stats.tool_types > before.stats.tool_types


def test_more_rounds_make_it_harder_still():
    sc = build_scenario(example("bank_transfer"), 2)
    one = run(refine(sc, SCRIPTED, rounds=1, ops=["chain_goals", "plan_errors"]))
    two = run(refine(sc, SCRIPTED, rounds=2, ops=["chain_goals", "plan_errors"]))
    assert one.trajectory and two.trajectory, (one.rejected, two.rejected)
    assert two.trajectory.stats.tool_calls > one.trajectory.stats.tool_calls
    assert two.ops.count("chain_goals") == 2


def test_a_plan_breaking_refinement_is_rejected_with_reasons():
    sc = build_scenario(example("shop_return"), 0)
    # A permission error on a tool the plan never calls, and a distractor the plan needs.
    broken = sc.model_copy(update={"planned_errors": [PlannedError(kind="permission", tool="ghost_tool")],
                                   "distractors": ["login"]})
    traj, reasons = run(verify_refinement(broken, SCRIPTED))
    assert traj is None
    assert any("ghost_tool" in r for r in reasons) and any("distractor 'login'" in r for r in reasons)
    # A refinement whose plan runs but whose facts disagree with it: the user asks for another refund
    # method than the plan sets, so the dialogue ends in another state and does not verify.
    other = "store_credit" if sc.known_info["method"] != "store_credit" else "original_payment"
    unreachable = sc.model_copy(update={"known_info": {**sc.known_info, "method": other}})
    traj, reasons = run(verify_refinement(unreachable, SCRIPTED))
    assert traj is None and any(r.startswith("unverified: state_mismatch") for r in reasons), reasons


def test_unknown_operator_is_rejected_not_raised():
    res = run(refine(build_scenario(example("shop_return"), 0), SCRIPTED, ops=["shuffle"]))
    assert res.trajectory is None and "unknown operator" in res.rejected[0]


PROPOSAL = {"ops": [{"op": "chain_goals", "count": 1, "goal_texts": ["Could you also sort out my other order?"]},
                    {"op": "plan_errors", "kinds": ["transient"]},
                    {"op": "add_tools", "tools": [{"name": "list_returns", "description": "List my returns.",
                                                   "parameters": {"type": "object", "properties": {}}}],
                     "distractors": [{"name": "delete_account", "description": "Close the account for good.",
                                      "inputSchema": {"type": "object", "properties": {}}}]}],
            "persona": "a shopper in a hurry"}


def model_hub(base_url: str) -> ModelHub:
    cfg = RunConfig.model_validate({"cache": False, "roles": {"refine": {
        "provider": "openai", "base_url": base_url, "model": "fake-refiner", "structured_output": "tagged",
        "max_retries": 0}}})
    return ModelHub(cfg)


def test_model_refiner_through_a_fake_openai_server():
    sc = build_scenario(example("shop_return"), 0)
    original = rollout(sc)
    # The first answer is malformed (bad operator name): the errors go back and the second answer counts.
    bad = json.dumps({"ops": [{"op": "shuffle_everything"}]})
    with FakeOpenAIServer(ScriptedResponder([text(bad), text("Sure!\n```json\n" + json.dumps(PROPOSAL) + "\n```")])) as srv:
        hub = model_hub(srv.base_url)
        try:
            res = run(refine(sc, SCRIPTED, client=hub.client("refine"), trajectory=original))
        finally:
            hub.close()
        assert srv.count == 2
        prompt = srv.bodies[0]["messages"][0]["content"]
        repair = srv.bodies[1]["messages"][-1]["content"]
    assert "create_return" in prompt and "I need to return an item" in prompt and "assistant:" in prompt
    assert "ops.0.op" in repair
    assert res.trajectory is not None, res.rejected
    traj = res.trajectory
    assert traj.verdict.passed and traj.provenance.model == "fake-refiner" and traj.provenance.prompts_hash
    assert res.ops == ["chain_goals", "add_tools", "plan_errors"]
    assert res.scenario.persona == "a shopper in a hurry"
    assert "Could you also sort out my other order?" in [g.description for g in res.scenario.goals]
    assert "delete_account" in res.scenario.distractors
    called = {c["function"]["name"] for m in traj.messages for c in m.get("tool_calls", [])}
    assert "list_returns" in called and "delete_account" not in called
    assert traj.stats.errors_recovered >= 1 and traj.stats.tool_calls > original.stats.tool_calls


def test_model_proposal_that_cannot_be_planned_is_dropped_with_reasons():
    sc = build_scenario(example("shop_return"), 0)
    proposal = {"ops": [{"op": "withhold_info", "keys": ["shoe_size"]},
                        {"op": "add_tools", "tools": [{"name": "bad tool!", "description": "x", "parameters": {}}]}]}
    with FakeOpenAIServer(ScriptedResponder([text(json.dumps(proposal))])) as srv:
        hub = model_hub(srv.base_url)
        try:
            res = run(refine(sc, SCRIPTED, client=hub.client("refine")))
        finally:
            hub.close()
    assert res.trajectory is None and res.scenario is None
    assert any("bad tool!" in r for r in res.rejected), res.rejected


def test_model_proposal_with_an_inapplicable_op_keeps_the_rest_and_says_why():
    sc = build_scenario(example("shop_return"), 0)
    proposal = {"ops": [{"op": "withhold_info", "keys": ["shoe_size"]}, {"op": "chain_goals", "count": 1}]}
    with FakeOpenAIServer(ScriptedResponder([text(json.dumps(proposal))])) as srv:
        hub = model_hub(srv.base_url)
        try:
            res = run(refine(sc, SCRIPTED, client=hub.client("refine")))
        finally:
            hub.close()
    assert res.trajectory is not None and res.ops == ["chain_goals"]
    assert any("shoe_size" in r for r in res.rejected)


def test_parse_proposal_errors_name_the_field():
    with pytest.raises(ValueError, match="ops.0.count"):
        parse_proposal(json.dumps({"ops": [{"op": "chain_goals", "count": 99}]}))
    with pytest.raises(ValueError, match="no JSON object"):
        parse_proposal("I would add more goals.")
    assert isinstance(parse_proposal('{"ops": [{"op": "state_dependency"}]}'), Proposal)


def test_refined_scenario_runs_with_chat_model_roles_over_http(tmp_path):
    from gem_agents.testing.role_responder import RoleResponder
    from tests.gem_agents.models.test_model_path import model_config
    from tools_runtime.refine_ops import apply_ops

    refined = apply_ops(build_scenario(example("bank_transfer"), 0), seed=0)[0]
    with FakeOpenAIServer(RoleResponder([refined])) as srv:
        hub = ModelHub(model_config(srv.base_url), None, use_cache=False)
        traj, reasons = run(verify_refinement(refined, make_roles(hub)))
        tools_sent = {t["function"]["name"] for b in srv.bodies if b and b.get("tools") for t in b["tools"]}
    assert traj is not None, reasons
    assert traj.provenance.model == "fake-model" and traj.stats.errors_recovered >= 1
    # The assistant model is offered the added tools and the distractors, and called no distractor.
    assert set(refined.distractors) <= tools_sent and "log_out" in tools_sent


def test_python_backend_scenarios_are_refused_with_a_reason():
    from tools_runtime.records import BackendRef
    from tools_runtime.refine_ops import RefineOpError, apply_ops

    sc = build_scenario(example("shop_return"), 0)
    py = sc.model_copy(update={"workflow": sc.workflow.model_copy(update={
        "backend": BackendRef(kind="python", classes=["pkg.mod:Api"])})})
    res = run(refine(py, SCRIPTED))
    assert res.trajectory is None and "simulated backend" in res.rejected[0]
    with pytest.raises(RefineOpError, match="python backend"):
        apply_ops(py)


PAPER_AFTER = {"messages": 46.0, "tool_types": 8.6, "tool_calls": 16.3}


async def _refined_means(workflows, seeds=(0,)):
    from tools_runtime.stats import mean_stats

    after, dropped = [], 0
    for wf in workflows:
        for seed in seeds:
            res = await refine(build_scenario(wf, seed), SCRIPTED, seed=seed)
            if res.trajectory is None:
                dropped += 1
                continue
            assert verify(res.trajectory.messages, res.trajectory.scenario)[0].passed  # every export verifies
            after.append(res.trajectory.stats)
    return mean_stats(after), dropped


def test_examples_reach_the_papers_after_refinement_means():
    from tests.helpers import example_names

    means, dropped = run(_refined_means([example(n) for n in example_names()], seeds=(0, 1)))
    assert dropped == 0 and means["n"] == 12
    assert all(means[k] >= v for k, v in PAPER_AFTER.items()), means


@pytest.mark.slow
def test_offline_environments_refine_verified_or_say_why(corpus_path):
    """Offline extraction now yields grounded environments (a few capabilities, not one tool per UI
    step), so the paper's means are no longer reached by padding them with gestures; refinement with
    substance over environments is the refinement issue's. Until then: what refines verifies, and
    every environment that does not refine says why."""
    from gem_agents.config import InputConfig
    from gem_agents.ingest import read_documents
    from gem_agents.stages.extract import check_simulatable
    from gem_agents.stages.offline_extractor import extract_offline

    docs, _ = read_documents(corpus_path, InputConfig())
    workflows = []
    for doc in docs[:40]:
        wf = extract_offline(doc).workflow
        if wf is not None and not run(check_simulatable(wf, seed=0)):
            workflows.append(wf)
    assert len(workflows) >= 10

    async def main() -> tuple[int, int]:
        refined = 0
        for wf in workflows:
            res = await refine(build_scenario(wf, 0), SCRIPTED, seed=0)
            if res.trajectory is None:
                assert res.rejected, wf.id
                continue
            assert verify(res.trajectory.messages, res.trajectory.scenario)[0].passed
            refined += 1
        return refined, len(workflows)

    refined, total = run(main())
    assert refined >= 5, (refined, total)
