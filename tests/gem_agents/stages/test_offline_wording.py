"""What a reader sees in offline outputs (issues 17/19): labels that are nouns, requests in English, an
assistant that answers what was asked and does not ask for what it was told, a user that re-asks an empty reply.

The label and request checks are plain text checks written here, independent of the generators' helpers,
so a generator that slips back fails. The corpus test needs ../shared; every other test is self-contained.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gem_agents.ingest import read_documents
from gem_agents.policies.chat import settle_user_reply
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.stages.offline_env import _title_place
from gem_agents.stages.offline_extractor import draft_tool, extract_offline
from gem_agents.stages.tasks import _goal, write_tasks_offline
from gem_agents.user.dialogue_text import find_fact, question_sentences
from gem_agents.user.scripted import scripted_user
from graphs.roles import STOP_TOKEN, RoleView
from tests.helpers import rollout
from tools_runtime.records import Document, Goal, Workflow
from tools_runtime.tasks import Action, Task, scenario_from_task

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "gem_agents" / "samples"

# --- detectors ---------------------------------------------------------------------------------------------

NOT_NOUNS = frozenset("""
above below beside behind near inside outside across along around between among against without within over under
after before from with by for of in on at to up down out off it them you your my other another some any each
add create make get put take give find open close select choose enter remove delete adjust
large small long strong big little dry wet hot cold new old grated sliced chopped fresh
""".split())
ING_NOUNS = frozenset("setting settings building meeting sharing multitasking forwarding string thing booking".split())


def head(label: str) -> str:
    words = [w for w in label.split("_") if w]
    while len(words) > 1 and words[-1] in ("name", "id", "settings"):
        words.pop()
    return words[-1] if words else ""


def bad_label(label: str) -> str:
    """Why an entity or field label is no noun a person uses, or ''."""
    if label in ("panel", "path", "last_action"):
        return ""
    w = head(label)
    if w in NOT_NOUNS:
        return f"{label}: '{w}' is no noun"
    if w.endswith("ing") and w not in ING_NOUNS:
        return f"{label}: '{w}' is a participle"
    parts = label.split("_")
    if len(parts) >= 2 and parts[-1] in ("name", "id") and re.fullmatch(r"[a-z]{3,}[^s]s", parts[-2]):
        return f"{label}: a plural in front of '{parts[-1]}'"
    if re.search(r"(?:^|_)settings_settings$", label):
        return f"{label}: settings twice"
    return ""


def label_defects(workflow: Workflow) -> list[str]:
    out = []
    for ent in workflow.entities:
        out += [why for why in [bad_label(ent.name), *(bad_label(f) for f in ent.fields)] if why]
    return out


def bad_description(description: str) -> str:
    """A tool description's first sentence (a request phrase for refinement) that is no English."""
    first = re.split(r"(?<=[.!?])\s", description.strip())[0]
    # "Sign in", "Log on", "Turn on" are phrasal verbs, not a verb missing its object
    if re.match(r"^(?!(?:Sign|Log|Turn|Switch|Check|Plug|Zoom) )[A-Z][a-z]+ (?:in|on|at)\b", first):
        return first  # "Resize in a filesystem"
    if re.match(r"^\w+ (?:button|tab|menu)\b", first):
        return first  # "Rename button in using metadata"
    if re.search(r"\b(\w+) \1\b", first, re.IGNORECASE):
        return first  # "Settings settings", "the the woods"
    return ""


def bad_request(text: str) -> str:
    m = re.search(r"\bI want to (\w+)", text)
    if m and re.fullmatch(r"[a-z]+[^s]s", m.group(1).lower()):
        return f"'I want to {m.group(1)}' (a noun, not a verb)"
    m = re.search(r"\b[Tt]he ([a-z][a-z ]{1,40}?) (?:is|are) (?:my|the) \1\b", text)
    if m:
        return "a value that is its own field name"
    if re.search(r"\bplease \w+ (?:in|on) (?:a|the)\b", text, re.IGNORECASE):
        return "a verb without its object"
    return ""


