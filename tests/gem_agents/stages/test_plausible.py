"""Values a user would really say (gem_agents/stages/plausible.py) and the offline task writer that uses them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.plausible import plausible_value, plausible_values
from gem_agents.stages.tasks import unrelated_write, write_tasks_offline
from tools_runtime.records import Document
from tools_runtime.tasks import Action, Task

SAMPLES = Path(__file__).resolve().parents[3] / "gem_agents" / "samples"
FILLER = re.compile(r"^My \w|^(?:\w+ )?[A-Z][a-z]+ [ABC]$|Living Room PC")


def test_the_text_offers_come_first_and_carry_their_span():
    text = "1. Create a folder named Archive in the Projects folder.\n2. Compress it."
    value, src = plausible_value("add_name", "add", "Create a folder named Archive in the Projects folder", text)
    assert value == "Archive" and src.kind == "text" and text[src.span[0]:src.span[1]] == "Archive"
    meta = "Click + Add to show the menu of available metadata, like Album and Title."
    assert plausible_values("item_name", "item", meta, meta)[0] == "Album"


@pytest.mark.parametrize(("param", "entity", "pattern"), [
    ("forwarding_address", "email_forwarding", r"^[\w.]+@[\w.]+$"),
    ("server_address", "", r"^\w+://"),
    ("printer_name", "printer", r"LaserJet|Brother|Inkjet"),
    ("rooms_name", "room", r"Harbour|Atlas|Room"),
    ("short_name", "printer", r"^[a-z-]+$"),
    ("containing_name", "containing", r"SSD|Drive|Card"),
])
def test_an_invented_value_fits_the_parameter_and_is_marked_invented(param, entity, pattern):
    value, src = plausible_value(param, entity, "", "Some page that names nothing.")
    assert re.search(pattern, value), value
    assert src.kind == "invented"


def test_a_parameter_of_no_known_concept_gets_a_name_from_its_own_noun():
    values = plausible_values("widget_name", "widget")
    assert values == ["Shared widget", "Main widget", "Backup widget"]
    assert not any(FILLER.search(v) for v in values)


def test_offline_tasks_of_the_samples_use_no_filler_values():
    seen = []
    for path in sorted(SAMPLES.glob("*.md")):
        wf = extract_offline(Document(id=path.name, text=path.read_text())).workflow
        if wf is None:
            continue
        tasks, _ = write_tasks_offline(wf, path.read_text(), k=3)
        for t in tasks:
            for info in t.known_info:
                if isinstance(info.value, str):
                    seen.append(info.value)
                    assert not FILLER.search(info.value), (path.name, info.key, info.value)
                    assert info.source.kind in ("text", "invented")
    assert "Archive" in seen and any("@" in v for v in seen), seen


def test_a_request_that_never_asks_for_its_gold_write_is_rejected():
    path = SAMPLES / "book_a_meeting_room.md"
    wf = extract_offline(Document(id="room", text=path.read_text())).workflow
    assert wf is not None
    write = next(t.name for t in wf.tools if wf.effects[t.name].kind == "create")
    spec = wf.tool(write)
    assert spec is not None
    args = {p: "Harbour View" for p in spec.properties}
    task = Task(id="t", env_id=wf.id, instruction="Log in to the office portal.",
                gold_actions=[Action(tool=write, arguments=args)])
    assert unrelated_write(task.instruction, task, wf) is not None
    booked = task.model_copy(update={"instruction": "Please book the Harbour View room for my meeting."})
    assert unrelated_write(booked.instruction, booked, wf) is None
