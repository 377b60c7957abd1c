"""From step drafts to an environment: UI gestures folded into capabilities, declared effects, state, policy.

The offline extractor drafts one tool per step (`offline_extractor.drafts_for`). A help page's steps
are mostly gestures — open the overview, click the panel, press OK — and only a few carry what a
service would do. This module turns the drafts into the environment spec (environment.py):

* **Gestures fold.** A step with no value (open, click, press OK, Done, close) is no tool: it becomes
  the "how it is done in the UI" part of the capability it leads to. A commit button that names an
  action (Print, Connect, Add, Resize, Rename) closes the value steps before it into one capability
  (`select Landscape, choose Pages, type 4,1,2,3, click Print` → `print_document(orientation, …)`).
* **Values are the text's.** Enum options are the UI labels the page names, switch states come from
  "to on"/"off", typed examples from the page's own examples; each value carries the quote it came
  from. What the text does not say (the name of your printer) is invented and marked so.
* **Effects are declared.** Settings are fields of the panel's record (`update`, singleton); a step
  that picks a record from a list ("Select the device … from the list") makes the following changes
  act on that record (`key`); Add/Create are `create`, Remove/Delete are `delete`, Unlock with a
  password is a `session` the later writes require; every entity gets a read tool.
* **The procedure's own capabilities** (steps drafted with a `kind`, offline_extractor.procedure_draft):
  "Log in to the portal" is a session tool every later write requires; "Search for rooms by building
  and date" a search whose filters are fields of the records (a date is a condition carried to the
  booking); "Book the room for your meeting time" a create that names the room; "Send the invitation
  to the attendees" an outbound message about the record just made (its id); "Move the files to the
  Archive folder" an update of where the picked record is; "Compress the Archive folder" an action that
  leaves its mark (`compressed: true`); "Check the availability of the room" a read of that field.
  Settings typed, selected or switched before Apply / Save changes are parameters of one commit tool.
* **Policy** is the page's must/should sentences, plus the unlock requirement as a `must` rule. A rule
  stated as a condition on a record ("If your account type is Standard, you cannot change this
  setting") also becomes that record's field and a precondition of the tools that change it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gem_agents.stages.offline_extractor import VERBS, ToolDraft, snake, tokens
from gem_agents.stages.plausible import plausible_values
from gem_agents.user.dialogue_text import plural
from tools_runtime.binding import singular
from tools_runtime.environment import (
    Entity,
    FieldWrite,
    Precondition,
    Rule,
    StateRecord,
    ToolEffect,
    ValueSource,
)

# Steps that only move through the UI: never tools of their own.
GESTURE_VERBS = frozenset("""
open click press double_click right_click go find show close scroll use make wait follow look return
navigate launch visit tap hold flip place put drag move start confirm allow view note read see choose_tab
""".split())
# Buttons that commit what was entered without naming an action of their own.
NEUTRAL_BUTTONS = frozenset("ok done apply save close back cancel next continue finish yes".split())
# A button label's first word → the effect of the capability it completes, and the record it makes.
COMMIT_KINDS: dict[str, tuple[str, str]] = {
    "print": ("create", "print_job"), "connect": ("create", "connection"), "add": ("create", "item"),
    "create": ("create", "item"), "new": ("create", "item"), "import": ("create", "item"),
    "install": ("create", "installation"), "send": ("external", "message"), "share": ("external", "share"),
    "upload": ("create", "upload"), "rename": ("update", ""), "resize": ("update", ""),
    "format": ("update", ""), "remove": ("delete", ""), "delete": ("delete", ""), "empty": ("delete", ""),
    "disconnect": ("delete", ""), "sign": ("session", ""), "log": ("session", ""), "unlock": ("session", ""),
    "book": ("create", "item"), "register": ("create", "item"), "insert": ("create", "item"),
}
LINE_PROGRAMS = frozenset("wc tail head cat nl less more".split())
COMMIT_NAMES = {"print": "print_document", "connect": "connect_to_server", "install": "install_package"}
SETTING_VERBS = frozenset("set select change adjust toggle enable disable switch turn type enter rename".split())
CREATE_VERBS = frozenset("add create insert install register book upload download copy new make".split())
DELETE_VERBS = frozenset("remove delete clear uninstall cancel erase discard empty disconnect".split())
SEARCH_VERBS = frozenset("search find".split())
# "Book the room for your meeting time" makes a booking (a record of its own that names the room).
COMMIT_KINDS.update({"book": ("create", "booking"), "reserve": ("create", "reservation"),
                     "schedule": ("create", "appointment")})
# Buttons that commit what was typed, selected or switched before them: those settings are one capability.
FOLD_BUTTONS = frozenset("apply save submit ok update".split())
# A drafted step's `kind` (offline_extractor.procedure_draft) → its role here.
KIND_ROLES = {"session": "session", "search": "search_by", "create": "create", "send": "send", "move": "move",
              "action": "action", "option": "setting", "check": "check"}
# Search parameters that are conditions of what is done with the result, not fields of the records found.
WHEN_WORDS = frozenset("date day time hour dates days times period duration slot".split())
RULE_CUE = re.compile(r"\b(must|should|need to|needs to|have to|has to|required|requires|only|never|"
                      r"do not|don't|cannot|can't|make sure|at least|not recommended)\b", re.IGNORECASE)
STRONG_CUE = re.compile(r"\b(must|need to|needs to|have to|has to|required|requires|never|do not|don't|"
                        r"cannot|can't|only)\b", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------
# provenance


def find_span(text: str, quote: str) -> tuple[int, int] | None:
    """Where `quote` occurs in `text`, whitespace-tolerant and case-insensitive; None when it does not."""
    quote = quote.strip()
    if not quote:
        return None
    pattern = r"\s+".join(re.escape(p) for p in quote.split())
    m = re.search(pattern, text, re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def source_for(text: str, quote: str) -> ValueSource:
    """A `text` source when `quote` is a span of the document, else `invented`."""
    span = find_span(text, quote)
    if span is None:
        return ValueSource(kind="invented", quote="")
    return ValueSource(kind="text", quote=text[span[0]:span[1]], span=span)


# ---------------------------------------------------------------------------------------------------------
# classifying drafts


@dataclass
class Step:
    """One drafted step with its role in the environment."""

    draft: ToolDraft
    index: int
    role: str  # gesture | commit | setting | pick | create | delete | search | session | command
    verb: str
    label: str = ""


def _verb(draft: ToolDraft) -> str:
    for two in ("double_click", "right_click"):
        if draft.name.startswith(two):
            return two
    return draft.name.split("_", 1)[0]


def _button_label(step_text: str) -> str:
    """The button a click names ("Click Print." → 'Print', "Confirm … by clicking Resize" → 'Resize')."""
    m = re.search(r"\b(?i:click(?:ing)?|press(?:ing)?|tap(?:ping)?|select|choose|pick)\s+(?:on\s+)?(?:the\s+)?"
                  r"([A-Z][\w…]*(?:\s+(?:to\s+)?[A-Z]?[a-z]+)?)", step_text)
    label = m.group(1).rstrip("…").strip() if m else ""
    # "Click the Rename button": the button is called Rename.
    return re.sub(r"\s+(?:button|tab|menu|icon|link|switch|checkbox)$", "", label, flags=re.IGNORECASE)


def classify(draft: ToolDraft, index: int, alternatives: bool) -> Step:
    """The role one drafted step plays."""
    verb = _verb(draft)
    params = draft.params
    if alternatives:
        return Step(draft, index, "command", verb)
    if draft.kind in KIND_ROLES:
        return Step(draft, index, KIND_ROLES[draft.kind], verb)
    if "password" in params and verb in ("unlock", "sign", "log"):
        return Step(draft, index, "session", verb)
    if verb in ("press", "click", "confirm", "use", "tap") and not params:
        label = _button_label(draft.step) or draft.name.split("_", 1)[-1]
        first = label.split()[0].lower() if label else ""
        if first in COMMIT_KINDS and first not in NEUTRAL_BUTTONS:
            return Step(draft, index, "commit", verb, label)
        return Step(draft, index, "gesture", verb, label)
    if "shortcut" in params or "search_text" in params and verb == "open":
        return Step(draft, index, "gesture", verb)
    if not params and verb in GESTURE_VERBS | {"right_click", "select"}:
        # "Right-click the icon and select Add to Favorites": the menu item names the capability.
        label = _button_label(draft.step.split(" and ", 1)[-1]) if " and " in draft.step else ""
        first = label.split()[0].lower() if label else ""
        if first in COMMIT_KINDS and first not in NEUTRAL_BUTTONS:
            return Step(draft, index, "commit", verb, label)
    if verb in ("enable", "disable", "toggle"):
        return Step(draft, index, "setting", verb)
    if not params:
        if verb in CREATE_VERBS or verb in DELETE_VERBS:
            return Step(draft, index, "create" if verb in CREATE_VERBS else "delete", verb)
        return Step(draft, index, "gesture", verb)
    if verb in DELETE_VERBS:
        return Step(draft, index, "delete", verb)
    if verb in CREATE_VERBS:
        return Step(draft, index, "create", verb)
    if verb in SEARCH_VERBS:
        return Step(draft, index, "search", verb)
    only = next(iter(params.values())) if len(params) == 1 else None
    key = next(iter(params)) if len(params) == 1 else ""
    if verb == "select" and only is not None and "enum" not in only and key.endswith("_name"):
        return Step(draft, index, "pick", verb)
    return Step(draft, index, "setting", verb)


def _panel(steps: list[Step], title: str) -> str:
    """The panel or window the page works in: the label the navigation steps open, else the title's object."""
    for s in steps:
        if s.role != "gesture":
            continue
        enum = (s.draft.params.get("search_text") or {}).get("enum")
        if enum:
            return str(enum[0])
        m = re.search(r"\b(?:click|select)\s+(?:on\s+)?([A-Z][\w&]*(?:\s+(?:&\s+)?[A-Z][\w&]*)*)\s+to open the\b",
                      s.draft.step)
        if m:
            return m.group(1)
    m = re.search(r"\b(?:the\s+)?([A-Z][\w]+(?:\s+[A-Z][\w]+)*)\s+(?:dialog|window|panel)\b", " ".join(
        s.draft.step for s in steps))
    if m:
        return m.group(1)
    return _title_place(title)


