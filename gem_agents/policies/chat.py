"""Chat-model policies: the user, the assistant and the tool environment played by a model.

They take a ModelClient (any provider) and return a policy with the graph's one signature. A
malformed tool call from the model is passed through untouched: the tool environment answers it
with an error the assistant reads on its next turn.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gem_agents.models.client import ModelClient
from gem_agents.prompting import fill, load_prompt, prompts_hash
from gem_agents.user.dialogue_text import find_fact, humanize, render_value
from graphs.roles import STOP_TOKEN, Policy, RoleView
from tools_runtime.records import Scenario

PKG = "gem_agents.policies"
OPENING = "Hello! How can I help you today?"



def rollout_salt(view: RoleView) -> str:
    """The cache salt of a rollout's calls: its scenario and seed.

    Trials of one task share the scenario id and differ only in seed (`gem eval`); without the seed in
    the salt, trial 2's first call would replay trial 1's cached answer and pass^k would measure one
    sample k times.
    """
    return f"{view.scenario.id}:s{view.scenario.seed}"

def policy_lines(scenario: Scenario) -> str:
    """The environment's rules as prompt lines, the enforced ones first; a default when it states none."""
    rules = sorted(scenario.workflow.policy, key=lambda r: r.strength != "must")
    if not rules:
        return "- (this service states no special rules; follow the general ones below)"
    out = []
    for r in rules:
        tag = "must" if r.strength == "must" else "recommended"
        extra = " Ask the user to confirm before doing it." if r.confirm else ""
        out.append(f"- [{tag}] {r.text.strip()}{extra}")
    return "\n".join(out)


PLATFORM_WORDS = {"computer": "on a computer", "command_line": "on the command line", "website": "on a website",
                  "app": "in an app", "phone": "on a phone", "machine": "on a device"}


def assistant_prompt(scenario: Scenario) -> str:
    """The assistant's system prompt for a scenario: the service it acts for, and its policy."""
    wf = scenario.workflow
    domain = wf.title or wf.id
    # The category labels (domain, platform) are corpus bookkeeping; the prompt says where the work is done.
    where = PLATFORM_WORDS.get(wf.platform or "", "")
    if where:
        domain += f", done {where}"
    return fill(load_prompt(PKG, "assistant_system.txt"), domain=domain, policy=policy_lines(scenario))


def fact_goal(key: str) -> int | None:
    """The goal a fact key belongs to (`order_id@2` → 2, `order_id@2.3` → 2), None when shared."""
    suffix = key.partition("@")[2].split(".")[0]
    return int(suffix) if suffix.isdigit() else None


def fact_list(scenario: Scenario) -> str:
    """The user's facts as prompt lines, grouped by request when later requests reuse the same words.

    Chained goals can know two values shown as "order id"; a model user can only keep them apart
    when it is told which request each one is for.
    """
    shared: list[str] = []
    per_goal: dict[int, list[str]] = {}
    for key, value in scenario.known_info.items():
        line = f"- {humanize(key)}: {render_value(value)}"
        goal = fact_goal(key)
        (shared if goal is None else per_goal.setdefault(goal, [])).append(line)
    if not per_goal:
        return "\n".join(shared) or "- (nothing)"
    parts = ["\n".join(shared)] if shared else []
    parts += [f"For request {g + 1}:\n" + "\n".join(lines) for g, lines in sorted(per_goal.items())]
    return "\n".join(parts)


def user_prompt(scenario: Scenario) -> str:
    """The user simulator's system prompt: persona, goals, known facts, planned slips.

    With a task, the user sees its instruction and known info only — never the tools or the gold
    actions — and facts marked `withhold` are listed apart, to be given only when asked.
    """
    goals = "\n".join(f"{i + 1}. {g.description}" for i, g in enumerate(scenario.goals))
    facts = user_facts(scenario)
    slips = [e for e in scenario.planned_errors if e.kind in ("not_found", "invalid_value") and e.key]
    mistakes = ""
    if slips:
        mistakes = "\nThe first time you give these, make this slip; correct it when the assistant says it failed:\n"
        mistakes += "\n".join(f"- {humanize(e.key or '')}: say {render_value(e.wrong_value)}" for e in slips) + "\n"
    return fill(load_prompt(PKG, "user_system.txt"), persona=scenario.persona or "an ordinary customer",
                goals=goals, facts=facts, mistakes=mistakes, stop=STOP_TOKEN)


