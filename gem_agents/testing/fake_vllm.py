"""A vLLM-like OpenAI-compatible endpoint for throughput benchmarks: no GPU, no model, realistic timing.

Run it in a process of its own, as a real `vllm serve` would be (so its CPU work never shares the
engine's interpreter):

    python -m gem_agents.testing.fake_vllm --port 0 [--recorded tests/data/recorded/docs] [--time-scale 1]

It answers `POST /v1/chat/completions` (non-streaming) with what a responder says — the recorded
replies of `tests/data/recorded/` (every pipeline role: relevance, extraction, tasks, user,
assistant) or, without them, filler text whose length follows the request's role — but *when* it
answers follows a model of one vLLM server with continuous batching:

- a request waits until the scheduler admits it (at most `max_num_seqs` running, and the KV cache
  must hold its prompt and answer);
- its prompt is prefilled in chunks that share each step's token budget (`max_num_batched_tokens`)
  with the running decodes, minus the prefix already in the prefix cache (vLLM's automatic prefix
  caching: a dialogue's next turn re-uses its earlier turns);
- then it decodes one token per engine step; a step costs `step_ms + per_seq_ms × decoding seqs +
  prefill_ms_per_token × prefilled tokens`, so per-token speed degrades as more sequences are in
  flight.

Latency = queueing + prefill per input token + decode per output token, emerging from that one
scheduler rather than drawn from a distribution. `--time-scale 0.1` runs every modeled duration
10× faster (a 10× faster GPU, or ten servers behind a perfect balancer) to keep benchmarks short.
`GET /stats` returns counters (completed, tokens, cache hits, queue, busy time); `POST /log
{"path": FILE}` starts writing every request body to FILE (`{"path": null}` stops: benchmarks replay
them); `GET /v1/models` lists the model. Tokens are estimated as characters / 4, like `fake_openai`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import json
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.testing.fake_openai import STOP as STOP_TOKEN
from gem_agents.testing.fake_openai import (
    RecordedResponder,
    Reply,
    Responder,
    ResponderError,
    _content_text,
    _usage,
    request_role,
    text,
)

__all__ = ["H100_LLAMA_8B", "ROLE_OUTPUT_TOKENS", "BatchModel", "VLLMParams", "dialogue_responder", "filler_responder",
           "serve"]


@dataclass(frozen=True)
class VLLMParams:
    """One vLLM server's scheduler limits and cost model (times in milliseconds)."""

    step_ms: float  # a decode step of a tiny batch: reading the weights once
    per_seq_ms: float  # added per decoding sequence (attention over its KV, sampling)
    prefill_ms_per_token: float  # compute-bound prefill
    max_num_seqs: int  # running sequences
    max_num_batched_tokens: int  # tokens per step (decodes + prefill chunks)
    kv_capacity_tokens: int  # KV cache size in tokens
    prefix_caching: bool = True


# Llama-3.1-8B-Instruct, BF16, one H100-80GB (H100-class), `vllm serve` defaults. Sources:
# - step_ms: vLLM's performance CI, latency_llama8B_tp1 (batch 8, 32 in / 128 out): 833 ms per
#   request on H200 → 6.5 ms per step (buildkite.com/vllm/performance-benchmark).
# - per_seq_ms: saturated decode of Llama 3.1 8B on 1×H100 ≈ 12,500 output tokens/s at ~256 in
#   flight (published vLLM V1 figures, e.g. morphllm.com/vllm-benchmarks; vLLM's v0.6.0 blog,
#   2024-09-05, gives the same order) → a 256-sequence step ≈ 20.5 ms → (20.5 − 6.5) / 256.
# - prefill_ms_per_token: 2 × 8e9 FLOP per token at ~45 % of H100's 989 dense BF16 TFLOP/s.
# - max_num_seqs 1024 and max_num_batched_tokens 8192: vLLM's defaults for `vllm serve` on GPUs
#   with ≥ 70 GiB other than A100 (vllm/engine/arg_utils.py, get_batch_defaults).
# - kv_capacity_tokens: 0.9 × 80 GB − 16 GB weights − ~6 GB activations/graphs ≈ 50 GB; Llama-3-8B
#   holds 2 × 32 layers × 8 KV heads × 128 × 2 bytes = 128 KiB per token → ≈ 380,000 tokens.
H100_LLAMA_8B = VLLMParams(step_ms=6.5, per_seq_ms=0.055, prefill_ms_per_token=0.036, max_num_seqs=1024,
                           max_num_batched_tokens=8192, kv_capacity_tokens=380_000)

# Answer lengths (tokens) of an 8B instruct model per request role, for the filler responder.
ROLE_OUTPUT_TOKENS = {"relevance": 60, "extraction": 1800, "tasks": 900, "user": 40, "assistant": 90,
                      "stage": 300}


