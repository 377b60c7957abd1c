"""`gem audit`'s refinement figures on a hand-made run: repetition, new capabilities, complexity, operators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.audit import audit_run
from gem_agents.cli import app
from gem_agents.run.store import DocOutcome, RunStore
from gem_agents.stages.refine import TaskRefinement
from tools_runtime.environment import Entity, FieldWrite, ToolEffect
from tools_runtime.records import (
    Failure,
    Goal,
    Provenance,
    Relevance,
    Scenario,
    Stats,
    Trajectory,
    Verdict,
    Workflow,
)
from tools_runtime.refine_tasks import Drop
from tools_runtime.tasks import Action, Task
from tools_runtime.toolspec import ToolSpec

runner = CliRunner()


def _tool(name: str, *params: str) -> ToolSpec:
    return ToolSpec(name=name, description=name, parameters={
        "type": "object", "properties": {p: {"type": "string"} for p in params}, "required": list(params)})


WF = Workflow(
    id="d1", doc_id="d1", title="Paint items", execution_graph="(list_items, get_item, add_item, set_color)",
    tools=[_tool("list_items"), _tool("get_item", "item"), _tool("add_item", "name"), _tool("set_color", "item", "color")],
    effects={"list_items": ToolEffect(kind="read", entity="item"),
             "get_item": ToolEffect(kind="read", entity="item", key="item"),
             "add_item": ToolEffect(kind="create", entity="item", key="name"),
             "set_color": ToolEffect(kind="update", entity="item", key="item",
                                     writes=[FieldWrite(field="color", param="color")])},
    entities=[Entity(name="item", key="name", fields={"name": {"type": "string"}, "color": {"type": "string"}})],
)
ORIGINAL = Task(id="t0", env_id="d1", instruction="Paint A red.",
                gold_actions=[Action(tool="set_color", arguments={"item": "A", "color": "red"})])


def _refined_task(tid: str, ops: list[str], actions: list[Action], *, composed: bool = False,
                  branches: list[str] = ()) -> Task:
    return ORIGINAL.model_copy(update={
        "id": tid, "parent": "t0", "operator": "+".join(ops), "gold_actions": actions,
        "meta": {"operators": ops, "parent_tools": ["set_color"], "branches": list(branches),
                 **({"composed": True} if composed else {})}})


def _call(i: int, name: str, args: dict) -> dict:
    return {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _traj(tid: str, task: Task, goals: list[str], turns: list[tuple[str, list[tuple[str, dict]]]], *,
          passed: bool = True, stats: Stats | None = None) -> Trajectory:
    """A refined dialogue: each turn is a user message then the assistant's calls (one per message)."""
    messages: list[dict] = [{"role": "system", "content": "Rules."}]
    n = 0
    for text, calls in turns:
        messages.append({"role": "user", "content": text})
        for name, args in calls:
            messages.append({"role": "assistant", "content": "", "tool_calls": [_call(n, name, args)]})
            messages.append({"role": "tool", "tool_call_id": f"c{n}", "name": name, "content": "{}"})
            n += 1
        messages.append({"role": "assistant", "content": "Done."})
    verdict = Verdict(passed=passed, failures=[] if passed else [Failure(code="state_mismatch", reason="x")])
    return Trajectory(id=tid, workflow_id="d1", messages=messages, verdict=verdict, stats=stats or Stats(),
                      scenario=Scenario(id=f"{tid}:sc", workflow=WF, task=task,
                                        goals=[Goal(description=g) for g in goals]),
                      provenance=Provenance(doc_id="d1", stage="refine", task_id=task.id))


# Composed: 4 calls in three requests; the last set_color repeats the first request's tool and argument shape.
COMPOSED = _refined_task("t0+multi_goal+error_condition", ["multi_goal", "error_condition"], [
    Action(tool="set_color", arguments={"item": "A", "color": "red"}), Action(tool="add_item", arguments={"name": "B"}),
    Action(tool="get_item", arguments={"item": "C"})], composed=True, branches=["get_item:error:not_found"])
R1 = _traj("r1", COMPOSED, ["Paint A red.", "Add an item called B.", "Look up item C."], [
    ("Paint A red.", [("set_color", {"item": "A", "color": "red"})]),
    ("Add an item called B.", [("add_item", {"name": "B"})]),
    ("Look up item C.", [("get_item", {"item": "C"}), ("set_color", {"item": "C", "color": "blue"})])],
    stats=Stats(messages=10, user_turns=3, tool_types=3, tool_calls=4))
# A refinement that only repaints: one repeat out of two calls, no new tool, no branch.
AGAIN = _refined_task("t0+long_context", ["long_context"], [
    Action(tool="set_color", arguments={"item": "A", "color": "red"}),
    Action(tool="set_color", arguments={"item": "A", "color": "blue"})])
R2 = _traj("r2", AGAIN, ["Paint A red.", "Now paint it blue."], [
    ("Paint A red.", [("set_color", {"item": "A", "color": "red"})]),
    ("Now paint it blue.", [("set_color", {"item": "A", "color": "blue"})])],
    stats=Stats(messages=6, user_turns=2, tool_types=1, tool_calls=2))
# Stored but not verified: left out of every figure but the count of refined trajectories.
R3 = _traj("r3", AGAIN, ["Paint A red.", "Now paint it blue."], [
    ("Paint A red.", [("set_color", {"item": "A", "color": "red"})]),
    ("Now paint it blue.", [("set_color", {"item": "B", "color": "blue"}), ("set_color", {"item": "B", "color": "x"})])],
    passed=False, stats=Stats(messages=99, tool_types=9, tool_calls=99))

