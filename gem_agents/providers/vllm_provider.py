"""In-process batch generation with `vllm.LLM` (the `vllm` extra; needs a CUDA GPU).

Concurrent calls from many rollouts are gathered for `batch_window_ms` and sent to the engine as
one `LLM.chat` batch (one batch per distinct tool list, since `tools` is per call), in a worker
thread so the event loop keeps running. JSON-schema stages use vLLM's structured outputs; tool
calls come back as hermes `<tool_call>` text and are parsed like the local provider's. Set the
role's `concurrency` high (e.g. 256): it bounds how many requests can share one batch.

`vllm` is imported only when a real engine is built; tests pass a stand-in engine and
sampling-params factory.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gem_agents.config import RoleConfig
from gem_agents.models.client import CallSpec, Completer
from gem_agents.providers.tool_text import call_from_json, for_template, parse_tool_text, tool_choice_schema
from gem_agents.registry import Provider, register

_ENGINES: dict[tuple[Any, ...], Any] = {}
_ENGINES_LOCK = threading.Lock()


class VLLMUnavailable(ImportError):
    """vllm is not installed."""


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailable("provider 'vllm' needs vllm and a CUDA GPU: pip install -e '.[vllm]'; "
                              "without a GPU use provider 'openai' against a `vllm serve` endpoint") from exc
    return vllm


def make_engine(cfg: RoleConfig) -> Any:
    """The shared `vllm.LLM` for a role config's model (one per model and settings)."""
    key = (cfg.model, cfg.setting("n_ctx"), json.dumps(cfg.setting("engine_kwargs"), sort_keys=True))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            vllm = _import_vllm()
            _ENGINES[key] = vllm.LLM(model=cfg.model, max_model_len=cfg.setting("n_ctx"), **cfg.setting("engine_kwargs"))
        return _ENGINES[key]


def sampling_params(cfg: RoleConfig, json_schema: dict[str, Any] | None) -> Any:
    """vLLM SamplingParams for one call (structured outputs where a schema is given)."""
    vllm = _import_vllm()
    kwargs: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": 0}
    if json_schema is not None:
        try:  # vLLM ≥ 0.12 renamed guided decoding to structured outputs
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            kwargs["guided_decoding"] = GuidedDecodingParams(json=json_schema)
    return vllm.SamplingParams(**kwargs)


class Batcher:
    """Gathers concurrent requests into engine batches; one drain task per event loop."""

    def __init__(self, engine: Any, cfg: RoleConfig, make_params: Callable[[RoleConfig, Any], Any]):
        self.engine = engine
        self.cfg = cfg
        self.make_params = make_params
        self.window_s = cfg.setting("batch_window_ms") / 1000
        self.max_batch = max(1, cfg.concurrency)
        self.batch_sizes: list[int] = []
        self._pending: list[tuple[list[dict], CallSpec, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    async def submit(self, messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict, dict]:
        """Queue one call and wait for its batch."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((messages, spec, fut))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(self.window_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            groups: dict[str, list[tuple[list[dict], CallSpec, asyncio.Future]]] = {}
            for item in batch:
                groups.setdefault(json.dumps(item[1].tools, sort_keys=True), []).append(item)
            for items in groups.values():
                self.batch_sizes.append(len(items))
                try:
                    results = await asyncio.to_thread(self._run, [(m, s) for m, s, _ in items])
                except Exception as exc:  # noqa: BLE001 — handed to every waiter; ModelClient classifies it
                    for _, _, fut in items:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, _, fut), result in zip(items, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)

    def _run(self, items: list[tuple[list[dict], CallSpec]]) -> list[tuple[dict, dict]]:
        tools = list(items[0][1].tools or []) or None
        forced = [tool_choice_schema(list(s.tools), s.tool_choice) if s.tools else None for _, s in items]
        params = [self.make_params(self.cfg, f if f is not None else (s.json_schema if not s.tools else None))
                  for (_, s), f in zip(items, forced, strict=True)]
        kwargs: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if tools:  # newer vLLM rejects tools=[]: leave it out entirely
            kwargs["tools"] = tools
        outputs = self.engine.chat([for_template(m) for m, _ in items], **kwargs)
        results = []
        for (_, spec), f, out in zip(items, forced, outputs, strict=True):
            gen = out.outputs[0]
            usage = {"input_tokens": len(out.prompt_token_ids or []), "output_tokens": len(gen.token_ids or [])}
            if spec.tools:
                message = call_from_json(gen.text) if f is not None else parse_tool_text(gen.text)
            else:
                message = {"role": "assistant", "content": gen.text}
            results.append((message, usage))
        return results


def vllm_completer(cfg: RoleConfig, *, engine: Any = None,
                   make_params: Callable[[RoleConfig, Any], Any] | None = None) -> Completer:
    """A completer batching concurrent calls into an in-process vLLM engine (or a stand-in)."""
    if engine is None:
        engine = make_engine(cfg)
    batcher = Batcher(engine, cfg, make_params or sampling_params)

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        return await batcher.submit(messages, spec)

    complete.batcher = batcher  # type: ignore[attr-defined]  # benchmarks and tests read batch sizes
    return complete


# ---------------------------------------------------------------------------------------------------------
# registration


class VLLMSettings(BaseModel):
    """Keys of a `vllm` role beyond the common ones."""

    model_config = ConfigDict(extra="forbid")

    n_ctx: int = Field(default=4096, gt=0)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for vllm.LLM")
    batch_window_ms: float = Field(default=5, ge=0, description="how long a request waits for others to share "
                                                                 "its batch")


def _validate(cfg: RoleConfig) -> None:
    if cfg.base_url:
        raise ValueError("base_url is for provider 'openai'; provider 'vllm' runs in-process "
                         "(a `vllm serve` server is provider 'openai' with base_url)")
    if not cfg.model:
        raise ValueError("provider 'vllm' needs a 'model'")


register("provider", "vllm", Provider(
    name="vllm", factory=lambda cfg, role: vllm_completer(cfg), settings=VLLMSettings,
    capabilities=frozenset({"tools", "json_schema", "batching"}), validate=_validate,
    endpoint=lambda cfg: cfg.model, description="in-process vLLM on a CUDA GPU (the `vllm` extra)"))
