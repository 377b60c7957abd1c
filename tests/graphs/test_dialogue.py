import json

import pytest

from tests.helpers import example, example_names, rollout, scripted
from tools_runtime.records import PlannedError
from tools_runtime.scenario import build_scenario
from tools_runtime.verification import mutations
from tools_runtime.verification.verify import FAILURE_CODES, check_dialogue, verify


@pytest.mark.parametrize("name", example_names())
def test_every_example_verifies_with_scripted_roles(name):
    for seed in (0, 1, 2):
        _, traj = scripted(name, seed)
        assert traj.verdict.passed, (name, seed, traj.verdict.failures)
        assert traj.stats.tool_calls >= 4 and traj.messages[-1]["role"] == "assistant"


def test_same_seed_identical_trajectory_bytes():
    _, a = scripted("bank_transfer", 7)
    _, b = scripted("bank_transfer", 7)
    assert json.dumps(a.model_dump(), sort_keys=True) == json.dumps(b.model_dump(), sort_keys=True)


def test_user_never_sees_tools_and_tool_calls_are_answered():
    sc, traj = scripted("shop_return", 0)
    ids = [c["id"] for m in traj.messages for c in m.get("tool_calls", [])]
    answered = [m["tool_call_id"] for m in traj.messages if m["role"] == "tool"]
    assert sorted(ids) == sorted(answered) and len(set(ids)) == len(ids)
    assert traj.steps and all(s.ok for s in traj.steps)
    assert any(s.state_diff for s in traj.steps)


# Outcome verification (docs/verification.md): a dropped *write* is missing, a swap of dependent calls
# breaks the write order or makes the later call fail on the backend.
MUTATIONS = {
    "drop_call": (lambda sc, m: mutations.drop_last_write(m, sc), {"missing_required_call"}),
    "swap": (lambda sc, m: mutations.swap_dependent_writes(m, sc),
             {"order_violation", "unplanned_error"}),
    "corrupt_type": (lambda sc, m: mutations.corrupt_argument_type(m), {"invalid_arguments"}),
    "unknown_tool": (lambda sc, m: mutations.call_unknown_tool(m), {"unknown_tool"}),
    "fake_result": (lambda sc, m: mutations.fake_result(m, 0), {"tool_result_mismatch"}),
    "unanswered": (lambda sc, m: mutations.leave_unanswered(m), {"unanswered_tool_call"}),
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@pytest.mark.parametrize("name", ["shop_return", "bank_transfer", "calendar_booking"])
def test_mutations_are_rejected_with_the_right_code(kind, name):
    sc, traj = scripted(name, 0)
    assert verify(traj.messages, sc)[0].passed
    mutate, code = MUTATIONS[kind]
    bad = mutate(sc, traj.messages)
    verdict = verify(bad, sc)[0]
    assert not verdict.passed
    assert code & set(verdict.codes()), verdict.failures
    assert all(c in FAILURE_CODES for c in verdict.codes())


def test_dropping_the_last_write_changes_the_state():
    sc, traj = scripted("shop_return", 0)
    verdict = verify(mutations.drop_call(traj.messages), sc)[0]
    assert "state_mismatch" in verdict.codes()


def test_planned_transient_error_is_recovered_and_counted():
    sc = build_scenario(example("support_ticket"), 0)
    sc = sc.model_copy(update={"planned_errors": [PlannedError(kind="transient", tool="get_ticket")]})
    traj = rollout(sc)
    assert traj.verdict.passed, traj.verdict.failures
    assert traj.stats.errors_recovered == 1
    # The same error, unplanned, is a failure.
    unplanned = sc.model_copy(update={"planned_errors": []})
    assert "tool_result_mismatch" in verify(traj.messages, unplanned)[0].codes()


def test_dialogue_shape_checks():
    assert check_dialogue([])[0].code == "empty_dialogue"
    bad = [{"role": "assistant", "content": "hi"}, {"role": "robot", "content": "?"}]
    codes = [f.code for f in check_dialogue(bad)]
    assert "bad_role_sequence" in codes and "unknown_role" in codes
    orphan = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c9", "content": "{}"},
              {"role": "assistant", "content": "done"}]
    assert [f.code for f in check_dialogue(orphan)] == ["orphan_tool_result"]
    ends_with_user = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                      {"role": "user", "content": "z"}]
    assert "no_final_assistant_message" in [f.code for f in check_dialogue(ends_with_user)]
