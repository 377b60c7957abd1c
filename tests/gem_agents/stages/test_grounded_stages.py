"""Grounded stages: extraction answers in the environment schema, the task stage, and what each role sees."""

from __future__ import annotations

import asyncio
import json

from gem_agents.config import RoleConfig
from gem_agents.models.client import ModelClient
from gem_agents.policies.chat import assistant_prompt, user_prompt
from gem_agents.stages.extract import EXTRACTION_SCHEMA, extract_workflow
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.tasks import check_tasks, tasks_from_answer, write_tasks, write_tasks_offline
from tests.gem_agents.stages.test_relevance import Stub
from tools_runtime.records import Document
from tools_runtime.tasks import Action, Task, scenario_from_task

WIFI = Document(id="wifi", text=(
    "# Change the Wi-Fi password\n"
    "1. Open Settings and click Wi-Fi.\n"
    "2. Select the network Home-5G.\n"
    "3. Type the new password. It must have at least 8 characters.\n"
    "4. Press Save.\n"))

ENV_PARTS = {
    "effects": {"list_networks": {"kind": "read", "entity": "network", "returns": ["ssid"]},
                "set_wifi_password": {"kind": "update", "entity": "network", "key": "ssid",
                                      "writes": [{"field": "password", "param": "password"}]}},
    "entities": [{"name": "network", "key": "ssid",
                  "fields": {"ssid": {"type": "string"}, "password": {"type": "string"}}}],
    "initial_state": [{"entity": "network", "values": {"ssid": "Home-5G"},
                       "sources": {"ssid": {"kind": "text", "quote": "Home-5G"}}}],
    "policy": [{"id": "r1", "text": "A Wi-Fi password must have at least 8 characters.", "strength": "must",
                "tools": ["set_wifi_password"]}],
}
CAPABILITIES = [
    {"name": "list_networks", "description": "List the Wi-Fi networks.",
     "parameters": {"type": "object", "properties": {}, "required": []}},
    {"name": "set_wifi_password", "description": "Set the password of a Wi-Fi network.",
     "parameters": {"type": "object", "properties": {"ssid": {"type": "string"},
                                                     "password": {"type": "string", "minLength": 8}},
                    "required": ["ssid", "password"]}},
]
GESTURES = [
    {"name": "open_settings_menu", "description": "Open Settings.",
     "parameters": {"type": "object", "properties": {}, "required": []}},
    {"name": "click_save", "description": "Press Save.",
     "parameters": {"type": "object", "properties": {}, "required": []}},
]


def answer(tools: list[dict], graph: str, effects: dict | None = None) -> str:
    parts = dict(ENV_PARTS)
    if effects is not None:
        parts["effects"] = effects
    return json.dumps({"title": "Change the Wi-Fi password", "steps": ["Select the network.", "Type the password."],
                       "execution_graph": graph, "tools": tools, **parts})


def client(stub: Stub, role: str = "extract") -> ModelClient:
    return ModelClient(role, RoleConfig(provider="openai", model="m", structured_output="tagged"), complete=stub)


def wifi_env():
    stub = Stub(answer(CAPABILITIES, "(list_networks)->(set_wifi_password)"))
    res = asyncio.run(extract_workflow(WIFI, client(stub)))
    assert res.ok, res.rejected
    return res.workflow


# ---------------------------------------------------------------------------------------------------------
# extraction


def test_extraction_schema_is_the_environment_schema():
    props = EXTRACTION_SCHEMA["properties"]
    assert {"tools", "effects", "entities", "initial_state", "policy", "execution_graph"} <= set(props)
    assert "id" not in props and "backend" not in props  # the pipeline fills those in
    assert "$ref" not in json.dumps(EXTRACTION_SCHEMA)  # grammar-friendly: refs inlined


def test_ui_gestures_are_sent_back_and_the_folded_answer_is_kept():
    gestures = answer([*GESTURES, *CAPABILITIES], "(open_settings_menu)->(list_networks)->(set_wifi_password)->(click_save)")
    folded = answer(CAPABILITIES, "(list_networks)->(set_wifi_password)")
    stub = Stub(gestures, folded)
    res = asyncio.run(extract_workflow(WIFI, client(stub), repair_rounds=1))
    assert res.ok and res.rounds == 2
    repair = stub.calls[1][0][-1]["content"]
    assert "click_save" in repair and "open_settings_menu" in repair and "[ui_gesture]" in repair
    w = res.workflow
    assert [t.name for t in w.tools] == ["list_networks", "set_wifi_password"]
    assert w.initial_state[0].sources["ssid"].kind == "text" and w.policy[0].strength == "must"


