"""Deterministic fake data: field values from names and schemas, and the seeded initial state.

Everything draws from one `random.Random` the scenario builder seeds, so the same seed gives a
byte-identical state. The vocabulary is small on purpose: values must look plausible in a
dialogue, not be diverse enough to leak into anything.
"""

from __future__ import annotations

import random
from typing import Any

from tools_runtime.backend import credential_args, empty_state, id_prefix
from tools_runtime.binding import PAGING_ARGS, QUERY_ARGS, Binding, singular, split_name
from tools_runtime.toolspec import ToolSpec

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Lena"]
LAST = ["Martin", "Okafor", "Silva", "Novak", "Tanaka", "Moreau", "Haddad", "Kowalski", "Lindqvist", "Reyes"]
CITIES = ["Lisbon", "Toronto", "Osaka", "Nairobi", "Porto", "Lyon", "Austin", "Tallinn", "Perth", "Seville"]
STREETS = ["Oak Street", "Harbour Road", "Maple Avenue", "Station Lane", "Mill Street", "Park Row"]
NOUNS = ["lamp", "backpack", "kettle", "headphones", "notebook", "jacket", "blender", "monitor", "chair",
         "umbrella", "router", "camera", "printer", "keyboard", "mug", "charger"]
ADJ = ["blue", "compact", "classic", "wireless", "large", "quiet", "spare", "weekly", "shared", "urgent"]
STATUSES = ["active", "pending", "processing", "shipped", "open", "confirmed"]
WORDS = ["summary", "draft", "plan", "notes", "budget", "schedule", "archive", "report", "invoice", "photos"]


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _words(name: str) -> set[str]:
    return set(split_name(name))


def fake_value(name: str, schema: dict[str, Any] | None, rng: random.Random, depth: int = 0) -> Any:
    """A plausible value for a field called `name` that satisfies its JSON Schema `schema`."""
    schema = schema if isinstance(schema, dict) else {}
    if "enum" in schema and schema["enum"]:
        return rng.choice(list(schema["enum"]))
    if "const" in schema:
        return schema["const"]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    words = _words(name)
    if typ is None:
        for sub in ("anyOf", "oneOf"):
            if isinstance(schema.get(sub), list) and schema[sub]:
                return fake_value(name, schema[sub][0], rng, depth + 1)
        typ = "object" if "properties" in schema else "string"
    if typ == "boolean":
        return rng.random() < 0.5
    if typ in ("integer", "number"):
        return _fake_number(words, schema, typ == "integer", rng)
    if typ == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
        n = max(int(schema.get("minItems", 1)), 1)
        return [fake_value(singular(name), items, rng, depth + 1) for _ in range(min(n, 3))]
    if typ == "object":
        props = found if isinstance(found := schema.get("properties"), dict) else {}
        if depth > 4:
            return {}
        req = schema.get("required") or list(props)
        return {k: fake_value(k, props[k], rng, depth + 1) for k in props if k in req}
    return _fake_string(name, words, schema, rng)


def _fake_number(words: set[str], schema: dict[str, Any], integer: bool, rng: random.Random) -> int | float:
    step = 1 if integer else 0.01
    lo = schema.get("minimum")
    if lo is None and isinstance(schema.get("exclusiveMinimum"), int | float):
        lo = schema["exclusiveMinimum"] + step
    hi = schema.get("maximum")
    if hi is None and isinstance(schema.get("exclusiveMaximum"), int | float):
        hi = schema["exclusiveMaximum"] - step
    default_lo, default_hi = 1, 100
    if words & {"quantity", "count", "qty", "number", "copies", "guests", "people", "nights", "seats"}:
        default_hi = 5
    elif words & {"price", "amount", "total", "cost", "budget", "balance", "fee"}:
        default_lo, default_hi = 5, 500
    elif "year" in words:
        default_lo, default_hi = 2020, 2027
    elif words & {"priority", "rating", "level", "stars"}:
        default_hi = 5
    lo = default_lo if lo is None else lo
    hi = max(default_hi, lo) if hi is None else hi
    if hi < lo:
        hi = lo
    if integer:
        return rng.randint(int(lo), int(hi))
    return round(rng.uniform(float(lo), float(hi)), 2)


