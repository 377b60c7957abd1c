"""The rule-based extractor: step shapes, naming, parameters, rejections, and the real corpus."""

from __future__ import annotations

import asyncio
import json

import pytest

from gem_agents.audit import declared_noop
from gem_agents.ingest import read_documents
from gem_agents.roles_factory import make_roles
from gem_agents.stages.offline_extractor import draft_tool, extract_offline
from gem_agents.stages.tasks import write_tasks_offline
from graphs.rollouts import run_dialogue
from tools_runtime.env_validate import errors, grounding, ui_gesture_reason, validate_environment
from tools_runtime.exec_graph import parse_graph
from tools_runtime.records import Document
from tools_runtime.tasks import scenario_from_task

BOOKLET = """# Print a booklet
To print:
1. Open the print dialog. This can normally be done through Print in the menu.
2. Click the Properties… button
   In the Orientation drop-down list, make sure that Landscape is selected.
   Click OK to go back to the print dialog.
3. Under Range and Copies, choose Pages.
   Type the numbers of the pages in this order:
   Examples:
   4 page booklet: Type 4,1,2,3
   8 page booklet: Type 8,1,2,7,6,3,4,5
4. Under Page Sides, in the Include drop-down list, select Front sides / right pages.
5. Click Print.
6. Open the print dialog.
7. Under Page Sides, in the Include drop-down list, select Back sides / left pages.
"""

TLDR = """# wc

> Count lines, words, and bytes.

- Count all lines in a file:

`wc {{[-l|--lines]}} {{path/to/file}}`

- Count all words in a file:

`wc {{[-w|--words]}} {{path/to/file}}`

- Count all [c]haracters in a file:

`wc {{[-m|--chars]}} {{path/to/file}}`
"""

def wf(text: str, doc_id: str = "d"):
    res = extract_offline(Document(id=doc_id, text=text))
    assert res.workflow is not None, res.rejected
    return res.workflow


def params(workflow, name):
    return workflow.tool(name).parameters["properties"]


def test_gestures_fold_into_the_capability_they_complete():
    """Open/click/OK steps are no tools: the value steps before Print become one print_document call."""
    w = wf(BOOKLET)
    assert w.title == "Print a booklet"
    assert [t.name for t in w.tools] == ["list_print_jobs", "print_document"]
    effect = w.effects["print_document"]
    assert effect.kind == "create" and effect.entity == "print_job"
    assert {x.field for x in effect.writes} == {"orientation", "range_copies", "page_numbers", "include"}
    assert params(w, "print_document")["orientation"]["enum"] == ["Landscape"]
    assert params(w, "print_document")["page_numbers"]["enum"] == ["4,1,2,3", "8,1,2,7,6,3,4,5"]
    assert params(w, "print_document")["include"]["enum"] == ["Front sides / right pages", "Back sides / left pages"]
    assert not any(ui_gesture_reason(t, w.effects.get(t.name)) for t in w.tools)
    assert not errors(validate_environment(w, BOOKLET))
    assert w.execution_graph == "(list_print_jobs)->(print_document)"


def test_switches_and_unlock_become_settings_session_and_policy(corpus_path):
    doc = next(d for d in _corpus(corpus_path)[1] if d.id == "gnome-help:user-autologin")
    w = extract_offline(doc).workflow
    assert w is not None
    assert w.effects["unlock_settings"].kind == "session"
    login = w.effects["set_automatic_login"]
    assert login.kind == "update" and login.key == "account_name" and login.requires_session
    assert params(w, "set_automatic_login")["automatic_login"]["type"] == "boolean"
    rule = w.policy[0]
    assert rule.strength == "must" and rule.tools == ["set_automatic_login"] and "Unlock" in rule.text
    assert any("cannot change this setting" in r.text for r in w.policy)  # the page's own words


def test_tldr_page_is_one_stage_of_command_capabilities_on_files():
    w = wf(TLDR)
    assert w.title == "Count lines, words, and bytes with wc"
    stages = parse_graph(w.execution_graph).chains[0]
    assert len(stages) == 1 and stages[0] == ["list_files", "count_lines", "count_words", "count_characters"]
    assert set(params(w, "count_lines")) == {"file"}
    assert w.effects["count_lines"].kind == "read" and w.effects["count_lines"].key == "file"
    assert "wc {{[-l|--lines]}} {{path/to/file}}" in w.tool("count_lines").description
    (rec,) = w.initial_state
    assert rec.values["path"] == "path/to/file" and rec.sources["path"].kind == "text"
    a, b = rec.sources["path"].span
    assert TLDR[a:b] == "path/to/file"


