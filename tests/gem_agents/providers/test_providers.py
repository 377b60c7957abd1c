"""Model providers: selection, config validation, openai against the fake server, vllm and local stand-ins."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from gem_agents.config import ConfigError, RoleConfig, RunConfig, parse_config
from gem_agents.models.client import ModelCallError, ModelClient
from gem_agents.models.hub import ModelHub, make_completer
from gem_agents.providers import local_provider, weights
from gem_agents.providers.openai_provider import MissingAPIKey, make_chat_openai, rate_limiter
from gem_agents.providers.scripted_provider import STANDINS, all_scripted, scripted_roles
from gem_agents.providers.tool_text import for_template, parse_tool_text, tool_choice_schema
from gem_agents.providers.vllm_provider import vllm_completer
from gem_agents.roles_factory import make_roles
from gem_agents.testing.fake_openai import (
    FakeOpenAIServer,
    Faults,
    ScriptedResponder,
    http_error,
    text,
    tool_calls,
)
from graphs.roles import STOP_TOKEN

TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "Look up an order",
                                           "parameters": {"type": "object",
                                                          "properties": {"order_id": {"type": "string"}},
                                                          "required": ["order_id"]}}},
         {"type": "function", "function": {"name": "cancel_order", "description": "Cancel an order",
                                           "parameters": {"type": "object",
                                                          "properties": {"order_id": {"type": "string"}}}}}]
SCHEMA = {"type": "object", "properties": {"multi_step": {"type": "boolean"}}, "required": ["multi_step"]}
MSGS = [{"role": "user", "content": "Where is order A1?"}]


def openai_client(base_url: str, **kw) -> ModelClient:
    cfg = RoleConfig(provider="openai", model="fake-model", base_url=base_url, **kw)
    client = ModelClient("assistant", cfg, make_completer(cfg))
    client.backoff_base_s = 0.01
    return client


# ---------------------------------------------------------------------------------------------------------
# selection and config validation


def test_every_role_can_be_scripted_and_then_has_no_client():
    cfg = all_scripted(RunConfig.model_validate({"roles": {"user": {"provider": "openai", "model": "m"}}}))
    assert scripted_roles(cfg) == list(STANDINS)
    hub = ModelHub(cfg, None, use_cache=False)
    assert all(hub.client(r) is None for r in STANDINS)
    assert make_roles(hub).name == "scripted"


def test_provider_selection_builds_the_right_completer(monkeypatch, tmp_path):
    monkeypatch.setenv("GEM_TEST_KEY", "sk-test-123")
    hub = ModelHub(RunConfig.model_validate({"roles": {
        "user": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "GEM_TEST_KEY"},
    }}), None, use_cache=False)
    assert hub.client("user") is not None and hub.client("assistant") is None
    with pytest.raises(ValueError, match="scripted.*no completer"):
        make_completer(RoleConfig())
    # local without the extra or the weights: a clear error at construction, not a retried failure
    with pytest.raises((ImportError, weights.WeightsError)):
        make_completer(RoleConfig(provider="local", model_path=str(tmp_path / "missing.gguf")))


@pytest.mark.parametrize(("role", "message"), [
    ({"provider": "openai"}, "needs a 'model'"),
    ({"provider": "vllm"}, "needs a 'model'"),
    ({"provider": "local"}, "model_path"),
    ({"provider": "local", "model_path": "m.gguf", "base_url": "http://x/v1"}, "base_url is for provider 'openai'"),
    ({"provider": "openai", "model": "m", "api_key_env": "sk-live-abcdef"}, "NAME of an environment variable"),
    ({"provider": "openai", "model": "m", "api_key": "sk-x"}, "unknown key"),
    ({"provider": "ollama", "model": "m"}, "provider"),
    ({"provider": "openai", "model": "m", "temperature": 5}, "temperature"),
])
def test_bad_role_configs_name_the_key(role, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"roles": {"extract": role}}, "run.yaml")
    assert "run.yaml: roles.extract" in str(err.value)
    assert "sk-live-abcdef" not in str(err.value)  # a pasted key is never echoed


def test_api_key_comes_from_the_named_env_var_and_never_reaches_the_cache(monkeypatch, tmp_path):
    cfg = RoleConfig(provider="openai", model="fake-model", api_key_env="GEM_TEST_SECRET")
    monkeypatch.delenv("GEM_TEST_SECRET", raising=False)
    with pytest.raises(MissingAPIKey, match="GEM_TEST_SECRET"):
        make_chat_openai(cfg)
    monkeypatch.setenv("GEM_TEST_SECRET", "sk-very-secret-42")
    with FakeOpenAIServer(ScriptedResponder([text("hi")])) as srv:
        cfg = cfg.model_copy(update={"base_url": srv.base_url})
        assert make_chat_openai(cfg).openai_api_key.get_secret_value() == "sk-very-secret-42"
        hub = ModelHub(RunConfig.model_validate({"roles": {"user": cfg.model_dump()}}), tmp_path / "c.sqlite")
        asyncio.run(hub.client("user").chat(MSGS))
        hub.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "c.sqlite").iterdump())
    assert "\"hi\"" in dump and "sk-very-secret-42" not in dump
    assert "sk-very-secret-42" not in cfg.model_dump_json()


def test_roles_on_one_endpoint_share_one_rate_limiter():
    a = RoleConfig(provider="openai", model="m", base_url="http://h/v1", rate_limit_rps=5)
    b = a.model_copy(update={"temperature": 0.1})
    c = a.model_copy(update={"base_url": "http://other/v1"})
    assert rate_limiter(a) is rate_limiter(b) is make_chat_openai(a).rate_limiter
    assert rate_limiter(c) is not rate_limiter(a) and rate_limiter(a.model_copy(update={"rate_limit_rps": None})) is None


# ---------------------------------------------------------------------------------------------------------
# openai against the fake server


def test_openai_structured_output_sends_the_json_schema():
    with FakeOpenAIServer(ScriptedResponder([text('{"multi_step": true}')])) as srv:
        reply = asyncio.run(openai_client(srv.base_url).chat(MSGS, json_schema=SCHEMA, schema_name="relevance"))
        body = srv.bodies[0]
    assert json.loads(reply.text) == {"multi_step": True}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "relevance", "schema": SCHEMA}}
    assert "tools" not in body


def test_openai_tool_calls_bind_tools_and_tool_choice():
    with FakeOpenAIServer(ScriptedResponder([tool_calls(("get_order", {"order_id": "A1"}))])) as srv:
        reply = asyncio.run(openai_client(srv.base_url).chat(MSGS, tools=TOOLS, tool_choice="required"))
        body = srv.bodies[0]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_order", "cancel_order"]
    assert body["tool_choice"] == "required"
    call = reply.message["tool_calls"][0]
    assert call["function"]["name"] == "get_order" and json.loads(call["function"]["arguments"]) == {"order_id": "A1"}
    assert reply.usage["input_tokens"] > 0 and reply.usage["output_tokens"] > 0


@pytest.mark.parametrize("status", [429, 500])
def test_openai_retries_429_and_500_then_succeeds(status):
    script = [http_error(status, "busy", retry_after=0.01), http_error(status, "busy", retry_after=0.01), text("ok")]
    with FakeOpenAIServer(ScriptedResponder(script)) as srv:
        client = openai_client(srv.base_url, max_retries=3)
        reply = asyncio.run(client.chat(MSGS))
        assert srv.count == 3
    assert reply.text == "ok" and client.retries == 2


def test_openai_gives_up_after_max_retries_and_never_retries_a_400():
    with FakeOpenAIServer(ScriptedResponder([http_error(500, "down")], cycle=True)) as srv:
        with pytest.raises(ModelCallError, match="InternalServerError|500"):
            asyncio.run(openai_client(srv.base_url, max_retries=2).chat(MSGS))
        assert srv.count == 3
    with FakeOpenAIServer(ScriptedResponder([http_error(400, "bad request")], cycle=True)) as srv:
        with pytest.raises(ModelCallError, match="BadRequest|400"):
            asyncio.run(openai_client(srv.base_url, max_retries=4).chat(MSGS))
        assert srv.count == 1


def test_openai_timeout_is_retried_then_reported():
    with FakeOpenAIServer(ScriptedResponder([text("late")], cycle=True), faults=Faults(timeout=1.0, timeout_s=5)) as srv:
        client = openai_client(srv.base_url, timeout_s=0.2, max_retries=1)
        with pytest.raises(ModelCallError, match="Timeout"):
            asyncio.run(client.chat(MSGS))
        assert srv.count == 2 and client.retries == 1


# ---------------------------------------------------------------------------------------------------------
# engine text → messages


def test_hermes_tool_text_is_parsed_and_broken_json_survives():
    msg = parse_tool_text('Let me check.\n<tool_call>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n'
                          '</tool_call>\n<tool_call>{"name": "cancel_order", "arguments": {"order_id": </tool_call>')
    assert msg["content"] == "Let me check."
    first, second = msg["tool_calls"]
    assert first["function"] == {"name": "get_order", "arguments": '{"order_id": "A1"}'}
    assert second["function"]["name"] == "cancel_order" and "order_id" in second["function"]["arguments"]
    assert parse_tool_text("just text") == {"role": "assistant", "content": "just text"}
    assert parse_tool_text("same")["content"] == "same" and first["id"] == parse_tool_text(
        '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n</tool_call>')["tool_calls"][0]["id"]


def test_template_messages_and_forced_tool_schema():
    out = for_template([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "A1"}'}}]}])
    assert out[0]["content"] == "" and out[0]["tool_calls"][0]["function"]["arguments"] == {"order_id": "A1"}
    assert tool_choice_schema(TOOLS, "auto") is None
    assert tool_choice_schema(TOOLS, "required")["properties"]["name"]["enum"] == ["get_order", "cancel_order"]
    assert tool_choice_schema(TOOLS, "cancel_order")["properties"]["name"]["enum"] == ["cancel_order"]


# ---------------------------------------------------------------------------------------------------------
# vllm with a stand-in engine


@dataclass
class StandInLLM:
    """Mimics `vllm.LLM.chat`: a batch of conversations in, one RequestOutput-like object per conversation."""

    calls: list[dict] = field(default_factory=list)
    fail: bool = False

    def chat(self, conversations, sampling_params=None, use_tqdm=True, tools=None, **kw):
        self.calls.append({"n": len(conversations), "tools": tools, "params": sampling_params})
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        outs = []
        for convo, params in zip(conversations, sampling_params, strict=True):
            last = convo[-1]["content"]
            if params.get("schema") is not None and tools:
                gen = json.dumps({"name": "get_order", "arguments": {"order_id": last[-2:]}})
            elif params.get("schema") is not None:
                gen = '{"multi_step": true}'
            elif tools:
                call = json.dumps({"name": "get_order", "arguments": {"order_id": last[-2:]}})
                gen = f"<tool_call>{call}</tool_call>"
            else:
                gen = f"echo {last}"
            outs.append(SimpleNamespace(prompt_token_ids=list(range(len(last))),
                                        outputs=[SimpleNamespace(text=gen, token_ids=list(range(7)))]))
        return outs


def stand_in_params(cfg, schema):
    return {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "schema": schema}


def vllm_client(engine, **kw) -> ModelClient:
    cfg = RoleConfig(provider="vllm", model="Qwen/Qwen2.5-7B-Instruct", concurrency=64, batch_window_ms=20, **kw)
    return ModelClient("assistant", cfg, vllm_completer(cfg, engine=engine, make_params=stand_in_params))


def test_vllm_batches_concurrent_calls_and_parses_tool_calls():
    engine = StandInLLM()
    client = vllm_client(engine)

    async def many():
        plain = [client.chat([{"role": "user", "content": f"hello {i:02d}"}]) for i in range(6)]
        tooly = [client.chat([{"role": "user", "content": f"order {i:02d}"}], tools=TOOLS) for i in range(4)]
        structured = client.chat(MSGS, json_schema=SCHEMA)
        return await asyncio.gather(*plain, *tooly, structured)

    replies = asyncio.run(many())
    assert sorted(c["n"] for c in engine.calls) == [4, 7]  # one batch per tool list, not 11 calls
    assert [r.text for r in replies[:6]] == [f"echo hello {i:02d}" for i in range(6)]
    for i, r in enumerate(replies[6:10]):
        assert json.loads(r.message["tool_calls"][0]["function"]["arguments"]) == {"order_id": f"{i:02d}"}
    assert json.loads(replies[10].text) == {"multi_step": True}
    tool_batch = next(c for c in engine.calls if c["tools"])
    assert tool_batch["tools"] == TOOLS and all(p["schema"] is None for p in tool_batch["params"])
    plain_batch = next(c for c in engine.calls if not c["tools"])
    assert sum(p["schema"] == SCHEMA for p in plain_batch["params"]) == 1
    assert replies[0].usage == {"input_tokens": len("hello 00"), "output_tokens": 7}


def test_vllm_forced_tool_choice_is_constrained_and_engine_errors_surface():
    engine = StandInLLM()
    reply = asyncio.run(vllm_client(engine).chat([{"role": "user", "content": "order 42"}], tools=TOOLS,
                                                 tool_choice="get_order"))
    assert engine.calls[0]["params"][0]["schema"]["properties"]["name"]["enum"] == ["get_order"]
    assert reply.message["tool_calls"][0]["function"]["name"] == "get_order"
    with pytest.raises(ModelCallError, match="CUDA out of memory"):
        asyncio.run(vllm_client(StandInLLM(fail=True), max_retries=0).chat(MSGS))


def test_vllm_without_the_extra_says_what_to_install():
    if "vllm" in sys.modules or any(Path(p, "vllm").is_dir() for p in sys.path if p):
        pytest.skip("vllm is installed here")
    with pytest.raises(ImportError, match=r"\.\[vllm\]"):
        make_completer(RoleConfig(provider="vllm", model="m"))


# ---------------------------------------------------------------------------------------------------------
# local: the weights locator on a fake installed package, and the provider on a stand-in Llama


def fake_package(root: Path, name: str, files: dict[str, bytes], requires: list[str] = ()) -> None:
    """An installed distribution (dist-info with RECORD) under `root`, as pip would leave it."""
    pkg = name.replace("-", "_")
    record = []
    for rel, data in files.items():
        path = root / pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{pkg}/{rel},,")
    info = root / f"{pkg}-1.0.dist-info"
    info.mkdir(parents=True)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(meta)
    (info / "RECORD").write_text("\n".join(record + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]) + "\n")


def test_weights_found_in_chunked_packages_are_assembled_once(tmp_path, monkeypatch):
    import hashlib

    blob = b"GGUF" + bytes(range(256)) * 40
    parts = [blob[:3000], blob[3000:7000], blob[7000:]]
    site = tmp_path / "site"
    for i, part in enumerate(parts):  # installed out of order on purpose
        fake_package(site, f"tiny-model-part{i + 1}", {f"data/part{i + 1:02d}.bin": part})
    sha = hashlib.sha256(blob).hexdigest()
    fake_package(site, "tiny-model", {"data/SHA256SUMS": f"{sha}  tiny.gguf\n".encode()},
                 requires=[f"tiny-model-part{i + 1}==1.0" for i in range(3)])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("GEM_MODEL_CACHE", str(tmp_path / "cache"))
    path = weights.resolve_model_file(None, "tiny-model")
    assert path.read_bytes() == blob and path.parent == tmp_path / "cache"
    mtime = path.stat().st_mtime_ns
    assert weights.resolve_model_file(None, "tiny-model-part*") .read_bytes() == blob  # glob over the parts
    assert weights.resolve_model_file(None, "tiny-model") == path and path.stat().st_mtime_ns == mtime
    with pytest.raises(weights.WeightsError, match="not installed"):
        weights.resolve_model_file(None, "no-such-model-pkg")
    with pytest.raises(weights.WeightsError, match="not a GGUF"):
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"NOPE")
        weights.resolve_model_file(str(bad), None)


def test_weights_with_a_wrong_checksum_are_refused(tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_package(site, "bad-model-part1", {"data/m.gguf.part00": b"GGUF1234"})
    fake_package(site, "bad-model-part2", {"data/m.gguf.part01": b"5678"})
    fake_package(site, "bad-model", {"data/SHA256SUMS": b"0" * 64 + b"  m.gguf\n"},
                 requires=["bad-model-part1", "bad-model-part2"])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("GEM_MODEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(weights.WeightsError, match="SHA256SUMS"):
        weights.resolve_model_file(None, "bad-model")
    assert not list((tmp_path / "cache").glob("*"))  # no torn or unverified file left behind


# A Qwen-like template: tools in the system turn, ChatML turns.
STANDIN_TEMPLATE = ("{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>"
                    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
                    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class StandInBackend:
    """Mimics a llama.cpp runtime behind the local provider and records what it was asked."""

    instances: list[StandInBackend] = []
    name = "stand-in"
    reply: str | None = None

    def __init__(self, path, cfg):
        self.args = {"path": str(path), "n_ctx": cfg.n_ctx, "n_threads": cfg.n_threads}
        self.prompts: list[str] = []
        self.requests: list[dict] = []
        StandInBackend.instances.append(self)

    def chat_template(self):
        return STANDIN_TEMPLATE

    def tokenize(self, text):
        self.prompts.append(text)
        return list(range(len(text.split())))

    def generate(self, tokens, *, max_tokens, temperature, seed, schema):
        self.requests.append({"schema": schema, "max_tokens": max_tokens, "temperature": temperature, "seed": seed})
        if self.reply is not None:
            return self.reply, 0
        if schema and "arguments" in json.dumps(schema):
            return '{"name": "cancel_order", "arguments": {"order_id": "A1"}}', 14
        if schema:
            return '{"multi_step": false}', 6
        if "<tools>" in self.prompts[-1]:  # small models answer in a fence, not in <tool_call> tags
            return '```json\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n```', 20
        return "Sure.", 2

    def close(self):
        pass


def test_local_provider_constrains_json_and_parses_tool_calls(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 32)
    cfg = RoleConfig(provider="local", model_path=str(model), n_ctx=2048, n_threads=3, temperature=0)
    client = ModelClient("extract", cfg, local_provider.local_completer(cfg, backend_factory=StandInBackend))

    async def calls():
        return (await client.chat(MSGS, json_schema=SCHEMA), await client.chat(MSGS, tools=TOOLS),
                await client.chat(MSGS, tools=TOOLS, tool_choice="required"), await client.chat(MSGS))

    structured, auto, forced, plain = asyncio.run(calls())
    backend = StandInBackend.instances[-1]
    assert backend.args == {"path": str(model), "n_ctx": 2048, "n_threads": 3}
    assert backend.requests[0]["schema"] == {"type": "object", "properties": {"multi_step": {"type": "boolean"}},
                                             "required": ["multi_step"]}
    assert json.loads(structured.text) == {"multi_step": False}
    # tools are rendered by the model's own template, and the free call comes back parsed from its fence
    assert backend.requests[1]["schema"] is None and '"name": "get_order"' in backend.prompts[1]
    assert auto.message["tool_calls"][0]["function"]["name"] == "get_order"
    # a forced call is grammar-constrained to a bound tool, with that tool's argument schema
    names = {o["properties"]["name"]["const"] for o in backend.requests[2]["schema"]["anyOf"]}
    assert names == {"get_order", "cancel_order"}
    assert forced.message["tool_calls"][0]["function"]["name"] == "cancel_order"
    assert plain.message == {"role": "assistant", "content": "Sure."}
    assert plain.usage == {"input_tokens": len(backend.prompts[3].split()), "output_tokens": 2}
    assert backend.prompts[3].endswith("<|im_start|>assistant\n")
    # a second role on the same model file shares the loaded engine
    asyncio.run(ModelClient("user", cfg, local_provider.local_completer(cfg, backend_factory=StandInBackend)).chat(MSGS))
    assert StandInBackend.instances[-1] is backend


def test_local_provider_reports_which_role_it_plays(tmp_path):
    from gem_agents.models import activity

    model = tmp_path / "r.gguf"
    model.write_bytes(b"GGUF" + b"\1" * 8)
    cfg = RoleConfig(provider="local", model_path=str(model))
    seen: list[dict] = []
    activity.add_listener(seen.append)
    try:
        asyncio.run(ModelClient("user", cfg, local_provider.local_completer(cfg, role="user",
                                                                           backend_factory=StandInBackend)).chat(MSGS))
    finally:
        activity.remove_listener(seen.append)
    assert [e["event"] for e in seen] == ["call_start", "call_end"]
    assert seen[1]["role"] == "user" and seen[1]["model"] == "r.gguf" and seen[1]["completion_tokens"] == 2


def test_local_provider_samples_with_a_fresh_seed_per_call_and_logs_each_call(tmp_path, monkeypatch):
    # trials of one task must be independent samples (pass^k); greedy calls need no seed
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("GEM_MODEL_CALL_LOG", str(log))
    model = tmp_path / "t.gguf"
    model.write_bytes(b"GGUF" + b"\2" * 8)
    sampled = RoleConfig(provider="local", model_path=str(model), temperature=0.7)
    client = ModelClient("assistant", sampled, local_provider.local_completer(sampled, role="assistant",
                                                                              backend_factory=StandInBackend))
    asyncio.run(client.chat(MSGS))
    asyncio.run(client.chat(MSGS, salt="trial-2"))
    backend = StandInBackend.instances[-1]
    assert backend.requests[0]["seed"] != backend.requests[1]["seed"]
    greedy = RoleConfig(provider="local", model_path=str(model), temperature=0, n_ctx=1024)
    asyncio.run(ModelClient("filter", greedy, local_provider.local_completer(greedy,
                                                                            backend_factory=StandInBackend)).chat(MSGS))
    assert StandInBackend.instances[-1].requests[0]["seed"] == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in rows].count("call_end") == 3 and rows[0]["event"] == "load"
    assert {r.get("role") for r in rows if r["event"] == "call_end"} == {"assistant", ""}


def test_local_provider_without_a_runtime_names_both_routes(tmp_path, monkeypatch):
    def absent(*a, **k):
        raise ImportError("No module named 'x'")

    monkeypatch.setattr(local_provider.PrebuiltBackend, "__init__", absent)
    monkeypatch.setattr(local_provider.CompiledBackend, "__init__", absent)
    with pytest.raises(local_provider.LocalProviderUnavailable) as err:
        local_provider.open_backend(tmp_path / "m.gguf", RoleConfig(provider="local", model_path="m.gguf"))
    assert ".[local]" in str(err.value) and ".[local-compile]" in str(err.value)
    assert "prebuilt: not installed" in str(err.value) and "compiled: not installed" in str(err.value)


def test_local_user_role_stops_through_the_policy(tmp_path):
    """The chat user policy on the local provider ends the dialogue on an empty reply."""
    from gem_agents.policies.chat import chat_user
    from tests.helpers import example
    from tools_runtime.scenario import build_scenario

    class Silent(StandInBackend):
        reply = ""

    model = tmp_path / "s.gguf"
    model.write_bytes(b"GGUF")
    cfg = RoleConfig(provider="local", model_path=str(model))
    policy = chat_user(ModelClient("user", cfg, local_provider.local_completer(cfg, backend_factory=Silent)))
    from graphs.roles import RoleView

    out = asyncio.run(policy(RoleView(role="user", scenario=build_scenario(example("shop_return"), 0), messages=[])))
    assert out == {"role": "user", "content": STOP_TOKEN}
