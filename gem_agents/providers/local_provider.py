"""An embedded CPU model through llama.cpp (the `local` extra), no server and no network.

Two runtimes, tried in this order:

- **prebuilt** (`llama-cpp-py-sync`, the `local` extra): a wheel with llama.cpp's libraries, no
  compiler needed; on glibc < 2.38 its libraries are loaded from patched copies (see
  `llama_glibc_compat`);
- **compiled** (`llama-cpp-python`, the `local-compile` extra): builds llama.cpp from source.

Both are driven the same way, through their lowest common layer: the prompt is rendered here
from the GGUF's own chat template with jinja2 (sandboxed: the template is data), tools included
(Qwen's template carries the hermes tool format); it is tokenized with special tokens parsed (else
`<|im_start|>` would be read as plain text); generation is constrained by a JSON-schema grammar
for structured stages and forced tool calls; tokens are counted here. Free tool calls are parsed
leniently (`<tool_call>` tags, fenced or bare JSON). One engine per model file is shared by every
role that names it, behind a lock: a llama.cpp context runs one generation at a time.
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
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gem_agents.config import RoleConfig
from gem_agents.models import activity
from gem_agents.models.client import CallSpec, Completer
from gem_agents.providers.grammar_schema import grammar_schema
from gem_agents.providers.tool_text import call_from_json, for_template, parse_tool_text
from gem_agents.providers.weights import cache_dir, resolve_model_file
from gem_agents.registry import Provider, register

_ENGINES: dict[tuple[Any, ...], LocalEngine] = {}
_ENGINES_LOCK = threading.Lock()
ROUTES = ("prebuilt runtime: pip install -e '.[local]' (llama-cpp-py-sync, no compiler); "
          "compiled runtime: pip install -e '.[local-compile]' (llama-cpp-python, builds llama.cpp, ~20 min on 2 cores)")
# Fallback when a GGUF has no chat template (ChatML, which Qwen models use).
CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TOOLS_PREAMBLE = ("You may call functions. Their signatures, one JSON object a line:\n{tools}\n"
                  "To call one, answer with <tool_call>{{\"name\": ..., \"arguments\": {{...}}}}</tool_call>.")


class LocalProviderUnavailable(ImportError):
    """Neither llama.cpp runtime can be loaded here."""


@atexit.register
def close_engines() -> None:
    """Free every loaded model while the interpreter still works (finalizers at shutdown may not)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.backend.close()
        _ENGINES.clear()


class Backend(Protocol):
    """What the engine needs from a llama.cpp binding."""

    name: str

    def chat_template(self) -> str: ...
    def tokenize(self, text: str) -> list[int]: ...
    def generate(self, tokens: list[int], *, max_tokens: int, temperature: float, seed: int,
                 schema: dict[str, Any] | None) -> tuple[str, int]: ...
    def close(self) -> None: ...