# Where a title's object ends: a purpose or manner ("Rename music files using metadata", "… with nothing").
_TITLE_TAIL = re.compile(r"\s+(?:using|with|without|by|for|from|to|so|when|if|while)\s.*$", re.IGNORECASE)
_NOT_PLACE = frozenset("a an the your my our their its this that these those how to do i what why which in on at of "
                       "and or".split())


def _title_place(title: str) -> str:
    """The thing a title works on, as a place the settings live ("Survive in the woods" → 'woods').

    The last words of the title's object, before any purpose or manner clause, without articles or
    prepositions; 'Settings' when nothing is left.
    """
    head = _TITLE_TAIL.sub("", re.sub(r"^how (?:to|do i)\s+", "", title.strip(), flags=re.IGNORECASE))
    words = [w for w in tokens(head) if w[:1].isalpha()]
    if words and words[0].lower() in VERBS:
        words = words[1:]  # the title's verb; "Templates for …" has none
    tail: list[str] = []
    for w in reversed(words):
        if w.lower() in _NOT_PLACE:
            break
        tail.insert(0, w)
    return " ".join(tail[-2:]) if tail else "Settings"


# ---------------------------------------------------------------------------------------------------------
# capabilities


@dataclass
class Capability:
    """One tool of the environment being built, with its effect and the text values it uses."""

    name: str
    description: str
    effect: ToolEffect
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    gold: dict[str, tuple[Any, str]] = field(default_factory=dict)  # param → (value from text, its quote)
    steps: list[int] = field(default_factory=list)

    def tool(self) -> dict[str, Any]:
        """The tool as a JSON tool definition; a parameter the text gives a value for lists it in `examples`."""
        props = {}
        for key, schema in self.params.items():
            schema = dict(schema)
            if key in self.gold and "enum" not in schema:
                schema["examples"] = [self.gold[key][0]]
            props[key] = schema
        return {"name": self.name, "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": self.required}}


def _switch_value(draft: ToolDraft) -> tuple[bool, str]:
    """The state a switch step asks for, and the words that say it."""
    low = draft.step.lower()
    off = _verb(draft) == "disable" or bool(re.search(r"\b(?:to off|switch(?:ed)? off|turn(?:ed)? off|off)\b", low))
    m = re.search(r"\b(?:to (?:on|off)|switch(?:ed)? (?:on|off)|turn(?:ed)? (?:on|off)|on or off|check \w+|"
                  r"select the [^.]*checkbox|uncheck \w+)", draft.step, re.IGNORECASE)
    return (not off), (m.group(0) if m else draft.step)