def user_facts(scenario: Scenario) -> str:
    """The user's facts as prompt lines, those to give only when asked listed apart."""
    task = scenario.task
    withheld = {i.key for i in task.known_info if i.withhold} if task is not None else set()
    # Facts no goal volunteers (the refiner's `withhold_info`, secrets) are withheld too: listing them
    # with the rest made a model-played user volunteer what the assistant was meant to ask for.
    if any(g.volunteer for g in scenario.goals):
        withheld |= {k for k in scenario.known_info if not any(k in g.volunteer for g in scenario.goals)}
    if withheld:
        shown = scenario.model_copy(update={"known_info": {k: v for k, v in scenario.known_info.items()
                                                           if k not in withheld}})
        facts = fact_list(shown)
        facts += "\nGive these only if the assistant asks for them (never volunteer them):\n" + "\n".join(
            f"- {humanize(k)}: {render_value(scenario.known_info[k])}" for k in scenario.known_info if k in withheld)
    else:
        facts = fact_list(scenario)
    return facts


def chat_assistant(client: ModelClient) -> Policy:
    """The assistant as a chat model with the scenario's tools bound."""

    async def policy(view: RoleView) -> dict[str, Any]:
        history = list(view.messages)
        if not history or history[0].get("role") != "system":  # the dialogue may already open with it
            history = [{"role": "system", "content": assistant_prompt(view.scenario)}, *history]
        messages = history
        reply = await client.chat(messages, tools=view.tools or None, stage="assistant", salt=rollout_salt(view))
        return reply.message

    return policy


USER_REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reply": {"type": "string", "maxLength": 300}, "done": {"type": "boolean"}},
    "required": ["reply", "done"], "additionalProperties": False}
REPEAT_NOTE = ("That message is not the customer's. You are the CUSTOMER: do not repeat the assistant, do not "
               "refuse or offer help. {hint}Write the customer's reply again as JSON.")
# What an assistant says and a customer does not: a small model playing the user drifts into these.
ASSISTANT_LINES = ("can't assist", "cannot assist", "how can i help", "how may i help", "i'm sorry, but",
                   "let me know if you have any other", "as an ai", "i can help you", "would you like me to",
                   "would you like to")
# The assistant has finished a request and offers more help, or says goodbye.
OFFERS_MORE = re.compile(r"\b(anything else|something else|else i can|help you with|good ?bye|have a (?:great|nice|good)"
                         r"|take care|you're welcome)\b", re.IGNORECASE)
THANKS = "Thank you, that's all I needed."


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9@._-]+", text.lower()) if len(w) > 2}


def repeats(reply: str, earlier: list[str]) -> bool:
    """True when `reply` mostly repeats one of `earlier` (the assistant's last words, the user's own last line)."""
    mine = _words(reply)
    if not mine:
        return False
    for other in earlier:
        theirs = _words(other)
        if theirs and len(mine & theirs) / len(mine) >= 0.7:
            return True
    return False


def out_of_role(reply: str) -> bool:
    """True when a user reply reads like the assistant's side (a refusal, an offer of help)."""
    low = reply.lower()
    return any(s in low for s in ASSISTANT_LINES)


# A sentence that asks for something; a report ("It now reads folder name: Archive.") names a fact but asks
# nothing, and a model user shown it as a question re-sent the fact after the work was done.
_ASKING = re.compile(r"\?|\b(?:tell me|let me know|please (?:give|provide|share|confirm|enter|send)|i need|"
                     r"i'll need|need (?:your|the))\b", re.IGNORECASE)


def asked_facts(scenario: Scenario, last: str) -> dict[str, Any]:
    """The user's facts the assistant's last message asks about (their words appear in a sentence that asks)."""
    asking = [x for x in re.split(r"(?<=[.!?])\s+", last) if _ASKING.search(x) and not OFFERS_MORE.search(x)]
    low = " ".join(asking).lower()
    out = {}
    for key, value in scenario.known_info.items():
        words = [w for w in humanize(key).lower().split() if len(w) > 2 and w not in ("the", "your")]
        if words and all(w in low for w in words[-2:]):
            out[key] = value
    return out


def fact_sentences(facts: dict[str, Any]) -> str:
    """The facts as plain sentences ("My order id is A1."): what the user says when asked for them."""
    return " ".join(f"My {humanize(k)} is {render_value(v)}." for k, v in facts.items())


def states_facts(text: str, facts: dict[str, Any]) -> bool:
    """True when `text` states every fact in `facts` so a reader finds it ("my/the <fact> is <value>")."""
    return all(same_fact(find_fact([text], k), v) for k, v in facts.items())