def _fake_string(name: str, words: set[str], schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format", "")
    if fmt == "email" or "email" in words:
        first, last = _person(rng)
        return f"{first.lower()}.{last.lower()}@example.com"
    if fmt == "date" or words & {"date", "day", "birthday", "deadline"}:
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time" or words & {"datetime", "timestamp"}:
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(8, 18):02d}:00:00Z"
    if fmt == "time" or "time" in words:
        return f"{rng.randint(8, 18):02d}:{rng.choice(['00', '15', '30', '45'])}"
    if fmt in ("uri", "url") or words & {"url", "link", "website"}:
        return f"https://example.com/{rng.choice(WORDS)}/{rng.randint(10, 99)}"
    if words & {"password", "pin", "secret", "passcode"}:
        return f"Secret-{rng.randint(1000, 9999)}"
    if words & {"username", "login", "handle"}:
        first, last = _person(rng)
        return f"{first.lower()}{last[0].lower()}{rng.randint(10, 99)}"
    if words & {"phone", "mobile", "telephone"}:
        return f"+1-555-01{rng.randint(10, 99)}"
    if words & {"city", "town"}:
        return rng.choice(CITIES)
    if words & {"address", "street"}:
        return f"{rng.randint(2, 99)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    if words & {"zip", "postal", "postcode"}:
        return f"{rng.randint(10000, 99999)}"
    if words & {"country"}:
        return rng.choice(["Portugal", "Canada", "Japan", "Kenya", "France", "Estonia"])
    if words & {"status", "state"}:
        return rng.choice(STATUSES)
    if words & {"color", "colour"}:
        return rng.choice(["red", "blue", "green", "black", "white", "yellow"])
    if words & {"size"}:
        return rng.choice(["S", "M", "L", "XL"])
    if words & {"currency"}:
        return rng.choice(["USD", "EUR", "JPY", "GBP"])
    if words & {"language", "lang", "locale"}:
        return rng.choice(["en", "fr", "pt", "ja", "de"])
    if words & {"file", "filename", "document", "attachment"}:
        return f"{rng.choice(WORDS)}_{rng.randint(2020, 2026)}.{rng.choice(['pdf', 'txt', 'docx', 'csv'])}"
    if words & {"folder", "directory", "dir", "path"}:
        return f"{rng.choice(WORDS)}"
    if words & {"reason", "comment", "note", "notes", "message", "description", "body", "content", "feedback"}:
        return rng.choice(["It arrived damaged.", "Please handle this before Friday.", "Thanks for the quick help!",
                           "The size does not fit.", "Needed for the team meeting.", "Just a reminder to myself."])
    if words & {"title", "subject", "label", "topic", "headline"}:
        return f"{rng.choice(ADJ).capitalize()} {rng.choice(WORDS)}"
    if words & {"name", "customer", "recipient", "owner", "contact", "guest", "person", "author", "user"}:
        if words & {"product", "item", "device", "printer", "network", "app", "course", "room", "hotel"}:
            return f"{rng.choice(ADJ).capitalize()} {rng.choice(NOUNS)}"
        first, last = _person(rng)
        return f"{first} {last}"
    if words & {"product", "item", "model", "device"}:
        return f"{rng.choice(ADJ)} {rng.choice(NOUNS)}"
    if words & {"code", "coupon", "promo", "voucher", "token"}:
        return f"{rng.choice(['SAVE', 'WELCOME', 'SPRING'])}{rng.randint(10, 50)}"
    pattern_free = schema.get("pattern") is None
    base = " ".join(split_name(name)) or "value"
    return f"{rng.choice(ADJ)} {base}" if pattern_free else base


# Descriptive fields for records whose tools name nothing but an id: a seeded `order` with only
# `order_id` makes a poor conversation, so records of familiar nouns get a few plausible fields.
DEFAULT_FIELDS: dict[str, dict[str, dict]] = {
    "order": {"item": {"type": "string"}, "total": {"type": "number"}, "date": {"type": "string", "format": "date"},
              "status": {"enum": ["processing", "shipped", "delivered"]}},
    "product": {"name": {"type": "string"}, "price": {"type": "number"}, "stock": {"type": "integer"}},
    "item": {"name": {"type": "string"}, "price": {"type": "number"}, "quantity": {"type": "integer"}},
    "user": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
    "account": {"name": {"type": "string"}, "balance": {"type": "number"},
                "currency": {"enum": ["USD", "EUR", "GBP"]}},
    "customer": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
    "ticket": {"title": {"type": "string"}, "status": {"enum": ["open", "in_progress", "resolved"]},
               "priority": {"type": "integer", "minimum": 1, "maximum": 5}},
    "room": {"name": {"type": "string"}, "floor": {"type": "integer", "minimum": 1, "maximum": 9},
             "seats": {"type": "integer", "minimum": 2, "maximum": 20}},
    "file": {"name": {"type": "string"}, "size_kb": {"type": "integer", "minimum": 1, "maximum": 9000}},
    "document": {"title": {"type": "string"}, "pages": {"type": "integer", "minimum": 1, "maximum": 60}},
    "booking": {"date": {"type": "string", "format": "date"}, "status": {"enum": ["confirmed", "pending"]}},
    "payee": {"name": {"type": "string"}, "bank": {"enum": ["First Bank", "City Credit", "Harbor Savings"]}},
    "printer": {"name": {"type": "string"}, "status": {"enum": ["ready", "idle"]}},
    "network": {"name": {"type": "string"}, "band": {"enum": ["2.4GHz", "5GHz"]}},
}
GENERIC_FIELDS: dict[str, dict] = {"name": {"type": "string"}, "status": {"enum": ["active", "inactive"]}}