def _field_of(draft: ToolDraft) -> str:
    """The field a setting step changes: its parameter, else its name without the verb."""
    if len(draft.params) == 1:
        key = next(iter(draft.params))
        if key not in ("value", "enabled", "setting"):
            return key
    return draft.name.split("_", 1)[-1] if "_" in draft.name else draft.name


def _values_of(draft: ToolDraft, text: str) -> dict[str, tuple[Any, str]]:
    """Gold values of a step's parameters from the text: enum labels, typed examples, switch states."""
    out: dict[str, tuple[Any, str]] = {}
    for key, schema in draft.params.items():
        enum = schema.get("enum")
        if enum:
            out[key] = (enum[0], str(enum[0]))
        elif schema.get("type") == "boolean":
            value, quote = _switch_value(draft)
            out[key] = (value, quote)
    return out


def _setting_param(step: Step) -> tuple[str, dict[str, Any], tuple[Any, str] | None]:
    """(field, parameter schema, gold value) of one setting step."""
    d = step.draft
    if step.role == "setting" and (step.verb in ("enable", "disable", "toggle") or not d.params):
        fld = _field_of(d) if step.verb != "toggle" else d.name.split("_", 1)[-1]
        if "setting" in d.params:  # "Switch on one or both of A or B": the first named setting
            fld = snake(tokens(str(d.params["setting"]["enum"][0])))
        value, quote = _switch_value(d)
        label = fld.replace("_", " ")
        return fld, {"type": "boolean", "description": f"Turn {label} on (true) or off (false)."}, (value, quote)
    key = next(iter(d.params))
    schema = dict(d.params[key])
    enum = schema.get("enum")
    gold = (enum[0], str(enum[0])) if enum else None
    return _field_of(d), schema, gold


def _ui_path(gestures: list[Step]) -> str:
    """The gestures a capability folds, as one sentence of its description."""
    if not gestures:
        return ""
    return " In the UI: " + "; ".join(g.draft.step.rstrip(".") for g in gestures[-4:]) + "."


def _noun_of(key: str) -> str:
    return singular(key.removesuffix("_name").removesuffix("_id")) or "item"


@dataclass
class Build:
    """Everything the environment builder accumulates while it walks the steps."""

    text: str
    panel: str
    settings: str
    caps: list[Capability] = field(default_factory=list)
    entities: dict[str, Entity] = field(default_factory=dict)
    records: list[StateRecord] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    session_tool: str = ""
    session_rule: str = ""
    # Per entity, per field: the values its records start with (record i takes value i, cycling).
    fill: dict[str, dict[str, list[tuple[Any, str]]]] = field(default_factory=dict)
    # Per searched entity: the search's conditions that are no field of it (the date of "by building and date").
    conditions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    made: list[tuple[str, str]] = field(default_factory=list)  # (entity, key) of each record a create makes

    def entity(self, name: str, key: str, fields: dict[str, dict[str, Any]], description: str = "") -> Entity:
        """The entity `name`, created or widened with `fields`."""
        ent = self.entities.get(name)
        if ent is None:
            ent = Entity(name=name, key=key, fields={key: {"type": "string"}}, description=description)
            self.entities[name] = ent
        for f, schema in fields.items():
            if f not in ent.fields:
                clean = {k: v for k, v in schema.items() if k in ("type", "description")}
                ent.fields[f] = clean or {"type": "string"}
        return ent

    def unique(self, name: str) -> str:
        """`name`, or `name_2` … when a capability already has it."""
        taken = {c.name for c in self.caps}
        if name not in taken:
            return name
        i = 2
        while f"{name}_{i}" in taken:
            i += 1
        return f"{name}_{i}"


def _settings_capability(b: Build, step: Step, gestures: list[Step], target: tuple[str, str] | None) -> None:
    """One setting step as an update of the panel's record, or of the record picked before it."""
    fld, schema, gold = _setting_param(step)
    param = fld
    if target is None:
        entity, key, where = b.settings, None, f"in the {settings_words(b.panel)}"
        b.entity(entity, "panel", {fld: schema})
    else:
        entity, key = target
        where = f"of the chosen {entity.replace('_', ' ')}"
        b.entity(entity, key, {fld: schema})
    params: dict[str, dict[str, Any]] = {}
    required: list[str] = []
    golds: dict[str, tuple[Any, str]] = {}
    if key:
        params[key] = {"type": "string", "description": f"Which {entity.replace('_', ' ')}."}
        required.append(key)
    params[param] = schema
    required.append(param)
    if gold is not None:
        golds[param] = gold
    verb = "set"
    name = b.unique(snake([verb, *fld.split("_")])[:56])
    label = fld.replace("_", " ")
    # The first sentence is a request a person could make (refinement asks with it): "Turn hot corner on or
    # off in the Multitasking settings", "Change the short name of the chosen printer".
    if schema.get("type") == "boolean":
        what = f"Turn {label} on or off {where.replace('of the chosen', 'for the chosen')}"
    else:
        what = f"Change the {label} {where}"
    desc = f"{what}. Text: {step.draft.step.rstrip('.')}.{_ui_path(gestures)}"
    effect = ToolEffect(kind="update", entity=entity, key=key, writes=[FieldWrite(field=fld, param=param)],
                        returns=[fld], requires_session=bool(b.session_tool))
    b.caps.append(Capability(name, desc[:600], effect, params, required, golds, [step.index]))


def settings_words(panel: str) -> str:
    """'Sound settings'; a panel already called settings ('Settings') is not 'Settings settings'."""
    return panel if panel.lower().endswith("settings") else f"{panel} settings"


# How a commit reads as a request, by the effect it has: "Print the document", "Book a room", "Resize the
# chosen disk" — a verb and its object, never the button's label and the page ("Rename button in …").
def _commit_phrase(word: str, kind: str, entity: str) -> str:
    noun = entity.replace("_", " ")
    fixed = {"print": "Print the document", "connect": "Connect to a server", "install": "Install a package"}
    if word in fixed:
        return fixed[word]
    verb = word.capitalize()
    if kind == "create":
        return f"{verb} {'an' if noun[:1] in 'aeiou' else 'a'} {noun}" if noun != word else verb
    if kind in ("update", "delete"):
        return f"{verb} the chosen {noun}" if not noun.endswith("settings") else f"{verb} in the {noun}"
    return f"{verb} the {noun}"