def test_gestures_never_folded_reject_the_document_with_the_reason():
    gestures = answer([*GESTURES, *CAPABILITIES], "(open_settings_menu)->(list_networks)->(set_wifi_password)->(click_save)")
    res = asyncio.run(extract_workflow(WIFI, client(Stub(gestures, gestures)), repair_rounds=1))
    assert not res.ok and any("ui_gesture" in r and "click_save" in r for r in res.rejected)


def test_a_text_source_that_is_not_in_the_text_is_kept_as_invented():
    data = json.loads(answer(CAPABILITIES, "(list_networks)->(set_wifi_password)"))
    data["initial_state"].append({"entity": "network", "values": {"ssid": "Office-Guest"},
                                  "sources": {"ssid": {"kind": "text", "quote": "Office-Guest"}}})
    res = asyncio.run(extract_workflow(WIFI, client(Stub(json.dumps(data))), repair_rounds=0))
    assert res.ok, res.rejected
    home, office = res.workflow.initial_state
    assert home.sources["ssid"].kind == "text" and home.sources["ssid"].span is not None
    assert office.sources["ssid"].kind == "invented"


# ---------------------------------------------------------------------------------------------------------
# tasks


def test_a_task_whose_gold_fails_is_discarded_with_its_reason():
    w = wifi_env()
    good = Task(id="g", env_id=w.id, instruction="Please set my Home-5G password to Blue-Kettle-42.",
                gold_actions=[Action(tool="set_wifi_password", arguments={"ssid": "Home-5G", "password": "Blue-Kettle-42"})])
    missing = good.model_copy(update={"id": "m", "gold_actions": [
        Action(tool="set_wifi_password", arguments={"ssid": "Cafe", "password": "Blue-Kettle-42"})]})
    short = good.model_copy(update={"id": "s", "gold_actions": [
        Action(tool="set_wifi_password", arguments={"ssid": "Home-5G", "password": "abc"})]})
    nothing = good.model_copy(update={"id": "n", "gold_actions": [Action(tool="list_networks")]})
    valid, rejected = check_tasks(w, [good, missing, short, nothing])
    assert [t.id for t in valid] == ["g"] and valid[0].expected_state_hash
    assert {r.task_id: r.code for r in rejected} == {"m": "gold_failed", "s": "invalid_arguments",
                                                     "n": "empty_criteria"}
    assert all(r.reason for r in rejected)


def test_the_model_task_writer_validates_executes_and_asks_again_once():
    w = wifi_env()
    first = {"tasks": [
        {"instruction": "Hi, I'd like to set a new password on Home-5G.", "persona": "a student", "cites": [1, 2],
         "known_info": [{"key": "ssid", "value": "Home-5G", "quote": "Home-5G", "withhold": False},
                        {"key": "password", "value": "Blue-Kettle-42", "quote": "", "withhold": True}],
         "unknown_info": [], "communicate_info": [],
         "gold_actions": [{"tool": "set_wifi_password", "arguments": {"ssid": "Home-5G", "password": "Blue-Kettle-42"}}]},
        {"instruction": "Change the password on my office network.", "persona": "x", "cites": [], "known_info": [],
         "unknown_info": [], "communicate_info": [],
         "gold_actions": [{"tool": "set_wifi_password", "arguments": {"ssid": "Office", "password": "Blue-Kettle-42"}}]},
        {"instruction": 7},
    ]}
    stub = Stub(json.dumps(first), json.dumps({"tasks": []}))
    valid, rejected = asyncio.run(write_tasks(w, WIFI, client(stub, "task"), k=2, repair_rounds=1))
    assert len(valid) == 1 and valid[0].known_info[0].source.kind == "text"
    assert valid[0].known_info[1].withhold and valid[0].known_info[1].source.kind == "invented"
    assert sorted(r.code for r in rejected) == ["gold_failed", "invalid_task"]
    assert "gold_failed" in stub.calls[1][0][-1]["content"]  # the rejections went back once
    sent = stub.calls[0][0][0]["content"]
    assert WIFI.text in sent and "set_wifi_password" in sent and "at least 8 characters" in sent


def test_tasks_from_answer_without_a_list_is_one_rejection():
    w = wifi_env()
    tasks, rejected = tasks_from_answer({"nope": 1}, w, WIFI.text)
    assert tasks == [] and rejected[0].code == "unparsable"


