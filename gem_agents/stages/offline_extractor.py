"""Stage 2 without a model: a deterministic, rule-based workflow extractor.

It reads the step structure how-to texts already have — numbered lists (GNOME Help `1.`, wikiHow
`1.` and `STEP 1.`), bulleted lists, tldr pages (`- description:` then a `` `command` `` line) and,
failing those, runs of imperative lines — and turns each step into one tool:

* the name is the step's leading verb and its object (`Click the Properties… button` →
  `click_properties_button`), with verbs mapped onto the vocabulary `tools_runtime.binding` binds
  to backend operations (`Type …` → `set_…`, `switch X to on` → `enable_x`, `check Reverse` →
  `enable_reverse`) so the simulated backend does something meaningful with each call;
* parameters come from the values the text names: UI labels after select/choose (under the
  setting the step's leading clause names), quoted and inline values (`Type 4,1,2,3`), amounts
  in recipes, `{{placeholders}}` in tldr commands, and "the X you want" choices;
* steps that name a capability beyond a setting (sign in, search by A and B, book X for a time, send X to
  Y, move X to Y, compress X, an option from a drop-down list) carry a `kind` (`procedure_draft`);
* the graph is the steps in order (a tldr page's examples are alternatives: one stage).

A text the rules cannot turn into at least two steps is rejected with the reason, never
emitted as a junk workflow; the result is validated with `workflow_from_dict` and `build_scenario`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from gem_agents.stages import ExtractionResult
from gem_agents.stages.prefilter import IMPERATIVES, LEAD_WORDS
from tools_runtime.binding import bind_tools, singular
from tools_runtime.env_validate import errors, validate_environment
from tools_runtime.environment import EnvironmentSpecError
from tools_runtime.executor import initial_state
from tools_runtime.records import Document
from tools_runtime.toolspec import ToolSpec
from tools_runtime.workflow_io import WorkflowError, workflow_from_dict

MAX_TOOLS = 12
MIN_STEPS = 2

# ---------------------------------------------------------------------------------------------------------
# vocabulary

# Verbs beyond the pre-filter's list that open steps in help pages, recipes and wikiHow.
EXTRA_VERBS = frozenset("""
absorb acquire allow approve authorize bump conduct dice drizzle fluff fry garnish grant grill hack
learn peel practice practise release roast saute sauté season shake soak sprinkle stay study
think tick understand whisk wear
""".split())
VERBS = IMPERATIVES | EXTRA_VERBS

# Verb → the verb the tool name uses. Anything unlisted keeps its own verb; one binding.py does not
# know becomes an `action` (a recorded side effect), which is the right reading of "press", "pour" …
VERB_MAP = {
    "type": "set", "enter": "set", "input": "set", "fill": "set", "specify": "set", "write": "set",
    "choose": "select", "pick": "select", "tick": "enable", "uncheck": "disable",
    "launch": "open", "visit": "open", "navigate": "open", "go": "open", "access": "open",
    "tap": "click", "double-click": "double_click", "right-click": "right_click",
    "locate": "find", "look": "find", "display": "show", "modify": "change", "erase": "delete",
    "authorize": "allow", "approve": "allow", "grant": "allow", "sauté": "saute",
    "toggle": "toggle", "reboot": "restart",
}
NOT_VERBS = frozenset("""
a an the this that these those your my our their its his her it they you we he she there here some any
all each every one both either neither if when while once after before as for with in on at by from
to of under within inside depending although because since not no do does don't never avoid
""".split())
MODALS = frozenset("can could will would should may might must is are was were has have had does did "
                   "shall isn't aren't won't".split())
DETERMINERS = frozenset("the a an your my our their its this that these those any all each every some one "
                        "both either another his her".split())
CHOICE_ADJ = frozenset("desired correct appropriate preferred chosen specific relevant right wanted".split())
# Words that end an object phrase ("Click Bluetooth | to open the panel").
STOP_WORDS = frozenset("""
of you it they we he she i and or then to so until when if by from in on into onto with under for at over
through before after while using via as which that who where because than but next again instead there here
is are be will can
above below beside behind near inside outside across along around between among against toward towards without
within underneath beneath except during per upon
""".split())
# Words an object phrase never starts or ends on: "Make him create …" names no object.
PRONOUNS = frozenset("him her them me us it you yourself itself themselves others".split())
LEADING_PREPS = frozenset("on to for at in into".split())  # "click on X", "go to X", "look for X"
PARTICLES = frozenset("up down in out on off over back".split())
WH_WORDS = frozenset("what how why where when whether which".split())
GENERIC_HEADS = frozenset("number numbers name names type kind list size amount address value values order "
                          "length location version level title".split())
UI_NOUNS = frozenset("button buttons tab tabs menu list drop-down dropdown section window panel dialog box "
                     "checkbox check-box switch toggle field sidebar page pane option options icon item "
                     "area bar toolbar slider entry overview value".split())
LABEL_JOINERS = frozenset(("&", "/", "by", "and", "of", "to", "-", ">"))
LABEL_PARTICLES = frozenset(("in", "out", "up", "on", "off"))
SWITCH_NOUNS = frozenset("switch toggle checkbox check-box".split())
UNITS = frozenset("cup cups tablespoon tablespoons tbsp teaspoon teaspoons tsp g kg gram grams ml l liter "
                  "liters litre litres ounce ounces oz pound pounds lb lbs inch inches cm mm minute minutes "
                  "hour hours second seconds clove cloves pinch slice slices piece pieces pat".split())
NUMBER_WORDS = frozenset("two three four five six seven eight nine ten twelve half".split())  # not "one of"
SKIP_PREFIX = re.compile(r"^(?:you (?:may|might|will|can|should|need to|have to|must)(?: have to| need to)?"
                         r"|please|simply|just|then|now|also|first|finally|next|carefully|gently)\s+",
                         re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------
# step structure


@dataclass
class RawStep:
    """One step as the text gives it: its line, indented sub-lines, and a tldr command."""

    text: str
    subs: list[str] = field(default_factory=list)
    command: str = ""
    number: int | None = None


_NUM = re.compile(r"^(?P<indent>\s*)(?:STEP\s+)?(?P<n>\d{1,2})\s*[.)]\s*(?P<body>.*)$", re.IGNORECASE)
_BUL = re.compile(r"^(?P<indent>\s*)[-*•]\s+(?P<body>\S.*)$")
_CMD = re.compile(r"^\s*`(?P<cmd>[^`]+)`\s*$")
_HEAD = re.compile(r"^\s*(?:#{1,6}\s|SECTION:|TITLE:)", re.IGNORECASE)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def numbered_lists(text: str) -> list[list[RawStep]]:
    """Every numbered list in `text`; a list ends where numbering restarts."""
    lists: list[list[RawStep]] = []
    current: list[RawStep] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _NUM.match(line)
        if m and _indent(line) <= 1:
            n = int(m.group("n"))
            body = m.group("body").strip()
            if not body:  # wikiHow: "1." alone, the step on the next non-blank line
                j = i + 1
                while j < len(lines) and not lines[j].strip():
                    j += 1
                if j < len(lines) and not _NUM.match(lines[j]):
                    body = lines[j].strip()
                    i = j
            if current and (current[-1].number or 0) >= n:
                lists.append(current)
                current = []
            current.append(RawStep(text=body, number=n))
        elif current and line.strip() and not _HEAD.match(line):
            if _indent(line) >= 2:
                current[-1].subs.append(line.strip().lstrip("-*• ").strip())
        i += 1
    if current:
        lists.append(current)
    return [lst for lst in lists if lst]


def tldr_steps(text: str) -> list[RawStep]:
    """`- description:` bullets each followed by a `` `command` `` line (tldr pages)."""
    steps: list[RawStep] = []
    pending: RawStep | None = None
    for line in text.split("\n"):
        b = _BUL.match(line)
        c = _CMD.match(line)
        if b:
            # "[l]ong format": tldr marks the letter an option is named after.
            body = re.sub(r"\[(\w{1,3})\]", r"\1", b.group("body")).strip().rstrip(":").strip()
            pending = RawStep(text=body)
        elif c and pending is not None:
            pending.command = c.group("cmd").strip()
            steps.append(pending)
            pending = None
    return steps


def bulleted_steps(text: str) -> list[RawStep]:
    """Top-level bullets, with deeper bullets as sub-lines."""
    steps: list[RawStep] = []
    base: int | None = None
    for line in text.split("\n"):
        b = _BUL.match(line)
        if not b:
            continue
        ind = _indent(line)
        base = ind if base is None else base
        if ind > base and steps:
            steps[-1].subs.append(b.group("body").strip())
        else:
            steps.append(RawStep(text=b.group("body").strip()))
    return steps


def imperative_lines(text: str) -> list[RawStep]:
    """Plain lines that open with an imperative verb (recipe blogs write steps this way)."""
    return [RawStep(text=line.strip()) for line in text.split("\n")
            if line.strip() and not _HEAD.match(line) and action_verb(line.strip())[0]]


# ---------------------------------------------------------------------------------------------------------
# words

_TOKEN = re.compile(r"[^\W\d_][\w'’&-]*|\d+(?:[.,/]\d+)*|…|\.\.\.|[+>/]|\S")


def tokens(text: str) -> list[str]:
    """Words, numbers and single punctuation marks."""
    return _TOKEN.findall(text)


def snake(words: list[str]) -> str:
    """Lower-case ASCII snake_case of `words` (accents folded, other characters dropped)."""
    out = []
    for w in words:
        w = unicodedata.normalize("NFKD", w).encode("ascii", "ignore").decode()
        w = re.sub(r"[^a-z0-9]+", "_", w.lower().replace("’", "").replace("'", "")).strip("_")
        if w:
            out.append(w)
    return "_".join(out)


def sentences(text: str) -> list[str]:
    """Split at sentence ends (a `.`/`!`/`?` then a capital), keeping `e.g.` and `Sign in...` intact."""
    text = re.sub(r"\s+", " ", text).strip()
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"“(])", text)
    merged: list[str] = []
    for p in parts:
        if merged and re.search(r"\b(?:e\.g|i\.e|etc|vs|approx)\.$", merged[-1]):
            merged[-1] = f"{merged[-1]} {p}"
        else:
            merged.append(p)
    return [p.strip() for p in merged if p.strip()]


def _looks_like_unknown_verb(word: str, rest: list[str]) -> bool:
    """Whether an unlisted first word reads as an imperative (`Poke a hole`, not `Severe x could …`)."""
    w = word.lower()
    if not w.isalpha() or w in NOT_VERBS or w in MODALS or len(w) < 3:
        return False
    if w.endswith(("ing", "ly", "ed", "tion", "ness")):
        return False
    if any(t.lower() in MODALS for t in rest[:3]):
        return False
    return bool(rest) and (rest[0].lower() in DETERMINERS or rest[0].lower() in PARTICLES
                           or rest[0][:1].isdigit() or rest[0].islower())


def action_verb(sentence: str, *, lenient: bool = False) -> tuple[str, str, str]:
    """(verb, the text after it, the leading context clause) of an imperative sentence, or ('', '', '').

    A leading "In the X list," / "Under X," / "If …," clause is skipped (and returned as context);
    "you may have to" and similar openers are skipped. `lenient` accepts unlisted verbs.
    """
    s = sentence.strip().lstrip("-*•>").strip()
    context = ""
    for _ in range(3):
        first = s.split(" ", 1)[0].lower().strip(",")
        if first in LEAD_WORDS and "," in s[:160]:
            clause, _, rest = s.partition(",")
            context = f"{context}, {clause}" if context else clause
            s = rest.strip()
            continue
        break
    s = SKIP_PREFIX.sub("", s)
    s = SKIP_PREFIX.sub("", s)
    toks = tokens(s)
    if len(toks) > 1 and toks[0].lower().endswith("ly") and toks[1].lower() in VERBS:
        s = s[len(toks[0]):].strip()  # "Finely chop …", "Gently stir …"
        toks = toks[1:]
    if not toks:
        return "", "", context
    word = toks[0].lower()
    if word in ("do", "don't", "never", "avoid"):
        return "", "", context  # "Do not …", "Never …": a warning, not a step
    if word == "make" and len(toks) > 1 and toks[1].lower() == "sure":
        return "make sure", s.split(" ", 2)[2] if s.count(" ") >= 2 else "", context
    if word in VERBS or (lenient and _looks_like_unknown_verb(toks[0], toks[1:])):
        rest = s[len(toks[0]):].strip()
        return word, rest, context
    return "", "", context


# ---------------------------------------------------------------------------------------------------------
# one step → one tool


@dataclass
class ToolDraft:
    """A tool being built from one step."""

    name: str
    description: str
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    step: str = ""
    # What the step does beyond a setting, when its sentence says so (`procedure_draft`): session,
    # search, create, send, move, action, option. Empty for the other steps.
    kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The tool as a bare JSON tool definition; every parameter is required."""
        props = {}
        for key, schema in self.params.items():
            schema = dict(schema)
            if "enum" in schema:
                schema["enum"] = list(dict.fromkeys(schema["enum"]))
            props[key] = schema
        return {"name": self.name, "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": list(props)}}


