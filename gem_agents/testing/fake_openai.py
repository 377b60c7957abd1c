"""A local fake OpenAI-compatible chat-completions server for tests and benchmarks (no network, no LLM).

`FakeOpenAIServer` binds 127.0.0.1 on a free port and serves `POST /v1/chat/completions` (plain JSON and SSE
streaming) and `GET /v1/models` from a background thread. What it answers is decided by a *responder*, a
callable `(request_body) -> Reply`; seeded fault injection (`Faults`) makes failures reproducible.

    with FakeOpenAIServer(ScriptedResponder([text("hi")])) as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="test", model="fake-model", max_retries=0)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "Faults",
    "FakeOpenAIServer",
    "HttpError",
    "RecordedRequest",
    "RecordedResponder",
    "Reply",
    "Responder",
    "ResponderError",
    "RuleResponder",
    "ScriptedResponder",
    "ToolCall",
    "echo_responder",
    "http_error",
    "last_role_is",
    "last_user_contains",
    "load_script",
    "reply_from_dict",
    "text",
    "tool_calls",
]

# Order matters twice: one RNG draw per kind per request in this order (so a seed gives the same sequence
# whatever fires), and the first transport-level kind that fires wins (a dropped request cannot also 429).
FAULT_KINDS: tuple[str, ...] = (
    "drop_connection",
    "timeout",
    "error_500",
    "error_429",
    "malformed_body",
    "empty_choices",
    "invalid_tool_json",
    "unknown_tool",
)
_EXCLUSIVE_KINDS = FAULT_KINDS[:6]  # at most one of these per request
_CONTENT_KINDS = FAULT_KINDS[6:]  # these rewrite the tool calls and may combine

MALFORMED_BODY = '{"id": "chatcmpl-broken", "choices": [{"message": '  # truncated JSON, not parseable
INVALID_TOOL_JSON = '{"broken": '
UNKNOWN_TOOL_NAME = "no_such_tool"


# ----------------------------------------------------------------------------------------------------------
# Replies


@dataclass
class ToolCall:
    """One tool call in a reply; `arguments` is a dict (JSON-encoded on the wire) or a raw string sent as is."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)

    def arguments_json(self) -> str:
        """The arguments string as it goes on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class HttpError:
    """An HTTP error answer: status, body (dict sent as JSON, str sent as is) and extra headers."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    """What the server answers one chat-completions request with.

    `finish_reason=None` means "tool_calls" when there are tool calls, else "stop". Token counts left at None
    are estimated deterministically (characters / 4). A set `error` wins over everything else.
    """

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: HttpError | None = None


Responder = Callable[[dict[str, Any]], "Reply | str"]
Predicate = Callable[[dict[str, Any]], bool]


class ResponderError(RuntimeError):
    """A responder could not answer (script exhausted, no rule matched); the server turns it into a 500."""


def text(content: str, **kwargs: Any) -> Reply:
    """A plain assistant text reply (kwargs: finish_reason, prompt_tokens, completion_tokens)."""
    return Reply(content=content, **kwargs)


def tool_calls(*calls: ToolCall | dict[str, Any] | tuple[str, Any], content: str | None = None) -> Reply:
    """A reply with tool calls, each a `ToolCall`, a `{"name", "arguments"}` dict or a `(name, arguments)` pair."""
    out: list[ToolCall] = []
    for call in calls:
        if isinstance(call, ToolCall):
            out.append(call)
        elif isinstance(call, dict):
            out.append(ToolCall(name=call["name"], arguments=call.get("arguments", {})))
        else:
            name, arguments = call
            out.append(ToolCall(name=name, arguments=arguments))
    return Reply(content=content, tool_calls=out)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def http_error(status: int, message: str, retry_after: float | None = None, code: str | None = None) -> Reply:
    """An HTTP error reply in OpenAI's error shape; `retry_after` (seconds, may be fractional) sets Retry-After."""
    return Reply(error=_http_error(status, message, retry_after, code))


def _http_error(status: int, message: str, retry_after: float | None, code: str | None) -> HttpError:
    err_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    headers = {} if retry_after is None else {"Retry-After": _fmt_seconds(retry_after)}
    return HttpError(status=status, body=body, headers=headers)


