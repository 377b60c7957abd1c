"""Render chat records through a tokenizer's chat template the way transformers does (sandboxed jinja2).

Used to check that every exported trajectory is trainable with a real tool-aware template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise(message: str) -> None:
    raise TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def load_template(path: str | Path) -> str:
    """The chat template string of a tokenizer_config.json (or a bare .jinja file)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        tmpl = json.loads(text).get("chat_template")
        if isinstance(tmpl, list):  # named templates: take the default one
            tmpl = next((t["template"] for t in tmpl if t.get("name") == "default"), tmpl[0]["template"])
        if not isinstance(tmpl, str):
            raise ValueError(f"{p}: no chat_template string")
        return tmpl
    return text


def render_chat(template: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
                add_generation_prompt: bool = False, **extra: Any) -> str:
    """The prompt text of `messages` (+ `tools`) under `template`; TemplateError when the template refuses it."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    return env.from_string(template).render(messages=messages, tools=tools or None,
                                            add_generation_prompt=add_generation_prompt, **extra)
