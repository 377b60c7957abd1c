"""The scripted user: states goals one by one, answers questions from what it knows, then stops.

Deterministic and model-free. It sees only its own view (roles flipped: its own lines are
`assistant`, the assistant's replies are `user`) and keeps no memory outside the transcript, so a
rewound or edited dialogue continues consistently.
"""

from __future__ import annotations

import re
from typing import Any

from gem_agents.user.dialogue_text import (
    coerce,
    fact_lines,
    find_fact,
    humanize,
    is_confirmation_request,
    keys_asked,
    question_sentences,
    render_value,
    say_facts,
    sayable,
)
from graphs.roles import STOP_TOKEN, RoleView
from tools_runtime.records import Scenario

GREETINGS = ["Hi!", "Hello,", "Hey there.", "Good morning!", "Hi there,"]
DETAILS = ["Here are the details:", "In case you need them:", "Some details:", "For reference:"]
NO_INFO = ["Sorry, I don't have that information. Please go ahead with what I gave you.",
           "I'm afraid I don't know that. Can you work with what I told you?",
           "No idea, sorry — please use what I already gave you."]
GO_AHEAD = ["Yes, please go ahead.", "Yes, do it.", "Sounds good, go ahead.", "Yes please."]
CLOSINGS = ["Thanks, that's all I needed!", "Great, thank you — that's everything.", "Perfect, thanks for your help!"]
# An assistant that said nothing is asked again, once; a person does not thank an empty reply.
REASK = ["Sorry, did you get my message? ", "Hello? I'm still waiting for an answer. "]
GIVE_UP = "I still have no answer, so I'll leave it for now."


def unanswered(view_messages: list[dict[str, Any]]) -> bool:
    """True when the assistant said nothing since the user's last line (the user's own view, roles flipped).

    An empty reply never reaches the user's view, so the user's own line is still the last one; a reply
    with no word in it ("…") is no answer either.
    """
    if not view_messages:
        return False
    last = view_messages[-1]
    if last.get("role") == "assistant":
        return True
    return last.get("role") == "user" and not re.search(r"\w", str(last.get("content") or ""))


def reask(view_messages: list[dict[str, Any]]) -> tuple[str, bool]:
    """(text, stop) for a user whose last line went unanswered: that line again, or, asked once, the end."""
    mine = [str(m.get("content") or "") for m in view_messages if m.get("role") == "assistant"]
    if not mine:
        return "", False
    if mine[-1].startswith(tuple(REASK)):
        return GIVE_UP, True
    line = re.sub(r"^\W*(?:hi|hello|hey|good (?:morning|afternoon|evening)|greetings)\b[^,.!?—]{0,12}[,.!?—]+\s*", "",
                  mine[-1], flags=re.IGNORECASE)
    return REASK[len(mine) % len(REASK)] + (line[:1].upper() + line[1:]), False


def _said(view: RoleView) -> list[str]:
    return [str(m.get("content") or "") for m in view.messages if m.get("role") == "assistant"]


def value_for(scenario: Scenario, key: str, already_said: list[str]) -> Any:
    """What the user says for `key`: a planned wrong value the first time, the true one after."""
    mistake = next((e for e in scenario.planned_errors
                    if e.kind in ("not_found", "invalid_value") and e.key == key), None)
    if mistake is not None:
        wrong = render_value(mistake.wrong_value).lower()
        if not any(find_fact([text], key) is not None and wrong in text.lower() for text in already_said):
            return mistake.wrong_value
    return scenario.known_info[key]


def key_goal(key: str, scenario: Scenario | None = None) -> int:
    """The goal a fact belongs to: its `@goal` suffix, else the goal whose call first needs it."""
    suffix = key.partition("@")[2]
    if suffix:
        try:
            return int(suffix.split(".")[0])
        except ValueError:
            return 0
    if scenario is not None:
        for call in scenario.plan:
            if any(s.kind == "user" and s.key == key for s in call.sources.values()):
                return call.goal
    return 0


def current_keys(keys: list[str], goal: int, scenario: Scenario | None = None, *,
                 drop_contained: bool = True) -> list[str]:
    """Of keys shown with the same words, the one for the current goal (else the latest earlier one).

    A key whose words are part of another asked key's words ("query" inside "payee query") was
    not what the question meant and is dropped.
    """
    chosen: dict[str, tuple[tuple[int, int], str]] = {}
    for key in keys:
        shown = humanize(key)
        g = key_goal(key, scenario)
        # Rank: this goal's key first, then the latest earlier goal, then later goals.
        rank = (0, 0) if g == goal else ((1, -g) if g < goal else (2, g))
        if shown not in chosen or rank < chosen[shown][0]:
            chosen[shown] = (rank, key)
    shown_all = list(chosen)
    kept = [s for s in shown_all
            if not drop_contained or not any(o != s and f" {s} " in f" {o} " for o in shown_all)]
    return [chosen[s][1] for s in kept]


