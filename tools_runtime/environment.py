"""The environment spec: stage 2's output, the world a text describes, as data.

An environment is what a real service behind the text would expose: capability-level tools (never UI
gestures) that each declare their effect on typed entities, an initial state whose values come from
the text (each value says where it came from), and the policy the text states or implies. It is the
contract between the extraction role (which answers in this schema), the stateful backend (which
executes declared effects) and the task writer (whose gold actions run on it).

`Workflow` (records.py) carries these fields; tools without a declared effect fall back to the name
heuristics of `binding.py`, so third-party tool files keep working. Bump SPEC_VERSION on any change
that an older reader would misread.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_VERSION = "1"

EffectKind = Literal["read", "create", "update", "delete", "session", "compute", "external"]
# What changes state: the verifier's order and state checks care about these, not about reads.
WRITE_EFFECTS = frozenset({"create", "update", "delete", "session", "external"})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueSource(_Spec):
    """Where one value came from: a span of the document, or plausible filler."""

    kind: Literal["text", "invented"] = "invented"
    quote: str = ""
    span: tuple[int, int] | None = None


class FieldWrite(_Spec):
    """How a write sets one field: from a parameter, a constant, or a formula over both."""

    field: str
    param: str | None = None
    value: Any = None
    formula: str | None = None


class Precondition(_Spec):
    """A check a call must pass before it runs (a safe expression over `args`, `record`, `session`)."""

    expr: str
    error: str = "precondition_failed"
    message: str
    rule: str | None = None


class ToolEffect(_Spec):
    """What one tool does to the world, declared rather than guessed from its name."""

    kind: EffectKind
    entity: str = ""
    key: str | None = None
    match: str | None = None
    writes: list[FieldWrite] = Field(default_factory=list)
    returns: list[str] = Field(default_factory=list)
    formula: str | None = None
    requires_session: bool = False
    preconditions: list[Precondition] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class Entity(_Spec):
    """A typed record schema for one of the text's nouns; `key` names the identifying field."""

    name: str
    key: str
    fields: dict[str, dict[str, Any]]
    description: str = ""
    hidden: list[str] = Field(default_factory=list)


class StateRecord(_Spec):
    """One record of the initial state, with the provenance of each of its values."""

    entity: str
    values: dict[str, Any]
    sources: dict[str, ValueSource] = Field(default_factory=dict)


class Rule(_Spec):
    """One rule of the policy; `must` rules are enforced (by a precondition or the verifier)."""

    id: str
    text: str
    strength: Literal["must", "recommended"] = "must"
    tools: list[str] = Field(default_factory=list)
    confirm: bool = False


# ---------------------------------------------------------------------------------------------------------
# functions on the spec parts (no backend, no workflow: records.py imports this module)


class EnvironmentSpecError(ValueError):
    """An environment spec that cannot be used; the message names the record, entity or field."""


def entity_schema(entity: Entity) -> dict[str, Any]:
    """The JSON Schema one record of `entity` must satisfy (its fields, its key required)."""
    return {"type": "object", "properties": entity.fields, "required": [entity.key],
            "additionalProperties": False}


def record_issues(entity: Entity, values: dict[str, Any]) -> list[tuple[str, str]]:
    """Why `values` is not a valid record of `entity`, as (field, message) pairs; empty when valid."""
    # The project's hardened validator: model-written field schemas get bounded regexes, no remote $ref.
    from tools_runtime.fastvalid import proven_valid
    from tools_runtime.validation import compiled_validator

    schema = entity_schema(entity)
    validator, why = compiled_validator(schema)
    if validator is None:
        return [("fields", f"entity '{entity.name}' has an invalid field schema: {why}")]
    if proven_valid(schema, values):  # the common case, without jsonschema's machinery
        return []
    out = []
    try:
        found = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.path])
    except RecursionError:
        return [("", "the record is nested too deeply to check")]
    for err in found:
        if err.path:
            field = str(err.path[0])
        elif err.validator == "additionalProperties":
            extra = sorted(set(values) - set(entity.fields))
            field = extra[0] if extra else ""
            out.append((field, f"unknown field(s) {extra} (entity '{entity.name}' has {sorted(entity.fields)})"))
            continue
        elif err.validator == "required":
            field = entity.key
        else:
            field = ""
        out.append((field, err.message))
    return out