def test_steps_without_values_are_rejected_not_emitted():
    res = extract_offline(Document(id="c", text="\n".join(f"{i}. Click the Button{i} button." for i in range(1, 6))))
    assert res.workflow is None and res.rejected[0].startswith("no capability: every step is a UI gesture")


@pytest.mark.parametrize("sentence,name,keys", [
    ("Switch the Automatic Login switch to on.", "enable_automatic_login", []),
    ("In the device dialog box, switch the Connection switch to off.", "disable_connection", []),
    ("Toggle Hot Corner on or off under General.", "toggle_hot_corner", ["enabled"]),
    ("Select the Use Printer by Default checkbox.", "enable_use_printer_default", []),
    ("In the General tab, under Copies, check Reverse.", "enable_reverse", []),
    ("Press Ctrl+P to open the Print dialog.", "open_print_dialog", []),
    ("Select the device which you want to disconnect from the list.", "select_device", ["device_name"]),
    ("Start typing the name of the city into the search.", "search_city", ["city_name"]),
    ("Open the Activities overview and start typing Bluetooth.", "open_activities_overview", ["search_text"]),
    ("Remove the old battery.", "remove_old_battery", ["battery_name"]),
])
def test_step_naming(sentence, name, keys):
    draft = draft_tool(sentence)
    assert draft is not None and draft.name == name
    assert sorted(draft.params) == keys


def test_non_steps_give_no_tool():
    assert draft_tool("A dialog will open where you can enter your credentials.") is None
    assert draft_tool("Do not drink salt water.") is None


def test_rejections_have_reasons():
    res = extract_offline(Document(id="x", text="Anarchism is a political philosophy and movement."))
    assert res.workflow is None and res.rejected[0].startswith("fewer than 2 steps")
    res = extract_offline(Document(id="y", text="1. The sky is blue.\n2. The grass is green.\n"))
    assert res.workflow is None and "start with an action verb" in res.rejected[0]


def _corpus(corpus_path):
    labels = {}
    for line in corpus_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        labels[row["id"]] = row["label_hint"]
    docs, _ = read_documents(corpus_path)
    return labels, docs


def test_machine_procedure_docs_give_grounded_environments_without_noops(corpus_path):
    """corpus_dev's machine-procedure pages: valid environments, no no-op tool, offline tasks that run,
    and at least five environments whose values are mostly the text's (grounding ≥ 0.6)."""
    rows = [json.loads(x) for x in corpus_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    texts = {r["id"]: r["text"] for r in rows if r.get("machine_procedure")}
    valid, grounded = [], []
    for doc_id, text in texts.items():
        res = extract_offline(Document(id=doc_id, text=text))
        if res.workflow is None:
            assert res.rejected, doc_id
            continue
        w = res.workflow
        assert not errors(validate_environment(w, text)), doc_id
        assert not [n for n, e in w.effects.items() if declared_noop(e)], doc_id
        assert set(w.effects) == {t.name for t in w.tools}
        tasks, rejected = write_tasks_offline(w, text, k=3)
        assert tasks and all(t.offline for t in tasks), (doc_id, rejected)
        valid.append(doc_id)
        if grounding(w, tasks, text).share >= 0.6:
            grounded.append(doc_id)
    assert len(valid) >= 0.8 * len(texts), sorted(set(texts) - set(valid))
    assert len(grounded) >= 5, grounded


def test_whole_offline_chain_on_a_real_gnome_page(corpus_path):
    """text → environment → task (gold run) → scenario → scripted rollout → verified, system message first."""
    _, docs = _corpus(corpus_path)
    doc = next(d for d in docs if d.id == "gnome-help:bluetooth-remove-connection")
    w = extract_offline(doc).workflow
    assert w is not None
    assert [t.name for t in w.tools] == ["list_devices", "set_connection"]
    tasks, _ = write_tasks_offline(w, doc.text, k=1)
    scenario = scenario_from_task(w, tasks[0], 0)
    traj = asyncio.run(run_dialogue(scenario, make_roles(None)))
    assert traj.verdict is not None and traj.verdict.passed, traj.verdict
    called = [c["function"]["name"] for m in traj.messages if m["role"] == "assistant"
              for c in m.get("tool_calls") or []]
    assert called == ["list_devices", "set_connection"]  # the whole procedure: find the device, then change it
    assert traj.messages[0]["role"] == "system" and "Bluetooth" in traj.messages[0]["content"]
    # The whole procedure's request is the page's goal in the user's words, with the facts its steps need.
    assert traj.messages[1]["role"] == "user" and "disconnect a Bluetooth device" in traj.messages[1]["content"]