def test_detectors_flag_what_the_lead_saw():
    assert bad_label("containing") and bad_label("containing_name") and bad_label("files_name")
    assert bad_label("rooms_name") and bad_label("add") and bad_label("above_name") and bad_label("settings_settings")
    assert not bad_label("room_name") and not bad_label("account_type") and not bad_label("sharing_settings")
    assert bad_description("Resize in a filesystem. Text: …") and bad_description("Rename button in using metadata.")
    assert bad_description("Show the current Settings settings (every field).")
    assert not bad_description("Resize the chosen disk (Disks). Text: …")
    assert bad_request("Good morning. I want to templates for commonly-used document types.")
    assert bad_request("The passwords are my passwords.") and bad_request("There's more — please resize in a filesystem.")
    assert not bad_request("Hi, I want to book a meeting room. The room name is Harbour View.")


# --- the extractor's labels ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("step", "key"), [
    ("Select the disk containing the filesystem in question from the list.", "disk_name"),
    ("Select the files from last year.", "file_name"),
    ("Find small, dry material to use as tinder.", "material_name"),
])
def test_object_phrases_name_the_noun(step, key):
    drafted = draft_tool(step, lenient=True)
    assert drafted is not None and key in drafted.params, (drafted.name if drafted else None, drafted and drafted.params)


def test_a_preposition_or_pronoun_is_never_the_object():
    drafted = draft_tool("Insert the pick above the wrench.", lenient=True)
    assert drafted is not None and "above" not in drafted.name
    made = draft_tool("Make him create a sense of order.", lenient=True)
    assert made is None or "create" not in made.name.split("_")[1:], made.name
    cheese = draft_tool("Add any grated or sliced cheese you want.", lenient=True)
    assert cheese is not None and list(cheese.params) == ["cheese_name"], cheese


def test_a_title_place_has_no_article_or_purpose():
    assert _title_place("How to survive in the woods") == "woods"
    assert _title_place("Rename music files using metadata") == "music files"
    assert _title_place("Templates for commonly-used document types") == "Templates"


def _samples() -> dict[str, Workflow]:
    docs, _ = read_documents(SAMPLES)
    out = {}
    for d in docs:
        res = extract_offline(d)
        if res.ok:
            out[d.id] = res.workflow
    return out


def test_demo_samples_have_noun_labels_and_request_descriptions():
    envs = _samples()
    assert len(envs) >= 4
    room = envs["book_a_meeting_room.md"]
    assert {t.name for t in room.tools} >= {"book_room", "list_rooms"}
    assert any("room_name" in e.fields for e in room.entities)
    archive = envs["archive_old_files.md"]
    assert not any("files_name" in e.fields for e in archive.entities)
    for doc_id, wf in envs.items():
        assert label_defects(wf) == [], doc_id
        assert [bad_description(t.description) for t in wf.tools if bad_description(t.description)] == [], doc_id


def test_corpus_environments_have_noun_labels(corpus_path):
    """Every environment the extractor makes from the dev corpus (relevant or not): no label after a verb,
    preposition or participle, no plural before name/id; tool descriptions read as requests."""
    docs, _ = read_documents(corpus_path, max_segments=4)
    found: list[str] = []
    requests: list[str] = []
    n = 0
    for d in docs:
        res = extract_offline(d)
        if not res.ok:
            continue
        n += 1
        wf = res.workflow
        found += [f"{d.id}: {why}" for why in label_defects(wf)]
        found += [f"{d.id}: {t.name}: {bad}" for t in wf.tools if (bad := bad_description(t.description))]
        tasks, _ = write_tasks_offline(wf, d.text, k=3)
        requests += [f"{d.id}: {why}: {t.instruction[:120]}" for t in tasks if (why := bad_request(t.instruction))]
    assert n >= 50
    # Two labels stay: "a solar water still" (a noun the check cannot tell from the adverb) and "others".
    assert len(found) <= 4, found
    assert requests == [], requests