def busy_cores(window_s: float = 0.3) -> float:
    """How many cores other processes keep busy now: /proc/stat sampled over a short window while we sleep.

    The 1-minute load average also counts what finished a moment ago: right after `make run`'s pip install
    it read 1.4 on an idle 2-core machine, and the model generated on one thread for the whole demo.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
    spent = total1 - total0
    return 0.0 if spent <= 0 else (os.cpu_count() or 1) * (1 - (idle1 - idle0) / spent)


def _threads(cfg: RoleConfig, load: float | None = None) -> tuple[int, int]:
    """(generation threads, prompt threads); `n_threads` in the config wins.

    On idle cores generation uses two threads (up to 4). When other processes already keep the
    cores busy (over half the cores busy now, `busy_cores`) it uses one: threads that wait on each other
    while the scheduler runs someone else lose most of their time (issue 19: 8 vs 26 tok/s on the
    0.5B under load). Prompt processing is one large batch and takes every core (up to 4) either way.
    """
    cores = os.cpu_count() or 1
    if cfg.setting("n_threads"):
        gen = cfg.setting("n_threads")
    else:
        if load is None:
            load = busy_cores()
        gen = 1 if load > cores / 2 else max(1, min(cores, 4))
    batch = int(cfg.setting("engine_kwargs").get("n_threads_batch") or max(gen, min(cores, 4)))
    return gen, batch


class PrebuiltBackend:
    """llama-cpp-py-sync (CFFI over llama.cpp's C API).

    Its chat helper formats with llama.cpp's built-in templates (no tools) and tokenizes without
    parsing special tokens, so generation is driven here through the same steps it uses
    (prefix-reuse, evaluation, sampling); those helpers are private, hence the exact version pin.
    """

    name = "prebuilt"

    def __init__(self, path: Path, cfg: RoleConfig):
        from gem_agents.providers.llama_glibc_compat import load_prebuilt

        llama_cls = load_prebuilt(cache_dir() / "runtime")
        _silence_llama_log()
        gen, batch = _threads(cfg)
        extra = {k: v for k, v in cfg.setting("engine_kwargs").items() if k != "n_threads_batch"}
        self.llm = llama_cls(str(path), n_ctx=cfg.setting("n_ctx"), n_threads=gen, n_threads_batch=batch, verbose=False,
                             **extra)
        # What the last call reused of the KV cache and spent on its prompt (the call log's profile).
        self.last_reused = 0
        self.last_prompt_seconds = 0.0
        self.reuse = True  # False: every prompt from position 0 (the tests compare answers both ways)
        self.snapshots = PrefixSnapshots(cfg.setting("prefix_snapshots", 2))
        self.exact = 0  # leading KV cells a fresh evaluation would compute identically (_reuse_prefix)
        self.cache_group = ""  # the role now calling (set by the engine): saved prompts are kept per role
        self.compact_json = bool(cfg.setting("compact_json", True))
        self._template = ""
        raw = self.llm._lib.llama_model_chat_template(self.llm._model, self.llm._ffi.NULL)
        if raw != self.llm._ffi.NULL:
            self._template = self.llm._ffi.string(raw).decode("utf-8", "replace")

    def chat_template(self) -> str:
        """The GGUF's `tokenizer.chat_template`."""
        return self._template

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, special tokens parsed (no BOS: the template writes its own)."""
        return self.llm.tokenize(text, add_special=False, parse_special=True)

    def generate(self, tokens: list[int], *, max_tokens: int, temperature: float, seed: int,
                 schema: dict[str, Any] | None) -> tuple[str, int]:
        """Generated text and its token count; grammar-constrained when `schema` is given."""
        from llama_cpp_py_sync.constraints import response_format_to_grammar

        llm = self.llm
        grammar = None
        if schema is not None:
            grammar = response_format_to_grammar({"type": "json_schema", "json_schema": {"schema": schema}})
            if self.compact_json and grammar:
                grammar = compact_json_grammar(grammar)
        if len(tokens) + max_tokens >= llm.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens + max_tokens {max_tokens} exceed n_ctx {llm.n_ctx}")
        # A repeat penalty would fight the grammar on JSON (keys and brackets repeat by design).
        llm._configure_generation_sampler(temperature, 40, 0.95, 0.05, 1.0 if grammar else 1.05, 64, seed,
                                          grammar, "root")
        started = time.perf_counter()
        reused = self._reuse_prefix(tokens)
        n_past = llm._eval_tokens(tokens[reused:], reused)
        # The cells of complete row groups of this prompt are what a fresh evaluation computes; the
        # generated tokens (evaluated one at a time) and a trailing partial group are not.
        self.exact = len(tokens) // REUSE_ALIGN * REUSE_ALIGN
        if self.reuse and len(tokens) - reused >= SNAPSHOT_MIN_NEW:
            self.snapshots.save(llm, tokens, self.exact, group=self.cache_group)
        self.last_reused, self.last_prompt_seconds = reused, time.perf_counter() - started
        out = bytearray()
        count = 0
        for _ in range(max_tokens):
            token = llm._sample_token()
            if llm._lib.llama_vocab_is_eog(llm._vocab, token):
                break
            out += llm._token_to_bytes(token)
            count += 1
            n_past = llm._eval_tokens([token], n_past)
        return out.decode("utf-8", "replace"), count

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the longest exactly reusable prefix of `tokens` in the KV cache (live or a saved prompt's); its length.

        Reuse must not change an answer: the CPU kernels compute prompt rows in groups (8 on this build),
        and a row evaluated alone or in a partial group gets slightly different numbers — enough to flip
        a greedy choice (measured: "```json" instead of "{"). So only cells a fresh evaluation of
        `tokens` would compute identically are kept: prompt cells of complete groups, up to a multiple
        of REUSE_ALIGN, never the cells of generated tokens. The rest is evaluated from there, its groups
        aligned as in a fresh evaluation.
        """
        llm = self.llm
        if not self.reuse:
            llm._clear_context_state()
            self.exact = 0
            return 0
        head = tokens[:-1]  # at least one token is evaluated: its logits are the first answer token's
        live = getattr(llm, "_chat_cache_tokens", None) if getattr(llm, "_chat_cache_key", None) == "gem" else None
        keep = _aligned(min(_common_prefix(live or [], head), self.exact))
        snap = self.snapshots.best(head)
        if snap is not None:
            from_snap = _aligned(min(_common_prefix(snap.tokens, head), snap.exact))
            if from_snap >= keep + SNAPSHOT_MIN_GAIN and self.snapshots.restore(llm, snap):
                live, keep, self.exact = llm._chat_cache_tokens, from_snap, snap.exact
        if keep == 0 or live is None or not _trim(llm, keep):
            llm._clear_context_state()
            llm._chat_cache_key, llm._chat_cache_tokens = "gem", []
            self.exact = 0
            return 0
        llm._chat_cache_tokens = live[:keep]
        return keep

    def close(self) -> None:
        """Free the model and context."""
        self.llm.close()


# Reused prefixes end on a multiple of this (a multiple of the kernels' row group, 8 on x86 AVX2 builds).
REUSE_ALIGN = 16


def _aligned(n: int) -> int:
    return n // REUSE_ALIGN * REUSE_ALIGN


def _trim(llm: Any, keep: int) -> bool:
    """Drop sequence 0's cells from position `keep` on; False when the memory cannot do it."""
    lib = llm._lib
    remove = getattr(lib, "llama_memory_seq_rm", None)
    if remove is not None:
        memory = lib.llama_get_memory(llm._ctx)
        return memory != llm._ffi.NULL and bool(remove(memory, 0, keep, -1))
    legacy = getattr(lib, "llama_kv_cache_seq_rm", None)
    return legacy is not None and bool(legacy(llm._ctx, 0, keep, -1))


# A prompt is saved when it evaluated at least this many new tokens, and restored when that saves at least
# this many more than the live cache: below that, copying the state costs about what evaluating would.
SNAPSHOT_MIN_NEW = 48
SNAPSHOT_MIN_GAIN = 32


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        n += 1
    return n


@dataclass
class Snapshot:
    """The KV state of sequence 0 right after a prompt was evaluated, and that prompt's tokens."""

    tokens: list[int]
    state: Any  # a cffi uint8_t[] owned here
    size: int
    exact: int  # leading cells that a fresh evaluation computes identically (see _reuse_prefix)
    group: str = ""


class PrefixSnapshots:
    """The last few prompts' KV states, so a call can start from another role's shared prefix.

    One llama.cpp sequence holds one conversation, and the roles of a run take turns on it: the
    relevance filter of the next text would otherwise evaluate its long fixed instructions again
    after a dozen user turns replaced them. The state of an evaluated prompt (≈ 28 KB a token on the
    1.5B) is kept for the `limit` most recent prompts of each group (the calling role), so one role's
    many calls never push out another's; a prompt that a newer one of its group extends is dropped as
    redundant. `limit` 0 keeps none.
    """

    def __init__(self, limit: int = 2):
        self.limit = max(0, int(limit))
        self.items: list[Snapshot] = []
        self.restored = 0

    def best(self, tokens: list[int]) -> Snapshot | None:
        """The saved prompt sharing the longest prefix with `tokens`."""
        best, length = None, 0
        for snap in self.items:
            n = _common_prefix(snap.tokens, tokens)
            if n > length:
                best, length = snap, n
        return best

    def save(self, llm: Any, tokens: list[int], exact: int, group: str = "") -> None:
        """Keep sequence 0's state, which holds exactly `tokens` now."""
        if not self.limit:
            return
        lib, ffi, ctx = llm._lib, llm._ffi, llm._ctx
        size = lib.llama_state_seq_get_size(ctx, 0)
        state = ffi.new("uint8_t[]", size)
        written = lib.llama_state_seq_get_data(ctx, state, size, 0)
        if not written:
            return
        self.items = [s for s in self.items if s.group != group or _common_prefix(s.tokens, tokens) < len(s.tokens)]
        self.items.append(Snapshot(tokens=list(tokens), state=state, size=written, exact=exact, group=group))
        mine = [s for s in self.items if s.group == group]
        for old in mine[:-self.limit]:
            self.items.remove(old)

    def restore(self, llm: Any, snap: Snapshot) -> bool:
        """Replace sequence 0 by a saved state; the live-cache bookkeeping then names its tokens."""
        llm._clear_context_state()
        if not llm._lib.llama_state_seq_set_data(llm._ctx, snap.state, snap.size, 0):
            llm._clear_context_state()
            return False
        llm._chat_cache_key = "gem"
        llm._chat_cache_tokens = list(snap.tokens)
        self.items.remove(snap)
        self.items.append(snap)  # most recently used last
        self.restored += 1
        return True


def compact_json_grammar(grammar: str) -> str:
    """The converter's grammar with at most one space where JSON allows whitespace.

    Its `space` rule demands a space or a newline plus up to 20 indent characters at every separator,
    and the Qwen models take the newline and indent: a pretty-printed answer, a token or two of
    whitespace per key, generated at the slowest rate there is (a third of an extraction's tokens).
    """
    lines = grammar.splitlines()
    out = [COMPACT_SPACE if line.startswith("space ::=") else line for line in lines]
    return "\n".join(out) + ("\n" if grammar.endswith("\n") else "")


COMPACT_SPACE = 'space ::= " "?'
_LOG_CALLBACK: Any = None


def _silence_llama_log() -> None:
    """Route llama.cpp's load chatter (hundreds of lines on stderr) to nowhere."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    from llama_cpp_py_sync._cffi_bindings import get_ffi, get_lib

    ffi = get_ffi()
    _LOG_CALLBACK = ffi.callback("ggml_log_callback", lambda level, text, data: None)  # kept alive: C holds it
    get_lib().llama_log_set(_LOG_CALLBACK, ffi.NULL)


class CompiledBackend:
    """llama-cpp-python (the `local-compile` extra), driven through its token-level completion call."""

    name = "compiled"

    def __init__(self, path: Path, cfg: RoleConfig, llama_cls: Any = None):
        if llama_cls is None:
            from llama_cpp import Llama

            llama_cls = Llama
        gen, batch = _threads(cfg)
        extra = {k: v for k, v in cfg.setting("engine_kwargs").items() if k != "n_threads_batch"}
        self.llm = llama_cls(model_path=str(path), n_ctx=cfg.setting("n_ctx"), n_threads=gen, n_threads_batch=batch,
                             verbose=False, **extra)

    def chat_template(self) -> str:
        """The GGUF's `tokenizer.chat_template`."""
        return str((getattr(self.llm, "metadata", None) or {}).get("tokenizer.chat_template", ""))

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, special tokens parsed, no BOS."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def generate(self, tokens: list[int], *, max_tokens: int, temperature: float, seed: int,
                 schema: dict[str, Any] | None) -> tuple[str, int]:
        """Generated text and its token count."""
        kwargs: dict[str, Any] = {}
        if schema is not None:
            from llama_cpp import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        out = self.llm.create_completion(prompt=tokens, max_tokens=max_tokens, temperature=temperature,
                                         seed=seed, repeat_penalty=1.0 if schema else 1.05, **kwargs)
        text = out["choices"][0].get("text") or ""
        return text, int((out.get("usage") or {}).get("completion_tokens") or len(self.tokenize(text)))

    def close(self) -> None:
        """Free the model."""
        close = getattr(self.llm, "close", None)
        if callable(close):
            close()