def _commit_capability(b: Build, commit: Step, pending: list[Step], gestures: list[Step],
                       target: tuple[str, str] | None) -> None:
    """The value steps before an action button, folded into the capability the button completes."""
    word = commit.label.split()[0].lower()
    kind, made = COMMIT_KINDS[word]
    params: dict[str, dict[str, Any]] = {}
    golds: dict[str, tuple[Any, str]] = {}
    fields: dict[str, dict[str, Any]] = {}
    pick_key = ""
    for s in pending:
        if s.role in ("pick", "search"):
            k = next(iter(s.draft.params))
            pick_key = pick_key or k
            params[k] = dict(s.draft.params[k])
            fields[k] = params[k]
            continue
        fld, schema, gold = _setting_param(s)
        params[fld] = schema
        fields[fld] = schema
        if gold is not None:
            golds[fld] = gold
    folded = [s.index for s in pending] + [commit.index]
    obj_words = [w for w in tokens(commit.draft.step) if w[:1].isalpha()]
    if kind == "create" and not params and made == "item":
        # "Select Add to Favorites" names what is made, not which one: the caller says which.
        noun = singular(snake(tokens(commit.label)[-1:]) or "item")
        pick_key = f"{noun}_name"
        params[pick_key] = {"type": "string", "description": f"Which {noun} to add."}
        fields[pick_key] = params[pick_key]
    if kind == "create":
        entity = made if made != "item" else (_noun_of(pick_key) if pick_key else singular(snake(obj_words[-1:])) or "item")
        key = pick_key or None
        ent_key = pick_key or f"{entity}_id"
        if commit.draft.kind == "create" and target is not None and target[0] != entity:
            # "Book the room for your meeting time" after a search: the booking names the room it is for, and
            # carries the search's conditions (its date).
            ref = {target[1]: {"type": "string", "description": f"Which {target[0].replace('_', ' ')}."}}
            cond = {k: dict(v) for k, v in b.conditions.get(target[0], {}).items()}
            params = {**ref, **cond, **params}
            fields = {**ref, **cond, **fields}
        b.entity(entity, ent_key, fields)
        b.made.append((entity, ent_key))
        writes = [FieldWrite(field=f, param=f) for f in fields]
        effect = ToolEffect(kind="create", entity=entity, key=key, writes=writes, returns=list(fields),
                            requires_session=bool(b.session_tool))
        name = COMMIT_NAMES.get(word) or snake([word, *([] if entity == word else entity.split("_"))])
        if commit.draft.kind == "create":
            name = commit.draft.name  # book_room: the step's own verb and object
    elif kind == "delete" or kind == "update":
        if target is not None and not pick_key:
            entity, pick_key = target
        entity = _noun_of(pick_key) if pick_key else b.settings
        ent_key = pick_key or "panel"
        b.entity(entity, ent_key, fields)
        if kind == "update":
            writes = [FieldWrite(field=f, param=f) for f in fields if f != pick_key]
            writes = writes or [FieldWrite(field="last_action", value=commit.label)]
            b.entity(entity, ent_key, {"last_action": {"type": "string"}} if not fields or
                     all(f == pick_key for f in fields) else {})
            effect = ToolEffect(kind="update", entity=entity, key=pick_key or None, writes=writes,
                                returns=[w.field for w in writes], requires_session=bool(b.session_tool))
        else:
            effect = ToolEffect(kind="delete", entity=entity, key=pick_key or None,
                                requires_session=bool(b.session_tool))
        if pick_key and pick_key not in params:
            params[pick_key] = {"type": "string", "description": f"Which {entity.replace('_', ' ')}."}
        name = snake([word, *entity.split("_")])
    elif kind == "external":
        entity = made
        b.entity(entity, "message_id", fields)
        effect = ToolEffect(kind="external", entity=entity, writes=[FieldWrite(field=f, param=f) for f in fields],
                            returns=list(fields))
        name = snake([word, *entity.split("_")])
    else:
        return
    name = b.unique(name[:56])
    text_steps = "; ".join(s.draft.step.rstrip(".") for s in [*pending, commit])
    desc = f"{_commit_phrase(word, kind, entity)} ({b.panel}). Text: {text_steps}.{_ui_path(gestures)}"
    b.caps.append(Capability(name, desc[:600], effect, params, list(params), golds, folded))


_NAME_STOPS = frozenset("named called in on to for from with at into by as him her them it me us you".split())


def _made_noun(draft: ToolDraft) -> str:
    """What a bare create step makes, from its drafted name ("create_folder_named_archive" → folder)."""
    words = []
    for w in draft.name.split("_")[1:]:
        if w in _NAME_STOPS:
            break
        words.append(w)
    return words[-1] if words else ""


def _pick_target(step: Step) -> tuple[str, str]:
    key = next(iter(step.draft.params))
    return _noun_of(key), key


# ---------------------------------------------------------------------------------------------------------
# the procedure's capabilities beyond settings: sign in, search, check, send, move, act, and the settings a
# commit button (Apply, Save changes) applies together


PAST = {"send": "sent", "zip": "zipped", "unzip": "unzipped", "sync": "synced", "backup": "backed_up"}


def _past(verb: str) -> str:
    """compress → compressed, archive → archived (the field an action leaves on its record)."""
    if verb in PAST:
        return PAST[verb]
    return f"{verb}d" if verb.endswith("e") else f"{verb}ed"


def _where(step_text: str) -> str:
    """"Log in to the office portal" → 'the office portal' (the user's words: "your" becomes "the")."""
    m = re.search(r"\b(?:to|into|at)\s+((?:the|your)\s+[\w .&-]+?)(?:\s+(?:with|using|by)\b|[.,;:]|$)", step_text)
    return re.sub(r"^your\b", "the", m.group(1)) if m else ""


def _session_capability(b: Build, s: Step, gestures: list[Step]) -> None:
    """"Log in to the office portal": a session tool every later write requires (the credentials the text names)."""
    d = s.draft
    where = _where(d.step) or f"the {b.panel}"
    name = b.unique(d.name)
    b.session_tool = name
    b.session_rule = f"Sign in to {where} with the user's own credentials before changing anything."
    params = {k: dict(v) for k, v in d.params.items()}
    desc = f"Sign in to {where}. Text: {d.step.rstrip('.')}.{_ui_path(gestures)}"
    b.caps.append(Capability(name, desc[:600], ToolEffect(kind="session", returns=["status"]), params, list(params),
                             {}, [s.index]))


