"""Draft and revise (stages/draft_revise.py) and the small-model user turn (policies/chat.py), on scripted answers.

The model is a fake completer that returns fixed JSON, so these check what the code does with an
answer — applying renames and drops consistently, validating, repairing with the exact errors,
marking provenance, re-asking a user that echoes — not what a real model says (tests/gem_agents/providers/test_local_provider.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, ModelClient
from gem_agents.policies.chat import asked_facts, chat_user, out_of_role, repeats
from gem_agents.stages.draft_revise import apply_revision, revise_extraction, revise_tasks, revision_schema
from gem_agents.stages.extract import extract_workflow
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.tasks import write_tasks, write_tasks_offline
from graphs.roles import STOP_TOKEN, RoleView
from tools_runtime.records import Document
from tools_runtime.scenario import build_scenario

SAMPLES = Path(__file__).resolve().parents[3] / "gem_agents" / "samples"
DOC = Document(id="archive", text=(SAMPLES / "archive_old_files.md").read_text())


def fake_client(answers: list[str], role: str = "extract", **cfg: Any) -> tuple[ModelClient, list[Any]]:
    """A client whose model answers `answers` in turn; the second item records (messages, spec) per call."""
    seen: list[Any] = []

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        seen.append((messages, spec))
        return {"role": "assistant", "content": answers[min(len(seen) - 1, len(answers) - 1)]}, {}

    rc = RoleConfig(provider="local", model_package="x", structured_output="json_schema", max_retries=0, **cfg)
    return ModelClient(role, rc, complete), seen


def draft():
    wf = extract_offline(DOC).workflow
    assert wf is not None
    return wf


def revision(wf, **changes: dict[str, Any]) -> str:
    tools = [{"draft": t.name, "name": t.name, "description": f"does {t.name}", "real_tool": True,
              **changes.get(t.name, {})} for t in wf.tools]
    return json.dumps({"title": "Archive old project files", "tools": tools})


def test_renames_and_drops_reach_graph_effects_and_tools_consistently():
    wf = draft()
    first, second, third = (t.name for t in wf.tools[:3])
    data, problems = apply_revision(wf, json.loads(revision(wf, **{first: {"real_tool": False},
                                                                  third: {"name": "Make archive folder"}})))
    assert problems == []
    names = [t["name"] for t in data["tools"]]
    assert first not in names and "make_archive_folder" in names and third not in names
    assert first not in data["execution_graph"] and "make_archive_folder" in data["execution_graph"]
    assert set(data["effects"]) == set(names)
    assert second in names and data["title"] == "Archive old project files"


def test_revision_schema_bounds_every_string_and_fixes_the_tool_count():
    schema = revision_schema(["a", "b"])
    item = schema["properties"]["tools"]["items"]["properties"]
    assert schema["properties"]["tools"]["maxItems"] == 2 and item["draft"]["enum"] == ["a", "b"]
    assert all("maxLength" in item[k] for k in ("name", "description"))


def test_a_valid_revision_is_the_model_s_environment():
    wf = draft()
    client, seen = fake_client([revision(wf, **{wf.tools[-1].name: {"name": "move_files_to_archive"}})],
                               draft="offline")
    result = asyncio.run(extract_workflow(DOC, client, repair_rounds=1))
    assert result.workflow is not None and result.decided_by == "model_revised" and result.rounds == 1
    assert "move_files_to_archive" in [t.name for t in result.workflow.tools]
    assert "Draft:" in seen[0][0][0]["content"] and seen[0][1].json_schema["properties"]["tools"]["maxItems"] == len(
        wf.tools)


def test_a_name_clash_goes_back_with_the_exact_error_then_rejects():
    wf = draft()
    a, b = wf.tools[0].name, wf.tools[1].name
    bad = revision(wf, **{a: {"name": b}})
    client, seen = fake_client([bad, bad])
    result = asyncio.run(revise_extraction(DOC, client, repair_rounds=1))
    assert result.workflow is None and len(seen) == 2
    assert f"name '{b}' (for '{a}') is already used" in seen[1][0][-1]["content"]
    assert all(r.startswith("model revision rejected:") for r in result.rejected)


def test_dropping_every_tool_is_refused():
    wf = draft()
    data, problems = apply_revision(wf, json.loads(revision(wf, **{t.name: {"real_tool": False} for t in wf.tools})))
    assert any("every tool was marked" in p for p in problems)


def test_revised_tasks_keep_gold_and_are_marked_model_written():
    wf = draft()
    drafts, _ = write_tasks_offline(wf, DOC.text, k=2)
    assert drafts
    def keeps(t):  # the rewrite keeps every value the draft's request gave
        return " ".join(str(k.value) for k in t.known_info if str(k.value) in t.instruction)
    answer = json.dumps({"tasks": [{"instruction": f"Please archive last year's files for me, number {i}: {keeps(t)}.",
                                    "persona": "a tidy engineer"} for i, t in enumerate(drafts)]})
    client, seen = fake_client([answer], role="task", draft="offline")
    valid, _ = asyncio.run(write_tasks(wf, DOC, client, k=2))
    assert len(valid) == len(drafts)
    for old, new in zip(drafts, valid, strict=True):
        assert new.gold_actions == old.gold_actions and new.known_info == old.known_info
        assert new.offline is False and new.operator == "model_revised" and new.instruction.startswith("Please")


def test_a_task_request_naming_a_tool_is_repaired_then_left_offline():
    wf = draft()
    drafts, _ = write_tasks_offline(wf, DOC.text, k=1)
    tool = wf.tools[-1].name
    bad = json.dumps({"tasks": [{"instruction": f"Call {tool} for me now", "persona": "x"}]})
    client, seen = fake_client([bad, bad], role="task")
    out = asyncio.run(revise_tasks(wf, DOC, client, drafts[:1], repair_rounds=1))
    assert len(seen) == 2 and "names a tool" in seen[1][0][-1]["content"]
    assert out[0].offline is True and "names a tool" in out[0].meta["model_revision_rejected"]


def test_a_request_that_loses_a_value_the_draft_gave_is_repaired_then_left_as_drafted():
    wf = draft()
    drafts, _ = write_tasks_offline(wf, DOC.text, k=1)
    given = [str(k.value) for k in drafts[0].known_info if str(k.value) in drafts[0].instruction]
    assert given, drafts[0].instruction
    bad = json.dumps({"tasks": [{"instruction": "Please tidy my old project files for me.", "persona": "x"}]})
    client, seen = fake_client([bad, bad], role="task")
    out = asyncio.run(revise_tasks(wf, DOC, client, drafts[:1], repair_rounds=1))
    assert "lost the user's values" in seen[1][0][-1]["content"] and given[0] in seen[1][0][-1]["content"]
    assert out[0].offline is True and out[0].instruction == drafts[0].instruction


def test_a_request_copying_the_draft_notes_or_a_parameter_name_is_not_kept():
    # seen in the embedded funnel: the 1.5B's request ended "The user knows: account_name='alex', ..."
    wf = draft()
    drafts, _ = write_tasks_offline(wf, DOC.text, k=1)
    fact = drafts[0].known_info[0]
    leaked = f"Please archive my old files. The user knows: {fact.key}={fact.value!r}"
    named = f"Please archive my old files, the {fact.key} is {fact.value}."
    for text, why in ((leaked, "copies the draft"), (named, "names a parameter")):
        bad = json.dumps({"tasks": [{"instruction": text, "persona": "x"}]})
        client, seen = fake_client([bad, bad], role="task")
        out = asyncio.run(revise_tasks(wf, DOC, client, drafts[:1], repair_rounds=1))
        assert why in seen[1][0][-1]["content"]
        assert out[0].offline is True and out[0].instruction == drafts[0].instruction


# ---------------------------------------------------------------------------------------------------------
# the user on a small model


def scenario():
    wf = extract_offline(Document(id="fwd", text=(SAMPLES / "set_up_email_forwarding.md").read_text())).workflow
    assert wf is not None
    sc = build_scenario(wf, 0)
    return sc.model_copy(update={"known_info": {"forwarding_address": "dana@example.org"}})


def test_echo_refusal_and_asked_facts_are_recognised():
    assert repeats("What is your forwarding address?", ["I need your forwarding address — what is it?"])
    assert not repeats("It is dana@example.org", ["I need your forwarding address — what is it?"])
    assert out_of_role("I'm sorry, but I can't assist with that request.")
    assert asked_facts(scenario(), "What forwarding address should I use?") == {"forwarding_address": "dana@example.org"}


def test_an_echoing_user_is_re_asked_once_with_the_fact_it_was_asked_for():
    sc = scenario()
    echo = json.dumps({"reply": "What is your forwarding address?", "done": True})
    good = json.dumps({"reply": "Sure, my forwarding address is dana@example.org.", "done": False})
    client, seen = fake_client([echo, good], role="user", temperature=0.3)
    history = [{"role": "assistant", "content": "Please set up forwarding."},
               {"role": "user", "content": "What is your forwarding address?"}]
    out = asyncio.run(chat_user(client)(RoleView(role="user", messages=history, scenario=sc)))
    assert out == {"role": "user", "content": "Sure, my forwarding address is dana@example.org."}
    assert len(seen) == 2 and "dana@example.org" in seen[1][0][-1]["content"]
    assert ">>> What is your forwarding address?" in seen[0][0][0]["content"]
    assert seen[0][1].json_schema["properties"]["reply"]["maxLength"] == 300


def test_a_user_that_twice_restates_its_request_states_the_asked_fact_in_the_told_form():
    sc = scenario()
    again = json.dumps({"reply": "Please forward my mail to dana@example.org for me.", "done": False})
    client, seen = fake_client([again, again], role="user")
    history = [{"role": "assistant", "content": "Please forward my mail to dana@example.org for me."},
               {"role": "user", "content": "Which forwarding address should I use?"}]
    out = asyncio.run(chat_user(client)(RoleView(role="user", messages=history, scenario=sc)))
    assert len(seen) == 2 and 'Answer with: "My forwarding address is dana@example.org."' in seen[0][0][0]["content"]
    assert out["content"] == "My forwarding address is dana@example.org."


def test_done_ends_the_dialogue_only_when_no_question_is_open():
    sc = scenario()
    done = json.dumps({"reply": "Thanks!", "done": True})
    client, _ = fake_client([done], role="user")
    history = [{"role": "assistant", "content": "Please forward my mail to dana@example.org."},
               {"role": "user", "content": "Done: your mail now goes there. Anything else?"}]
    out = asyncio.run(chat_user(client)(RoleView(role="user", messages=history, scenario=sc)))
    assert out["content"].endswith(STOP_TOKEN)
    first, _ = fake_client([done], role="user")
    opening = asyncio.run(chat_user(first)(RoleView(role="user", messages=[], scenario=sc)))
    assert STOP_TOKEN not in opening["content"]