# ----------------------------------------------------------------------------------------------------------
# The continuous-batching model


@dataclass
class _Seq:
    prefill: int  # prompt tokens still to compute
    output: int  # tokens to generate
    kv: int  # KV tokens it holds while running
    fut: asyncio.Future
    arrived: float
    admitted: float = 0.0


@dataclass
class Counters:
    """What the server did since it started."""

    completed: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    steps: int = 0
    busy_s: float = 0.0
    queue_s: float = 0.0
    latency_s: float = 0.0
    max_running: int = 0
    max_waiting: int = 0
    responder_errors: int = 0


class PrefixCache:
    """Message-level prefix cache: chained hashes of the messages → their tokens, LRU-bounded."""

    def __init__(self, capacity_tokens: int):
        self.capacity = capacity_tokens
        self.blocks: OrderedDict[bytes, int] = OrderedDict()
        self.tokens = 0

    def lookup_insert(self, blocks: list[tuple[bytes, int]]) -> int:
        """Tokens of the longest cached prefix of `blocks` (hash, tokens); then caches them all."""
        hit, matching = 0, True
        for key, n in blocks:
            if matching and key in self.blocks:
                hit += n
                self.blocks.move_to_end(key)
                continue
            matching = False
            if key not in self.blocks:
                self.blocks[key] = n
                self.tokens += n
        while self.tokens > self.capacity and self.blocks:
            _, n = self.blocks.popitem(last=False)
            self.tokens -= n
        return hit


