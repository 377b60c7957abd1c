"""The rule-based extractor: step shapes, naming, parameters, rejections, and the real corpus."""

from __future__ import annotations

import asyncio
import json

import pytest

from gem_agents.ingest import read_documents
from gem_agents.stages.extract import check_simulatable
from gem_agents.stages.offline_extractor import draft_tool, extract_offline
from tests.helpers import rollout
from tools_runtime.binding import bind_tools
from tools_runtime.exec_graph import parse_graph
from tools_runtime.records import Document
from tools_runtime.scenario import build_scenario

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

RECIPE = """TITLE: COOK ZUCCHINI (https://www.wikihow.com/Cook-Zucchini)

STEP 1. Finely chop the garlic clove. Use a cutting board.

STEP 2. Heat olive oil in a large frying pan over medium-high heat.

STEP 3. Crack 3 eggs into a bowl and beat them.
"""


def wf(text: str, doc_id: str = "d"):
    res = extract_offline(Document(id=doc_id, text=text))
    assert res.workflow is not None, res.rejected
    return res.workflow


def params(workflow, name):
    return workflow.tool(name).parameters["properties"]


def test_gnome_steps_sub_actions_and_ui_labels():
    w = wf(BOOKLET)
    assert w.title == "Print a booklet"
    names = [t.name for t in w.tools]
    assert names == ["open_print_dialog", "click_properties_button", "select_orientation", "click_ok",
                     "select_range_copies", "set_page_numbers", "select_include", "click_print"]
    assert params(w, "select_orientation")["orientation"]["enum"] == ["Landscape"]
    assert params(w, "select_range_copies")["range_copies"]["enum"] == ["Pages"]
    assert params(w, "set_page_numbers")["page_numbers"]["enum"] == ["4,1,2,3", "8,1,2,7,6,3,4,5"]
    # The repeated step is one tool that knows both values, not a second node (which would be a cycle).
    assert params(w, "select_include")["include"]["enum"] == ["Front sides / right pages", "Back sides / left pages"]
    assert w.execution_graph == "->".join(f"({n})" for n in names)
    bound = bind_tools(w.tools)
    assert bound["select_orientation"].op == "update" and bound["click_print"].op == "action"


def test_tldr_page_is_one_stage_of_alternatives_with_placeholder_params():
    w = wf(TLDR)
    assert w.title == "Count lines, words, and bytes with wc"
    stages = parse_graph(w.execution_graph).chains[0]
    assert len(stages) == 1 and stages[0] == ["count_lines", "count_words", "count_characters"]
    assert set(params(w, "count_lines")) == {"file"}
    assert "wc {{[-l|--lines]}} {{path/to/file}}" in w.tool("count_lines").description


def test_wikihow_recipe_steps_amounts_and_adverbs():
    w = wf(RECIPE)
    assert w.title == "Cook zucchini"
    assert [t.name for t in w.tools] == ["chop_garlic_clove", "heat_olive_oil", "crack_eggs"]
    assert params(w, "crack_eggs")["amount"]["enum"] == ["3"]


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


def test_at_most_twelve_tools():
    text = "\n".join(f"{i}. Click the Button{i} button." for i in range(1, 20))
    assert len(wf(text).tools) == 12


def _corpus(corpus_path):
    labels = {}
    for line in corpus_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        labels[row["id"]] = row["label_hint"]
    docs, _ = read_documents(corpus_path)
    return labels, docs


def test_most_procedural_corpus_docs_give_simulatable_workflows(corpus_path):
    """Floor: ≥ 70% of label_hint=procedural documents (any segment) extract, build and verify."""
    labels, docs = _corpus(corpus_path)

    async def main() -> dict[str, bool]:
        ok: dict[str, bool] = {}
        for doc in docs:
            parent = str(doc.meta.get("parent") or doc.id)
            if labels[parent] != "procedural" or ok.get(parent):
                continue
            res = extract_offline(doc)
            ok[parent] = res.workflow is not None and not await check_simulatable(res.workflow)
        return ok

    ok = asyncio.run(main())
    rate = sum(ok.values()) / len(ok)
    assert len(ok) == sum(1 for v in labels.values() if v == "procedural")
    assert rate >= 0.7, sorted(d for d, v in ok.items() if not v)


def test_whole_offline_chain_on_a_real_gnome_page(corpus_path):
    """text → workflow → scenario → scripted rollout → verified trajectory, for a real GNOME help page."""
    _, docs = _corpus(corpus_path)
    doc = next(d for d in docs if d.id == "gnome-help:bluetooth-remove-connection")
    w = extract_offline(doc).workflow
    assert w is not None
    assert [t.name for t in w.tools] == ["open_activities_overview", "click_bluetooth", "select_device",
                                         "disable_connection"]
    traj = rollout(build_scenario(w, 0))
    assert traj.verdict is not None and traj.verdict.passed, traj.verdict
    called = [c["function"]["name"] for m in traj.messages if m["role"] == "assistant"
              for c in m.get("tool_calls") or []]
    assert called == [t.name for t in w.tools]
    assert traj.messages[0]["role"] == "user" and "disconnect a bluetooth device" in traj.messages[0]["content"].lower()