def record_fields(entity: str, bindings: dict[str, Binding], tools: dict[str, ToolSpec]) -> dict[str, dict]:
    """The typed fields of an entity's records: every argument its tools read or write."""
    fields: dict[str, dict] = {}
    for b in bindings.values():
        if b.entity != entity or b.op in ("session", "compute"):
            continue
        props = tools[b.tool].properties
        for arg in (*b.selectors, *b.values, *b.filters):
            if arg in (b.id_field, "id") or arg in QUERY_ARGS or arg in PAGING_ARGS or arg.startswith("new_"):
                continue
            fields.setdefault(arg, props.get(arg, {}) if isinstance(props.get(arg), dict) else {})
    if not any(not f.endswith("_id") for f in fields):
        last = entity.split("_")[-1]
        for name, schema in DEFAULT_FIELDS.get(last, GENERIC_FIELDS).items():
            fields.setdefault(name, schema)
    return dict(sorted(fields.items()))


def seeded_entities(bindings: dict[str, Binding]) -> list[str]:
    """Entities that need records before the dialogue starts (something reads or changes them)."""
    need = set()
    for b in bindings.values():
        if b.op in ("read", "delete") or (b.op == "update" and b.selectors):
            need.add(b.entity)
        for arg in (*b.selectors, *b.values, *b.filters):
            if arg.endswith("_id") and arg[:-3] and arg != b.id_field:
                need.add(arg[:-3])
    return sorted(need)


def seed_state(tools: list[ToolSpec], bindings: dict[str, Binding], rng: random.Random,
               per_entity: int = 4) -> dict[str, Any]:
    """A fresh backend state with `per_entity` records for every entity that needs them."""
    state = empty_state()
    spec_by_name = {t.name: t for t in tools}
    entities = seeded_entities(bindings)
    id_types: dict[str, str] = {}
    for b in bindings.values():
        schema = spec_by_name[b.tool].properties.get(b.id_field)
        if isinstance(schema, dict) and schema.get("type") == "integer":
            id_types[b.entity] = "integer"
    ids: dict[str, list[Any]] = {}
    for entity in entities:
        if id_types.get(entity) == "integer":
            start = rng.randint(100, 800)
            ids[entity] = [start + i * rng.randint(3, 9) for i in range(per_entity)]
        else:
            start = rng.randint(1000, 8000)
            ids[entity] = [f"{id_prefix(entity)}-{start + i * rng.randint(3, 9)}" for i in range(per_entity)]
    for entity in entities:
        fields = record_fields(entity, bindings, spec_by_name)
        records: dict[str, dict[str, Any]] = {}
        for rid in ids[entity]:
            rec: dict[str, Any] = {}
            for fname, fschema in fields.items():
                other = fname[:-3] if fname.endswith("_id") else ""
                if other and other in ids:
                    rec[fname] = rng.choice(ids[other])
                else:
                    rec[fname] = fake_value(fname, fschema, rng)
            if any(b.entity == entity and b.mode == "cancel" for b in bindings.values()):
                rec.setdefault("status", "active")
            records[str(rid)] = rec
        state["collections"][entity] = records
    login = next((b for b in bindings.values() if b.op == "session" and b.mode == "login"), None)
    if login is not None:
        props = spec_by_name[login.tool].properties
        user_arg, secret_arg = credential_args(list(props))
        creds = {}
        for _ in range(3):
            user = fake_value(user_arg or "username", props.get(user_arg or "", {"type": "string"}), rng)
            creds[str(user)] = fake_value(secret_arg or "password", props.get(secret_arg or "", {}), rng)
        state["session"]["credentials"] = creds
    return state