DROPS = TaskRefinement(drops=[
    Drop(operator="branch", parent="t0", code="not_applicable", reason="no write with a precondition"),
    Drop(operator="ambiguous", parent="t0", code="not_applicable", reason="no two records alike"),
    Drop(operator="multi_goal+error_condition+ambiguous", parent="t0", task_id="t0+x", code="unverified",
         reason="state_mismatch: final state differs"),
    Drop(operator="policy_refusal", parent="t0", task_id="t0+policy_refusal", code="unverified",
         reason="nl_assertions: pending (no judge)"),
    Drop(operator="error_condition", parent="t0", task_id="t0+error_condition", code="order_conflict",
         reason="the execution graph orders these writes the other way"),
]).drop_lines()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit_refine") / "run"
    orig = _traj("o1", ORIGINAL, ["Paint A red."], [("Paint A red.", [("set_color", {"item": "A", "color": "red"})])])
    orig = orig.model_copy(update={"provenance": orig.provenance.model_copy(update={"stage": "simulate"})})
    store = RunStore(out)
    store.finish_many([DocOutcome(
        doc_id="d1", status="kept", stage="refine", text="Paint items.", workflow=WF,
        relevance=Relevance(multi_step=True, decided_by="model"),
        reasons=["simulate: fine", *(f"refinement: {line}" for line in DROPS)],
        trajectories=[("original", orig), ("refined", R1), ("refined", R2), ("refined", R3)])])
    store.close()
    return out


@pytest.fixture(scope="module")
def refinement(run_dir) -> dict:
    return audit_run(run_dir)["refinement"]


def test_repetition_share_counts_calls_repeating_an_earlier_requests_tool_and_shape(refinement):
    # R1: 4 calls, 1 repeat (set_color in request 2); R2: 2 calls, 1 repeat; R3 did not verify.
    assert refinement["repetition_share"] == round(2 / 6, 3)
    assert refinement["repetition_share_composed"] == 0.25
    assert (refinement["refined"], refinement["verified"]) == (3, 2)


def test_new_capability_share_counts_new_tools_or_branches(refinement):
    assert refinement["new_capability_share"] == 0.5  # R1 adds tools and a branch; R2 only repaints


def test_complexity_of_verified_refined_trajectories_beside_the_paper(refinement):
    c = refinement["complexity"]
    assert (c["n"], c["messages"], c["tool_types"], c["tool_calls"]) == (2, 8.0, 2.0, 3.0)
    cc = refinement["complexity_composed"]
    assert (cc["n"], cc["messages"], cc["tool_types"], cc["tool_calls"]) == (1, 10.0, 3.0, 4.0)
    assert refinement["paper"] == {"messages": 46.0, "tool_types": 8.6, "tool_calls": 16.3}
    assert refinement["tool_ceiling"] == {"environments": 1, "mean": 4.0, "below_paper": 1}


def test_per_operator_produced_simulated_verified_dropped(refinement):
    ops = refinement["operators"]
    row = {op: (r["produced"], r["simulated"], r["verified"], r["dropped"]) for op, r in ops.items()}
    assert row == {"composed": (2, 2, 1, 1), "long_context": (1, 1, 1, 0), "branch": (0, 0, 0, 1),
                   "ambiguous": (0, 0, 0, 1), "policy_refusal": (1, 1, 0, 1), "error_condition": (0, 0, 0, 1),
                   "multi_goal": (0, 0, 0, 0)}
    assert ops["error_condition"]["drop_codes"] == {"order_conflict": 1}
    assert ops["composed"]["drop_codes"] == {"unverified": 1}
    assert ops["branch"]["examples"] == ["not_applicable: no write with a precondition [task t0]"]
    assert (ops["multi_goal"]["in_composed"], ops["error_condition"]["in_composed"]) == (1, 1)
    assert ops["long_context"]["in_composed"] == 0


def test_drop_lines_stay_apart_for_different_tasks():
    lines = TaskRefinement(drops=[Drop(operator="branch", parent="t0", code="not_applicable", reason="r"),
                                  Drop(operator="branch", parent="t1", code="not_applicable", reason="r")]).drop_lines()
    assert len(set(lines)) == 2


def test_audit_prints_and_json_includes_the_refinement_figures(run_dir):
    res = runner.invoke(app, ["audit", str(run_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "repetition_share 0.333" in res.output and "new_capability_share 0.500" in res.output
    assert "paper 46 / 8.6 / 16.3" in res.output
    assert "policy_refusal: produced 1, simulated 1, verified 0, dropped 1 (unverified 1)" in res.output
    res = runner.invoke(app, ["audit", str(run_dir), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["refinement"]["repetition_share"] == 0.333
    assert data["refinement"]["operators"]["composed"]["verified"] == 1


def test_gem_run_then_gem_audit_counts_the_refine_stages_drops(tmp_path):
    """End to end: the refine stage stores its drop lines, and `gem audit` counts them per operator."""
    from tests.tools_runtime.test_refine_branches import PAGE

    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "autologin", "text": PAGE}) + "\n", encoding="utf-8")
    cfg = Path(__file__).resolve().parents[2] / "configs" / "offline.yaml"
    res = runner.invoke(app, ["run", str(cfg), "--input", str(docs), "--out", str(tmp_path / "run"), "-q",
                              "--no-report"])
    assert res.exit_code == 0, res.output
    r = audit_run(tmp_path / "run")["refinement"]
    assert r["verified"] >= 1 and r["repetition_share"] is not None and r["new_capability_share"] is not None
    ops = r["operators"]
    assert ops["composed"]["verified"] >= 1
    # Without a judge the refusal the text's rule allows is left out of the composed task, and said so.
    assert ops["policy_refusal"]["drop_codes"].get("needs_judge", 0) >= 1
    assert r["tool_ceiling"]["environments"] == 1
