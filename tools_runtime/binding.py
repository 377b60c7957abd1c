"""Bind an extracted tool to a backend operation and an entity, from its name and schema.

Extracted tools come with names like `get_order_status`, `add_item_to_cart` or `open_print_dialog`
and nothing else that says what they do. docs/design.md §3.3 maps the leading verb to an operation:

    read    get list search find check view show …     create  create add book submit send …
    update  update set change edit enable disable …    delete  delete remove cancel …
    session login logout authenticate …                 compute calculate convert estimate …

and anything else to `action` (a recorded side effect on a singleton record). The entity is the
noun phrase after the verb, singularised; a container preposition makes a compound entity
(`add_item_to_cart` → `cart_item`), a filter preposition ends it (`list_orders_by_user` → `order`).
Arguments split into *selectors* (which records: `id`, `*_id`, `*_name`, `username`, …) and
*values* (what to write). The rules are heuristics, but they are applied identically when the
reference plan is made and when any assistant's calls are executed, so the state stays consistent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from tools_runtime.toolspec import ToolSpec

Op = Literal["read", "create", "update", "delete", "session", "compute", "action"]

VERBS: dict[str, Op] = {}
_VERB_WORDS: dict[Op, str] = {
    "read": "get list search find check view show look lookup read fetch query browse count retrieve "
    "display inspect locate track see review monitor watch compare filter scan load",
    "create": "create add book submit send post make new register upload insert place schedule write "
    "reserve order open_account invite generate import attach enroll publish start compose request",
    "update": "update set change edit enable disable modify rename toggle select choose adjust configure "
    "move assign mark apply switch pick reset replace activate deactivate resize rotate sort "
    "restore upgrade tag label pin unpin favorite archive",
    "delete": "delete remove cancel clear erase uninstall unsubscribe discard revoke drop unregister "
    "trash purge dismiss",
    "session": "login logout authenticate signin signout connect disconnect unlock lock",
    "compute": "calculate compute convert estimate translate format validate measure evaluate "
    "summarize predict quote",
}
for _op, _words in _VERB_WORDS.items():
    for _w in _words.split():
        VERBS[_w] = _op

# Two-token verbs written with an underscore (`log_in`, `sign_out`, `look_up`).
PHRASAL: dict[tuple[str, str], str] = {
    ("log", "in"): "login",
    ("log", "out"): "logout",
    ("sign", "in"): "signin",
    ("sign", "out"): "signout",
    ("look", "up"): "lookup",
    ("set", "up"): "configure",
    ("turn", "on"): "enable",
    ("turn", "off"): "disable",
    ("switch", "on"): "enable",
    ("switch", "off"): "disable",
    ("check", "out"): "checkout",
    ("sign", "up"): "register",
}
VERBS["checkout"] = "create"

VERB_NOUNS = {"book": "booking", "reserve": "reservation", "order": "order", "enroll": "enrollment",
              "register": "registration", "schedule": "appointment", "add": "entry", "submit": "submission",
              "request": "request", "invite": "invitation", "attach": "attachment", "place": "order",
              "checkout": "checkout", "start": "session"}
LOGOUT_VERBS = {"logout", "signout", "disconnect", "lock"}
CONTAINER_PREPS = {"to", "into", "in", "from", "on", "onto", "inside", "within"}
FILTER_PREPS = {"for", "by", "of", "with", "at", "per", "via", "using", "about", "under"}
STOPWORDS = {"a", "an", "the", "new", "all", "my", "current", "existing", "selected", "and"}
QUALIFIERS = {"details", "detail", "info", "information", "status", "list", "data", "summary", "history"}
QUERY_ARGS = {"query", "q", "keyword", "keywords", "search", "term", "search_term", "text", "search_query"}
PAGING_ARGS = {"limit", "max_results", "page", "page_size", "offset", "count", "top_k", "sort", "order_by"}
KEY_SUFFIXES = ("_id", "_name", "_number", "_code", "_key", "_sku", "_slug")
KEY_NAMES = {"id", "name", "username", "user_name", "sku", "slug", "code", "filename", "file_name", "path"}


@dataclass(frozen=True)
class Binding:
    """What one tool does to the backend: its operation, entity and how its arguments are used."""

    tool: str
    op: Op
    verb: str
    entity: str
    selectors: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    requires_session: bool = False
    id_field: str = ""
    modifiers: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """Finer behaviour inside an operation (`cancel` vs `delete`, `enable` vs `disable` …)."""
        return self.modifiers.get("mode", "")


def split_name(name: str) -> list[str]:
    """Lower-case tokens of a tool or parameter name (snake, kebab, dotted and camelCase)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [t for t in re.split(r"[_\-.\s]+", spaced.lower()) if t]