def test_a_title_that_names_a_thing_is_no_verb():
    assert _goal("Templates for commonly-used document types").startswith("sort out ")
    assert _goal("Set the default printer") == "set the default printer"


# --- facts the assistant reads -------------------------------------------------------------------------------

def test_switch_phrasings_are_read_and_on_or_off_is_no_fact():
    assert find_fact(["I'd like active screen edges turned off."], "active_screen_edges") == "off"
    assert find_fact(["Keep hot corner switched on, please."], "hot_corner") == "on"
    assert find_fact(["Could you turn connection on or off for the chosen device?"], "connection") is None
    assert find_fact(["Could you turn connection on or off for it? Turn connection off."], "connection") == "off"
    # A checkbox the request names is a stated switch; "check the account type" states nothing.
    assert find_fact(["Please select the Use Printer by Default checkbox."], "use_printer_default") == "on"
    assert find_fact(["In the General tab, under Copies, check Reverse."], "reverse") == "on"
    assert find_fact(["Could you check the account type for kim?"], "account_type") is None


RENAME = """# Rename music files
1. Open Files.
2. Select each item to place it into the filename template in the order you want.
3. Click the Rename button to apply the pattern.
"""


def test_a_button_press_is_said_by_its_verb_not_read_back():
    wf = _env(RENAME, "rename")
    tool = next(t for t in wf.tools if t.name.startswith("rename_"))
    assert all("button" not in str(w.value or "").lower() for w in wf.effects[tool.name].writes)
    tasks, _ = write_tasks_offline(wf, RENAME, k=1)
    traj = rollout(scenario_from_task(wf, tasks[0], 0))
    done = next(line for line in _assistant_lines(traj) if "renamed" in line)
    assert "last action" not in done.lower(), done


SCREEN_EDGES = """# Enable or disable window resizing at screen edges
1. Open the Activities overview and start typing Multitasking.
2. Click on Multitasking to open the panel.
3. Toggle Active Screen Edges on or off under General.
"""

AUTOLOGIN = """# Log in automatically
1. Open the Activities overview and start typing System.
2. Select Settings > System from the results. This will open the System panel.
3. Select Users to open the panel.
4. Press Unlock in the top right corner and type in your password when prompted.
5. If it is a different user account that you want to log into automatically, select the account under Other Users.
6. Switch the Automatic Login switch to on.
If your account type is Standard, you cannot change this setting.
"""


def _env(text: str, doc_id: str) -> Workflow:
    res = extract_offline(Document(id=doc_id, text=text))
    assert res.ok, res.rejected
    return res.workflow


def _assistant_lines(traj) -> list[str]:
    return [str(m.get("content") or "") for m in traj.messages if m["role"] == "assistant" and m.get("content")]


def test_the_assistant_never_asks_for_a_switch_the_user_set():
    wf = _env(SCREEN_EDGES, "edges")
    tasks, _ = write_tasks_offline(wf, SCREEN_EDGES, k=1)
    asked_again = []
    for seed in range(4):  # every phrasing the scripted user has for a switch
        traj = rollout(scenario_from_task(wf, tasks[0], seed))
        assert traj.verdict.passed if traj.verdict else True
        asked_again += [q for line in _assistant_lines(traj) for q in question_sentences(line)
                        if "screen edges" in q.lower()]
    assert asked_again == []