def same_fact(found: str | None, value: Any) -> bool:
    """True when a value read back from text is the fact's value (case and trailing punctuation aside)."""
    return found is not None and found.strip().strip(".!\"'").lower() == render_value(value).strip().lower()


def _distinct_words(scenario: Scenario, index: int) -> set[str]:
    """The words of request `index` that no other request uses (all its words when none are its own)."""
    mine = {w for w in _words(scenario.goals[index].description) if len(w) > 3}
    others = set().union(*(_words(g.description) for i, g in enumerate(scenario.goals) if i != index))
    return (mine - others) or mine


def requests_brought_up(scenario: Scenario, lines: list[str]) -> int:
    """How many of the user's requests, in order, its lines have brought up (most of a request's own words said)."""
    if not lines or not scenario.goals:
        return 0
    said = set().union(*(_words(t) for t in lines))
    n = 1  # the opening line states the first request, in whatever words
    for i, goal in enumerate(scenario.goals[1:], 1):
        words = _distinct_words(scenario, i)
        if not any(goal.description in t for t in lines) and (not words or len(words & said) / len(words) < 0.5):
            break
        n = i + 1
    return n


def resends_facts(scenario: Scenario, reply: str, mine: list[str]) -> bool:
    """True when `reply` only says again what the user already said: an earlier line, or facts already given."""
    if repeats(reply, mine):
        return True
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", reply.strip()) if x.strip()]
    values = [render_value(v).lower() for v in scenario.known_info.values() if not isinstance(v, bool)]
    given = [g for g in values if len(g) > 2 and any(g in t.lower() for t in mine)]
    return bool(sentences) and bool(given) and all(any(g in x.lower() for g in given) for x in sentences)


def settle_user_reply(scenario: Scenario, history: list[dict[str, Any]], text: str, done: bool) -> tuple[str, bool]:
    """A model user's reply held to its task: it ends only when every request is brought up, and it does not
    re-send facts it already gave once the assistant has finished and offers more help.

    History is the user's view (its own lines are `assistant`). A small model ends after its first request
    or repeats "My add name is …" after the write is done; the scripted user's next request, or thanks,
    replaces such a reply.
    """
    from gem_agents.user.scripted import goal_message, reask, unanswered

    if history and unanswered(history):
        # The assistant said nothing: ask again once (then give up), never thank an empty reply.
        again, stop = reask(history)
        if again:
            return again, stop
    mine = [str(m.get("content") or "") for m in history if m.get("role") == "assistant"]
    last = next((str(m.get("content") or "") for m in reversed(history) if m.get("role") == "user"), "")
    if not history or asked_facts(scenario, last):
        return text, done and bool(history)
    before = requests_brought_up(scenario, mine)
    now = requests_brought_up(scenario, [*mine, text])
    finished = bool(OFFERS_MORE.search(last))
    resent = resends_facts(scenario, text, mine)
    if before < len(scenario.goals) and now == before and (done or (resent and finished)):
        return goal_message(scenario, before, mine), False
    if resent and finished and before == len(scenario.goals):
        return THANKS, True
    return text, done