def open_backend(path: Path, cfg: RoleConfig) -> Backend:
    """The prebuilt runtime, else the compiled one, else an error naming both routes and why each failed."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when the OpenMP runtime loads: set it first
    reasons = []
    for make in (PrebuiltBackend, CompiledBackend):
        try:
            return make(path, cfg)
        except ImportError as exc:
            reasons.append(f"{make.name}: not installed ({exc})")
        except (OSError, RuntimeError) as exc:
            reasons.append(f"{make.name}: cannot load ({exc})")
    raise LocalProviderUnavailable("provider 'local' needs a llama.cpp runtime; install one — " + ROUTES
                                   + ". Tried: " + "; ".join(reasons))


def check_runtime() -> None:
    """Raise LocalProviderUnavailable at once when neither runtime package is installed."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp_py_sync") is None and importlib.util.find_spec("llama_cpp") is None:
        raise LocalProviderUnavailable("provider 'local' needs a llama.cpp runtime; install one — " + ROUTES)


# ---------------------------------------------------------------------------------------------------------
# prompt rendering


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # Hugging Face templates expect JSON as json.dumps writes it (jinja2's own filter escapes <, >, &).
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise(message: str) -> None:
    raise ValueError(f"chat template: {message}")


def compile_template(source: str) -> Any:
    """A jinja2 template from a GGUF, in a sandbox: it can format data but reach nothing else."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    return env.from_string(source or CHATML)


def forced_call_schema(tools: list[dict[str, Any]], tool_choice: str | None) -> dict[str, Any] | None:
    """A schema forcing one call to a bound tool with arguments shaped by that tool's parameters."""
    if tool_choice in (None, "auto", "none"):
        return None
    fns = [t.get("function", t) for t in tools]
    if tool_choice not in ("required", "any"):
        fns = [f for f in fns if f.get("name") == tool_choice] or fns
    options = []
    for fn in fns:
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append({"type": "object", "properties": {"name": {"const": fn.get("name")},
                                                         "arguments": grammar_schema(params)},
                        "required": ["name", "arguments"]})
    return options[0] if len(options) == 1 else {"anyOf": options}


