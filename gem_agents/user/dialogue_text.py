"""How the scripted roles write and read facts in plain text.

Facts travel as `- order id: ORD-1234` lines or as sentences ("my order id is ORD-1234."): varied
enough for training data, and exact enough that the scripted assistant reads back what the scripted
user typed (and nothing it did not).
"""

from __future__ import annotations

import json
import re
from typing import Any

GENERIC_TOKENS = {"id", "number", "name", "no", "code"}
CONFIRM_WORDS = ("proceed", "confirm", "go ahead", "shall i", "should i", "would you like me", "is that correct",
                 "is that right", "do you want me")


def plural(noun: str) -> str:
    """`city` → cities, `print_job` → print_jobs, `settings` → settings (names, tools and
    the assistant's "you have 3 accounts")."""
    if noun.endswith("s"):
        return noun
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("sh", "ch", "x")) else "s")


def humanize(key: str) -> str:
    """`order_id` → `order id`; a goal suffix (`order_id@2`) is never shown."""
    return key.split("@")[0].replace("_", " ").replace("-", " ").strip()


def render_value(value: Any) -> str:
    """A value as the user types it: strings bare, everything else as JSON."""
    if isinstance(value, str) and "\n" not in value and value.strip() == value and value:
        return value
    return json.dumps(value, ensure_ascii=False)


def fact_lines(facts: dict[str, Any]) -> str:
    """Facts as `- key: value` lines."""
    return "\n".join(f"- {humanize(k)}: {render_value(v)}" for k, v in facts.items())


# Sentence forms of one fact; each keeps "the/my <key> is <value>" so `find_fact` reads it back.
ONE_FACT = ["Sure, the {k} {be} {v}.", "Of course. My {k} {be} {v}.", "My {k} {be} {v}.", "Yes — the {k} {be} {v}.",
            "The {k} {be} {v}."]
MANY_FACTS = ["Sure.", "Here you go:", "Of course:", "Here they are:"]


SWITCH_FACT = ["Yes, turn {k} {v}.", "Please turn {k} {v}.", "I'd like {k} turned {v}.", "Turn {k} {v}, please."]


def be(key: str) -> str:
    """`are` for a plural field name ("page numbers are"), else `is`."""
    last = humanize(key).split(" ")[-1].lower() if humanize(key) else ""
    return "are" if last.endswith("s") and not last.endswith(("ss", "us", "is", "ics")) else "is"


def _sayable(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and bool(value) and "\n" not in value and ". " not in value \
        and not value.endswith(".") and ", and " not in value and not re.search(r",\s+(?:the|my)\s", value)


def sayable(facts: dict[str, Any]) -> bool:
    """True when every fact fits in a spoken sentence (a switch, a short value)."""
    return all(_sayable(v) or isinstance(v, bool) for v in facts.values())


def _clause(k: str, v: Any, first: bool) -> str:
    """One fact as a clause: a switch as "turn X on", anything else as "the X is V"."""
    if isinstance(v, bool):
        return f"{'T' if first else 't'}urn {humanize(k)} {'on' if v else 'off'}"
    return f"{'T' if first else 't'}he {humanize(k)} {be(k)} {v}"


def say_facts(facts: dict[str, Any], variant: int = 0) -> str:
    """Facts in one of several phrasings (by `variant`), each readable back by `find_fact`.

    People say facts in sentences: a switch as "turn Bluetooth on", values as "the X is V". The
    `- key: value` list is kept only for values no sentence can carry (multi-line text, JSON).
    """
    if len(facts) == 1:
        (k, v), = facts.items()
        if isinstance(v, bool):
            return SWITCH_FACT[variant % len(SWITCH_FACT)].format(k=humanize(k), v="on" if v else "off")
        if _sayable(v):
            return ONE_FACT[variant % len(ONE_FACT)].format(k=humanize(k), v=v, be=be(k))
    if facts and sayable(facts):
        values = [(k, v) for k, v in facts.items() if not isinstance(v, bool)]
        switches = [(k, v) for k, v in facts.items() if isinstance(v, bool)]
        out = []
        if values:
            clauses = [_clause(k, v, i == 0) for i, (k, v) in enumerate(values)]
            out.append((clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]) + ".")
        if switches:  # "Please turn Bluetooth on and turn Wi-Fi off."
            out.append("Please " + " and ".join(_clause(k, v, False) for k, v in switches) + ".")
        return " ".join(out)
    return MANY_FACTS[variant % len(MANY_FACTS)] + "\n" + fact_lines(facts)