class BatchModel:
    """vLLM's scheduler in miniature: admit, chunked prefill, one token per step per running sequence."""

    def __init__(self, params: VLLMParams = H100_LLAMA_8B, time_scale: float = 1.0):
        self.p = params
        self.scale = time_scale
        self.waiting: deque[_Seq] = deque()
        self.prefilling: deque[_Seq] = deque()
        self.decoding: list[tuple[int, int, _Seq]] = []  # heap of (finish step, tiebreak, seq)
        self.kv_used = 0
        self.step = 0
        self.n = 0
        self.stats = Counters()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> int:
        """Sequences admitted and not finished."""
        return len(self.prefilling) + len(self.decoding)

    def submit(self, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> asyncio.Future:
        """Queue one request; the future resolves when its last token is generated."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        kv = min(prompt_tokens + output_tokens, self.p.kv_capacity_tokens)
        self.waiting.append(_Seq(prefill=max(1, prompt_tokens - cached_tokens), output=max(1, output_tokens),
                                 kv=kv, fut=fut, arrived=loop.time()))
        self.stats.max_waiting = max(self.stats.max_waiting, len(self.waiting))
        self._wake.set()
        return fut

    def _admit(self, now: float) -> None:
        while self.waiting and self.running < self.p.max_num_seqs:
            seq = self.waiting[0]
            if self.kv_used + seq.kv > self.p.kv_capacity_tokens and self.running:
                break  # FCFS: the head waits for KV space, and so does everything behind it
            self.waiting.popleft()
            seq.admitted = now
            self.kv_used += seq.kv
            self.prefilling.append(seq)
        self.stats.max_running = max(self.stats.max_running, self.running)

    def _finish(self, seq: _Seq, now: float) -> None:
        self.kv_used -= seq.kv
        self.stats.completed += 1
        self.stats.queue_s += seq.admitted - seq.arrived
        self.stats.latency_s += now - seq.arrived
        if not seq.fut.done():
            seq.fut.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
            now = loop.time()
            self._admit(now)
            # One step: every decoding sequence makes one token; prefill chunks fill the rest of the budget.
            n_decode = len(self.decoding)
            budget = self.p.max_num_batched_tokens - n_decode
            prefilled, done_prefill = 0, []
            while self.prefilling and budget > 0:
                seq = self.prefilling[0]
                take = min(seq.prefill, budget)
                seq.prefill -= take
                budget -= take
                prefilled += take
                if seq.prefill == 0:
                    done_prefill.append(self.prefilling.popleft())
            modeled = (self.p.step_ms + self.p.per_seq_ms * n_decode + self.p.prefill_ms_per_token * prefilled) / 1000
            dt = modeled * self.scale
            # Sleep to the step's end in wall time; a late wake-up is caught up on the next steps (the GPU
            # does not stall because this process was descheduled), but never by more than 50 ms.
            deadline = max(deadline + dt, loop.time() - 0.05)
            delay = deadline - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
            self.step += 1
            self.stats.steps += 1
            self.stats.busy_s += modeled  # GPU seconds of the modeled server, whatever the time scale
            now = loop.time()
            while self.decoding and self.decoding[0][0] <= self.step:
                self._finish(heapq.heappop(self.decoding)[2], now)
            for seq in done_prefill:  # the step that ends a prefill also samples its first token
                if seq.output <= 1:
                    self._finish(seq, now)
                else:
                    self.n += 1
                    heapq.heappush(self.decoding, (self.step + seq.output - 1, self.n, seq))


# ----------------------------------------------------------------------------------------------------------
# Requests → tokens


def _message_tokens(m: dict[str, Any]) -> tuple[str, int]:
    calls = m.get("tool_calls") or []
    body = _content_text(m.get("content")) + (json.dumps(calls, sort_keys=True) if calls else "")
    return f"{m.get('role')}\x00{m.get('tool_call_id') or ''}\x00{body}", 4 + len(body) // 4


def prompt_blocks(body: dict[str, Any]) -> list[tuple[bytes, int]]:
    """The prompt as chained (hash, tokens) blocks, one per message; tools and schema join the first."""
    extra = json.dumps([body.get("tools") or [], body.get("response_format") or {}], sort_keys=True)
    h = hashlib.blake2b(extra.encode(), digest_size=16)
    blocks, first = [], len(extra) // 4 if extra != "[[], {}]" else 0
    for m in body.get("messages") or []:
        key, n = _message_tokens(m)
        h.update(key.encode())
        blocks.append((h.copy().digest(), n + first))
        first = 0
    return blocks


def filler_responder(body: dict[str, Any]) -> Reply:
    """Text whose length follows the request's role (ROLE_OUTPUT_TOKENS), for endpoints with no script."""
    n = ROLE_OUTPUT_TOKENS.get(request_role(body), ROLE_OUTPUT_TOKENS["stage"])
    return text(("lorem " * (n * 4 // 6 + 1))[: n * 4], completion_tokens=n)


def dialogue_responder(user_turns: int = 3) -> Responder:
    """Filler answers, except that a user simulator (its system prompt names the ###STOP### token, as
    ours and τ²-bench's both do) ends the conversation after `user_turns` turns of its own: dialogue
    benchmarks of different frameworks then make the same number of calls per simulation."""

    def respond(body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        system = _content_text(messages[0].get("content")) if messages and messages[0].get("role") == "system" else ""
        if STOP_TOKEN in system:
            own = sum(1 for m in messages if m.get("role") == "assistant")  # a user simulator's own turns
            if own >= user_turns:
                return text(f"Thank you, that is all. {STOP_TOKEN}", completion_tokens=10)
            n = ROLE_OUTPUT_TOKENS["user"]
            return text(("please help me " * n)[: n * 4].strip(), completion_tokens=n)
        return filler_responder(body)

    return respond


# ----------------------------------------------------------------------------------------------------------
# The HTTP front end (asyncio streams, HTTP/1.1 keep-alive)


@dataclass
class _Server:
    model: BatchModel
    responder: Responder
    models: list[str]
    cache: PrefixCache
    log: Any = None  # a file: every request body, one JSON line (for replays)
    log_left: int = 0
    log_done: bool = False  # log a body when its answer is ready, not when it arrives
    ids: int = 0
    started: float = field(default_factory=time.monotonic)


def _response(status: int, payload: Any) -> bytes:
    data = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"\r\n").encode() + data


def _error(status: int, message: str, code: str | None = None) -> bytes:
    return _response(status, {"error": {"message": message, "type": "server_error" if status >= 500 else
                                        "invalid_request_error", "param": None, "code": code}})


async def _chat(srv: _Server, raw: bytes) -> bytes:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        return _error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict) or body.get("stream"):
        return _error(400, "a JSON object without stream=true is expected (streaming is not modeled)")
    if not srv.log_done:
        _log_body(srv, raw)
    try:
        reply = srv.responder(body)
        reply = text(reply) if isinstance(reply, str) else reply
    except ResponderError as exc:
        srv.model.stats.responder_errors += 1
        return _error(500, f"fake responder failed: {exc}", "responder_error")
    if reply.error is not None:
        return _response(reply.error.status, reply.error.body)
    blocks = prompt_blocks(body)
    prompt = sum(n for _, n in blocks)
    cached = srv.cache.lookup_insert(blocks) if srv.model.p.prefix_caching else 0
    usage = _usage(body, reply)
    out = usage["completion_tokens"]
    await srv.model.submit(prompt, cached, out)
    if srv.log_done:
        _log_body(srv, raw)
    st = srv.model.stats
    st.prompt_tokens += prompt
    st.cached_tokens += min(cached, prompt - 1)
    st.output_tokens += out
    srv.ids += 1
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": f"call_{srv.ids}_{i}", "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments_json()}}
                                 for i, c in enumerate(reply.tool_calls)]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return _response(200, {
        "id": f"chatcmpl-vllm{srv.ids}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model") or srv.models[0],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
                  "prompt_tokens_details": {"cached_tokens": min(cached, prompt - 1)}}})


