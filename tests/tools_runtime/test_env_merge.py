"""Merging the environments of several pages of one product area (tools_runtime.env_merge)."""

from __future__ import annotations

from tools_runtime.env_merge import merge_environments, remap_task
from tools_runtime.env_validate import errors, validate_environment
from tools_runtime.refine_tasks import validate
from tools_runtime.tasks import Action, Info, Task
from tools_runtime.workflow_io import load_workflow

DATA = "tests/data/add_first"


def _parts():
    printers = load_workflow(f"{DATA}/printer_setup.json")
    folders = load_workflow(f"{DATA}/files_templates.json")
    # A second printing page: its own `list_printers` (another description) and a record that contradicts
    # the first page's (Hall-Inkjet is the default there).
    other = printers.model_copy(update={
        "id": "printer_other", "policy": [],
        "tools": [t.model_copy(update={"description": "Show every printer."}) if t.name == "list_printers" else t
                  for t in printers.tools],
        "initial_state": [r.model_copy(update={"values": {**r.values, "is_default": not r.values["is_default"]}})
                          for r in printers.initial_state]})
    return [("page:printers", printers), ("page:folders", folders), ("page:other", other)]


def test_merge_renames_what_clashes_and_keeps_each_tools_source():
    merged = merge_environments(_parts(), env_id="group:test")
    wf = merged.workflow
    names = {t.name for t in wf.tools}
    assert {"list_printers", "add_printer", "set_default_printer", "list_folders", "create_folder",
            "save_template"} <= names
    # The other page's listing differs: renamed, not overwritten; its records contradict: its entity too.
    assert merged.tools["page:other"]["list_printers"] == "list_printers_2"
    assert merged.entities["page:other"]["printer"] == "printer_2"
    assert wf.effects["list_printers_2"].entity == "printer_2"
    assert merged.sources["list_printers"] == "page:printers" and merged.sources["list_printers_2"] == "page:other"
    assert merged.sources["save_template"] == "page:folders"
    assert any("list_printers → list_printers_2" in line for line in merged.renamed())
    assert errors(validate_environment(wf)) == []
    assert wf.steps[merged.step_offset["page:folders"]].startswith("Create a document")


def test_every_pages_task_runs_its_gold_on_the_merged_environment():
    merged = merge_environments(_parts(), env_id="group:test")
    tasks = {
        "page:printers": Task(id="p", env_id="printer_setup_env", instruction="Make Hall-Inkjet the default.",
                              known_info=[Info(key="printer_name", value="Hall-Inkjet")], cites=[2],
                              gold_actions=[Action(tool="list_printers"),
                                            Action(tool="set_default_printer", arguments={"printer_name": "Hall-Inkjet"})]),
        "page:other": Task(id="o", env_id="printer_other", instruction="Which printers are there?",
                           communicate_info=["Office-LaserJet"], gold_actions=[Action(tool="list_printers")]),
    }
    for doc, task in tasks.items():
        moved = remap_task(task, merged, doc)
        got = validate(merged.workflow, moved, "group")
        assert isinstance(got, Task), got
        assert got.expected_state_hash and got.meta["source_doc"] == doc
    moved = remap_task(tasks["page:other"], merged, "page:other")
    assert moved.gold_actions[0].tool == "list_printers_2"
    assert remap_task(tasks["page:printers"], merged, "page:printers").cites == [2]


def test_a_page_whose_graph_orders_a_shared_tool_the_other_way_is_left_out_with_the_reason():
    printers = load_workflow(f"{DATA}/printer_setup.json")
    backwards = printers.model_copy(update={"id": "backwards", "execution_graph":
                                            "(set_default_printer)->(add_printer)->(list_printers)"})
    merged = merge_environments([("a", printers), ("b", backwards)], env_id="g")
    assert "b" in merged.skipped and "cycle" in merged.skipped["b"]
    assert merged.docs == ["a"]


def test_a_page_kept_apart_gets_entities_of_its_own():
    printers = load_workflow(f"{DATA}/printer_setup.json")
    again = printers.model_copy(update={"id": "again"})
    shared = merge_environments([("a", printers), ("b", again)], env_id="g")
    assert shared.entities["b"]["printer"] == "printer" and len(shared.workflow.entities) == 1
    # Kept apart (its task broke where its records met the other page's), whichever page came first.
    for apart in ("a", "b"):
        split = merge_environments([("a", printers), ("b", again)], env_id="g", apart={apart})
        assert {e.name for e in split.workflow.entities} == {"printer", "printer_2"}
        assert errors(validate_environment(split.workflow)) == []