def _search_capability(b: Build, s: Step, gestures: list[Step]) -> tuple[str, str]:
    """"Search for rooms by building and date": a read of the rooms filtered by what the text names."""
    d = s.draft
    noun = singular(d.name.split("_")[-1]) if "_" in d.name else "item"
    key = f"{noun}_name"
    conditions = {k: v for k, v in d.params.items() if set(k.split("_")) & WHEN_WORDS}
    fields = {k: v for k, v in d.params.items() if k not in conditions}
    b.entity(noun, key, fields)
    for f in fields:  # the records carry the searched fields, so a search by them finds some
        b.fill.setdefault(noun, {})[f] = [(v, v) for v in plausible_values(f, noun, d.step, b.text)]
    b.conditions[noun] = conditions
    params = {k: dict(v) for k, v in d.params.items()}
    desc = (f"Search the {plural(noun).replace('_', ' ')} by {' and '.join(k.replace('_', ' ') for k in params)}. "
            f"Text: {d.step.rstrip('.')}.{_ui_path(gestures)}")
    effect = ToolEffect(kind="read", entity=noun, returns=[key, *fields], requires_session=bool(b.session_tool))
    b.caps.append(Capability(b.unique(d.name), desc[:600], effect, params, list(params), {}, [s.index]))
    return noun, key


def _check_capability(b: Build, s: Step, target: tuple[str, str] | None) -> None:
    """"Check the availability of the room you like": a read of one record's field."""
    d = s.draft
    param = next(iter(d.params))
    entity = _noun_of(param)
    key = target[1] if target is not None and target[0] == entity else param
    what = d.name.removeprefix(f"check_{entity}_") or "status"
    b.entity(entity, key, {what: {"type": "string", "description": f"The {entity}'s {what.replace('_', ' ')}."}})
    b.fill.setdefault(entity, {})[what] = [("available", "")]
    params = {key: {"type": "string", "description": f"Which {entity.replace('_', ' ')}."}}
    effect = ToolEffect(kind="read", entity=entity, key=key, returns=[what], requires_session=bool(b.session_tool))
    desc = f"Show a {entity.replace('_', ' ')}'s {what.replace('_', ' ')}. Text: {d.step.rstrip('.')}."
    b.caps.append(Capability(b.unique(d.name), desc[:600], effect, params, list(params), {}, [s.index]))


def _send_capability(b: Build, s: Step, gestures: list[Step]) -> None:
    """"Send the invitation to the attendees": an outbound message, about the record the procedure made."""
    d = s.draft
    entity = singular(d.name.split("_")[-1]) if "_" in d.name else "message"
    params = {k: dict(v) for k, v in d.params.items()}
    if b.made and b.made[-1][1].endswith("_id"):
        made, ref = b.made[-1]  # the invitation is for the booking just made (its id, from the create's result)
        params = {ref: {"type": "string", "description": f"Which {made.replace('_', ' ')} it is about."}, **params}
    b.entity(entity, f"{entity}_id", params)
    effect = ToolEffect(kind="external", entity=entity, writes=[FieldWrite(field=k, param=k) for k in params],
                        returns=list(params), requires_session=bool(b.session_tool))
    desc = f"Send the {entity.replace('_', ' ')}. Text: {d.step.rstrip('.')}.{_ui_path(gestures)}"
    b.caps.append(Capability(b.unique(d.name), desc[:600], effect, params, list(params), {}, [s.index]))


def _example(schema: dict[str, Any]) -> tuple[Any, str] | None:
    examples = schema.get("examples") or []
    return (examples[0], str(examples[0])) if examples else None


def _move_capability(b: Build, s: Step, gestures: list[Step], target: tuple[str, str] | None) -> None:
    """"Move the selected files to the Archive folder": an update of where the chosen record is."""
    d = s.draft
    dest = next(iter(d.params))
    schema = {k: v for k, v in d.params[dest].items() if k != "examples"}
    gold = _example(d.params[dest])
    if target is not None:
        entity, key = target
    else:
        entity = singular(d.name.split("_")[-1]) if "_" in d.name else "item"
        key = f"{entity}_name"
    b.entity(entity, key, {dest: schema})
    # Where the records are before the move: a place the text names other than the destination.
    places = [v for v in plausible_values(dest, "", d.step, b.text) if not gold or v != gold[0]]
    b.fill.setdefault(entity, {})[dest] = [(places[0], places[0])] if places else []
    params = {key: {"type": "string", "description": f"Which {entity.replace('_', ' ')}."}, dest: schema}
    effect = ToolEffect(kind="update", entity=entity, key=key, writes=[FieldWrite(field=dest, param=dest)],
                        returns=[dest], requires_session=bool(b.session_tool))
    desc = f"{d.step.rstrip('.')}. Text: {d.step.rstrip('.')}.{_ui_path(gestures)}"
    b.caps.append(Capability(b.unique(d.name), desc[:600], effect, params, list(params),
                             {dest: gold} if gold else {}, [s.index]))


def _action_capability(b: Build, s: Step, gestures: list[Step]) -> None:
    """"Compress the Archive folder": an action on a record that leaves its mark on it (compressed: true)."""
    d = s.draft
    param = next(iter(d.params))
    entity = _noun_of(param)
    key = b.entities[entity].key if entity in b.entities else param
    done = _past(_verb(d))
    b.entity(entity, key, {done: {"type": "boolean", "description": f"Whether the {entity} is {done}."}})
    schema = {k: v for k, v in d.params[param].items() if k != "examples"}
    gold = _example(d.params[param])
    effect = ToolEffect(kind="update", entity=entity, key=key, writes=[FieldWrite(field=done, value=True)],
                        returns=[done], requires_session=bool(b.session_tool))
    desc = f"{d.step.rstrip('.')}. Text: {d.step.rstrip('.')}.{_ui_path(gestures)}"
    b.caps.append(Capability(b.unique(d.name), desc[:600], effect, {key: schema}, [key],
                             {key: gold} if gold else {}, [s.index]))


def _section(gestures: list[Step]) -> str:
    """The tab or button the settings sit behind ("Click the Forwarding tab" → 'forwarding'), or ''."""
    for g in reversed(gestures):
        label = [w for w in tokens(g.label or _button_label(g.draft.step)) if w[:1].isalpha()
                 and w.lower() not in ("tab", "button", "page", "panel", "menu", "section", "icon", "settings")]
        if label:
            return snake(label)[:30]
    return ""