def reply_from_dict(d: dict[str, Any]) -> Reply:
    """Build a Reply from a plain dict (the JSON-lines script format): content, tool_calls, error, ..."""
    if err := d.get("error"):
        return http_error(int(err.get("status", 500)), err.get("message", "error"), err.get("retry_after"))
    calls = [ToolCall(name=c["name"], arguments=c.get("arguments", {})) for c in d.get("tool_calls") or []]
    return Reply(
        content=d.get("content"),
        tool_calls=calls,
        finish_reason=d.get("finish_reason"),
        prompt_tokens=d.get("prompt_tokens"),
        completion_tokens=d.get("completion_tokens"),
    )


def load_script(path: str | Path) -> list[Reply]:
    """Read replies from a JSON-lines file, one `reply_from_dict` object per non-blank line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [reply_from_dict(json.loads(line)) for line in lines if line.strip()]


def _fmt_seconds(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else repr(float(s))


# ----------------------------------------------------------------------------------------------------------
# Responders and predicates


def _coerce(reply: Reply | str) -> Reply:
    return text(reply) if isinstance(reply, str) else reply


class ScriptedResponder:
    """Returns the given replies in order (thread-safe); when exhausted raises ResponderError, or cycles."""

    def __init__(self, replies: Sequence[Reply | str], cycle: bool = False) -> None:
        self.replies = [_coerce(r) for r in replies]
        self.cycle = cycle
        self.index = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.index >= len(self.replies):
                if not (self.cycle and self.replies):
                    raise ResponderError(f"ScriptedResponder exhausted: all {len(self.replies)} replies used")
                self.index = 0
            reply = self.replies[self.index]
            self.index += 1
            return reply

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been served yet (ignores cycling)."""
        return len(self.replies) - self.index


class RuleResponder:
    """The first `(predicate, reply)` whose predicate accepts the body wins; `reply` may be a callable."""

    def __init__(
        self,
        rules: Sequence[tuple[Predicate, Reply | str | Responder]],
        default: Reply | str | Responder | None = None,
    ) -> None:
        self.rules = list(rules)
        self.default = default

    def __call__(self, body: dict[str, Any]) -> Reply:
        for predicate, reply in self.rules:
            if predicate(body):
                return _resolve(reply, body)
        if self.default is None:
            raise ResponderError(
                f"RuleResponder: no rule matched (last user message: {_last_user_text(body)!r})"
            )
        return _resolve(self.default, body)


def _resolve(reply: Reply | str | Responder, body: dict[str, Any]) -> Reply:
    return _coerce(reply(body) if callable(reply) else reply)


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return _content_text(msg.get("content"))
    return ""


def last_user_contains(s: str) -> Predicate:
    """Predicate: the last user message's text contains `s`."""
    return lambda body: s in _last_user_text(body)


def last_role_is(role: str) -> Predicate:
    """Predicate: the last message has this role (e.g. "tool" right after a tool result)."""
    return lambda body: bool(body.get("messages")) and body["messages"][-1].get("role") == role


def echo_responder(body: dict[str, Any]) -> Reply:
    """Default responder: echo the last user message's text."""
    return text(f"echo: {_last_user_text(body)}")


# ----------------------------------------------------------------------------------------------------------
# Recorded replies: hand-written answers keyed by document and role

# The structured-output schema names the pipeline's stages send (`response_format.json_schema.name`).
STAGE_SCHEMAS = {"relevance": "relevance", "workflow": "extraction", "environment": "extraction",
                 "tasks": "tasks"}
STOP = "###STOP###"  # graphs.roles.STOP_TOKEN; repeated here so the fake server imports nothing of ours


def request_role(body: dict[str, Any]) -> str:
    """Which role a request is for: a stage by its schema name, else `assistant` (tools bound) or `user`."""
    fmt = body.get("response_format") or {}
    name = str((fmt.get("json_schema") or {}).get("name") or "")
    if name:
        return STAGE_SCHEMAS.get(name, name)
    if body.get("tools"):
        return "assistant"
    messages = body.get("messages") or []
    if messages and messages[0].get("role") == "system":
        return "user"
    return "stage"


def _system_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    return _content_text(messages[0].get("content")) if messages and messages[0].get("role") == "system" else ""


def _all_text(body: dict[str, Any]) -> str:
    return "\n".join(_content_text(m.get("content")) for m in body.get("messages") or [])


def _reply_of(d: dict[str, Any]) -> Reply:
    calls = [ToolCall(name=c["name"], arguments=c.get("arguments", {})) for c in d.get("tool_calls") or []]
    return Reply(content=d.get("content") or None, tool_calls=calls)