def singular(word: str) -> str:
    """A cheap English singular (`orders`→`order`, `addresses`→`address`, `entries`→`entry`)."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is", "ws")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def _verb_of(tokens: list[str]) -> tuple[str, int]:
    """The verb of a name and how many tokens it takes; ('', 0) when the name starts with no verb."""
    if len(tokens) >= 2 and (tokens[0], tokens[1]) in PHRASAL:
        return PHRASAL[(tokens[0], tokens[1])], 2
    if tokens and tokens[0] in VERBS:
        return tokens[0], 1
    return (tokens[0], 1) if tokens else ("", 0)


def entity_of(tokens: list[str]) -> str:
    """The entity a list of non-verb tokens designates (see the module docstring)."""
    head: list[str] = []
    container: list[str] = []
    target = head
    for tok in tokens:
        if tok in FILTER_PREPS:
            break
        if tok in CONTAINER_PREPS:
            target = container
            continue
        if tok in STOPWORDS:
            continue
        target.append(tok)
    while len(head) > 1 and head[-1] in QUALIFIERS:
        head.pop()
    words = [singular(t) for t in container + head]
    return "_".join(words)


def is_selector(arg: str) -> bool:
    """True when an argument identifies records rather than carrying a value to write."""
    a = arg.lower()
    if a.startswith("new_"):
        return False
    return a in KEY_NAMES or a.endswith(KEY_SUFFIXES)


def bind_tool(spec: ToolSpec, *, requires_session: bool = False) -> Binding:
    """Bind one tool to its operation and entity."""
    tokens = split_name(spec.name)
    verb, used = _verb_of(tokens)
    op: Op = VERBS.get(verb, "action")
    rest = tokens[used:]
    entity = entity_of(rest)
    if not entity:
        entity = "session" if op == "session" else (singular(verb) if op == "action" else "item")
    params = list(spec.properties)
    id_field = f"{entity}_id"
    modifiers: dict[str, str] = {}
    if op == "delete":
        modifiers["mode"] = "cancel" if verb in {"cancel", "revoke", "dismiss", "archive"} else "remove"
    if op == "update" and verb in {"enable", "activate", "disable", "deactivate"}:
        modifiers["mode"] = "enable" if verb in {"enable", "activate"} else "disable"
    if op == "session":
        modifiers["mode"] = "logout" if verb in LOGOUT_VERBS else "login"
    if op == "read":
        selectors = tuple(p for p in params if p in {id_field, "id"})
        filters = tuple(p for p in params if p not in selectors)
        return Binding(spec.name, op, verb, entity, selectors, (), filters, requires_session, id_field, modifiers)
    if op == "create":
        return Binding(spec.name, op, verb, entity, (), tuple(params), (), requires_session, id_field, modifiers)
    if op in ("update", "delete"):
        selectors = tuple(p for p in params if is_selector(p))
        if op == "delete":
            selectors = tuple(params)
        values = tuple(p for p in params if p not in selectors)
        return Binding(spec.name, op, verb, entity, selectors, values, (), requires_session, id_field, modifiers)
    return Binding(spec.name, op, verb, entity, (), tuple(params), (), requires_session, id_field, modifiers)


def bind_tools(specs: Iterable[ToolSpec], session_required: Iterable[str] = ()) -> dict[str, Binding]:
    """Bind every tool; tools named in `session_required` need a logged-in session first."""
    specs = list(specs)
    # A binding follows from the tools' names and argument names alone, and every backend, replay and
    # gold run of a document binds the same tools again (~6 % of the engine's CPU): bind each set once.
    # Bindings are frozen; the caller gets its own dict.
    key = (tuple((s.name, tuple(s.properties)) for s in specs), frozenset(session_required))
    return dict(_bind_tools_once(key))


@lru_cache(maxsize=1024)
def _bind_tools_once(key: tuple[tuple[tuple[str, tuple[str, ...]], ...], frozenset[str]]) -> dict[str, Binding]:
    named, need = key
    specs = [ToolSpec(name=name, parameters={"type": "object", "properties": dict.fromkeys(params, {})})
             for name, params in named]
    bindings = {s.name: bind_tool(s, requires_session=s.name in need) for s in specs}
    # A tool whose own noun no other tool shares but which takes `<x>_id` of an entity other tools
    # use (`get_tracking_info(order_id)`) acts on that entity, not on a lonely collection of its own.
    counts: dict[str, int] = {}
    for b in bindings.values():
        counts[b.entity] = counts.get(b.entity, 0) + 1
    # `book_flight(flight_id)` books an existing flight: the new record is a `flight_booking`,
    # not a second flight with the same id.
    kept = {b.entity for b in bindings.values() if b.op in ("read", "update", "delete")}
    for spec in specs:
        b = bindings[spec.name]
        if b.op == "create" and b.entity in kept and b.id_field in spec.properties:
            entity = f"{b.entity}_{VERB_NOUNS.get(b.verb, b.verb)}"
            bindings[spec.name] = Binding(spec.name, b.op, b.verb, entity, b.selectors, b.values, b.filters,
                                          b.requires_session, f"{entity}_id", dict(b.modifiers))
    for spec in specs:
        b = bindings[spec.name]
        if b.op in ("session", "create", "action") or counts.get(b.entity, 0) > 1:
            continue
        owners = [p[:-3] for p in spec.properties if p.endswith("_id") and counts.get(p[:-3], 0) > 0]
        owners = [o for o in owners if o != b.entity]
        if len(owners) == 1:
            alias = ToolSpec(name=f"{b.verb}_{owners[0]}", description=spec.description, parameters=spec.parameters)
            rebound = bind_tool(alias, requires_session=b.requires_session)
            bindings[spec.name] = Binding(spec.name, rebound.op, b.verb, rebound.entity, rebound.selectors,
                                          rebound.values, rebound.filters, rebound.requires_session,
                                          rebound.id_field, dict(b.modifiers))
    return bindings
