"""`gem replay` and tools_runtime/verification/divergence.py: a mutated trajectory stops at its first divergence."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from tests.helpers import EXAMPLES, scripted
from tools_runtime.verification import mutations
from tools_runtime.verification.divergence import step_replay

runner = CliRunner()

# mutation → (the divergence code, whether it must sit exactly on the first changed message)
MUTATIONS = {
    "fake_result": (lambda sc, m: mutations.fake_result(m, 1), {"tool_result_mismatch"}, True),
    "corrupt_type": (lambda sc, m: mutations.corrupt_argument_type(m, 1), {"invalid_arguments"}, True),
    "unknown_tool": (lambda sc, m: mutations.call_unknown_tool(m), {"unknown_tool"}, True),
    "swap": (lambda sc, m: mutations.swap_dependent_calls(m, sc.workflow.execution_graph), {"order_violation"}, True),
    "unanswered": (lambda sc, m: mutations.leave_unanswered(m, 0), {"unanswered_tool_call"}, False),
    "drop_first": (lambda sc, m: mutations.drop_call(m, 0), {"order_violation", "tool_result_mismatch"}, False),
}


def first_change(a: list[dict], b: list[dict]) -> int:
    """Index of the first message that differs between two transcripts."""
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


@pytest.mark.parametrize("name", ["shop_return", "bank_transfer", "support_ticket"])
def test_a_grounded_trajectory_has_no_divergence(name):
    sc, traj = scripted(name, 0)
    result = step_replay(traj.messages, sc)
    assert result.divergence is None
    assert len(result.calls) == traj.stats.tool_calls and all(c.matches for c in result.calls)


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@pytest.mark.parametrize("name", ["shop_return", "bank_transfer"])
def test_mutation_stops_at_its_first_divergence(kind, name):
    sc, traj = scripted(name, 0)
    mutate, codes, exact = MUTATIONS[kind]
    bad = mutate(sc, traj.messages)
    div = step_replay(bad, sc).divergence
    assert div is not None, kind
    assert div.code in codes, (div.code, div.reason)
    changed = first_change(traj.messages, bad)
    if exact:
        assert div.index == changed, (div.index, changed, div.reason)
    else:
        assert div.index >= changed - 1
    assert div.reason


def _write(tmp_path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_cli_stops_at_the_divergence_and_names_the_reason(tmp_path):
    sc, traj = scripted("shop_return", 0)
    bad = traj.model_dump()
    bad["messages"] = mutations.fake_result(traj.messages, 1)
    changed = first_change(traj.messages, bad["messages"])
    path = _write(tmp_path, "bad.json", bad)
    wf = str(EXAMPLES / "shop_return.json")
    res = runner.invoke(app, ["replay", path, "--workflow", wf], env={"COLUMNS": "160", "TERM": "dumb"})
    assert res.exit_code == 1
    assert "diverges from the backend state" in res.output and "tool_result_mismatch" in res.output
    assert f"stopped at message {changed} of {len(bad['messages'])}" in res.output
    assert f"[{changed + 1}]" not in res.output  # nothing after the divergence is stepped
    as_json = runner.invoke(app, ["replay", path, "--workflow", wf, "--json"])
    out = json.loads(as_json.output)
    assert out["divergence"]["code"] == "tool_result_mismatch" and out["divergence"]["index"] == changed
    assert out["divergence"]["against"] == "the backend state" and not out["verdict"]["passed"]
    good = runner.invoke(app, ["replay", _write(tmp_path, "good.json", traj.model_dump()), "--workflow", wf])
    assert good.exit_code == 0 and "no divergence" in good.output and "VERIFIED" in good.output


def test_third_party_openai_format_and_bad_input(tmp_path):
    sc, traj = scripted("shop_return", 0)
    wf = str(EXAMPLES / "shop_return.json")
    plain = {"messages": traj.messages, "tools": traj.tools}  # no scenario: rebuilt from the workflow
    lines = tmp_path / "many.jsonl"
    faked = {"messages": mutations.fake_result(traj.messages, 1), "tools": traj.tools}
    lines.write_text(json.dumps(plain) + "\n\n" + json.dumps(faked) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["replay", str(lines), "--workflow", wf, "--json"]).exit_code == 0
    second = runner.invoke(app, ["replay", str(lines), "--line", "3", "--workflow", wf, "--json"])
    assert json.loads(second.output)["divergence"]["code"] == "tool_result_mismatch"
    # Another backend's results are not comparable: --no-results checks only schema, graph and dialogue.
    lenient = runner.invoke(app, ["replay", str(lines), "--line", "3", "--workflow", wf, "--json", "--no-results"])
    assert json.loads(lenient.output)["divergence"] is None
    broken = tmp_path / "broken.json"
    broken.write_text('{"messages": [\n  {"role": "user",, }]}', encoding="utf-8")
    res = runner.invoke(app, ["replay", str(broken), "--workflow", wf])
    assert res.exit_code == 2 and "broken.json:2:" in res.output and "invalid JSON" in res.output
    missing_line = runner.invoke(app, ["replay", str(lines), "--line", "2", "--workflow", wf])
    assert missing_line.exit_code == 2 and "no trajectory on line 2" in missing_line.output


def renumber_ids_per_turn(messages: list[dict]) -> list[dict]:
    """Third-party style ids: `call_0`, `call_1` … restarting in every assistant message."""
    out, ids = [], {}
    for m in messages:
        m = json.loads(json.dumps(m))
        if m.get("tool_calls"):
            for n, call in enumerate(m["tool_calls"]):
                ids[len(out), call["id"]] = f"call_{n}"
                call["id"] = f"call_{n}"
        if m.get("role") == "tool":
            m["tool_call_id"] = next(v for (at, old), v in reversed(ids.items()) if old == m["tool_call_id"])
        out.append(m)
    return out


def test_tool_call_ids_reused_across_turns_still_verify():
    from tools_runtime.verification.verify import verify

    sc, traj = scripted("shop_return", 0)
    messages = renumber_ids_per_turn(traj.messages)
    assert sum(1 for m in messages for c in m.get("tool_calls", []) if c["id"] == "call_0") > 1
    verdict, _, _ = verify(messages, sc)
    assert verdict.passed, verdict.failures
    # A wrong result is still caught under reused ids.
    bad = mutations.fake_result(messages, -1)
    assert "tool_result_mismatch" in {f.code for f in verify(bad, sc)[0].failures}