def _label(toks: list[str]) -> tuple[list[str], int]:
    """A UI label at the start of `toks` and how many tokens it spans.

    GNOME writes labels in sentence case ("Add world clocks… button"), so when a UI noun follows
    within a few plain words, everything up to it is the label; otherwise the label is the run of
    Capitalized words with `&`, `/`, `>`, `by` … between them (`Settings > System`).
    """
    for k in range(1, 7):
        if k < len(toks) and toks[k].lower() in UI_NOUNS:
            span = toks[:k]
            plain = all(t[:1].isalnum() or t in ("…", "...", "&", "/", "+", "-") for t in span)
            # "Bluetooth to open the panel" is a label then a purpose, not one long label.
            if plain and not any(t.lower() in (STOP_WORDS | DETERMINERS) - {"and", "by", "of"} for t in span):
                label = [t for t in span if t not in ("…", "...")]
                return label, k
            break
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t[:1].isupper() or (t[:1].isdigit() and out) or t == "+":
            out.append(t)
        elif t in LABEL_JOINERS and out and nxt[:1].isupper():
            out.append(t)
        elif t.lower() in LABEL_PARTICLES and out and len(out) == 1 and not nxt[:1].isalnum():
            out.append(t)  # "Sign in…", "Log out"
        elif t in ("…", "...") and out:
            pass
        else:
            break
        i += 1
    return out, i