def _stats(srv: _Server) -> dict[str, Any]:
    m = srv.model
    misses = len(getattr(srv.responder, "misses", []) or [])
    return {**asdict(m.stats), "running": m.running, "waiting": len(m.waiting), "kv_used": m.kv_used,
            "uptime_s": round(time.monotonic() - srv.started, 3), "responder_misses": misses,
            "params": asdict(m.p), "time_scale": m.scale}


def _log_body(srv: _Server, raw: bytes) -> None:
    if srv.log is not None and srv.log_left > 0:
        srv.log_left -= 1
        srv.log.write(raw.decode() + "\n")
        srv.log.flush()


def _set_log(srv: _Server, raw: bytes) -> bytes:
    """`POST /log {"path": FILE}` starts logging request bodies to FILE as they arrive; `"on": "done"` logs each
    when its answer is ready instead (the requests a window completes, not those it starts); `{"path": null}` stops."""
    try:
        data = json.loads(raw or b"{}") or {}
        path = data.get("path")
    except (ValueError, AttributeError) as exc:
        return _error(400, f"request body is not a JSON object: {exc}")
    srv.log_done = data.get("on") == "done"
    if srv.log is not None:
        srv.log.close()
        srv.log = None
    if path:
        srv.log = Path(path).open("a", encoding="utf-8")
        srv.log_left = 10**9
    return _response(200, {"logging": path})


async def _handle(srv: _Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = (lines[0].split(" ") + ["", ""])[:2]
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            raw = await reader.readexactly(length) if length else b""
            path = path.split("?", 1)[0].rstrip("/")
            if method == "POST" and path == "/v1/chat/completions":
                data = await _chat(srv, raw)
            elif method == "GET" and path == "/v1/models":
                data = _response(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "gem-agents"} for m in srv.models]})
            elif method == "GET" and path == "/stats":
                data = _response(200, _stats(srv))
            elif method == "POST" and path == "/log":
                data = _set_log(srv, raw)
            else:
                data = _error(404, f"Unknown request URL: {method} {path}.", "unknown_url")
            writer.write(data)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def serve(port: int = 0, *, responder: Responder | None = None, params: VLLMParams = H100_LLAMA_8B,
                time_scale: float = 1.0, models: tuple[str, ...] = ("fake-model",),
                log_requests: Path | None = None, log_limit: int = 100_000,
                ready: asyncio.Future | None = None) -> None:
    """Serve until cancelled; `ready` (if given) receives the base URL once the socket listens."""
    srv = _Server(model=BatchModel(params, time_scale), responder=responder or filler_responder, models=list(models),
                  cache=PrefixCache(params.kv_capacity_tokens),
                  log=log_requests.open("a", encoding="utf-8") if log_requests else None, log_left=log_limit)
    server = await asyncio.start_server(lambda r, w: _handle(srv, r, w), "127.0.0.1", port, backlog=4096,
                                        limit=1 << 20)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    print(f"serving on {url}", flush=True)
    if ready is not None and not ready.done():
        ready.set_result(url)
    try:
        async with server:
            await server.serve_forever()
    finally:
        if srv.log is not None:
            srv.log.close()


def main(argv: list[str] | None = None) -> None:
    """Command line: one vLLM-like server in this process."""
    ap = argparse.ArgumentParser(description="A vLLM-like OpenAI-compatible endpoint (127.0.0.1, no model).")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed as 'serving on URL')")
    ap.add_argument("--recorded", type=Path, help="answer from recorded replies (tests/data/recorded/docs)")
    ap.add_argument("--user-turns", type=int, default=0,
                    help="without --recorded: user simulators say ###STOP### after this many turns (0: never)")
    ap.add_argument("--time-scale", type=float, default=1.0, help="multiply every modeled duration")
    ap.add_argument("--no-prefix-caching", action="store_true")
    ap.add_argument("--max-num-seqs", type=int, default=None)
    ap.add_argument("--log-requests", type=Path, help="append every request body here (JSON lines)")
    ap.add_argument("--log-limit", type=int, default=100_000)
    args = ap.parse_args(argv)
    params = H100_LLAMA_8B
    if args.no_prefix_caching or args.max_num_seqs:
        params = VLLMParams(**{**asdict(params), "prefix_caching": not args.no_prefix_caching,
                               "max_num_seqs": args.max_num_seqs or params.max_num_seqs})
    responder = (RecordedResponder.from_dir(args.recorded) if args.recorded
                 else dialogue_responder(args.user_turns) if args.user_turns else None)
    try:
        asyncio.run(serve(args.port, responder=responder, params=params, time_scale=args.time_scale,
                          log_requests=args.log_requests, log_limit=args.log_limit))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