@dataclass
class LocalEngine:
    """A loaded model, its lock, its template, and the counters benchmarks read."""

    backend: Any
    path: Path
    template_has_tools: bool
    template: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        """The prompt text for a conversation (and its tools), ready for the assistant's turn."""
        msgs = for_template(messages)
        if tools and not self.template_has_tools:
            msgs = _tools_in_system(msgs, tools)
            tools = None
        return self.template.render(messages=msgs, tools=tools or None, add_generation_prompt=True,
                                    bos_token="", eos_token="")

    def complete(self, messages: list[dict[str, Any]], spec: CallSpec, cfg: RoleConfig,
                 role: str = "") -> tuple[dict, dict]:
        """One chat completion (blocking)."""
        tools = list(spec.tools or [])
        schema: dict[str, Any] | None = None
        forced = forced_call_schema(tools, spec.tool_choice) if tools else None
        if spec.json_schema is not None and not tools:
            schema = grammar_schema(spec.json_schema)
        elif forced is not None:
            schema = forced
        prompt = self.render(messages, tools or None)
        with self.lock:
            tokens = self.backend.tokenize(prompt)
            activity.report({"event": "call_start", "role": role, "model": self.path.name,
                             "prompt_tokens": len(tokens)})
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                # Sampling draws a fresh seed per call (the engine's call count: reproducible for one
                # process's sequence of calls), so repeated trials of one task are independent samples
                # (pass^k); greedy decoding needs none. The call cache still answers a repeated call.
                seed = self.calls if cfg.temperature > 0 else 0
                if hasattr(self.backend, "cache_group"):
                    self.backend.cache_group = role
                text, generated = self.backend.generate(tokens, max_tokens=cfg.max_tokens,
                                                        temperature=cfg.temperature, seed=seed, schema=schema)
            finally:
                spent = time.perf_counter() - start
                cpu = time.process_time() - cpu_start  # the work itself, whatever else shares the cores
                self.seconds += spent
            self.calls += 1
            self.prompt_tokens += len(tokens)
            self.completion_tokens += generated
            end = {"event": "call_end", "role": role, "model": self.path.name, "prompt_tokens": len(tokens),
                   "completion_tokens": generated, "seconds": round(spent, 3), "cpu_seconds": round(cpu, 3),
                   # the profile: prompt tokens answered from the KV cache, and the prompt's share of the time
                   "reused_tokens": int(getattr(self.backend, "last_reused", 0) or 0),
                   "prompt_seconds": round(float(getattr(self.backend, "last_prompt_seconds", 0.0) or 0.0), 3)}
            activity.report(end)
            log_call({**end, "prompt": prompt, "answer": text} if os.environ.get("GEM_MODEL_CALL_LOG_TEXT") else end)
        usage = {"input_tokens": len(tokens), "output_tokens": generated}
        if tools:
            if forced is not None:
                return call_from_json(text), usage
            names = [t.get("function", t).get("name") for t in tools]
            return parse_tool_text(text, names), usage
        return {"role": "assistant", "content": text.strip() if schema is None else text}, usage