def _name_words(words: list[str]) -> list[str]:
    """Label words fit for a name: connectors and punctuation dropped."""
    return [w for w in words if w[:1].isalnum() and w.lower() not in LABEL_JOINERS]


def _clean_value(text: str) -> str:
    """A value as the text names it, without surrounding punctuation, quotes or a trailing ellipsis."""
    text = text.strip().strip(".,;:").strip()
    text = re.sub(r"\s*(?:…|\.\.\.)$", "", text)
    return text.strip(" \"'“”‘’`")


def _context_label(context: str) -> list[str]:
    """The setting a leading clause names: `In the Orientation drop-down list` → ['Orientation']."""
    if not context:
        return []
    clause = context.split(",")[-1].strip()
    toks = tokens(clause)
    words = [t for t in toks[1:] if t.lower() not in DETERMINERS]
    label: list[str] = []
    for t in words:
        if t.lower() in UI_NOUNS:
            break
        if t[:1].isupper() or (label and t in ("&", "and", "/")):
            label.append(t)
        elif label:
            break
    while label and label[-1] in ("&", "and", "/"):
        label.pop()
    return label


def _quoted(text: str) -> list[str]:
    """Values written in quotes or backticks."""
    vals = re.findall(r"[\"“]([^\"”]{1,60})[\"”]", text)
    vals += re.findall(r"`([^`]{1,60})`", text)
    return [_clean_value(v) for v in vals if _clean_value(v)]


LY_NOUNS = frozenset("family supply assembly reply rally belly jelly bully ally anomaly monopoly italy july "
                     "butterfly dragonfly lily holly poly".split())


def is_adverb(word: str) -> bool:
    """An -ly adverb ("regularly", "manually"), never a field or parameter name."""
    w = word.lower()
    return len(w) > 4 and w.endswith("ly") and w not in LY_NOUNS


def _object(rest: str) -> tuple[list[str], list[str], bool, str]:
    """(name words, label words, the user chooses it, amount) of the phrase after a verb."""
    toks = tokens(rest)
    i = 0
    if toks and toks[0].lower() in LEADING_PREPS:
        i = 1
    elif len(toks) > 1 and toks[0].lower() in PARTICLES and toks[1].lower() in DETERMINERS:
        i = 1  # "Set up your kit": the particle belongs to the verb, the object follows
    words: list[str] = []
    label: list[str] = []
    choice = False
    amount = ""
    # A leading quantity ("2 cups (392 g) of rice", "3 eggs") is a parameter, not part of the name.
    if i < len(toks) and (toks[i][:1].isdigit() or toks[i].lower() in NUMBER_WORDS):
        j = i + 1
        if j < len(toks) and toks[j].lower() in UNITS:
            amount = f"{toks[i]} {toks[j]}"
            j += 1
        else:
            amount = toks[i]
        if j < len(toks) and toks[j] == "(":
            while j < len(toks) and toks[j] != ")":
                j += 1
            j += 1
        if j < len(toks) and toks[j].lower() == "of":
            j += 1
        i = j
    while i < len(toks) and (toks[i].lower() in DETERMINERS | CHOICE_ADJ
                             or (toks[i].lower() == "of" and i and toks[i - 1].lower() in DETERMINERS)):
        choice = choice or toks[i].lower() in CHOICE_ADJ  # "any of the services", "one of these"
        i += 1
    if i < len(toks) and toks[i].lower() in WH_WORDS:
        # "Understand what hacking is" → hacking; "Learn how to program" → program.
        i += 1
        if i < len(toks) and toks[i].lower() == "to":
            i += 1
    if i < len(toks) and toks[i][:1].isupper():
        label, used = _label(toks[i:])
        if label:
            i += used
            words = _name_words(label)
            # "the Use Printer by Default checkbox": the UI noun after a label says what it is.
            if i < len(toks) and toks[i].lower() in UI_NOUNS:
                words.append(toks[i].lower())
            return words, label, choice, amount
    while i < len(toks):
        t = toks[i]
        low = t.lower()
        nxt = toks[i + 1].lower() if i + 1 < len(toks) else ""
        if t == "," and len(words) == 1 and _adjective_series(toks[i + 1:]):
            i += 1  # "a small, dry material": the adjectives qualify the noun that follows
            continue
        if not t[:1].isalnum():
            break
        if low in PRONOUNS:
            break  # "Make him create …": no object noun
        if low in ("or", "and") and words and _participle(words[-1]) and nxt[:1].isalpha():
            i += 1  # "any grated or sliced cheese"
            continue
        if words and _participle(low) and (nxt in DETERMINERS or nxt in STOP_WORDS or not nxt[:1].isalnum()
                                           or toks[i + 1][:1].isupper()):
            break  # "the disk containing the filesystem": a clause about the noun, not the noun
        if low in STOP_WORDS:
            if low == "of" and words and words[-1].lower() in GENERIC_HEADS and i + 1 < len(toks):
                # "the name of the city" → city_name
                head = words.pop()
                j = i + 1
                while j < len(toks) and toks[j].lower() in DETERMINERS:
                    j += 1
                if j < len(toks) and toks[j][:1].isalpha():
                    words.append(singular(toks[j].lower()))
                    words.append(head)
                    i = j + 1
                    continue
            break
        if low in DETERMINERS:
            if words:
                break  # "the name your computer displays": a new noun phrase starts
            i += 1
            continue
        if low in CHOICE_ADJ:
            choice = True
            i += 1
            continue
        if words and is_adverb(low):
            break  # "change your passwords regularly": how often is no part of what is changed
        words.append(t)
        i += 1
        if len(words) >= 4:
            break
    tail = " ".join(toks[i:i + 4]).lower()
    if re.match(r"^(?:which|that|you|from the list|of your choice)", tail):
        choice = True
    return words, label, choice, amount