def _fold_capability(b: Build, button: Step, settings: list[Step], gestures: list[Step],
                     target: tuple[str, str] | None) -> None:
    """Settings typed, selected or switched before Apply / Save changes: one capability with each as a parameter."""
    section = _section(gestures)
    if target is not None:
        entity, key = target
        where = f"the chosen {entity.replace('_', ' ')}"
    else:
        entity, key, where = b.settings, "", f"the {b.panel} settings"
    params: dict[str, dict[str, Any]] = {}
    golds: dict[str, tuple[Any, str]] = {}
    if key:
        params[key] = {"type": "string", "description": f"Which {entity.replace('_', ' ')}."}
    writes = []
    for st in settings:
        fld, schema, gold = _setting_param(st)
        if fld == "option" and section:
            fld = f"{section}_option"  # "Select Keep a copy … from the drop-down list" on the Forwarding tab
        fld = fld if fld not in params else f"{fld}_{len(params)}"
        params[fld] = schema
        writes.append(FieldWrite(field=fld, param=fld))
        if gold is not None:
            golds[fld] = gold
    b.entity(entity, key or "panel", {w.field: params[w.field] for w in writes})
    verb = (button.label.split()[0].lower() if button.label else "apply")
    name = b.unique(snake([verb, *(section or entity).split("_"), "settings"])[:56])
    steps = "; ".join(st.draft.step.rstrip(".") for st in [*settings, button])
    desc = f"{button.label or 'Apply'} the {section.replace('_', ' ') or entity.replace('_', ' ')} settings of {where}. " \
           f"Text: {steps}.{_ui_path(gestures)}"
    effect = ToolEffect(kind="update", entity=entity, key=key or None, writes=writes, returns=[w.field for w in writes],
                        requires_session=bool(b.session_tool))
    b.caps.append(Capability(name, desc[:600], effect, params, list(params), golds,
                             [*(st.index for st in settings), button.index]))


def _command_capability(b: Build, step: Step) -> None:
    """A command-line example (tldr) as a capability on the files it names."""
    d = step.draft
    cmd = d.description.partition("Command: ")[2]
    program = cmd.split()[0] if cmd else _verb(d)
    params = {k: dict(v) for k, v in d.params.items()}
    flags = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", re.sub(r"\{\{.*?\}\}", "", cmd))
    key = next((k for k, v in params.items() if v.get("type") == "string"), None)
    verb = _verb(d)
    entity = "file"
    # Only what the commands read is state: a line count for the programs that count or show lines.
    counts = program in LINE_PROGRAMS
    b.entity(entity, "path", {"path": {"type": "string"}, **({"lines": {"type": "integer"}} if counts else {})})
    golds: dict[str, tuple[Any, str]] = {}
    for k, v in params.items():
        if v.get("type") == "string":
            example = str(v.get("description", "")).removeprefix("e.g. ").strip()
            if example:
                golds[k] = (example, example)
    if verb in DELETE_VERBS:
        effect = ToolEffect(kind="delete", entity=entity, key=key)
    elif verb in CREATE_VERBS or program in ("cp", "touch", "mkdir"):
        # The new file is the last path the command names (`cp source target`).
        target = next((k for k in reversed(list(params)) if params[k].get("type") == "string"), None)
        effect = ToolEffect(kind="create", entity=entity, key=target,
                            writes=[FieldWrite(field="path", param=target)] if target else [], returns=["path"])
    elif program == "mv" and len(params) >= 2:
        keys = list(params)
        effect = ToolEffect(kind="update", entity=entity, key=keys[0],
                            writes=[FieldWrite(field="path", param=keys[1])], returns=["path"])
    else:
        effect = ToolEffect(kind="read", entity=entity, key=None, returns=["path", "lines"] if counts else ["path"])
        if key:
            params[key]["description"] = f"Which file or directory ({params[key].get('description', '')})."
    if effect.kind == "read" and key:
        effect = effect.model_copy(update={"key": key})
    desc = f"{d.step.rstrip('.')}. Runs `{cmd}`" + (f" (options {' '.join(dict.fromkeys(flags))})" if flags else "") + "."
    name = b.unique(d.name)
    b.caps.append(Capability(name, desc[:600], effect, params, list(params), golds, [step.index]))


def _reads(b: Build) -> list[Capability]:
    """One read tool per entity: the panel's settings, or the list of records of a kind."""
    out = []
    for ent in b.entities.values():
        if ent.name == b.settings:
            name = f"get_{ent.name}"
            desc = f"Show the current {settings_words(b.panel)} (every field)."
        else:
            name = f"list_{plural(ent.name)}"
            desc = f"List the {ent.name.replace('_', ' ')} records with their fields."
        if any(c.name == name for c in b.caps):
            continue
        out.append(Capability(name[:56], desc, ToolEffect(kind="read", entity=ent.name,
                                                          returns=[f for f in ent.fields if f != ent.key])))
    return out


# Sentences that explain, describe or allow rather than oblige: "This makes it harder to guess",
# "You can change how long…", "Some pointers do not change colors", a command option's "…:" heading.
NOT_RULE_START = re.compile(r"^(?:this|these|that|those|though|although|so|also|however|warning|note|some|"
                            r"depending|learning|the more|common|you can|you could|it is useful|it may)\b",
                            re.IGNORECASE)
NOT_RULE = re.compile(r"\b(?:a must|must-\w+|do not have to|don't have to|doesn't have to|does not have to|"
                      r"you can\b(?! ?not| only)|may need|might|is useful)\b", re.IGNORECASE)
MUST_SUBJECT = re.compile(r"\b(?:must|needs? to|have to|has to|cannot|can't|can only|is required|are required|"
                          r"requires?|only (?:when|if|after|before|once))\b", re.IGNORECASE)
MUST_IMPERATIVE = re.compile(r"^(?:do not|don't|never|always|only)\b", re.IGNORECASE)
SHOULD = re.compile(r"\b(?:you should|should be|should not|make sure|recommended|a good idea)\b|^(?:\w+ )?should\b",
                    re.IGNORECASE)


def rule_strength(sentence: str) -> str | None:
    """`must`, `recommended`, or None for a sentence that explains or allows rather than states a rule."""
    s = sentence.strip()
    if s.endswith(":") or NOT_RULE_START.search(s) or NOT_RULE.search(s) or re.search(r"\[\d+\]", s):
        return None
    if MUST_IMPERATIVE.search(s) or MUST_SUBJECT.search(s):
        return "must"
    if SHOULD.search(s):
        return "recommended"
    return None