def test_offline_tasks_quote_the_text_and_use_its_values(corpus_path):
    rows = {json.loads(x)["id"]: json.loads(x) for x in corpus_path.read_text(encoding="utf-8").splitlines()}
    row = rows["gnome-help:printing-booklet-singlesided"]
    w = extract_offline(Document(id=row["id"], text=row["text"])).workflow
    tasks, rejected = write_tasks_offline(w, row["text"], k=3)
    assert tasks and not rejected
    task = tasks[0]
    assert task.offline and not task.instruction.startswith("I need to ")
    assert "Landscape" in task.instruction  # the page's own step, quoted
    gold = task.gold_actions[0]
    assert gold.tool == "print_document" and gold.arguments["orientation"] == "Landscape"
    assert all(i.source.kind == "text" for i in task.known_info)
    assert task.cites


# ---------------------------------------------------------------------------------------------------------
# what each role sees


def _scenario():
    w = wifi_env()
    task = Task(id="t1", env_id=w.id, instruction="Hi! Could you change the Wi-Fi password of Home-5G for me?",
                persona="a retired teacher",
                known_info=[{"key": "ssid", "value": "Home-5G"},
                            {"key": "new_password", "value": "Blue-Kettle-42", "withhold": True}],
                gold_actions=[Action(tool="set_wifi_password",
                                     arguments={"ssid": "Home-5G", "password": "Blue-Kettle-42"})])
    return scenario_from_task(w, task, 0)


def test_the_user_prompt_has_the_instruction_and_facts_never_tools_or_gold():
    sc = _scenario()
    prompt = user_prompt(sc)
    assert sc.task.instruction in prompt and "a retired teacher" in prompt
    for tool in sc.workflow.tools:
        assert tool.name not in prompt
    assert "gold" not in prompt.lower() and "arguments" not in prompt
    head, _, withheld = prompt.partition("only if the assistant asks")
    assert "Blue-Kettle-42" in withheld and "Blue-Kettle-42" not in head


def test_the_assistant_prompt_is_the_policy_and_context():
    sc = _scenario()
    prompt = assistant_prompt(sc)
    assert "[must] A Wi-Fi password must have at least 8 characters." in prompt
    assert "Change the Wi-Fi password" in prompt
    assert sc.task.instruction not in prompt  # the assistant never sees the task


# ---------------------------------------------------------------------------------------------------------
# gem run: relevance → environment → tasks → rollouts, with the funnel in the store


def test_gem_run_simulates_tasks_and_every_trajectory_opens_with_the_system_message(tmp_path, corpus_path):
    from typer.testing import CliRunner

    from gem_agents.cli import app
    from gem_agents.run.store import RunStore

    keep = {"gnome-help:printing-setup-default-printer", "gnome-help:bluetooth-remove-connection",
            "gnome-help:search-order", "proc2pddl:114934221:survive_shark_attack"}
    rows = [x for x in corpus_path.read_text(encoding="utf-8").splitlines() if json.loads(x)["id"] in keep]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    from gem_agents.config import REPO_CONFIGS

    res = CliRunner().invoke(app, ["run", str(REPO_CONFIGS / "offline.yaml"), "--input", str(docs),
                                   "--out", str(tmp_path / "run"), "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    store = RunStore(tmp_path / "run", readonly=True)
    try:
        by_doc = {d["doc_id"]: d for d in store.documents()}
        trajs = list(store.trajectories(kind="original"))
        tasks = list(store.tasks())
        rejections = list(store.task_rejections())
    finally:
        store.close()
    shark = by_doc["proc2pddl:114934221:survive_shark_attack"]
    assert shark["relevance"]["multi_step"] is False  # steps, but no machine
    assert by_doc["gnome-help:search-order"]["reasons"][0].startswith("extraction rejected: no capability")
    assert {t.env_id for t in tasks} == {"gnome-help:printing-setup-default-printer",
                                         "gnome-help:bluetooth-remove-connection"}
    assert rejections == [] and all(t.offline for t in tasks)
    assert trajs and {t.provenance.task_id for t in trajs} == {t.id for t in tasks}
    for t in trajs:
        assert t.provenance.offline
        assert t.messages[0]["role"] == "system", t.id
        assert "[must] Unlock the Printers settings" in t.messages[0]["content"] or "Bluetooth" in t.messages[0]["content"]
        assert t.scenario.task is not None and t.scenario.task.instruction in t.messages[1]["content"]
        user_text = " ".join(m["content"] for m in t.messages if m["role"] == "user")
        assert not any(tool["function"]["name"] in user_text for tool in t.tools)
    assert all(t.verdict.passed for t in trajs)