def answer_keys(question: str, scenario: Scenario, goal: int) -> list[str]:
    """The facts a question asks for: the keys it names literally (as whole words) when there are any.

    Literal names are chosen before keys whose words merely contain them are dropped: "What is the
    file?" asks for `file`, not for `file id`, even though "file" is part of "file id". Choosing after
    the drop answered `file id` to every such question, and the dialogue looped until its turn budget.
    """
    raw = keys_asked(question, list(scenario.known_info))
    lowered = " ".join(question_sentences(question)).lower()
    spans: dict[str, list[tuple[int, int]]] = {}
    for k in raw:
        pattern = rf"(?<![\w-]){re.escape(humanize(k).lower())}(?![\w-])"
        found = [m.span() for m in re.finditer(pattern, lowered)]
        if found:
            spans[k] = found
    # A literal name counts where it is not part of a longer literal name ("file" in "target file").
    free = [k for k, ks in spans.items()
            if any(not any(o != k and a >= b0 and b <= b1 and (b1 - b0) > (b - a) for o in spans
                           for b0, b1 in spans[o]) for a, b in ks)]
    if free:  # in the order the question names them
        free.sort(key=lambda k: spans[k][0][0])
        return current_keys(free, goal, scenario, drop_contained=False)
    return current_keys(raw, goal, scenario)


# "Yes, turn it off." and "Sure, the name is …" answer a question; in a request the user opens plainly.
ANSWER_OPENER = re.compile(r"^(?:Yes|Sure|Of course)\s*[,.—-]+\s*(\w)")


def _capital(m: re.Match[str]) -> str:
    return m.group(1).upper()


GREETED = re.compile(r"^\W*(?:hi|hello|hey|good (?:morning|afternoon|evening)|greetings)\b", re.IGNORECASE)


def _stated(text: str, key: str, value: Any) -> bool:
    """True when `text` already says `key` is `value` (as `find_fact` reads it)."""
    raw = find_fact([text], key)
    if raw is not None and isinstance(value, bool):
        return coerce(raw, {"type": "boolean"}) is value
    return raw is not None and raw.lower() == render_value(value).lower()


def _stated_last(texts: list[str], key: str, value: Any) -> bool:
    """True when the latest of `texts` that says `key` says it is `value`."""
    latest = next((t for t in reversed(texts) if find_fact([t], key) is not None), None)
    return latest is not None and _stated(latest, key, value)


def goal_message(scenario: Scenario, index: int, said: list[str]) -> str:
    """The message that states goal `index`, with the facts the user volunteers for it."""
    goal = scenario.goals[index]
    facts = {k: value_for(scenario, k, said) for k in goal.volunteer if k in scenario.known_info}
    # Facts the goal's own words already give, or that the user already said, are not said again:
    # a person does not re-send their printer's name with every request.
    # Only the latest mention counts: "orientation is portrait" said since "… is landscape" must be corrected.
    facts = {k: v for k, v in facts.items() if not _stated(goal.description, k, v)
             and not _stated_last(said, k, v)}
    opener = ""
    if index == 0 and not GREETED.match(goal.description):
        opener = GREETINGS[scenario.seed % len(GREETINGS)] + " "
    text = f"{opener}{goal.description}"
    if facts:
        variant = scenario.seed + index
        if len(facts) <= 2 or sayable(facts):
            text += " " + ANSWER_OPENER.sub(_capital, say_facts(facts, variant))
        else:
            text += "\n" + DETAILS[variant % len(DETAILS)] + "\n" + fact_lines(facts)
    return text


def goals_stated(scenario: Scenario, said: list[str]) -> int:
    """How many goals the user has already stated (they are stated in order)."""
    n = 0
    for i, goal in enumerate(scenario.goals):
        if any(goal.description in text for text in said):
            n = i + 1
    return n


async def scripted_user(view: RoleView) -> dict[str, Any]:
    """The next user message for this view."""
    scenario = view.scenario
    said = _said(view)
    if not said:
        return {"role": "user", "content": goal_message(scenario, 0, said)}
    if unanswered(view.messages):
        text, stop = reask(view.messages)
        if text:
            return {"role": "user", "content": f"{text} {STOP_TOKEN}" if stop else text, **({"stop": True} if stop else {})}
    last = view.messages[-1]
    reply = str(last.get("content") or "") if last.get("role") == "user" else ""
    asked = answer_keys(reply, scenario, max(goals_stated(scenario, said) - 1, 0))
    if asked:
        facts = {k: value_for(scenario, k, said) for k in asked}
        return {"role": "user", "content": say_facts(facts, scenario.seed + len(said))}
    if is_confirmation_request(reply):
        return {"role": "user", "content": GO_AHEAD[(scenario.seed + len(said)) % len(GO_AHEAD)]}
    questions = question_sentences(reply)
    n = goals_stated(scenario, said)
    wants_more = questions and any(w in questions[-1].lower() for w in ("anything else", "help you with", "something else"))
    if questions and not wants_more:
        return {"role": "user", "content": NO_INFO[(scenario.seed + len(said)) % len(NO_INFO)]}
    if n < len(scenario.goals):
        return {"role": "user", "content": goal_message(scenario, n, said)}
    return {"role": "user", "content": f"{CLOSINGS[scenario.seed % len(CLOSINGS)]} {STOP_TOKEN}", "stop": True}
