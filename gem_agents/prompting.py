"""Prompt text files live beside the code that uses them; this reads and fingerprints them."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=64)
def load_prompt(package: str, name: str) -> str:
    """The text of `prompts/<name>` inside `package` (e.g. `gem_agents.policies`)."""
    return resources.files(package).joinpath("prompts", name).read_text(encoding="utf-8")


def prompts_hash(*texts: str) -> str:
    """A short fingerprint of the prompt texts a stage used (recorded in provenance)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def fill(template: str, **values: str) -> str:
    """Replace `{{name}}` placeholders (no str.format, so JSON braces in prompts stay literal)."""
    out = template
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def json_object_in(text: str) -> Any:
    """The JSON object of a model's answer (possibly inside a code fence or prose); ValueError says why not."""
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        return json.loads(body[start:end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