def test_a_switch_is_asked_for_as_on_or_off():
    wf = _env(SCREEN_EDGES, "edges")
    tool = next(t.name for t in wf.tools if t.name.startswith("set_"))
    task = Task(id="edges:q", env_id="edges", instruction="Hi, could you change the screen edges setting for me?",
                known_info=[{"key": "active_screen_edges", "value": False, "source": {"kind": "invented"}}],
                gold_actions=[Action(tool=tool, arguments={"active_screen_edges": False})])
    sc = scenario_from_task(wf, task, 0).model_copy(update={"goals": [
        Goal(description="Hi, could you change the screen edges setting for me?", volunteer=[])]})
    view = RoleView(role="assistant", scenario=sc, messages=[{"role": "user", "content": sc.goals[0].description}])
    out = asyncio.run(scripted_assistant(view))
    assert "on or off" in out["content"] and "active screen edges" in out["content"], out
    assert not re.search(r"what is the active screen edges", out["content"], re.IGNORECASE)


def test_a_look_up_answers_about_the_record_named_and_the_rule_that_stops_the_change():
    wf = _env(AUTOLOGIN, "autologin")
    reader = next(t.name for t in wf.tools if t.name.startswith("list_"))
    accounts = [r.values for r in wf.initial_state if r.entity == "account"]
    blocked = next(a for a in accounts if a.get("account_type") == "Standard")
    other = next(a for a in accounts if a.get("account_type") != "Standard")
    ask = (f"Next, account {blocked['account_name']}: please turn automatic login on, as long as the rule allows it. "
           "If it doesn't, leave it alone and tell me its account type.")
    task = Task(id="autologin:b", env_id="autologin", instruction=ask, gold_actions=[Action(tool=reader, arguments={})],
                communicate_info=["Standard"])
    traj = rollout(scenario_from_task(wf, task, 0))
    answer = next(line for line in _assistant_lines(traj) if "Standard" in line)
    assert blocked["account_name"] in answer and "cannot change this setting" in answer
    assert other["account_name"] not in answer, answer  # not every record of the listing


def test_a_closing_summary_says_what_changed_not_every_field():
    envs = _samples()
    wf = envs["share_a_printer.md"]
    tasks, _ = write_tasks_offline(wf, (SAMPLES / "share_a_printer.md").read_text(), k=1)
    traj = rollout(scenario_from_task(wf, tasks[0], 0))
    summary = next(line for line in _assistant_lines(traj) if "office-laser" in line)
    assert "short name" in summary and "printer name:" not in summary and summary.count(":") <= 1, summary


# --- the user re-asks an empty reply --------------------------------------------------------------------------

def _user_after_empty(previous_reask: bool = False):
    wf = _env(SCREEN_EDGES, "edges")
    tasks, _ = write_tasks_offline(wf, SCREEN_EDGES, k=3)
    # the one-step task (the whole-procedure task, first, words its request from the title)
    task = next(t for t in tasks if not t.meta.get("procedure"))
    sc = scenario_from_task(wf, task, 0)
    first = sc.goals[0].description
    # The user's view: its own lines are `assistant`; an empty assistant reply never shows, so its own line is last.
    view = [{"role": "assistant", "content": first}]
    if previous_reask:
        view = [{"role": "assistant", "content": first}, {"role": "assistant", "content": "Sorry, did you get my message? "
                                                                                           + first}]
    return sc, view


def test_the_scripted_user_asks_again_once_after_an_empty_reply():
    sc, view = _user_after_empty()
    out = asyncio.run(scripted_user(RoleView(role="user", scenario=sc, messages=view)))
    assert not out.get("stop") and "thank" not in out["content"].lower()
    assert "toggle Active Screen Edges on or off" in out["content"] and not re.match(r"\W*\w+ again\b", out["content"])
    sc, view = _user_after_empty(previous_reask=True)
    out = asyncio.run(scripted_user(RoleView(role="user", scenario=sc, messages=view)))
    assert out.get("stop") and STOP_TOKEN in out["content"] and "thank" not in out["content"].lower()


def test_the_model_user_asks_again_instead_of_thanking_an_empty_reply():
    sc, view = _user_after_empty()
    text, done = settle_user_reply(sc, view, "Thanks, that's all!", True)
    assert not done and "thank" not in text.lower() and text.startswith(("Sorry", "Hello?"))