def log_call(row: dict[str, Any]) -> None:
    """Append one call's figures to $GEM_MODEL_CALL_LOG (a JSONL file) when set: benchmarks read per-call times.

    With GEM_MODEL_CALL_LOG_TEXT=1 the rendered prompt and the answer are logged too (to see where prompt tokens go).
    """
    target = os.environ.get("GEM_MODEL_CALL_LOG")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**row, "at": round(time.time(), 1), "pid": os.getpid()}) + "\n")


def _tools_in_system(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates without tool support: describe the tools in the system message."""
    block = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t.get("function", t), ensure_ascii=False)
                                                  for t in tools))
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + block}, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


BackendFactory = Any  # (path, cfg) -> Backend


def load_engine(cfg: RoleConfig, *, backend_factory: BackendFactory = None, path: Path | None = None) -> LocalEngine:
    """The shared engine for a role config's model file (loaded on first use)."""
    path = path or resolve_model_file(cfg.setting("model_path"), cfg.setting("model_package"))
    key = (str(path), cfg.setting("n_ctx"), cfg.setting("n_threads"), cfg.setting("chat_format"),
           json.dumps(cfg.setting("engine_kwargs", {}), sort_keys=True), cfg.setting("compact_json"),
           cfg.setting("prefix_snapshots"))
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            started = time.perf_counter()
            backend = (backend_factory or open_backend)(path, cfg)
            log_call({"event": "load", "model": path.name, "seconds": round(time.perf_counter() - started, 3)})
            source = backend.chat_template()
            _ENGINES[key] = LocalEngine(backend=backend, path=path, template_has_tools="tools" in source,
                                        template=compile_template(source))
        return _ENGINES[key]


def local_completer(cfg: RoleConfig, *, role: str = "", backend_factory: BackendFactory = None) -> Completer:
    """A completer over an embedded llama.cpp model (loaded lazily, on the first call).

    The runtime and the weights are checked here, not on the first call: a missing extra or a wrong
    path is a config error to report at once, not a transient failure for the client to retry.
    """
    if backend_factory is None:
        check_runtime()
    path = resolve_model_file(cfg.setting("model_path"), cfg.setting("model_package"))
    state: dict[str, LocalEngine] = {}

    async def complete(messages: list[dict[str, Any]], spec: CallSpec) -> tuple[dict[str, Any], dict[str, int]]:
        if "engine" not in state:
            state["engine"] = await asyncio.to_thread(load_engine, cfg, backend_factory=backend_factory, path=path)
        return await asyncio.to_thread(state["engine"].complete, messages, spec, cfg, role)

    return complete


# ---------------------------------------------------------------------------------------------------------
# registration


class LocalSettings(BaseModel):
    """Keys of a `local` role beyond the common ones."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None
    model_package: str | None = None
    n_ctx: int = Field(default=4096, gt=0)
    n_threads: int | None = None
    chat_format: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for llama_cpp.Llama")
    compact_json: bool = Field(default=True, description="structured answers without newlines and indents "
                                                         "(fewer generated tokens; prebuilt runtime)")
    prefix_snapshots: int = Field(default=2, ge=0, description="saved prompt states per role to resume shared "
                                                               "prefixes from (prebuilt; 0 = only the live KV cache)")


def _validate(cfg: RoleConfig) -> None:
    if cfg.base_url:
        raise ValueError("base_url is for provider 'openai'; provider 'local' runs in-process "
                         "(a llama.cpp server is provider 'openai' with base_url)")
    if not (cfg.setting("model_path") or cfg.setting("model_package")):
        raise ValueError("provider 'local' needs 'model_path' (a GGUF file) or 'model_package'")


def _factory(cfg: RoleConfig, role: str) -> Completer:
    return local_completer(cfg, role=role)


register("provider", "local", Provider(
    name="local", factory=_factory, settings=LocalSettings,
    capabilities=frozenset({"grammar"}), validate=_validate,
    endpoint=lambda cfg: cfg.setting("model_path") or cfg.setting("model_package") or "",
    description="an embedded llama.cpp model on the CPU (the `local` extra)"))
