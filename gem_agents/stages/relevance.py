"""Stage 1, the relevance filter: does a text hold a multi-step procedure on a machine?

The pre-filter runs first and settles obvious negatives without a model call. A model then
answers in the tagged format (or JSON when the endpoint does structured output); an answer that
cannot be parsed earns one bounded re-ask that quotes the parse error. With no model configured,
`relevance_offline` answers from the pre-filter alone.
"""

from __future__ import annotations

import re
from typing import Any

from gem_agents import registry
from gem_agents.config import RoleConfig
from gem_agents.models.client import ModelClient
from gem_agents.prompting import fill, load_prompt
from gem_agents.registry import register
from gem_agents.stages.base import Stage, StageEnv
from gem_agents.stages.prefilter import PrefilterDecision, prefilter
from gem_agents.stages.tagged import ParseError, parse_relevance
from tools_runtime.records import Document, Relevance

PROMPTS = "gem_agents.stages"

RELEVANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "multi_step": {"type": "boolean"},
        "summary": {"type": "string"},
        "domain": {"type": "string"},
        "platform": {"type": "string"},
        "task": {"type": "string"},
    },
    "required": ["multi_step", "summary", "domain", "platform", "task"],
    "additionalProperties": False,
}


def wants_json_schema(cfg: RoleConfig) -> bool:
    """Whether a role asks for JSON-schema structured output (`auto`: only OpenAI-compatible endpoints)."""
    if cfg.structured_output == "json_schema":
        return True
    if cfg.structured_output == "tagged":
        return False
    return "json_schema" in registry.provider(cfg.provider).capabilities


# ---------------------------------------------------------------------------------------------------------
# offline answer

_PLATFORM_CUES: list[tuple[str, tuple[str, ...]]] = [
    ("command_line", ("terminal", "command line", "shell", "`", "sudo ", "--")),
    ("website", ("website", "web page", "browser", "url", "sign in to", "online")),
    ("phone", ("phone", "android", "iphone", "tap ", "app store")),
    ("computer", ("click", "window", "desktop", "settings", "menu", "keyboard", "file", "folder", "printer")),
    ("machine", ("oven", "stove", "rice cooker", "microwave", "machine", "device", "router", "pan ")),
]
_DOMAIN_CUES: list[tuple[str, tuple[str, ...]]] = [
    ("computers_and_electronics", ("click", "settings", "computer", "file", "printer", "keyboard", "bluetooth",
                                   "terminal", "directory", "window", "install")),
    ("food_and_cooking", ("cook", "recipe", "oven", "pan", "stir", "heat", "cup", "tablespoon", "rice", "bake")),
    ("internet_and_web", ("website", "browser", "online", "email", "account")),
]
_TASK_CUES: list[tuple[str, tuple[str, ...]]] = [
    ("file_management", ("file", "folder", "directory")),
    ("printing", ("print",)),
    ("system_settings", ("settings", "panel", "switch")),
    ("account_management", ("account", "password", "log in", "login")),
    ("cooking", ("cook", "recipe", "bake", "stir")),
]


def _best(text: str, cues: list[tuple[str, tuple[str, ...]]], default: str) -> str:
    low = text.lower()
    scores = [(sum(low.count(w) for w in words), name) for name, words in cues]
    count, name = max(scores, key=lambda s: s[0])
    return name if count >= 2 else default


def guess_labels(text: str) -> tuple[str, str, str]:
    """(domain, platform, task) guessed from vocabulary, for answers made without a model."""
    return (_best(text, _DOMAIN_CUES, "other"), _best(text, _PLATFORM_CUES, "other"),
            _best(text, _TASK_CUES, "other"))


def grounded_platform(text: str, platform: str) -> str:
    """The platform label if the text names it at least once, else the vocabulary guess.

    A small model labels a desktop settings page `command_line` now and then; the label reaches the
    assistant's system prompt ("done on the command line"), so a label the text never hints at is
    replaced by what the text's own vocabulary says.
    """
    cues = dict(_PLATFORM_CUES).get(platform)
    if not cues or any(w in text.lower() for w in cues):
        return platform
    guess = _best(text, _PLATFORM_CUES, "other")
    return guess if guess != "other" else platform