class RecordedResponder:
    """Answers from recorded replies, one record per document (see tests/data/recorded/README.md).

    A record holds `match` (a line of the document that every stage prompt about it quotes, or a
    list of them: a long document is cut into segments, each quoted alone), the
    stage answers `relevance`, `extraction` and `tasks` (JSON, sent as the reply text), and
    `dialogues`: per task, the user's turns and the assistant's messages in order. A stage request
    is matched to its document by `match`; a user-simulator request by the task `instruction` its
    system prompt quotes, and answered with turn n (n = the user's own earlier turns); an assistant
    request by its first user message, and answered with message n (n = assistant messages so far).
    Past the end of a script the user stops and the assistant closes, so a longer dialogue ends
    instead of failing. `misses` lists requests nothing matched (each answered with a 500).
    """

    def __init__(self, records: Sequence[dict[str, Any]]):
        self.records = list(records)
        self.misses: list[str] = []
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, folder: str | Path) -> RecordedResponder:
        """Every `*.json` record under `folder` (sorted by name)."""
        paths = sorted(Path(folder).glob("*.json"))
        return cls([json.loads(p.read_text(encoding="utf-8")) for p in paths])

    def _miss(self, what: str) -> ResponderError:
        with self._lock:
            self.misses.append(what)
        return ResponderError(what)

    def _count(self, key: str) -> None:
        with self._lock:
            self.served[key] = self.served.get(key, 0) + 1

    def _document(self, body: dict[str, Any]) -> dict[str, Any]:
        text = _all_text(body)
        hits = [(len(m), i) for i, r in enumerate(self.records)
                for m in ([r["match"]] if isinstance(r.get("match"), str) else r.get("match") or []) if m and m in text]
        if not hits:
            raise self._miss(f"no recorded document matches this request ({text[:120]!r})")
        return self.records[max(hits)[1]]  # the most specific (longest) match wins

    def _dialogue(self, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        for rec in self.records:
            for dlg in rec.get("dialogues") or []:
                if pred(dlg):
                    return dlg
        raise self._miss(f"no recorded dialogue matches this {what} request")

    def __call__(self, body: dict[str, Any]) -> Reply:
        role = request_role(body)
        if role in ("relevance", "extraction", "tasks"):
            rec = self._document(body)
            if role not in rec:
                raise self._miss(f"{rec.get('doc_id')}: no recorded {role} answer")
            self._count(role)
            return text(json.dumps(rec[role], ensure_ascii=False))
        messages = body.get("messages") or []
        if role == "user":
            system = _system_text(body)
            dlg = self._dialogue(lambda d: bool(d.get("instruction")) and d["instruction"] in system, "user")
            turn = sum(1 for m in messages if m.get("role") == "assistant")
            self._count("user")
            turns = dlg.get("user") or []
            return text(turns[turn] if turn < len(turns) else f"Thanks, that is all. {STOP}")
        if role == "assistant":
            first = next((_content_text(m.get("content")).strip() for m in messages if m.get("role") == "user"), "")
            dlg = self._dialogue(lambda d: bool(d.get("user")) and d["user"][0].strip() == first, "assistant")
            turn = sum(1 for m in messages if m.get("role") == "assistant")
            self._count("assistant")
            script = dlg.get("assistant") or []
            if turn < len(script):
                return _reply_of(script[turn])
            return text("Is there anything else I can help you with?")
        raise self._miss(f"recorded replies do not cover {role!r} requests")


# ----------------------------------------------------------------------------------------------------------
# Faults and the request log


@dataclass
class Faults:
    """Injected latency and per-request fault probabilities, drawn from `random.Random(seed)`.

    By default draws follow arrival order, so concurrent clients see a different sequence on each run.
    `keyed=True` draws each request's faults from (seed, request body, how often that body was seen
    before): concurrent runs then get the same faults on the same requests whatever the arrival order,
    while a retried request still gets a fresh draw.
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0  # adds uniform(0, jitter_s) to latency_s
    error_500: float = 0.0
    error_429: float = 0.0
    retry_after_s: float = 1.0  # Retry-After sent with an injected 429
    timeout: float = 0.0
    timeout_s: float = 30.0  # how long a "timeout" request hangs before the socket is closed unanswered
    drop_connection: float = 0.0
    malformed_body: float = 0.0
    invalid_tool_json: float = 0.0
    unknown_tool: float = 0.0
    empty_choices: float = 0.0
    seed: int = 0
    keyed: bool = False

    @classmethod
    def at_rate(cls, rate: float, *, kinds: Sequence[str] = FAULT_KINDS, **kwargs: Any) -> Faults:
        """Faults spread evenly over `kinds` so that a request meets at least one with probability `rate`."""
        unknown = sorted(set(kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        # Independent draws: P(any) = 1 - (1 - p)^k, solved for the per-kind p.
        per_kind = 1.0 - (1.0 - rate) ** (1.0 / len(kinds)) if kinds else 0.0
        probabilities: dict[str, Any] = {k: per_kind for k in kinds}
        return cls(**probabilities, **kwargs)


@dataclass
class RecordedRequest:
    """One request as received: wall-clock and monotonic time, method, path, parsed body, injected faults.

    `latency_s` is the injected latency the server waited out before answering (0.0 when none, or when
    `stop()` cut the wait short), so tests can check latency was applied without timing the machine.
    """

    time: float
    monotonic: float
    method: str
    path: str
    body: dict[str, Any] | None
    faults: list[str] = field(default_factory=list)
    key: str = ""  # with keyed faults: the body hash and occurrence, which also names the tool-call ids
    latency_s: float = 0.0


# ----------------------------------------------------------------------------------------------------------
# Server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung "timeout" request must not keep the process alive
    request_queue_size = 1024  # listen backlog: benchmarks open 256+ connections at once
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-response (timeouts, drops) are expected, not worth a traceback


class FakeOpenAIServer:
    """A fake OpenAI-compatible server on 127.0.0.1; use as a context manager or via start()/stop()."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        faults: Faults | None = None,
        port: int = 0,
        models: Sequence[str] = ("fake-model",),
    ) -> None:
        self.responder: Responder = responder or echo_responder
        self.models = list(models)
        self.requests: list[RecordedRequest] = []
        self.fault_counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.responder_errors: list[str] = []
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)  # notified whenever a chat request finishes
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._next_call = 0
        self._next_completion = 0
        self._seen: dict[str, int] = {}
        self.faults = faults or Faults()

    # -- configuration ------------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """Current fault settings; assigning new ones also reseeds the fault RNG from `faults.seed`."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._seen = {}

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind 127.0.0.1 and serve from a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hung requests and close open connections (idempotent)."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # keep-alive handler threads otherwise block on their next read
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Handler threads are daemons nobody joins; wait (bounded) for the woken ones, so that after stop()
        # no request is still being served and `in_flight` says whether a hang was really woken.
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. "http://127.0.0.1:PORT/v1"."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- request log ---------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many requests (any path) were received since start or the last reset()."""
        with self._lock:
            return len(self.requests)

    @property
    def bodies(self) -> list[dict[str, Any] | None]:
        """The recorded request bodies, in arrival order."""
        with self._lock:
            return [r.body for r in self.requests]

    @property
    def in_flight(self) -> int:
        """Chat requests received and not yet answered, dropped or woken by stop()."""
        with self._lock:
            return self._in_flight

    def reset(self) -> None:
        """Clear the request log, fault counts and responder errors (ids keep counting)."""
        with self._lock:
            self.requests.clear()
            self.fault_counts = dict.fromkeys(FAULT_KINDS, 0)
            self.responder_errors.clear()

    def summary(self) -> dict[str, Any]:
        """Requests received, requests that met a fault, faults by kind, responder errors (for reports)."""
        with self._lock:
            return {
                "requests": len(self.requests),
                "faulted_requests": sum(1 for r in self.requests if r.faults),
                "faults": {k: n for k, n in self.fault_counts.items() if n},
                "responder_errors": len(self.responder_errors),
            }

    # -- internals used by the handler --------------------------------------------------------------------

    def _record(self, method: str, path: str, body: dict[str, Any] | None) -> RecordedRequest:
        rec = RecordedRequest(
            time=time.time(), monotonic=time.monotonic(), method=method, path=path, body=body
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    def _draw_faults(self, rec: RecordedRequest) -> tuple[list[str], float, Faults]:
        """Draw this request's faults and latency; always the same number of draws, so seeds reproduce."""
        with self._lock:
            f = self._faults
            rng = self._rng
            if f.keyed:
                key = hashlib.sha256(json.dumps(rec.body, sort_keys=True, default=str).encode()).hexdigest()
                nth = self._seen.get(key, 0)
                self._seen[key] = nth + 1
                rec.key = f"{key[:12]}{nth}"
                rng = random.Random(f"{f.seed}:{rec.path}:{key}:{nth}")
            hits = [k for k in FAULT_KINDS if rng.random() < getattr(f, k)]
            jitter = rng.uniform(0.0, f.jitter_s) if f.jitter_s > 0 else 0.0
            exclusive = [k for k in hits if k in _EXCLUSIVE_KINDS][:1]
            applied = exclusive + [k for k in hits if k in _CONTENT_KINDS]
            for k in applied:
                self.fault_counts[k] += 1
            rec.faults = applied
        return applied, f.latency_s + jitter, f

    def _new_ids(self, n_calls: int, key: str = "") -> tuple[str, list[str]]:
        if key:  # keyed mode: ids follow from the request, not from arrival order, so later bodies reproduce
            return f"chatcmpl-{key}", [f"call_{key}_{i + 1}" for i in range(n_calls)]
        with self._lock:
            self._next_completion += 1
            cid = f"chatcmpl-fake{self._next_completion}"
            ids = [f"call_{self._next_call + i + 1}" for i in range(n_calls)]
            self._next_call += n_calls
        return cid, ids

    def _answer(self, body: dict[str, Any]) -> Reply:
        try:
            reply = _coerce(self.responder(body))
            if not isinstance(reply, Reply):
                raise TypeError(f"responder returned {type(reply).__name__}, expected Reply or str")
            return reply
        except Exception as e:  # any responder failure becomes a visible 500, not a hang
            msg = f"{type(e).__name__}: {e}"
            with self._lock:
                self.responder_errors.append(msg)
            return http_error(500, f"fake responder failed: {msg}", code="responder_error")


def _apply_content_faults(reply: Reply, faults: list[str], body: dict[str, Any]) -> Reply:
    """Rewrite the tool calls for invalid_tool_json / unknown_tool; synthesize one when the reply has none."""
    if not any(k in _CONTENT_KINDS for k in faults):
        return reply
    declared = [t.get("function", {}).get("name") for t in body.get("tools") or []]
    calls = [ToolCall(c.name, c.arguments) for c in reply.tool_calls] or [
        ToolCall(declared[0] if declared else UNKNOWN_TOOL_NAME, {})
    ]
    if "unknown_tool" in faults:
        name = UNKNOWN_TOOL_NAME
        while name in declared:  # never collide with a tool the request really declared
            name += "_x"
        calls = [ToolCall(name, c.arguments) for c in calls]
    if "invalid_tool_json" in faults:
        calls = [ToolCall(c.name, INVALID_TOOL_JSON) for c in calls]
    return Reply(
        content=reply.content,
        tool_calls=calls,
        finish_reason=reply.finish_reason,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    """Token usage: the reply's counts, else a deterministic chars/4 estimate."""
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt_chars = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("tools", [])))
        prompt = max(1, prompt_chars // 4)
    completion = reply.completion_tokens
    if completion is None:
        chars = len(reply.content or "") + sum(
            len(c.name) + len(c.arguments_json()) for c in reply.tool_calls
        )
        completion = max(1, chars // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _pieces(s: str, size: int = 16) -> Iterator[str]:
    for i in range(0, len(s), size):
        yield s[i : i + size]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every answer sets a length or is chunked
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks would drown in access logs

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing -----------------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = payload if isinstance(payload, str) else json.dumps(payload)
        self._send_raw(status, raw.encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, err_type: str, code: str | None) -> None:
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        self._send_json(status, body)

    def _read_body(self) -> tuple[dict[str, Any] | None, str | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            return None, f"request body is not valid JSON: {e}"
        if not isinstance(body, dict):
            return None, "request body must be a JSON object"
        return body, None

    def _drop(self) -> None:
        """Close the socket without a response (RST, so the client sees the failure at once)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    # -- routes -------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        fake._record("GET", path, None)
        if path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "gem-agents"} for m in fake.models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._not_found("GET", path)

    def do_POST(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        body, problem = self._read_body()
        rec = fake._record("POST", path, body)
        if path != "/v1/chat/completions":
            self._not_found("POST", path)
            return
        if body is None:
            self._error(400, problem or "bad request", "invalid_request_error", None)
            return
        with fake._lock:
            fake._in_flight += 1
        try:
            self._chat(body, rec)
        finally:
            with fake._idle:
                fake._in_flight -= 1
                fake._idle.notify_all()

    def _not_found(self, method: str, path: str) -> None:
        self._error(
            404,
            f"Unknown request URL: {method} {path}. Please check the URL for typos.",
            "invalid_request_error",
            "unknown_url",
        )

    def _chat(self, body: dict[str, Any], rec: RecordedRequest) -> None:
        fake = self.server.fake
        faults, latency, settings = fake._draw_faults(rec)
        if latency > 0:
            if fake._stopping.wait(latency):
                self._drop()
                return
            rec.latency_s = latency
        kind = faults[0] if faults and faults[0] in _EXCLUSIVE_KINDS else None
        if kind == "drop_connection":
            self._drop()
            return
        if kind == "timeout":
            fake._stopping.wait(settings.timeout_s)  # returns early when the server stops
            self._drop()
            return
        if kind == "error_500":
            err = _http_error(500, "The server had an error while processing your request.", None, None)
            self._send_json(err.status, err.body, err.headers)
            return
        if kind == "error_429":
            err = _http_error(
                429, "Rate limit reached (injected).", settings.retry_after_s, "rate_limit_exceeded"
            )
            self._send_json(err.status, err.body, err.headers)
            return

        # Transport-level faults never consult the responder, so a retried request still gets the scripted
        # reply it was meant to get.
        if kind in ("malformed_body", "empty_choices"):
            reply = Reply(content="")
        else:
            reply = fake._answer(body)
            if reply.error is not None:
                self._send_json(reply.error.status, reply.error.body, reply.error.headers)
                return
            reply = _apply_content_faults(reply, faults, body)
        cid, call_ids = fake._new_ids(len(reply.tool_calls), rec.key)
        model = body.get("model") or (fake.models[0] if fake.models else "fake-model")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(body, reply, cid, call_ids, model, include_usage, kind)
        elif kind == "malformed_body":
            self._send_raw(200, MALFORMED_BODY.encode(), "application/json")
        else:
            self._send_json(
                200, _completion(body, reply, cid, call_ids, model, empty=kind == "empty_choices")
            )

    def _stream(
        self,
        body: dict[str, Any],
        reply: Reply,
        cid: str,
        call_ids: list[str],
        model: str,
        include_usage: bool,
        kind: str | None,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(data: str) -> None:
            chunk = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")

        if kind == "malformed_body":
            emit("{not json")
        else:
            for chunk in _stream_chunks(body, reply, cid, call_ids, model, include_usage):
                if kind == "empty_choices" and chunk["choices"]:
                    chunk = {**chunk, "choices": []}
                emit(json.dumps(chunk))
        emit("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _completion(
    body: dict[str, Any], reply: Reply, cid: str, call_ids: list[str], model: str, empty: bool
) -> dict[str, Any]:
    """A non-streaming chat.completion object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": cid_, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
            for cid_, c in zip(call_ids, reply.tool_calls, strict=True)
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [] if empty else [choice],
        "usage": _usage(body, reply),
    }


def _finish_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _stream_chunks(
    body: dict[str, Any], reply: Reply, cid: str, call_ids: list[str], model: str, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """chat.completion.chunk objects: role, content pieces, tool-call deltas, finish, then usage if asked."""
    created = int(time.time())
    base = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    # The real API sends "usage": null on every chunk when include_usage is set, and usage on a last,
    # choice-less chunk.
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in _pieces(reply.content or ""):
        yield chunk({"content": piece})
    for i, (call_id, c) in enumerate(zip(call_ids, reply.tool_calls, strict=True)):
        head = {"index": i, "id": call_id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        yield chunk({"tool_calls": [head]})
        for piece in _pieces(c.arguments_json()):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, _finish_reason(reply))
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(body, reply)}


# ----------------------------------------------------------------------------------------------------------
# Manual entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Serve replies from a JSON-lines script until interrupted (for manual testing)."""
    ap = argparse.ArgumentParser(description="Fake OpenAI-compatible server (127.0.0.1 only).")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--script", type=Path, help="JSON-lines replies; without it, echo the last user message")
    ap.add_argument("--cycle", action="store_true", help="restart the script when it runs out")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0,
                    help="probability that a request meets a fault, spread over --fault-kinds")
    ap.add_argument("--fault-kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    ap.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of an injected 429")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    responder = ScriptedResponder(load_script(args.script), cycle=args.cycle) if args.script else None
    kinds = [k.strip() for k in args.fault_kinds.split(",") if k.strip()]
    try:
        faults = Faults.at_rate(args.fault_rate, kinds=kinds, latency_s=args.latency,
                                retry_after_s=args.retry_after, seed=args.seed, keyed=True)
    except ValueError as exc:
        ap.error(str(exc))
    with FakeOpenAIServer(responder, faults=faults, port=args.port) as srv:
        print(f"serving on {srv.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