def user_turn_messages(scenario: Scenario, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One prompt for a small model playing the user: its brief, the transcript, the last assistant line apart.

    History arrives flipped (the user speaks as `assistant`); here it is written out as "Customer:" and
    "Assistant:" lines in one message, so the model never plays a chat role it may confuse with its
    training's (a 0.5B given the flipped chat answered as a helpdesk: "I'm sorry, but I can't assist").
    """
    lines = [f"{'Customer' if m['role'] == 'assistant' else 'Assistant'}: {m.get('content') or ''}" for m in history]
    last = next((m.get("content") or "" for m in reversed(history) if m["role"] == "user"), OPENING)
    convo = "The chat so far:\n" + ("\n".join(lines) if lines else f"Assistant: {OPENING}")
    asked = asked_facts(scenario, last)
    hint = ("It asks for: " + "; ".join(humanize(k) for k in asked) + ". Answer with: \""
            + fact_sentences(asked) + "\"\n") if asked else ""
    goals = "\n".join(f"{i + 1}. {g.description}" for i, g in enumerate(scenario.goals))
    turn = fill(load_prompt(PKG, "user_turn.txt"), persona=scenario.persona or "an ordinary customer", goals=goals,
                facts=user_facts(scenario), conversation=convo, last=last, asked=hint)
    return [{"role": "user", "content": turn}]


def _structured_user(client: ModelClient) -> Policy:
    """The user on a small model: one JSON reply under a grammar; an echo or an assistant's line re-asked once."""

    async def policy(view: RoleView) -> dict[str, Any]:
        history = view.messages or []
        messages = user_turn_messages(view.scenario, history)
        last = next((m.get("content") or "" for m in reversed(history) if m["role"] == "user"), "")
        mine = next((m.get("content") or "" for m in reversed(history) if m["role"] == "assistant"), "")
        asked = asked_facts(view.scenario, last)
        text, done = "", False
        for attempt in range(2):
            reply = await client.chat(messages, json_schema=USER_REPLY_SCHEMA, schema_name="user_reply",
                                      stage="user", salt=f"{rollout_salt(view)}:{attempt}")
            try:
                data = json.loads(reply.text)
            except ValueError:
                data = {"reply": reply.text}
            data = data if isinstance(data, dict) else {}
            text, done = str(data.get("reply") or "").strip(), bool(data.get("done"))
            # A question left open is not the end: a small model sets done after a refusal or mid-task.
            if done and (asked or not history):
                done = False
            echo = repeats(text, [t for t in (last, mine) if t])
            # Asked for a fact, the reply must state it readably; otherwise it must not echo.
            bad = not text or out_of_role(text) or (not states_facts(text, asked) if asked else echo)
            if not bad:
                break
            if attempt == 1:
                if asked:
                    # Re-asked, it still did not state what it was asked for (a 1.5B restates its request):
                    # the fact is appended in the form the user was told to use, its words kept before it.
                    keep = "" if echo or out_of_role(text) else text
                    text, done = f"{keep} {fact_sentences(asked)}".strip(), False
                elif mine and repeats(text, [mine]):
                    # It restates its own request to an assistant that asks nothing: the request was
                    # served (a small model does not say so); end politely rather than loop.
                    text, done = "Thank you, that's all.", True
                break
            hint = f'Say: "{fact_sentences(asked)}" ' if asked else ""
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        {"role": "user", "content": REPEAT_NOTE.format(hint=hint)}]
            done = False
        text, done = settle_user_reply(view.scenario, history, text, done)
        if done and STOP_TOKEN not in text:
            text = f"{text} {STOP_TOKEN}".strip()
        return {"role": "user", "content": text or STOP_TOKEN}

    return policy


def chat_user(client: ModelClient) -> Policy:
    """The user as a chat model; it sees the conversation with roles flipped.

    A role set to `structured_output: json_schema` (the embedded small models) answers in one
    constrained shape instead (`_structured_user`): a 1.5B model given the flipped chat echoed the
    assistant. `auto` keeps the chat form.
    """
    if client.cfg.structured_output == "json_schema":
        return _structured_user(client)

    async def policy(view: RoleView) -> dict[str, Any]:
        history = view.messages or []
        messages = [{"role": "system", "content": user_prompt(view.scenario)},
                    {"role": "user", "content": OPENING}, *history]
        if history and history[-1]["role"] == "assistant":  # never end on our own line
            messages.append({"role": "user", "content": "(waiting for your reply)"})
        reply = await client.chat(messages, stage="user", salt=rollout_salt(view))
        text = reply.text.strip()
        said_done = STOP_TOKEN in text
        text, done = settle_user_reply(view.scenario, history, text.replace(STOP_TOKEN, "").strip(), said_done)
        if done:
            text = f"{text} {STOP_TOKEN}".strip()
        return {"role": "user", "content": text or STOP_TOKEN}

    return policy


def chat_tool_env(client: ModelClient) -> Policy:
    """The tool environment as a chat model, asked only for tools no backend operation fits."""
    schema = {"type": "object", "properties": {"result": {"type": "object"}}, "required": ["result"]}

    async def policy(view: RoleView) -> dict[str, Any]:
        req = view.request or {}
        prompt = load_prompt(PKG, "tool_env_system.txt")
        convo = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in view.messages[-12:])
        ask = json.dumps({"tool": req.get("name"), "arguments": req.get("arguments"),
                          "default_result": req.get("default_result")}, ensure_ascii=False)
        reply = await client.chat([{"role": "system", "content": prompt},
                                   {"role": "user", "content": f"Conversation:\n{convo}\n\nCall:\n{ask}"}],
                                  json_schema=schema, schema_name="tool_result", stage="tool_env",
                                  salt=rollout_salt(view))
        try:
            data = json.loads(reply.text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    return policy


def chat_prompts_hash() -> str:
    """Fingerprint of the role prompts (provenance of model-played dialogues)."""
    return prompts_hash(*(load_prompt(PKG, n) for n in ("assistant_system.txt", "user_system.txt",
                                                         "tool_env_system.txt")))
