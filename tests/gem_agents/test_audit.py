"""`gem audit` on a hand-made run: one test per figure, each with numbers a wrong computation would miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.audit import assistant_template, audit_run, load_run, read_labels
from gem_agents.cli import app
from gem_agents.run.store import DocOutcome, RunStore
from tools_runtime.environment import Entity, FieldWrite, StateRecord, ToolEffect, ValueSource
from tools_runtime.records import (
    ExecRecord,
    Failure,
    Provenance,
    Relevance,
    Scenario,
    Trajectory,
    Verdict,
    Workflow,
)
from tools_runtime.tasks import Action, Info, Task
from tools_runtime.toolspec import ToolSpec

runner = CliRunner()

TEXT1 = ("# Set the default printer\nIf you have more than one printer, pick the one you use most.\n"
         "1. Open Printers.\n2. Click the button next to Office Laser.\n3. Select Use Printer by Default.\n")
TEXT2 = "# Check the status\n1. Press the button.\n2. Look at the status light.\n"


def _tool(name: str, **props: str) -> ToolSpec:
    return ToolSpec(name=name, description=name, parameters={
        "type": "object", "properties": {k: {"type": v} for k, v in props.items()}, "required": list(props)})


def _text(quote: str) -> ValueSource:
    return ValueSource(kind="text", quote=quote)


WF1 = Workflow(
    id="d1", doc_id="d1", title="Set the default printer", execution_graph="(list_printers)->(set_default_printer)",
    tools=[_tool("list_printers"), _tool("set_default_printer", printer="string"), _tool("click_ok"),
           _tool("calculate_tip", bill="number", percent="number")],
    effects={
        "list_printers": ToolEffect(kind="read", entity="printer", returns=["name", "default"]),
        "set_default_printer": ToolEffect(kind="update", entity="printer", key="printer", match="name",
                                          writes=[FieldWrite(field="default", value=True)]),
        "click_ok": ToolEffect(kind="update", entity="printer"),  # writes nothing, returns nothing
        "calculate_tip": ToolEffect(kind="compute", formula="bill * percent / 100", returns=["tip"]),
    },
    entities=[Entity(name="printer", key="name", fields={"name": {"type": "string"}, "default": {"type": "boolean"}})],
    initial_state=[
        # 2 counted values (booleans are not), 1 grounded: "Hall Inkjet" claims the text but is not in it.
        StateRecord(entity="printer", values={"name": "Office Laser", "default": False},
                    sources={"name": _text("next to Office Laser"), "default": ValueSource()}),
        StateRecord(entity="printer", values={"name": "Hall Inkjet", "default": False},
                    sources={"name": _text("Hall Inkjet"), "default": ValueSource()}),
    ],
)
# No declared effects: `press_button` binds to the fallback action; `get_status` binds to a read but
# every call in the run returned only a status and changed nothing.
WF2 = Workflow(id="d2", doc_id="d2", title="Check the status", execution_graph="(press_button)->(get_status)",
               tools=[_tool("press_button"), _tool("get_status")])

TASK1 = Task(id="t1", env_id="d1", instruction="Make Office Laser my default printer and work out a tip.",
             known_info=[Info(key="printer", value="Office Laser"),  # invented, but equals a grounded state value
                         Info(key="bill", value=50)],
             gold_actions=[Action(tool="set_default_printer", arguments={"printer": "Office Laser"}),
                           Action(tool="calculate_tip", arguments={"bill": 50, "percent": 15})])
TASK2 = Task(id="t2", env_id="d2", instruction="Check the status light.",
             known_info=[Info(key="light", value="status light", source=_text("the status light"))],
             gold_actions=[Action(tool="press_button"), Action(tool="get_status")])


def _call(i: int, name: str, args: dict) -> dict:
    return {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _traj(tid: str, wf: Workflow, task: Task, *, system: bool, passed: bool, texts: list[str],
          steps: list[ExecRecord] = (), blame: str | None = None, offline: bool = False) -> Trajectory:
    messages = [{"role": "system", "content": "Rules: only the owner may change the default printer."}] if system else []
    messages.append({"role": "user", "content": task.instruction})
    for i, s in enumerate(steps):
        messages.append({"role": "assistant", "content": "", "tool_calls": [_call(i, s.name, s.arguments)]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "name": s.name, "content": json.dumps(s.result)})
    messages += [{"role": "assistant", "content": t} for t in texts]
    verdict = Verdict(passed=passed, blame=blame,  # type: ignore[arg-type]
                      failures=[] if passed else [Failure(code="state_mismatch", reason="x")])
    return Trajectory(id=tid, workflow_id=wf.id, messages=messages, verdict=verdict, steps=list(steps),
                      scenario=Scenario(id=f"{tid}:sc", workflow=wf, task=task),
                      provenance=Provenance(doc_id=wf.doc_id, offline=offline, task_id=task.id))


def _step(name: str, args: dict, result, diff=()) -> ExecRecord:
    return ExecRecord(name=name, arguments=args, ok=True, result=result, state_diff=list(diff))


def build_run(out: Path, *, offline: bool = False) -> Path:
    """Six documents (two segments of one), two environments, five original rollouts."""
    steps1 = [_step("list_printers", {}, {"printers": [{"name": "Office Laser"}]}),
              _step("set_default_printer", {"printer": "Office Laser"}, {"name": "Office Laser", "default": True},
                    [{"op": "update", "field": "default"}]),
              _step("click_ok", {}, {"status": "done"}),
              _step("calculate_tip", {"bill": 50, "percent": 15}, {"tip": 7.5})]
    steps2 = [_step("calculate_tip", {"bill": 50, "percent": 15}, {"tip": 262.99})]
    steps_d2 = [_step("press_button", {}, {"status": "done"}, [{"op": "update", "field": "times"}]),
                _step("get_status", {}, {"status": "done"})]
    t1 = _traj("d1:r0", WF1, TASK1, system=True, passed=True, steps=steps1, offline=offline,
               texts=["I set Office Laser as the default printer."])
    t2 = _traj("d1:r1", WF1, TASK1, system=False, passed=True, steps=steps2, offline=offline,
               texts=["I set Hall Inkjet as the default printer.", "Your tip is 7.5 dollars."])
    t3 = _traj("d1:r2", WF1, TASK1, system=True, passed=False, blame="assistant", texts=["Your tip is 262.99 dollars."])
    t4 = _traj("d2:r0", WF2, TASK2, system=True, passed=False, steps=steps_d2, texts=['I typed "hello world" for you.'])
    t5 = _traj("d2:r1", WF2, TASK2, system=True, passed=False, blame="user", texts=["I typed 'goodbye' for you."])
    rel = Relevance(multi_step=True, summary="s", decided_by="model")
    no = Relevance(multi_step=False, decided_by="prefilter")
    store = RunStore(out)
    store.finish_many([
        DocOutcome(doc_id="d1", status="kept", stage="simulate", text=TEXT1, relevance=rel, workflow=WF1,
                   trajectories=[("original", t1), ("original", t2), ("original", t3)]),
        DocOutcome(doc_id="d2", status="kept", stage="simulate", text=TEXT2, relevance=rel, workflow=WF2,
                   trajectories=[("original", t4), ("original", t5)]),
        DocOutcome(doc_id="d3", status="rejected", stage="filter", text="a poem", relevance=no),
        DocOutcome(doc_id="d4", status="rejected", stage="extract", text="t", relevance=rel,
                   reasons=["extraction rejected: too many tools: 80 (at most 64)"]),
        DocOutcome(doc_id="d5", status="failed", stage="filter", text="t", error="TimeoutError: model timed out"),
        DocOutcome(doc_id="d6#s0", status="rejected", stage="extract", text="t", relevance=rel,
                   reasons=["extraction rejected: graph has a cycle"]),
        DocOutcome(doc_id="d6#s1", status="rejected", stage="filter", text="t", relevance=no),
    ])
    store.close()
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("audit") / "run")


@pytest.fixture(scope="module")
def result(run_dir) -> dict:
    labels = {"d1": True, "d2": False, "d3": True, "d4": None, "d5": True, "d6": True}
    return audit_run(run_dir, labels)


def test_grounding_counts_text_spans_and_values_equal_to_grounded_state(result):
    g = result["grounding"]
    # state: "Office Laser" only ("Hall Inkjet" claims the text but is not in it; booleans are not counted)
    assert g["parts"]["initial_state"] == {"grounded": 1, "total": 2, "share": 0.5}
    # known info: "Office Laser" (equals grounded state) and "status light" (a real quote); 50 is invented
    assert g["parts"]["known_info"] == {"grounded": 2, "total": 3, "share": round(2 / 3, 4)}
    # gold arguments: "Office Laser" only; 50 and 15 come from nowhere in the text
    assert g["parts"]["gold_arguments"] == {"grounded": 1, "total": 3, "share": round(1 / 3, 4)}
    assert g["grounded"] == 4 and g["total"] == 8 and g["value"] == 0.5


def test_noop_tool_share_uses_declarations_bindings_and_observed_calls(result):
    n = result["noop_tool_share"]
    assert n["tools"] == 6
    assert sorted(n["examples"]) == ["d1:click_ok", "d2:get_status", "d2:press_button"]
    assert n["value"] == 0.5


def test_compute_correct_reevaluates_the_formula(result):
    c = result["compute_correct"]
    assert c["calls"] == 2 and c["correct"] == 1 and c["value"] == 0.5
    assert c["wrong"][0]["result"] == 262.99 and c["wrong"][0]["expected"] == pytest.approx(7.5)


def test_system_prompt_share_counts_only_verified_trajectories(result):
    s = result["system_prompt_share"]
    assert (s["with_system"], s["trajectories"], s["value"]) == (1, 2, 0.5)


def test_template_diversity_masks_entities_quotes_and_digits(result):
    t = result["template_diversity"]
    assert t["assistant_messages"] == 6
    assert t["templates"] == 3 and t["value"] == 0.5
    assert assistant_template("Printed 12 pages of 'a b'", ["Printed"]) == "<v> <n> pages of <q>"
    assert assistant_template("Don't worry, it's done.") == "don't worry, it's done."  # apostrophes are not quotes


def test_funnel_counts_each_stage_and_the_reasons_for_drops(result):
    f = result["funnel"]
    assert (f["documents"], f["relevant"], f["environment_valid"], f["tasks_valid"]) == (7, 4, 2, 2)
    assert (f["rollouts"], f["rollouts_verified"]) == (5, 2)
    assert f["drops"]["not_relevant"] == {"not relevant (prefilter)": 2, "TimeoutError": 1}
    assert f["drops"]["no_environment"] == {"extraction rejected: too many tools": 1,
                                            "extraction rejected: graph has a cycle": 1}
    assert f["drops"]["rollout_failed"] == {"state_mismatch": 3}


def test_blame_counts_failed_rollouts(result):
    assert result["blame"] == {"assistant": 1, "user": 1, "unattributed": 1}


def test_relevance_precision_recall_by_source_document_nulls_left_out(result):
    r = result["relevance"]
    # predicted: d1 T, d2 T, d3 F, d4 T (label null: left out), d5 F (no answer), d6 T (one segment)
    assert (r["tp"], r["fp"], r["fn"], r["tn"], r["left_out"]) == (2, 1, 2, 0, 1)
    assert r["precision"] == round(2 / 3, 4) and r["recall"] == 0.5


def test_offline_flag_follows_provenance(run_dir, tmp_path):
    assert load_run(run_dir).offline is False
    assert load_run(build_run(tmp_path / "off", offline=True)).offline is True


def test_cli_json_and_labels_file(run_dir, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": k, "text": "x", "machine_procedure": v}) + "\n"
                              for k, v in {"d1": True, "d2": False, "d3": None}.items()))
    assert read_labels(labels) == {"d1": True, "d2": False, "d3": None}
    res = runner.invoke(app, ["audit", str(run_dir), "--json", "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["grounding"]["value"] == 0.5 and data["relevance"]["tp"] == 1 and data["relevance"]["fp"] == 1
    human = runner.invoke(app, ["audit", str(run_dir)])
    assert human.exit_code == 0 and "noop_tool_share" in human.output and "funnel" in human.output
    missing = runner.invoke(app, ["audit", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_funnel_reads_stored_tasks_and_their_rejections(tmp_path):
    from tools_runtime.tasks import TaskRejection

    rel = Relevance(multi_step=True, decided_by="model")
    wf7 = WF1.model_copy(update={"id": "d7", "doc_id": "d7"})
    unused = TASK1.model_copy(update={"id": "t-never-simulated"})  # valid, stored, not yet played
    t1 = _traj("d1:r0", WF1, TASK1, system=True, passed=True, texts=["Done."])
    store = RunStore(tmp_path / "run")
    store.finish_many([
        DocOutcome(doc_id="d1", status="kept", stage="simulate", text=TEXT1, relevance=rel, workflow=WF1,
                   trajectories=[("original", t1)], tasks=[TASK1, unused],
                   task_rejections=[TaskRejection(task_id="d1:t9", code="gold_failed", reason="not_found")]),
        DocOutcome(doc_id="d7", status="rejected", stage="tasks", text=TEXT1, relevance=rel, workflow=wf7,
                   reasons=["no valid task", "task rejected: empty_criteria: changes nothing"],
                   task_rejections=[TaskRejection(task_id="d7:t0", code="empty_criteria", reason="x"),
                                    TaskRejection(task_id="d7:t1", code="gold_failed", reason="y")]),
    ])
    store.close()
    f = audit_run(tmp_path / "run")["funnel"]
    assert (f["relevant"], f["environment_valid"], f["tasks_valid"], f["tasks_rejected"]) == (2, 2, 2, 3)
    assert f["drops"]["tasks_rejected"] == {"gold_failed": 2, "empty_criteria": 1}
    assert f["drops"]["environment_without_task"] == {"no valid task": 1}
    assert (f["rollouts"], f["rollouts_verified"]) == (1, 1)


def test_grounding_of_original_tasks_leaves_refined_ones_out(tmp_path):
    refined = TASK1.model_copy(update={"id": "t1+multi_goal", "parent": "t1", "operator": "multi_goal",
                                       "known_info": [Info(key="bill", value=80)],
                                       "gold_actions": [Action(tool="calculate_tip", arguments={"bill": 80, "percent": 20})]})
    rel = Relevance(multi_step=True, decided_by="model")
    t1 = _traj("d1:r0", WF1, TASK1, system=True, passed=True, texts=["Done."])
    t2 = _traj("d1:ref0", WF1, refined, system=True, passed=True, texts=["Done."])
    store = RunStore(tmp_path / "run")
    store.finish(DocOutcome(doc_id="d1", status="kept", stage="refine", text=TEXT1, relevance=rel, workflow=WF1,
                            trajectories=[("original", t1), ("refined", t2)]))
    store.close()
    res = audit_run(tmp_path / "run")
    g = res["grounding"]
    assert g["tasks"] == {"all": 2, "originals": 1}
    # originals: state 1/2, TASK1 known 1/2 and gold 1/3 → 3/7; the refined task adds 0/1 known and 0/2 gold
    assert g["originals"] == {"value": round(3 / 7, 4), "grounded": 3, "total": 7}
    assert (g["grounded"], g["total"]) == (3, 10)
    assert res["funnel"]["tasks_valid"] == 1