ING_NOUNS = frozenset("setting settings building meeting recording string thing ring spring heading listing drawing "
                      "painting wedding morning evening ceiling pudding sharing clothing lighting bedding filling "
                      "topping icing frosting dressing seasoning opening ending beginning warning".split())


def _participle(word: str) -> bool:
    """An -ing or -ed verb form that qualifies a noun ("containing", "grated"), not a noun ("setting")."""
    w = word.lower()
    if w in ING_NOUNS or len(w) < 5:
        return False
    return w.endswith("ing") or (w.endswith("ed") and not w.endswith(("eed", "ied")))


def _adjective_series(toks: list[str]) -> bool:
    """After a comma: more plain words before the phrase ends ("dry material to use"), not a list item."""
    plain = 0
    for t in toks:
        if not t[:1].isalpha() or t.lower() in STOP_WORDS or t.lower() in DETERMINERS:
            break
        plain += 1
    return plain >= 2


def _name(verb: str, words: list[str], limit: int = 3) -> str:
    return snake([verb, *words[:limit]])[:56].rstrip("_")


def _string(description: str, values: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if values:
        schema["enum"] = values
    return schema


def _switch_state(text: str) -> str:
    """'on', 'off' or '' for a step that sets a switch ("… to on", "switch off …", "on or off")."""
    low = text.lower()
    if re.search(r"\bon or off\b|\boff or on\b", low):
        return "toggle"
    if re.search(r"\bto off\b|\bswitch(?:ed)? off\b|\bturn(?:ed)? off\b|\boff\b\.?$", low):
        return "off"
    if re.search(r"\bto on\b|\bswitch(?:ed)? on\b|\bturn(?:ed)? on\b|\benabled?\b|\bon\b\.?$", low):
        return "on"
    return ""


def _make_sure(rest: str, ctx: list[str], description: str, sentence: str) -> ToolDraft | None:
    """"Make sure that Landscape is selected" / "Make sure Bluetooth is switched on"."""
    m = re.match(r"(?:that\s+)?(?:the\s+)?(.+?)\s+(?:is|are)\s+(?:set\s+to\s+)?(selected|checked|enabled|switched on|turned on|"
                 r"on|switched off|turned off|off|disabled)\b", rest, re.IGNORECASE)
    if not m:
        return None
    value = _clean_value(m.group(1))
    state = m.group(2).lower()
    if state == "selected" and ctx:
        return ToolDraft(_name("select", ctx), description,
                         {snake(ctx): _string(f"The {' '.join(ctx)} to use.", [value])}, sentence)
    mode = "disable" if "off" in state or state == "disabled" else "enable"
    target = [w for w in tokens(value) if w.lower() not in SWITCH_NOUNS]
    return ToolDraft(_name(mode, _name_words(target)), description, {}, sentence)


def _switch(verb: str, rest: str, words: list[str], label: list[str], ctx: list[str], description: str,
            sentence: str) -> ToolDraft | None:
    """Switches and checkboxes: "switch the X switch to on", "Switch on A or B", "Toggle X on or off"."""
    state = _switch_state(sentence)
    body = re.sub(r"^(?:on|off)\s+", "", rest.strip(), flags=re.IGNORECASE)
    labels = _alternative_labels(body)
    if labels:
        target = _name_words(tokens(labels[0]))
    else:
        w2, l2, _c, _a = _object(body)
        target = [w for w in (_name_words(l2) or w2) if w.lower() not in SWITCH_NOUNS | {"on", "off"}]
    target = target or ctx or [w for w in words if w.lower() not in SWITCH_NOUNS | {"on", "off"}]
    if not target:
        return None
    if verb == "toggle" or state == "toggle":
        return ToolDraft(_name("toggle", target), description,
                         {"enabled": {"type": "boolean", "description": "On (true) or off (false)."}}, sentence)
    mode = "disable" if verb in ("uncheck", "disable") or state == "off" else "enable"
    params = {"setting": _string("Which setting to switch.", labels)} if len(labels) >= 2 else {}
    return ToolDraft(_name(mode, target), description, params, sentence)


def _labels_in(sentence: str) -> list[list[str]]:
    """Capitalized UI labels inside a sentence (not its first word): 'the Automatically Delete Period value'."""
    toks = tokens(sentence)
    found: list[list[str]] = []
    i = 1
    while i < len(toks):
        if toks[i][:1].isupper() and toks[i - 1][:1] not in (".", "!", "?"):
            label, used = _label(toks[i:])
            if label:
                found.append(_name_words(label))
                i += max(used, 1)
                continue
        i += 1
    return [f for f in found if f]


def _param_key(words: list[str]) -> str:
    """`city` → city_name, `account type` → account_type, `files` → file_name (a generic head keeps its noun).

    A plural names one record by its singular: "Select the files" asks for a file's name, and a person
    says "the file name", never "the files name".
    """
    if len(words) >= 2 and words[-1].lower() in GENERIC_HEADS:
        return snake([singular(words[-2].lower()), words[-1]])
    if words and words[-1].lower() in GENERIC_HEADS:
        return snake(words[-1:])
    return f"{singular(snake(words[-1:])) or 'item'}_name"


CHOICE_VERBS = frozenset({"select", "remove", "delete", "find", "search", "open", "set", "change", "check",
                          "view", "show", "clear", "uninstall", "cancel", "get", "list", "add", "create"})
DELETE_VERBS = frozenset({"delete", "remove", "clear", "uninstall", "cancel", "empty", "erase", "discard"})


@dataclass
class _Parse:
    """One step sentence taken apart: its verb, object words, UI label, context label and values."""

    sentence: str
    verb: str
    rest: str
    ctx: list[str]
    words: list[str]
    label: list[str]
    choice: bool
    amount: str
    quoted: list[str]
    subs: list[str]
    description: str
    mapped: str = ""

    @property
    def lowered(self) -> list[str]:
        """The object words, lower-cased."""
        return [w.lower() for w in self.words]


def _parse_step(sentence: str, subs: list[str], *, lenient: bool, quotes: bool) -> _Parse | None:
    verb, rest, context = action_verb(sentence, lenient=lenient)
    if not verb:
        return None
    words, label, choice, amount = _object(rest)
    return _Parse(sentence=sentence, verb=verb, rest=rest, ctx=_context_label(context), words=words, label=label,
                  choice=choice, amount=amount, quoted=_quoted(sentence) if quotes else [], subs=subs,
                  description=_clean_value(sentence)[:300] + ".", mapped=VERB_MAP.get(verb, verb))


def _draft_search(p: _Parse) -> ToolDraft:
    """"Start typing the name of the city into the search" is a search."""
    words, label, _choice, _amount = _object(p.rest[len("typing"):])
    value = _clean_value(" ".join(label)) if label else ""
    key = "query" if label or not words else _param_key(words)
    if len(words) >= 2 and words[-1].lower() in GENERIC_HEADS:
        words = words[:-1]  # search_city(city_name), not search_city_name
    return ToolDraft(_name("search", _name_words(words) or ["item"]), p.description,
                     {key: _string("What to type into the search.", [value] if value else None)}, p.sentence)


def _key_press(p: _Parse, params: dict[str, dict[str, Any]]) -> None:
    """"Press Ctrl+P to open the Print dialog": the purpose names the tool, the key is only how."""
    purpose = re.search(r"\bto\s+(open|show|close|start|launch|go|select|choose|reset|cancel|add)\b(.*)$",
                        p.sentence, re.IGNORECASE)
    if purpose:
        words2, _l, _c, _a = _object(purpose.group(2))
        if words2:
            p.mapped = VERB_MAP.get(purpose.group(1).lower(), purpose.group(1).lower())
            p.words = words2
    else:
        params["shortcut"] = _string("The keyboard shortcut.", [" ".join(p.label) or p.words[0]])


def _select_in_context(p: _Parse) -> ToolDraft:
    """"In the Orientation list, select Landscape": a choice of the setting the clause names."""
    clause = re.split(r"(?<=[a-z0-9…])\.(?:\s|$)", p.rest.strip(), maxsplit=1)[0]
    whole = _clean_value(clause)
    values = _alternative_labels(p.rest) or [whole if len(whole) <= 48 else _clean_value(" ".join(p.label))]
    return ToolDraft(_name("select", _name_words(p.ctx)), p.description,
                     {snake(_name_words(p.ctx)): _string(f"The {' '.join(p.ctx)} to choose.", values)}, p.sentence)


def _value_params(p: _Parse, params: dict[str, dict[str, Any]]) -> None:
    """The parameters for the values a step types, sets, picks or removes."""
    lowered = p.lowered
    if p.mapped == "set" and p.verb in ("type", "enter", "input", "fill", "specify", "write") and p.rest:
        literal = _literal_after(p.rest)
        values = p.quoted or ([literal] if literal else [])
        values += [v for line in p.subs for v in _typed_examples(line)]
        if literal or not p.words:
            p.words = p.ctx or ["value"]
        key = "password" if "password" in lowered else snake(p.words[-2:]) or "value"
        params[key] = _string(f"What to type: {' '.join(p.words)}.", list(dict.fromkeys(values)) or None)
    elif p.mapped in ("set", "change", "adjust") and p.words:
        if "slider" in lowered:
            params["level"] = {"type": "integer", "minimum": 0, "maximum": 100,
                               "description": "Slider position in percent."}
        else:
            key = snake(p.words[-1:])
            key = "value" if key in ("switch", "value", "") else key
            params[key] = _string(f"The new {' '.join(p.words)}.", p.quoted or None)
    elif p.words and not p.label and (p.mapped in DELETE_VERBS or p.mapped in ("select", "find", "search")
                                      or (p.choice and p.mapped in CHOICE_VERBS)):
        params[_param_key(p.words)] = _string(f"Which {' '.join(p.words)}.")
    elif p.label and p.ctx and p.mapped in ("select", "open"):
        params[snake(p.ctx)] = _string(f"The {' '.join(p.ctx)}.", [_clean_value(" ".join(p.label))])
    if p.amount:
        params["amount"] = _string("How much to use.", [p.amount])
    if p.quoted and not params and p.mapped != "click":
        params["value"] = _string("The value the step names.", p.quoted)
    if p.mapped in DELETE_VERBS and not params:
        # A delete must say which record: without a selector the backend has nothing to remove.
        params[_param_key(p.words or ["item"])] = _string(f"Which {' '.join(p.words) or 'item'}.")


_SWITCH_VERBS = ("switch", "turn", "toggle", "enable", "disable", "check", "uncheck", "tick", "set", "select")


def _is_switch_step(p: _Parse) -> bool:
    """A step that flips a switch or a checkbox: a switch noun, "turn X on", "check the Y box"."""
    return p.verb in _SWITCH_VERBS and (
        any(w in SWITCH_NOUNS for w in p.lowered)
        or (p.verb in ("switch", "turn", "toggle") and bool(_switch_state(p.sentence)))
        or (p.verb in ("check", "uncheck", "tick") and bool(p.label)))


def _search_text_param(p: _Parse, params: dict[str, dict[str, Any]]) -> None:
    """"Open Settings by typing Settings": what to type to find what the step opens."""
    typed = re.search(r"\btyp(?:e|ing)\s+(?:in\s+)?([A-Z][\w&]*(?:\s+(?:&\s+)?[A-Z][\w&]*)*)", p.sentence)
    if typed:
        params["search_text"] = _string("What to type to find it.", [_clean_value(typed.group(1))])


def _name_the_setting(p: _Parse) -> None:
    """"Set how often it runs in Frequency": a set step without a plain object is about the label it names."""
    if p.mapped in ("set", "change", "adjust") and (not p.words or p.lowered[0] in WH_WORDS
                                                     or p.lowered[0] == "often"):
        inside = _labels_in(p.sentence)
        if inside:
            p.words = inside[-1]


# ---------------------------------------------------------------------------------------------------------
# the procedure's capabilities: what a step does beyond a setting, read from the step sentence
#
# "Log in to the portal", "Search for rooms by building and date", "Book the room for your meeting time",
# "Send the invitation to the attendees", "Move the selected files to the Archive folder", "Compress the
# Archive folder", "Select Keep a copy in the inbox from the drop-down list": each names a capability
# of the service with the values it needs. The drafts carry a `kind` so offline_env gives them the
# effect they state (a session, a search, a create, an outbound message, a move, an action).

CREDENTIALS = (("user name", "username"), ("username", "username"), ("e-mail address", "email"),
               ("email address", "email"), ("email", "email"), ("account name", "username"),
               ("phone number", "phone_number"), ("password", "password"), ("passcode", "passcode"),
               ("pin", "pin"))
_SIGN_IN = re.compile(r"^(?:in(?:to)?|on(?:to)?)\b", re.IGNORECASE)
_BY = re.compile(r"\bby\s+(?:the\s+|your\s+)?(?P<what>[a-z][a-z -]*?(?:,\s*[a-z][a-z -]*?)*"
                 r"(?:,?\s+(?:and|or)\s+[a-z][a-z -]*?)?)\s*(?:[.,;:]|$)")
_FOR_WHEN = re.compile(r"\bfor\s+(?:your|the|a|an|their)\s+(?P<what>(?:[a-z]+\s+){0,2}?(?:time|date|day|hour|hours|"
                       r"duration|period|slot|dates|times))\b")
_TO_WHOM = re.compile(r"\bto\s+(?:the|your|all|every|each|a|an)?\s*(?P<who>[a-z][a-z' -]{1,40}?)\s*(?:[.,;:]|$)")
_TO_PLACE = re.compile(r"\b(?:to|into)\s+(?:the\s+|your\s+|a\s+)?(?P<dest>[^.,;:]{1,60}?)\s*(?:[.,;:]|$)")
_FROM_LIST = re.compile(r"^(?:the\s+)?[\"“]?(?P<opt>[A-Z][^\"”.]{1,60}?)[\"”]?\s+(?:option\s+)?(?:from|in)\s+the\s+"
                        r"(?P<where>(?:[A-Z][\w-]*\s+)*)(?:drop-down|dropdown|pull-down|pop-up|popup)?\s*(?:list|box)\b")
# Verbs that act on a record and leave a visible result on it (the folder is compressed, the report exported).
ACTION_VERBS = frozenset("compress zip unzip encrypt decrypt archive publish".split())
_CHECK_OF = re.compile(r"^(?:the\s+)?(?P<what>[a-z][a-z ]{2,30}?)\s+of\s+(?:the|your|a|this)\s+(?P<obj>[a-z]+)\b")
SEND_VERBS = frozenset("send forward email mail invite".split())
BOOK_VERBS = frozenset("book reserve schedule".split())
MOVE_VERBS = frozenset("move copy".split())
SELECTED_WORDS = frozenset("selected chosen highlighted marked checked".split())


def _key_of(phrase: str) -> str:
    """`the meeting time` → meeting_time; determiners and possessives dropped, at most two words."""
    kept = [w for w in tokens(phrase) if w[:1].isalpha() and w.lower() not in DETERMINERS]
    return snake(kept[-2:])


def _sign_in(p: _Parse) -> ToolDraft:
    """"Sign in to the webmail account with your username and password": a session with those credentials."""
    low = p.sentence.lower()
    found = sorted((low.find(phrase), key) for phrase, key in CREDENTIALS if re.search(rf"\b{phrase}\b", low))
    keys = list(dict.fromkeys(k for _, k in found))
    if not any(k in ("username", "email", "phone_number") for k in keys):
        keys.insert(0, "username")
    if not any(k in ("password", "passcode", "pin") for k in keys):
        keys.append("password")
    params = {k: _string("Your password." if k in ("password", "passcode", "pin") else
                         f"Your {k.replace('_', ' ')} for signing in.") for k in keys}
    return ToolDraft(f"{p.verb}_in", p.description, params, p.sentence, kind="session")


def _object_noun(rest: str) -> tuple[str, str]:
    """(label, head noun) of "the Archive folder" / "the invitation" / "the selected files"; ('', '') when the
    phrase does not open with words ("copy/paste the content")."""
    toks = tokens(rest)
    label: list[str] = []
    i = 0
    while i < len(toks) and (toks[i].lower() in DETERMINERS or toks[i].lower() in SELECTED_WORDS):
        i += 1
    while i < len(toks) and toks[i][:1].isupper():
        label.append(toks[i])
        i += 1
    run: list[str] = []  # "the blank pages to a PDF": the noun is the phrase's last word (pages)
    while i < len(toks) and toks[i][:1].isalpha() and toks[i][:1].islower() and toks[i] not in STOP_WORDS \
            and len(run) < 3:
        run.append(toks[i])
        i += 1
    if i < len(toks) and toks[i][:1].isalnum() and run and toks[i] not in STOP_WORDS:
        return "", ""  # more words than a noun phrase: not an object this rule reads
    return " ".join(label), (run[-1] if run else "")


def procedure_draft(p: _Parse) -> ToolDraft | None:
    """The capability a step names beyond a setting (see the section comment), or None."""
    verb = p.mapped
    if p.verb in ("sign", "log") and _SIGN_IN.match(p.rest):
        return _sign_in(p)
    words = [w for w in p.words if w.lower() not in SELECTED_WORDS]
    if verb in ("search", "find") and (by := _BY.search(p.rest)):
        parts = [x for x in re.split(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", by["what"]) if x.strip()]
        keys = [k for k in dict.fromkeys(_key_of(x) for x in parts) if k]
        if keys and words:
            params = {k: _string(f"The {k.replace('_', ' ')} to search by.") for k in keys[:4]}
            return ToolDraft(_name("search", _name_words(words)), p.description, params, p.sentence, kind="search")
    if verb in BOOK_VERBS and words:
        when = _FOR_WHEN.search(p.rest)
        params = {_key_of(when["what"]): _string(f"The {when['what']}.")} if when else {}
        return ToolDraft(_name(verb, _name_words(words)), p.description, params, p.sentence, kind="create")
    if verb in SEND_VERBS and words and (whom := _TO_WHOM.search(p.rest)):
        key = _key_of(whom["who"])
        if key:
            return ToolDraft(_name("send", _name_words(words)), p.description,
                             {key: _string(f"Who receives it: the {whom['who'].strip()}.")}, p.sentence, kind="send")
    if verb in MOVE_VERBS and (dest := _TO_PLACE.search(p.rest)):
        label, noun = _object_noun(dest["dest"])
        obj_label, obj_noun = _object_noun(p.rest)
        if obj_noun and (label or noun):
            key = singular(noun) if noun else "destination"
            schema = _string(f"Where to {verb} it: the {noun or 'destination'}.")
            if label:
                schema["examples"] = [label]
            return ToolDraft(_name(verb, [obj_noun]), p.description, {key: schema}, p.sentence, kind="move")
    if verb in ACTION_VERBS:
        label, noun = _object_noun(p.rest)
        if noun and noun not in UI_NOUNS:
            schema = _string(f"Which {noun}.")
            if label:
                schema["examples"] = [label]
            return ToolDraft(_name(verb, [noun]), p.description, {f"{singular(noun)}_name": schema}, p.sentence,
                             kind="action")
    if verb == "check" and (of := _CHECK_OF.match(p.rest.strip())):
        what, obj = _key_of(of["what"]), singular(of["obj"].lower())
        if what and obj:
            return ToolDraft(_name("check", [obj, *what.split("_")]), p.description,
                             {f"{obj}_name": _string(f"Which {obj}.")}, p.sentence, kind="check")
    if verb == "select" and not p.ctx and (opt := _FROM_LIST.match(p.rest.strip())):
        where = [w for w in tokens(opt["where"]) if w[:1].isalpha()]
        key = snake(where) or "option"
        value = _clean_value(opt["opt"])
        return ToolDraft(_name("select", [key]), p.description, {key: _string("The option to choose.", [value])},
                         p.sentence, kind="option")
    return None


def draft_tool(sentence: str, subs: list[str] | None = None, *, lenient: bool = False,
               quotes: bool = True) -> ToolDraft | None:
    """The tool one step sentence describes, or None when it names no action.

    `subs` are the step's other lines (they may hold example values); `quotes=False` ignores quoted
    words as values (tldr descriptions quote placeholders, which the command already gives).
    """
    p = _parse_step(sentence, subs or [], lenient=lenient, quotes=quotes)
    if p is None:
        return None
    if p.verb == "make sure":
        return _make_sure(p.rest, p.ctx, p.description, sentence)
    if quotes:  # a sequence's step (a tldr description is no procedure step: its command says what it does)
        proc = procedure_draft(p)
        if proc is not None:
            return proc
    if _is_switch_step(p):
        return _switch(p.verb, p.rest, p.words, p.label, p.ctx, p.description, sentence)
    if p.verb == "start" and p.rest.lower().startswith("typing"):
        return _draft_search(p)
    params: dict[str, dict[str, Any]] = {}
    if p.verb in ("press", "click", "tap") and p.words and _is_key(p.words[0]):
        _key_press(p, params)
    if "password" in sentence.lower() and p.verb in ("press", "click") and "unlock" in p.lowered:
        return ToolDraft("unlock_settings", p.description, {"password": _string("Your password.")}, sentence)
    if p.mapped == "open" and not params:
        _search_text_param(p, params)
    if p.mapped == "select" and p.ctx and p.label:
        return _select_in_context(p)
    _name_the_setting(p)
    _value_params(p, params)
    words = p.words or p.ctx
    if not words and p.mapped in ("click", "press", "select", "use"):
        return None
    return ToolDraft(_name(p.mapped, _name_words(words)), p.description, params, sentence)


def _is_key(word: str) -> bool:
    """A keyboard key or shortcut (`Ctrl+P`, `F2`, `Esc`)."""
    return bool(re.fullmatch(r"(?:ctrl|alt|shift|super|cmd|f\d{1,2}|esc|enter|tab|backspace|delete|space)"
                             r"(?:\+.*)?", word.lower()))


def _alternative_labels(rest: str) -> list[str]:
    """`Cook, Rice or Keep warm` / `one or both of A or B` → the labels, when there are several."""
    rest = re.split(r"(?<=[a-z0-9…])\.(?:\s|$)", rest, maxsplit=1)[0]
    rest = re.sub(r"^(?:one or both of|either|any of|one of)\s+", "", rest.strip(), flags=re.IGNORECASE)
    parts = [p for p in re.split(r",\s*(?:or\s+)?|\s+or\s+", rest) if p.strip()]
    labels = [_clean_value(p) for p in parts if p.strip()[:1].isupper() or p.strip()[:1] in "\"“"]
    return [x for x in labels if x] if len(labels) >= 2 else []


def _literal_after(rest: str) -> str:
    """`4,1,2,3` in "Type 4,1,2,3", or a quoted value right after the verb."""
    m = re.match(r"\s*(?:in\s+)?([\"“`][^\"”`]+[\"”`]|[\d][\d,.\- ]*\d|\d)\b", rest)
    return _clean_value(m.group(1)) if m else ""


def _typed_examples(line: str) -> list[str]:
    """Values of example sub-lines: "4 page booklet: Type 4,1,2,3" → ['4,1,2,3']."""
    m = re.search(r"\b(?:type|enter)\s+([\"“`][^\"”`]+[\"”`]|[\d][\d,.\- ]*\d)", line, re.IGNORECASE)
    return [_clean_value(m.group(1))] if m else []


# ---------------------------------------------------------------------------------------------------------
# document → workflow


def _title(doc: Document, text: str) -> str:
    title = str(doc.meta.get("title") or "")
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if not title and lines:
        first = lines[0]
        if first.startswith("#"):
            title = first.lstrip("#").strip()
        elif first.upper().startswith("TITLE:"):
            title = re.sub(r"\s*\(https?://[^)]*\)\s*$", "", first[6:]).strip()
        elif first.lower().startswith("how to "):
            title = first
    desc = next((ln[1:].strip() for ln in lines[1:4] if ln.startswith(">")), "")
    if desc and len(title.split()) <= 2:  # tldr: "# ls" then "> List directory contents."
        title = f"{desc.rstrip('.')} with {title}"
    if title.isupper():
        title = title.capitalize()
    return title


def _pick_steps(text: str) -> tuple[list[RawStep], str]:
    """The step list to extract from, and its kind (sequence or alternatives)."""
    tldr = tldr_steps(text)
    if len(tldr) >= MIN_STEPS:
        return tldr, "alternatives"
    lists = [lst for lst in numbered_lists(text) if len(lst) >= MIN_STEPS]
    if lists:
        return max(lists, key=len), "sequence"  # the longest list; max() keeps the first of equals
    bullets = bulleted_steps(text)
    if len(bullets) >= MIN_STEPS:
        return bullets, "sequence"
    return imperative_lines(text), "sequence"


def _sub_actions(step: RawStep) -> list[str]:
    """Indented sub-lines that are further actions (not alternatives, notes or examples)."""
    out = []
    for line in step.subs:
        low = line.lower()
        if low.startswith(("if ", "to ", "alternatively", "or ", "you can", "examples", "note")) or ":" in line[:30]:
            continue
        if action_verb(line)[0]:
            out.append(line)
    return out


def _unique_name(draft: ToolDraft, taken: dict[str, ToolDraft], source: str) -> str:
    """A name not yet taken: more words of the step first, then a numeric suffix."""
    verb, rest, _ = action_verb(source, lenient=True)
    extra = [w for w in tokens(rest) if w[:1].isalnum() and w.lower() not in DETERMINERS | STOP_WORDS]
    base = draft.name
    for n in range(4, 7):
        candidate = _name(VERB_MAP.get(verb, verb) if verb else base.split("_")[0], extra, n)
        if candidate and candidate not in taken and re.match(r"^[a-z]", candidate):
            return candidate
    i = 2
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def _merge(into: ToolDraft, other: ToolDraft) -> None:
    """A repeated step: one tool, with the values both steps name."""
    for key, schema in other.params.items():
        have = into.params.get(key)
        if have is None:
            continue
        if "enum" in have and "enum" in schema:
            have["enum"] = list(dict.fromkeys([*have["enum"], *schema["enum"]]))


def drafts_for(text: str, *, max_tools: int = MAX_TOOLS) -> tuple[list[list[ToolDraft]], list[str], list[str]]:
    """(stages of tools, step texts, rejection reasons) for a text."""
    steps, kind = _pick_steps(text)
    if len(steps) < MIN_STEPS:
        found = f"only {len(steps)} step" + ("" if len(steps) == 1 else "s")
        return [], [], [f"fewer than {MIN_STEPS} steps ({found} found: no numbered, bulleted or imperative list)"]
    lenient = kind == "sequence" and any(s.number is not None for s in steps)
    taken: dict[str, ToolDraft] = {}
    ordered: list[tuple[ToolDraft, bool]] = []  # (tool, is a main step)
    step_texts: list[str] = []
    for step in steps:
        main: ToolDraft | None = None
        main_sentence = ""
        for k, sentence in enumerate(sentences(step.text)[:3]):
            # Only a step's opening sentence may use an unlisted verb; later ones must use known verbs.
            main = draft_tool(sentence, step.subs, lenient=lenient and k == 0, quotes=kind == "sequence")
            if main is not None:
                main_sentence = sentence
                break
        if main is None:
            continue
        if step.command:
            main.description = f"{main.description} Command: {step.command}"
            main.params.update(_placeholders(step.command))
        step_texts.append(_clean_value(step.text.split("\n")[0])[:240])
        candidates: list[tuple[ToolDraft, str, bool]] = [(main, main_sentence, True)]
        if kind == "sequence":
            for sub in _sub_actions(step):
                d = draft_tool(sub, step.subs)
                if d is not None:
                    candidates.append((d, sub, False))
        for draft, source, is_main in candidates:
            if draft.name in taken:
                if kind == "alternatives":
                    draft.name = _unique_name(draft, taken, source)
                else:
                    _merge(taken[draft.name], draft)
                    continue
            taken[draft.name] = draft
            ordered.append((draft, is_main))
    mains = [d for d, is_main in ordered if is_main]
    if len(mains) < MIN_STEPS:
        return [], step_texts, [f"fewer than {MIN_STEPS} steps start with an action verb "
                                f"({len(mains)} of {len(steps)})"]
    # Over the budget: keep every main step first, then sub-actions in order while they fit.
    budget = max_tools - min(len(mains), max_tools)
    kept: list[ToolDraft] = []
    for draft, is_main in ordered:
        if is_main:
            if len([k for k in kept if k in mains]) < max_tools:
                kept.append(draft)
        elif budget > 0:
            kept.append(draft)
            budget -= 1
    if kind == "alternatives":
        return [kept], step_texts, []
    return [[d] for d in kept], step_texts, []


_PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")
_NUMERIC = frozenset("count number seconds lines bytes n size lines_count".split())


def _placeholders(command: str) -> dict[str, dict[str, Any]]:
    """Parameters from tldr `{{placeholders}}`; option spellings like `{{[-a|--all]}}` are not values."""
    params: dict[str, dict[str, Any]] = {}
    for raw in _PLACEHOLDER.findall(command):
        raw = raw.strip()
        if raw.startswith("[") or "|" in raw:
            continue
        first = raw.split()[0]
        if first in (".", "..") or (" " in raw and "/" not in first):
            continue
        key = snake([first.rstrip("/").split("/")[-1].split(".")[0]]) or "value"
        if not re.match(r"^[a-z]", key) or key in params:
            continue
        if key in _NUMERIC:
            params[key] = {"type": "integer", "minimum": 1, "maximum": 1000, "description": f"The {key}."}
        else:
            params[key] = _string(f"e.g. {first}")
    return params


def _workflow_dict(doc: Document, title: str, step_texts: list[str], stages: list[list[ToolDraft]],
                   domain: str = "", platform: str = "") -> dict[str, Any]:
    graph = "->".join("(" + ", ".join(d.name for d in stage) + ")" for stage in stages)
    return {
        "id": doc.id,
        "doc_id": str(doc.meta.get("parent") or doc.id),
        "title": title,
        "steps": step_texts,
        "execution_graph": graph,
        "tools": [d.to_dict() for stage in stages for d in stage],
        "domain": domain,
        "platform": platform,
    }


def harmonize(stages: list[list[ToolDraft]]) -> None:
    """Give a create or action tool the selector arguments later tools use to find what it made.

    A create or action call adds a record to its entity's collection, and the scenario planner may then
    focus on that record; a later `remove_pudding(pudding_name)` finds it by `pudding_name` only if the
    earlier `bake_pudding` call set that field too.
    """
    ordered = [d for stage in stages for d in stage]
    specs = [ToolSpec(name=d.name, description=d.description, parameters=d.to_dict()["parameters"]) for d in ordered]
    bindings = bind_tools(specs)
    for i, draft in enumerate(ordered):
        made = bindings[draft.name]
        if made.op not in ("create", "action"):  # both add records to their entity's collection
            continue
        for later in ordered[i + 1:]:
            b = bindings[later.name]
            if b.entity != made.entity or b.op not in ("read", "update", "delete"):
                continue
            for key in (*b.selectors, *b.filters):
                if key not in draft.params and key in later.params:
                    draft.params[key] = dict(later.params[key])


def extract_offline(doc: Document, *, max_tools: int = MAX_TOOLS, domain: str = "", platform: str = "",
                    check_scenario: bool = True) -> ExtractionResult:
    """Extract an environment from `doc` by rules: steps drafted, gestures folded into capabilities.

    Validated with workflow_from_dict (tools, graph, effects, entities, initial state) and, with
    `check_scenario`, by building a scenario. A page whose steps fold into no capability is rejected.
    """
    from gem_agents.stages.offline_env import build_environment  # builds on this module's drafts

    text = doc.text.replace("\r\n", "\n")
    stages, step_texts, reasons = drafts_for(text, max_tools=max_tools)
    if reasons:
        return ExtractionResult(rejected=reasons, decided_by="offline")
    drafts = [d for stage in stages for d in stage]
    alternatives = len(stages) == 1 and len(drafts) > 1
    env = build_environment(drafts, text, _title(doc, text), alternatives=alternatives)
    if not any(e.get("kind") not in ("read", "session") for e in env["effects"].values()) and not (
            alternatives and env["initial_state"]):
        # A command page of look-ups (ls, wc, tail) is a read-only environment when it has files to read.
        return ExtractionResult(rejected=["no capability: every step is a UI gesture or a look-up "
                                          f"({', '.join(d.name for d in drafts)})"], decided_by="offline")
    data = {"id": doc.id, "doc_id": str(doc.meta.get("parent") or doc.id), "title": _title(doc, text),
            "steps": step_texts, "domain": domain, "platform": platform, **env}
    try:
        workflow = workflow_from_dict(data, where=f"{doc.id}")
    except WorkflowError as exc:
        return ExtractionResult(rejected=[f"invalid environment: {exc}"], decided_by="offline")
    # Held to the model's bar: the same validator (effects, state, provenance, UI gestures).
    problems = [str(i) for i in errors(validate_environment(workflow, text))]
    if problems:
        return ExtractionResult(rejected=[f"invalid environment: {p}" for p in problems], decided_by="offline")
    if check_scenario:
        try:
            initial_state(workflow)
        except EnvironmentSpecError as exc:
            return ExtractionResult(rejected=[f"not simulatable: {exc}"], decided_by="offline")
    return ExtractionResult(workflow=workflow, rounds=0, decided_by="offline")