def _policy(b: Build, text: str) -> None:
    """Rules from the page's must/should sentences, and the unlock requirement."""
    from gem_agents.stages.offline_extractor import sentences

    seen: set[str] = set()
    for line in text.split("\n"):
        line = line.strip().lstrip("#>-*• ").strip()
        if not line or line.startswith("`"):
            continue
        for s in sentences(line):
            if len(s) < 20 or len(s) > 260 or not RULE_CUE.search(s) or s in seen:
                continue
            seen.add(s)
            strength = rule_strength(s)
            if strength is None:
                continue
            b.rules.append(Rule(id=f"r{len(b.rules) + 1}", text=s, strength=strength))
            if len(b.rules) >= 6:
                break
    if b.session_tool:
        writes = [c.name for c in b.caps if c.effect.requires_session]
        b.rules.insert(0, Rule(id="r0", text=f"Unlock the {settings_words(b.panel)} with the user's password "
                               "before changing anything.", strength="must", tools=writes))


def _current(b: Build, entity: str) -> tuple[dict[str, Any], dict[str, ValueSource]]:
    """The values the text implies a record has before its steps run (what its settings steps change)."""
    values: dict[str, Any] = {}
    sources: dict[str, ValueSource] = {}
    for cap in b.caps:
        if cap.effect.entity != entity or cap.effect.kind != "update":
            continue
        for w in cap.effect.writes:
            schema = cap.params.get(w.param or "", {})
            gold = cap.gold.get(w.param or "")
            if schema.get("type") == "boolean" and gold is not None:
                # "Switch X to on" says X is off now: the same words ground the state before the change.
                values[w.field] = not gold[0]
                sources[w.field] = source_for(b.text, gold[1])
            elif schema.get("enum") and len(schema["enum"]) >= 2:
                values[w.field] = schema["enum"][-1]
                sources[w.field] = source_for(b.text, str(schema["enum"][-1]))
    return values, sources


def _state(b: Build, alternatives: bool) -> None:
    """The initial records: the panel's record with its text values, picked records, the command's files."""
    text = b.text
    if b.settings in b.entities:
        values, sources = _current(b, b.settings)
        values = {"panel": b.panel, **values}
        sources = {"panel": source_for(text, b.panel), **sources}
        b.records.append(StateRecord(entity=b.settings, values=values, sources=sources))
    for ent in b.entities.values():
        if ent.name == b.settings or any(r.entity == ent.name for r in b.records):
            continue
        if ent.name == "file" and alternatives:
            # Paths a command creates (cp's target) must not exist yet; the others are the page's files.
            made = {cap.gold[cap.effect.key][0] for cap in b.caps
                    if cap.effect.kind == "create" and cap.effect.key in cap.gold}
            for cap in b.caps:
                for _, (value, quote) in cap.gold.items():
                    if value in made:
                        continue
                    if any(r.values.get("path") == value for r in b.records if r.entity == "file"):
                        continue
                    if isinstance(value, str) and "/" in value or (isinstance(value, str) and "." in value):
                        counted = "lines" in ent.fields
                        b.records.append(StateRecord(
                            entity="file", values={"path": value, **({"lines": 64} if counted else {})},
                            sources={"path": source_for(text, quote),
                                     **({"lines": ValueSource(kind="invented")} if counted else {})}))
            continue
        creates = any(c.effect.kind in ("create", "external") and c.effect.entity == ent.name for c in b.caps)
        if creates and not any(c.effect.kind in ("update", "delete") and c.effect.entity == ent.name for c in b.caps):
            continue  # the page makes these records; none exist before
        # Names that fit the entity (printer models for printers, not "Printer A"), the text's own first.
        steps = " ".join(c.description for c in b.caps if c.effect.entity == ent.name)
        # Never one the page's own create makes ("Create a folder named Archive"): that create must not conflict.
        made = {plausible_values(ent.key, ent.name, c.description, text)[0] for c in b.caps
                if c.effect.kind == "create" and c.effect.entity == ent.name and c.effect.key == ent.key}
        names = [n for n in dict.fromkeys(plausible_values(ent.key, ent.name, steps, text, k=4 + len(made)))
                 if n not in made]
        # "Select the device … from the list": the list holds several records in the state the steps start
        # from, so after one is changed two others still match a description by those values (the user
        # must say which one); a third record only where a step picks one to change.
        values, sources = _current(b, ent.name)
        picked = any(c.effect.kind in ("update", "delete") and c.effect.key and c.effect.entity == ent.name
                     for c in b.caps)
        fill = b.fill.get(ent.name, {})
        for i, n in enumerate(names[:3 if picked and values else 2]):
            extra = {f: vals[i % len(vals)] for f, vals in fill.items() if vals and f not in values}
            b.records.append(StateRecord(
                entity=ent.name, values={ent.key: n, **values, **{f: v for f, (v, _) in extra.items()}},
                sources={ent.key: source_for(text, n), **sources,
                         **{f: source_for(text, q) if q else ValueSource(kind="invented") for f, (_, q) in extra.items()}}))


# "If your account type is Standard, you cannot change this setting.": a rule on a field of a record.
CONDITIONAL_RULE = re.compile(
    r"^(?:if|when) (?:your|the|an?|this) (?P<field>[a-z][\w ]{1,30}?) is (?:set to )?[\"“']?(?P<value>[\w.-]{1,30})"
    r"[\"”']?,? (?:then )?(?:you|it) (?:cannot|can't|can not|are not able to|will not be able to|may not|must not)"
    r" (?P<what>[^.]{3,120})\.?$", re.IGNORECASE)
# The other value of a two-valued field, when the text names only the one the rule forbids.
OTHER_VALUE = {"standard": "Administrator", "administrator": "Standard", "public": "Private", "private": "Public",
               "guest": "Owner", "owner": "Guest", "locked": "Unlocked", "read-only": "Writable"}