def _a_checkbox(m: re.Match[str]) -> bool:
    """A tick verb that sets a checkbox: it names one ("… checkbox"), is a tick verb, or "check" a UI label
    ("check Reverse"), never "check the account type" or "select the device"."""
    verb = m.group(1).lower()
    label = m.group(0)[len(m.group(1)):].strip().removeprefix("the ").strip()
    return bool(m.group(2)) or verb in ("tick", "untick", "uncheck") or (verb == "check" and label[:1].isupper())


def find_fact(texts: list[str], key: str) -> str | None:
    """The latest raw value given for `key` in `texts` (newest last): a `- key: value` line or a sentence."""
    shown = re.escape(humanize(key))
    line = re.compile(rf"^\s*[-*•]\s*{shown}\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
    sentence = re.compile(rf"\b(?:my|the)\s+{shown}\s+(?:is|are)\s+(.+?)(?:,\s+(?:and\s+)?(?:my|the|turn)\s|[.;](?:\s|$)|$)",
                          re.IGNORECASE | re.MULTILINE)
    # "turn Bluetooth on", "switch the Automatic Login switch to on", "turn off Wi-Fi".
    # "turn X on or off" names the switch, not a state: no fact.
    state = r"(on|off)\b(?!\s+or\s+(?:on|off)\b)"
    switch = re.compile(rf"\b(?:turn|switch|set)(?:ed)?\s+(?:my\s+|the\s+)?{shown}(?:\s+switch)?\s+(?:to\s+)?{state}",
                        re.IGNORECASE)
    switch_first = re.compile(rf"\b(?:turn|switch)(?:ed)?\s+{state}\s+(?:my\s+|the\s+)?{shown}\b", re.IGNORECASE)
    # "I'd like Bluetooth turned off", "with hot corner switched on" (the scripted user's own phrasing).
    switched = re.compile(rf"\b{shown}(?:\s+switch)?\s+(?:turned|switched|set)\s+(?:to\s+)?{state}", re.IGNORECASE)
    # "Select the Use Printer by Default checkbox", "check Reverse", "uncheck Hot Corner": a checkbox's state
    # is the verb's (a word may stand between the key's words: "use printer *by* default").
    loose = r"(?:\s+\w+)?\s+".join(re.escape(w) for w in humanize(key).split())
    ticked = re.compile(rf"\b(select|check|tick|enable|uncheck|untick|clear|disable)\s+(?:the\s+)?{loose}"
                        rf"(?:\s+(checkbox|check box|option|switch))?\b", re.IGNORECASE)
    for text in reversed(texts):
        hits = [(m.start(), m.group(1)) for p in (line, sentence, switch, switch_first, switched)
                for m in p.finditer(text or "")]
        hits += [(m.start(), "off" if m.group(1).lower() in ("uncheck", "untick", "clear", "disable") else "on")
                 for m in ticked.finditer(text or "")
                 if _a_checkbox(m)]
        if hits:
            return max(hits)[1].strip()
    return None


def coerce(raw: str, schema: dict[str, Any] | None) -> Any:
    """Read a typed value back from its text, guided by the parameter's JSON Schema type."""
    schema = schema if isinstance(schema, dict) else {}
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if typ == "string" or (typ is None and not raw.startswith(("{", "[", '"'))):
        if raw.startswith('"'):
            try:
                decoded = json.loads(raw)
                if isinstance(decoded, str):
                    return decoded
            except ValueError:
                pass
        if typ is None:
            for cast in (int, float):
                try:
                    return cast(raw)
                except ValueError:
                    continue
        return raw
    if typ == "boolean":
        return raw.strip().lower() in ("true", "yes", "1", "on")
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def question_sentences(text: str) -> list[str]:
    """The sentences of `text` that end with a question mark."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text or "") if s.strip().endswith("?")]


def keys_asked(text: str, keys: list[str]) -> list[str]:
    """Which of `keys` a message asks for (only its questions count, longest keys first)."""
    questions = " ".join(question_sentences(text)).lower()
    if not questions:
        return []
    words = set(re.findall(r"[a-z0-9]+", questions))
    asked = []
    for key in sorted(keys, key=len, reverse=True):
        tokens = re.findall(r"[a-z0-9]+", humanize(key).lower())
        specific = [t for t in tokens if t not in GENERIC_TOKENS]
        need = specific or tokens
        if need and all(t in words or (t.endswith("s") and t[:-1] in words) for t in need):
            asked.append(key)
    return asked


def is_confirmation_request(text: str) -> bool:
    """True when the assistant asks the user to confirm before acting."""
    questions = " ".join(question_sentences(text)).lower()
    return any(w in questions for w in CONFIRM_WORDS)
