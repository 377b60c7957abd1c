"""An embedded CPU model through llama-cpp-python (the `local` extra), no server and no network.

Structured stages (`json_schema` in the call) get grammar-constrained JSON from llama.cpp, so the
answer always parses. Roles with tools are rendered through the GGUF's own chat template (Qwen's
carries the hermes tool format) and `<tool_call>` blocks are parsed back into `tool_calls`; a
forced call (`tool_choice` = "required" or a name) is grammar-constrained as well. One engine per
model file is shared by every role that names it, behind a lock: a llama.cpp context runs one
generation at a time.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, Completer
from gem_agents.providers.tool_text import call_from_json, for_template, parse_tool_text, tool_choice_schema
from gem_agents.providers.weights import resolve_model_file

_ENGINES: dict[tuple[Any, ...], LocalEngine] = {}
_ENGINES_LOCK = threading.Lock()


@atexit.register
def close_engines() -> None:
    """Free every loaded model while the interpreter still works.

    Left to garbage collection at shutdown, llama-cpp-python's finalizer runs after its C library
    handle is gone and prints a TypeError traceback on an otherwise clean exit.
    """
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            close = getattr(engine.llm, "close", None)
            if callable(close):
                close()
        _ENGINES.clear()

TOOLS_PREAMBLE = ("You may call functions. Their signatures, one JSON object a line:\n{tools}\n"
                  "To call one, answer with <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>.")


class LocalProviderUnavailable(ImportError):
    """llama-cpp-python is not installed."""


def import_llama() -> Any:
    """The `llama_cpp.Llama` class, or a clear error naming the extra to install."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise LocalProviderUnavailable("provider 'local' needs llama-cpp-python: pip install -e '.[local]' "
                                       "(it compiles llama.cpp; see README, Model providers)") from exc
    return Llama


@dataclass
class LocalEngine:
    """A loaded llama.cpp model, its lock, and the counters benchmarks read."""

    llm: Any
    path: Path
    template_has_tools: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def complete(self, messages: list[dict[str, Any]], spec: CallSpec, cfg: RoleConfig) -> tuple[dict, dict]:
        """One chat completion (blocking)."""
        msgs = for_template(messages)
        kwargs: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": 0}
        forced = tool_choice_schema(list(spec.tools), spec.tool_choice) if spec.tools else None
        if spec.json_schema is not None and not spec.tools:
            kwargs["response_format"] = {"type": "json_object", "schema": spec.json_schema}
        elif spec.tools:
            if self.template_has_tools:
                kwargs["tools"] = list(spec.tools)
            else:
                msgs = _tools_in_system(msgs, list(spec.tools))
            if forced is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": forced}
        with self.lock:
            start = time.perf_counter()
            out = self.llm.create_chat_completion(messages=msgs, **kwargs)
            self.seconds += time.perf_counter() - start
        text = out["choices"][0]["message"].get("content") or ""
        usage = out.get("usage") or {}
        usage = {"input_tokens": int(usage.get("prompt_tokens", 0)),
                 "output_tokens": int(usage.get("completion_tokens", 0))}
        self.prompt_tokens += usage["input_tokens"]
        self.completion_tokens += usage["output_tokens"]
        if spec.tools:
            return (call_from_json(text) if forced is not None else parse_tool_text(text)), usage
        return {"role": "assistant", "content": text}, usage


def _tools_in_system(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates without tool support: describe the tools in the system message."""
    block = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t.get("function", t), ensure_ascii=False)
                                                  for t in tools))
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + block}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


def load_engine(cfg: RoleConfig, *, llama_cls: Any = None, path: Path | None = None) -> LocalEngine:
    """The shared engine for a role config's model file (loaded on first use)."""
    path = path or resolve_model_file(cfg.model_path, cfg.model_package)
    threads = cfg.n_threads or os.cpu_count() or 1  # llama-cpp-python's default is half the cores
    key = (str(path), cfg.n_ctx, threads, cfg.chat_format, json.dumps(cfg.engine_kwargs, sort_keys=True))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            llama = llama_cls or import_llama()
            llm = llama(model_path=str(path), n_ctx=cfg.n_ctx, n_threads=threads, chat_format=cfg.chat_format,
                        verbose=False, **cfg.engine_kwargs)
            template = str((getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template", ""))
            has_tools = cfg.chat_format is None and "tools" in template
            _ENGINES[key] = LocalEngine(llm=llm, path=path, template_has_tools=has_tools)
        return _ENGINES[key]


def local_completer(cfg: RoleConfig, *, llama_cls: Any = None) -> Completer:
    """A completer over an embedded llama.cpp model (loaded lazily, on the first call).

    The library and the weights are checked here, not on the first call: a missing extra or a wrong
    path is a config error to report at once, not a transient failure for the client to retry.
    """
    llama_cls = llama_cls or import_llama()
    path = resolve_model_file(cfg.model_path, cfg.model_package)
    state: dict[str, LocalEngine] = {}

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        if "engine" not in state:
            state["engine"] = await asyncio.to_thread(load_engine, cfg, llama_cls=llama_cls, path=path)
        return await asyncio.to_thread(state["engine"].complete, messages, spec, cfg)

    return complete