def _conditional_rules(b: Build, reads: list[Capability]) -> None:
    """A `must` rule stated as a condition on a record ("If your account type is Standard, you cannot change
    this setting") becomes a field of that record, a precondition of the tools that change it (linked to
    the rule), and a value in the state: the last record has the value the rule forbids, the others not."""
    for rule in b.rules:
        m = CONDITIONAL_RULE.match(rule.text.strip())
        if rule.strength != "must" or m is None:
            continue
        words = tokens(m["field"])
        writes = [c for c in b.caps if c.effect.kind in ("update", "delete") and c.effect.key
                  and c.effect.entity != b.settings]
        entities = list(dict.fromkeys(c.effect.entity for c in writes))
        named = [e for e in entities if set(e.split("_")) & set(words)]
        if len(named) != 1 and len(entities) != 1:
            continue
        entity = (named or entities)[0]
        fld = snake(words)[:40]
        recs = [r for r in b.records if r.entity == entity]
        if len(recs) < 2 or fld in b.entities[entity].fields:
            continue
        value = m["value"]
        other = OTHER_VALUE.get(value.lower(), f"not {value}")
        b.entity(entity, b.entities[entity].key, {fld: {"type": "string", "description": m["field"]}})
        for i, r in enumerate(recs):
            blocked = i == len(recs) - 1
            r.values[fld] = value if blocked else other
            r.sources[fld] = source_for(b.text, value) if blocked else ValueSource(kind="invented")
        pre = Precondition(expr=f"record[{fld!r}] != {value!r}", error="not_permitted", message=rule.text,
                           rule=rule.id)
        for c in writes:
            if c.effect.entity == entity:
                c.effect.preconditions.append(pre)
        for c in reads:  # the listing shows the field, so the assistant can tell the user why
            if c.effect.entity == entity and fld not in c.effect.returns:
                c.effect.returns.append(fld)


def build_environment(drafts: list[ToolDraft], text: str, title: str, *, alternatives: bool = False) -> dict[str, Any]:
    """The environment fields (tools, effects, entities, initial_state, policy, execution_graph) for a page."""
    steps = [classify(d, i, alternatives) for i, d in enumerate(drafts)]
    panel = _panel(steps, title)
    b = Build(text=text, panel=panel, settings=snake(tokens(settings_words(panel)))[:49] or "app_settings")
    pending: list[Step] = []
    gestures: list[Step] = []
    target: tuple[str, str] | None = None
    for s in steps:
        if s.role == "command":
            _command_capability(b, s)
        elif s.role == "gesture":
            settings = [p for p in pending if p.role == "setting"]
            if s.label and s.label.split()[0].lower() in FOLD_BUTTONS and len(settings) >= 2:
                _fold_capability(b, s, settings, gestures, target)
                pending, gestures = [], []  # the settings and the record they were for are used
            else:
                gestures.append(s)
        elif s.role == "session" and s.draft.kind == "session":
            _session_capability(b, s, gestures)
            gestures = []
        elif s.role == "search_by":
            target = _search_capability(b, s, gestures)
            gestures = []
        elif s.role == "check":
            _check_capability(b, s, target)
        elif s.role == "send":
            _send_capability(b, s, gestures)
            gestures = []
        elif s.role == "move":
            _move_capability(b, s, gestures, target)
            pending, gestures = [p for p in pending if p.role != "pick"], []
        elif s.role == "action":
            _action_capability(b, s, gestures)
            gestures = []
        elif s.role == "session":
            b.session_tool = "unlock_settings"
            b.caps.append(Capability(
                "unlock_settings", f"Unlock the {settings_words(panel)} with the user's password (administrator "
                f"rights). Text: {s.draft.step.rstrip('.')}.",
                ToolEffect(kind="session", returns=["status"]),
                {"password": {"type": "string", "description": "The user's password."}}, ["password"], {},
                [s.index]))
        elif s.role in ("pick", "search"):
            pending.append(s)
            target = _pick_target(s)
        elif s.role == "commit":
            later = any(t.role == "commit" for t in steps[s.index + 1:])
            if not pending and later:
                gestures.append(s)  # "Click the Add world clocks… button" opens what the last button commits
                continue
            _commit_capability(b, s, pending, gestures, target)
            pending, gestures = [], []
        elif s.role in ("create", "delete"):
            word = "add" if s.role == "create" else "remove"
            if s.verb in COMMIT_KINDS and COMMIT_KINDS[s.verb][0] == s.role:
                word = s.verb  # "Create a folder" is create_folder, not add
            noun = _made_noun(s.draft) if s.role == "create" and not s.draft.params else ""
            if s.role == "create" and not s.draft.params and not noun:
                gestures.append(s)  # "Make it a point to …", "Make him create …": nothing is made
                continue
            commit = Step(s.draft, s.index, "commit", s.verb, f"{word.capitalize()} {noun}".strip())
            _commit_capability(b, commit, [*pending, *([s] if s.draft.params else [])], gestures, target)
            pending, gestures = [], []
        else:  # a setting: it waits for a commit button that would fold it, else stands alone
            pending.append(s)
    flush = [s for s in pending if s.role == "setting"]
    for s in flush:
        picked = next((p for p in pending if p.role in ("pick", "search") and p.index < s.index), None)
        _settings_capability(b, s, gestures, _pick_target(picked) if picked else None)
    if not flush:
        # A choice from a list that no later step acts on is itself the setting ("Select an alert sound").
        for s in pending:
            _settings_capability(b, Step(s.draft, s.index, "choice", s.verb), gestures, None)
    reads = _reads(b)
    _state(b, alternatives)
    _policy(b, text)
    if b.session_rule and b.rules and b.rules[0].id == "r0":
        b.rules[0].text = b.session_rule  # "Sign in to the office portal …", not the panel's unlock
    _conditional_rules(b, reads)
    for c in b.caps:  # a create step that is also its own commit is quoted once ("Text: Book the room …")
        c.description = re.sub(r"(Text: )([^.;]+)(?:; \2)+(?=[.;])", r"\1\2", c.description)
    caps = [*reads, *b.caps]
    writes = [c.name for c in b.caps]
    graph = "(" + ", ".join(c.name for c in reads) + ")" if reads else ""
    if alternatives:
        graph = "(" + ", ".join(c.name for c in caps) + ")"
    else:
        for name in writes:
            graph = f"{graph}->({name})" if graph else f"({name})"
    return {
        "tools": [c.tool() for c in caps],
        "effects": {c.name: c.effect.model_dump(mode="json", exclude_defaults=True) | {"kind": c.effect.kind}
                    for c in caps},
        "entities": [e.model_dump(mode="json") for e in b.entities.values()],
        "initial_state": [r.model_dump(mode="json") for r in b.records],
        "policy": [r.model_dump(mode="json") for r in b.rules],
        "execution_graph": graph,
    }
