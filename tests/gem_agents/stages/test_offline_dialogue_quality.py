"""Offline dialogues a person would believe (issue 14): an offline run's exported dialogues carry none of
the defect classes a reader found in them, and the detectors themselves catch each class.

The detectors are plain text checks, independent of the generators' own helpers, so a generator that
slips back into a defect fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.stages.offline_env import rule_strength
from gem_agents.stages.offline_extractor import draft_tool
from gem_agents.stages.tasks import _goal, as_user_words
from gem_agents.user.dialogue_text import coerce, find_fact, say_facts

REPO = Path(__file__).resolve().parents[3]
GREETING = r"(?:hi there|hi|hello|hey there|hey|good (?:morning|afternoon|evening))"
# An obligation a `must` rule states; a sentence without one explains or allows.
OBLIGATION = re.compile(r"\b(?:must|needs? to|have to|has to|cannot|can't|can only|only (?:when|if|after|before|"
                        r"once)|never|do not|don't|always|required|requires|unlock)\b", re.IGNORECASE)
NOT_A_RULE = re.compile(r"^(?:this|these|though|although|some|so|you can|depending|warning)\b|:$|\bmay need\b|"
                        r"\ba must\b", re.IGNORECASE)


def double_greeting(text: str) -> bool:
    """'Hi! Hi, I want …', 'Hello, Good morning. I want …'."""
    return re.match(rf"^\W*{GREETING}\b[^.!?,—]{{0,12}}[.!?,—]+\s*{GREETING}\b", text, re.IGNORECASE) is not None


def repeated_fact(text: str) -> bool:
    """The same 'the X is V' fact said twice in one message (also across '; ' and ', and ')."""
    parts = [p.strip().lower().rstrip(".") for p in re.split(r"(?<=[.!?])\s+|;\s+|,\s+and\s+|,\s+(?=the |my )", text)]
    parts = [re.sub(r"^(?:sure|of course|yes)[,.—]?\s*", "", p) for p in parts]
    facts = [re.sub(r"^my ", "the ", p) for p in parts if re.match(r"^(?:the|my) [\w ]+ (?:is|are) \S", p)]
    return len(facts) != len(set(facts))


def empty_quote(text: str) -> bool:
    return '""' in text or "“”" in text


def key_value_turn(text: str) -> bool:
    """A user turn written as a '- key: value' list."""
    return re.search(r"^\s*-\s+[\w ]+:\s*\S", text, re.MULTILINE) is not None


def invented_from_field(args: dict) -> list[str]:
    """Argument values made from their own field name ('regularly' = 'My regularly')."""
    return [f"{k}={v}" for k, v in args.items()
            if isinstance(v, str) and v.lower() in (f"my {k.replace('_', ' ').lower()}", k.lower())]


def ses_plural(text: str) -> bool:
    """'settingses', 'printerses': an -es added to a word already plural."""
    return re.search(r"\b\w+(?:ing|er|on|nt|ice|ce|le)ses\b", text, re.IGNORECASE) is not None


def non_rule_musts(system: str) -> list[str]:
    out = []
    for line in system.splitlines():
        m = re.match(r"- \[must\] (.*)", line)
        if m and (not OBLIGATION.search(m.group(1)) or NOT_A_RULE.search(m.group(1).strip())):
            out.append(m.group(1))
    return out


def adverb_params(tools: list[dict]) -> list[str]:
    """Tool parameters that are -ly adverbs ('regularly')."""
    out = []
    for t in tools:
        props = (t.get("function") or t).get("parameters", {}).get("properties", {})
        out += [p for p in props if re.fullmatch(r"[a-z]{3,}ly", p) and p not in ("family", "supply", "reply")]
    return out


def defects(rows: list[dict]) -> dict[str, list[str]]:
    """Every defect of every class in exported OpenAI-format rows, by class."""
    found: dict[str, list[str]] = {}

    def add(kind: str, what: str) -> None:
        found.setdefault(kind, []).append(what[:160])

    for row in rows:
        for bad in adverb_params(row.get("tools") or []):
            add("adverb parameter", bad)
        for m in row["messages"]:
            text = str(m.get("content") or "")
            if m["role"] == "system":
                for bad in non_rule_musts(text):
                    add("non-rule must", bad)
                if re.search(r"\([a-z]+(?:_[a-z]+)+, [a-z_]+\)", text):
                    add("category tuple", text[:160])
            if m["role"] == "user":
                for kind, check in (("double greeting", double_greeting), ("repeated fact", repeated_fact),
                                    ("empty quote", empty_quote), ("key: value user turn", key_value_turn)):
                    if check(text):
                        add(kind, text)
            if m["role"] in ("user", "assistant") and ses_plural(text):
                add("-ses plural", text)
            for call in m.get("tool_calls") or []:
                for bad in invented_from_field(json.loads(call["function"]["arguments"])):
                    add("value from field name", bad)
    return found


# --- the detectors catch what the issue saw --------------------------------------------------------------

def test_detectors_flag_the_issues_examples():
    assert double_greeting("Hi! Hi, I want to share my desktop.")
    assert double_greeting("Hello, Good morning. I want to print.")
    assert not double_greeting("Good morning. I want to print a booklet.")
    assert repeated_fact("The source file is X; the target file is Y. The source file is X, and the target file is Y.")
    assert repeated_fact("It's here. The file is a.txt. Of course. My file is a.txt.")
    assert not repeated_fact("The source file is X; the target file is Y.")
    assert empty_quote('I read that I should do this: "". Please handle it.')
    assert key_value_turn("Sure.\n- bluetooth: true")
    assert not key_value_turn("Yes, turn bluetooth on.")
    assert invented_from_field({"regularly": "My regularly"}) == ["regularly=My regularly"]
    assert ses_plural("Which privacy security settingses do I have?")
    assert not ses_plural("Which addresses and classes do I have?")
    assert non_rule_musts("- [must] This makes it more difficult to guess; there are more symbols.\n"
                          "- [must] Do not overwrite existing files at the target:\n"
                          "- [must] You must sign in first.")[:2] == [
        "This makes it more difficult to guess; there are more symbols.", "Do not overwrite existing files at the target:"]
    assert len(non_rule_musts("- [must] You must sign in first.")) == 0
    assert adverb_params([{"function": {"parameters": {"properties": {"regularly": {}, "name": {}}}}}]) == ["regularly"]


# --- the generators' pieces ------------------------------------------------------------------------------

def test_facts_are_said_in_sentences_and_read_back():
    facts = {"bluetooth": True, "device_name": "Pixel Buds", "page_numbers": "4,1,2,3"}
    said = say_facts(facts, 1)
    assert not key_value_turn(said) and "Please turn bluetooth on." in said and "page numbers are 4,1,2,3" in said
    assert coerce(find_fact([said], "bluetooth"), {"type": "boolean"}) is True
    assert find_fact([said], "device_name") == "Pixel Buds" and find_fact([said], "page_numbers") == "4,1,2,3"
    off = say_facts({"wifi": False}, 0)
    assert coerce(find_fact([off], "wifi"), {"type": "boolean"}) is False
    assert find_fact(["Could you switch the Automatic Login switch to on?"], "automatic_login") == "on"


def test_rules_are_sentences_that_oblige():
    assert rule_strength("This makes it more difficult to guess; there are more symbols from which to choose.") is None
    assert rule_strength("You may need to add up to 3 blank pages.") is None
    assert rule_strength("Do not prompt for confirmation before overwriting existing files:") is None
    assert rule_strength("If you do not want it anymore, you can remove the connection.") is None
    assert rule_strength("You must have the Rygel package installed for Media Sharing to be visible.") == "must"
    assert rule_strength("Never write your passwords down anywhere.") == "must"
    assert rule_strength("Make sure that Bluetooth is switched on.") == "recommended"


def test_user_words_and_fields():
    assert as_user_words("change your passwords regularly") == "change my passwords regularly"
    assert as_user_words("switch off any services that you do not want") == "switch off any services that I do not want"
    assert _goal("how to how to hack") == "hack"
    drafted = draft_tool("Change your passwords regularly.")
    assert drafted is not None and "regularly" not in drafted.params and "regularly" not in drafted.name


# --- a whole offline run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def offline_rows(tmp_path_factory, shared_dir) -> list[dict]:
    corpus = shared_dir / "data" / "texts" / "corpus_dev.jsonl"
    if not corpus.is_file():
        pytest.skip("corpus_dev.jsonl is absent")
    out = tmp_path_factory.mktemp("quality") / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(REPO / "configs" / "offline.yaml"), "--input", str(corpus), "--out", str(out),
                              "--quiet", "--no-report"])
    assert res.exit_code == 0, res.output
    dest = out / "o.jsonl"
    res = runner.invoke(app, ["export", str(out), "--format", "openai", "--out", str(dest), "--include-offline"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in dest.read_text().splitlines() if line.strip()]
    assert len(rows) >= 50
    return rows


def test_offline_run_dialogues_have_none_of_the_defects(offline_rows):
    found = defects(offline_rows)
    assert found == {}, {k: (len(v), v[:3]) for k, v in found.items()}


def test_offline_user_turns_are_sentences_and_systems_plain(offline_rows):
    users = [str(m.get("content") or "") for r in offline_rows for m in r["messages"] if m["role"] == "user"]
    assert users and all(not key_value_turn(u) for u in users)
    systems = [r["messages"][0]["content"] for r in offline_rows]
    assert all(r["messages"][0]["role"] == "system" for r in offline_rows)
    assert not any("computers_and_electronics" in s or "internet_and_web" in s for s in systems)