def _summary(doc: Document) -> str:
    """A one-line summary from the title or the first line."""
    title = str(doc.meta.get("title") or "")
    if not title:
        first = next((ln.strip() for ln in doc.text.split("\n") if ln.strip()), "")
        title = re.sub(r"^(?:#+\s*|TITLE:\s*)", "", first, flags=re.IGNORECASE)
    title = re.sub(r"\s*\(https?://[^)]*\)\s*$", "", title).strip()
    return title[:160]


def relevance_offline(doc: Document, decision: PrefilterDecision | None = None) -> Relevance:
    """The pre-filter's answer as a Relevance (decided_by='prefilter')."""
    decision = decision or prefilter(doc)
    if not decision.keep:
        return Relevance(multi_step=False, summary="", decided_by="prefilter")
    domain, platform, task = guess_labels(doc.text)
    return Relevance(multi_step=True, summary=_summary(doc), domain=domain, platform=platform, task=task,
                     decided_by="prefilter")


# ---------------------------------------------------------------------------------------------------------
# model answer


def filter_messages(doc: Document, *, json_mode: bool = False) -> list[dict[str, Any]]:
    """The first (and usually only) message of a stage-1 call."""
    fmt = load_prompt(PROMPTS, "filter_json.txt" if json_mode else "filter_tagged.txt").strip()
    prompt = fill(load_prompt(PROMPTS, "filter.txt"), output_format=fmt, text=doc.text)
    return [{"role": "user", "content": prompt}]


def reask_message(error: str, *, json_mode: bool = False) -> dict[str, Any]:
    """The follow-up asking again after an unparsable answer, quoting the parse error."""
    fmt = load_prompt(PROMPTS, "filter_json.txt" if json_mode else "filter_tagged.txt").strip()
    return {"role": "user", "content": fill(load_prompt(PROMPTS, "filter_reask.txt"), error=error,
                                            output_format=fmt)}


async def judge_relevance(doc: Document, client: ModelClient | None, *, use_prefilter: bool = True,
                          reask_rounds: int = 1) -> Relevance:
    """Stage 1 for one document: pre-filter, then the model (or the pre-filter alone when `client` is None).

    An unparsable answer is re-asked at most `reask_rounds` times; if it never parses the result is
    `multi_step=False, decided_by="unparsable"` with the last parse error as its summary.
    Model call failures (ModelCallError) propagate to the caller.
    """
    decision = prefilter(doc) if use_prefilter or client is None else None
    if decision is not None and not decision.keep:
        return Relevance(multi_step=False, summary="", decided_by="prefilter")
    if client is None:
        return relevance_offline(doc, decision)
    json_mode = wants_json_schema(client.cfg)
    messages = filter_messages(doc, json_mode=json_mode)
    error = ""
    for attempt in range(reask_rounds + 1):
        reply = await client.chat(messages, json_schema=RELEVANCE_SCHEMA if json_mode else None,
                                  schema_name="relevance", stage="filter")
        try:
            rel = parse_relevance(reply.text)
        except ParseError as exc:
            error = str(exc)
            messages = [*messages, {"role": "assistant", "content": reply.text},
                        reask_message(error, json_mode=json_mode)]
            continue
        return rel.model_copy(update={"decided_by": "model" if attempt == 0 else "model_reask",
                                      "platform": grounded_platform(doc.text, rel.platform)})
    return Relevance(multi_step=False, summary=f"unparsable answer: {error}"[:300], decided_by="unparsable")


# ---------------------------------------------------------------------------------------------------------
# The stage object: `gem run`'s filter node, `gem filter` and `gem extract`'s first step all call this.


async def run_filter(env: StageEnv, doc: Document) -> Relevance:
    """Stage 1 in `env`: the pre-filter (always when `prefilter` is on or offline), then the filter model."""
    client = env.client("filter")
    return await judge_relevance(doc, client, use_prefilter=env.config.prefilter or client is None,
                                 reask_rounds=env.config.limits.reask_rounds)


FILTER = register("stage", "filter", Stage(
    name="filter", run=run_filter, roles=("filter",), reads=("prefilter", "limits.reask_rounds"),
    summary="is this a multi-step procedure? (pre-filter rules, then the filter model)"))
