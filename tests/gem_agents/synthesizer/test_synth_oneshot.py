"""One-shot mode through the real ChatOpenAI client and a fake server: good, malformed and lying answers."""

import asyncio
import json

import pytest

from gem_agents.config import RoleConfig, RunConfig
from gem_agents.models.hub import ModelHub
from gem_agents.synthesizer.format import trajectory_to_text
from gem_agents.synthesizer.oneshot import ONESHOT_FAILURE_CODES, oneshot_prompt, synthesize, verify_text
from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, http_error, text
from tests.helpers import example, rollout
from tools_runtime.records import Document, PlannedError
from tools_runtime.scenario import build_scenario
from tools_runtime.verification.verify import FAILURE_CODES

DOC = Document(id="shop-guide", text="How to return an item: sign in, find the order, open a return, choose a refund.",
               meta={"title": "Return an item"})


@pytest.fixture(scope="module")
def good_block():
    traj = rollout(build_scenario(example("shop_return"), 0))
    assert traj.verdict.passed
    return trajectory_to_text(traj)


def hub_for(base_url, tmp_path):
    role = RoleConfig(provider="openai", model="synth-model", base_url=base_url, max_retries=0, temperature=0)
    cfg = RunConfig.model_validate({"roles": {"synthesizer": role.model_dump()}, "cache": False})
    return ModelHub(cfg, tmp_path / "cache.sqlite", use_cache=False)


def one_shot(replies, tmp_path, doc=DOC):
    with FakeOpenAIServer(ScriptedResponder(replies)) as srv:
        hub = hub_for(srv.base_url, tmp_path)
        outcome = asyncio.run(synthesize(doc, hub.client("synthesizer")))
        bodies = srv.bodies
        hub.close()
    return outcome, bodies


def codes(outcome):
    return [f.code for f in outcome.trajectory.verdict.failures]


def swap_line(block, startswith, new_line):
    lines = block.split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(startswith))
    lines[i] = new_line
    return "\n".join(lines)


def test_good_answer_replay_verifies(good_block, tmp_path):
    outcome, bodies = one_shot([text("Here is the trajectory.\n```\n" + good_block + "```")], tmp_path)
    assert outcome.passed, outcome.trajectory.verdict.failures
    # One call: the synthesizer instruction and the text, no tools offered.
    assert len(bodies) == 1
    sent = bodies[0]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"] == oneshot_prompt()
    assert sent[1] == {"role": "user", "content": DOC.text}
    assert "tools" not in bodies[0]
    traj = outcome.trajectory
    assert traj.provenance.stage == "synthesizer" and traj.provenance.model == "synth-model"
    assert traj.provenance.doc_id == DOC.id and outcome.workflow.title == "Return an item"
    assert traj.stats.tool_calls == 5 and len(traj.steps) == 5 and all(s.ok for s in traj.steps)
    assert traj.steps[3].state_diff  # create_return changed the backend the answer started from


@pytest.mark.parametrize("answer,code,needle", [
    ("I cannot help with that.", "unparseable_output", "start with '## tools'"),
    (None, "unparseable_output", "cut off"),  # truncated by max_tokens
    ("## tools\n{not json}\n## graph\n(a)\n## state\n{}\n## dialogue\nuser: hi\n## end\n", "unparseable_output",
     "line 2"),
])
def test_malformed_answers_fail_with_the_parse_error(answer, code, needle, good_block, tmp_path):
    answer = answer if answer is not None else good_block[: len(good_block) // 2]
    outcome, _ = one_shot([text(answer)], tmp_path)
    assert not outcome.passed
    assert codes(outcome) == [code]
    assert needle in outcome.trajectory.verdict.failures[0].reason
    assert outcome.raw == answer and outcome.workflow is None


def test_invalid_tools_or_graph_fail_as_invalid_workflow(good_block, tmp_path):
    bad_schema = good_block.replace('"parameters": {"type": "object"', '"parameters": {"type": "banana"', 1)
    unknown_node = swap_line(good_block, "(login)", "(login)->(teleport)")
    outcome_a, _ = one_shot([text(bad_schema)], tmp_path)
    outcome_b, _ = one_shot([text(unknown_node)], tmp_path)
    assert codes(outcome_a) == ["invalid_workflow"] and "tools[0]" in outcome_a.trajectory.verdict.failures[0].reason
    assert codes(outcome_b) == ["invalid_workflow"] and "teleport" in outcome_b.trajectory.verdict.failures[0].reason


def test_a_tool_result_the_backend_contradicts_fails(good_block, tmp_path):
    lines = good_block.split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith("tool call_003"))
    head, payload = lines[i].split(": ", 1)
    record = json.loads(payload)
    record["status"] = "delivered" if record["status"] != "delivered" else "shipped"
    lines[i] = f"{head}: {json.dumps(record)}"
    outcome, _ = one_shot([text("\n".join(lines))], tmp_path)
    assert not outcome.passed
    failure = outcome.trajectory.verdict.failures[0]
    assert failure.code == "tool_result_mismatch" and "get_order_details" in failure.reason
    assert failure.index == i - lines.index("## dialogue") - 1 - sum(
        1 for line in lines[lines.index("## dialogue") + 1:i] if line.startswith("call "))


def test_a_state_that_lacks_the_records_the_dialogue_reads_fails(good_block, tmp_path):
    lines = good_block.split("\n")
    i = lines.index("## state") + 1
    state = json.loads(lines[i])
    state["collections"]["order"] = {}
    lines[i] = json.dumps(state)
    outcome, _ = one_shot([text("\n".join(lines))], tmp_path)
    assert "tool_result_mismatch" in codes(outcome)
    assert any("not_found" in f.reason or "No order" in f.reason or "no order" in f.reason.lower()
               for f in outcome.trajectory.verdict.failures)


def test_order_names_and_unanswered_calls_are_checked(good_block):
    reversed_graph = swap_line(good_block, "(login)",
                               "(search_orders)->(login)->(get_order_details)->(create_return)->(update_refund_method)")
    renamed = good_block.replace("tool call_002 search_orders:", "tool call_002 get_order_details:")
    lines = good_block.split("\n")
    dropped = "\n".join(line for line in lines if not line.startswith("tool call_005"))
    assert "order_violation" in codes(verify_text(reversed_graph, doc_id="d"))
    assert "tool_name_mismatch" in codes(verify_text(renamed, doc_id="d"))
    assert "unanswered_tool_call" in codes(verify_text(dropped, doc_id="d"))
    for outcome in (verify_text(reversed_graph, doc_id="d"), verify_text(renamed, doc_id="d")):
        assert all(c in ONESHOT_FAILURE_CODES or c in FAILURE_CODES for c in codes(outcome))


def test_planned_errors_must_be_declared_to_be_excused():
    sc = build_scenario(example("shop_return"), 0)
    sc = sc.model_copy(update={"planned_errors": [PlannedError(kind="transient", tool="create_return")]})
    traj = rollout(sc)
    block = trajectory_to_text(traj)
    assert verify_text(block, doc_id="d").passed
    start, end = block.index("## errors"), block.index("## dialogue")
    undeclared = verify_text(block[:start] + block[end:], doc_id="d")
    assert not undeclared.passed and "tool_result_mismatch" in codes(undeclared)


def test_endpoint_failure_is_a_model_error(tmp_path):
    outcome, _ = one_shot([http_error(400, "context length exceeded")], tmp_path)
    assert codes(outcome) == ["model_error"] and "context length" in outcome.trajectory.verdict.failures[0].reason
    assert outcome.raw == ""
