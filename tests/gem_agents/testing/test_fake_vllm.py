"""The vLLM-like benchmark endpoint: its batching model and its HTTP front end (no wall-clock asserts)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from gem_agents.config import RoleConfig
from gem_agents.models.client import ModelClient
from gem_agents.models.hub import make_completer
from gem_agents.providers.openai_direct import close_pools
from gem_agents.testing.fake_vllm import (
    H100_LLAMA_8B,
    ROLE_OUTPUT_TOKENS,
    BatchModel,
    PrefixCache,
    filler_responder,
    prompt_blocks,
    serve,
)

FAST = 1e-4  # modeled durations × this: the tests check modeled time, never how long they took


async def _run(model: BatchModel, requests: list[tuple[int, int, int]]) -> None:
    await asyncio.gather(*(model.submit(*r) for r in requests))


def test_one_request_costs_its_prefill_and_one_step_per_output_token():
    model = BatchModel(H100_LLAMA_8B, FAST)
    asyncio.run(_run(model, [(1000, 0, 50)]))
    st = model.stats
    assert st.completed == 1 and st.steps == 50  # the prefill step also samples the first token
    expected = (50 * H100_LLAMA_8B.step_ms + 1000 * H100_LLAMA_8B.prefill_ms_per_token
                + H100_LLAMA_8B.per_seq_ms * 49 * 1) / 1000
    assert abs(st.busy_s - expected) < 1e-3


def test_steps_get_slower_with_more_sequences_in_flight_but_throughput_grows():
    one = BatchModel(H100_LLAMA_8B, FAST)
    asyncio.run(_run(one, [(10, 0, 100)]))
    many = BatchModel(H100_LLAMA_8B, FAST)
    asyncio.run(_run(many, [(10, 0, 100)] * 256))
    assert many.stats.max_running == 256
    assert many.stats.busy_s / many.stats.steps > 2 * one.stats.busy_s / one.stats.steps  # per-token latency
    assert 256 * 100 / many.stats.busy_s > 20 * 100 / one.stats.busy_s  # tokens per GPU second


def test_requests_beyond_max_num_seqs_wait_in_the_queue():
    params = H100_LLAMA_8B.__class__(**{**H100_LLAMA_8B.__dict__, "max_num_seqs": 4})
    model = BatchModel(params, FAST)
    asyncio.run(_run(model, [(10, 0, 20)] * 10))
    assert model.stats.max_running == 4 and model.stats.completed == 10 and model.stats.queue_s > 0


def test_prefix_cache_hits_the_earlier_turns_of_a_dialogue():
    cache = PrefixCache(10_000)
    turn1 = {"messages": [{"role": "system", "content": "rules " * 200}, {"role": "user", "content": "hi"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "more"}]}
    assert cache.lookup_insert(prompt_blocks(turn1)) == 0
    blocks = prompt_blocks(turn2)
    assert cache.lookup_insert(blocks) == sum(n for _, n in blocks[:2])
    other = {"messages": [{"role": "system", "content": "other"}, *turn1["messages"][1:]]}
    assert cache.lookup_insert(prompt_blocks(other)) == 0  # a prefix is matched from the start only


def test_filler_answers_follow_the_request_role():
    stage = {"messages": [{"role": "user", "content": "x"}],
             "response_format": {"type": "json_schema", "json_schema": {"name": "workflow", "schema": {}}}}
    assert filler_responder(stage).completion_tokens == ROLE_OUTPUT_TOKENS["extraction"]
    user = {"messages": [{"role": "system", "content": "you are a user"}, {"role": "user", "content": "hi"}]}
    assert filler_responder(user).completion_tokens == ROLE_OUTPUT_TOKENS["user"]


def test_http_front_end_answers_chat_completions_and_counts():
    async def go():
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve(0, time_scale=FAST, ready=ready))
        url = await ready
        cfg = RoleConfig(provider="openai", model="fake-model", base_url=url, http_client="direct", max_retries=0)
        client = ModelClient("user", cfg, make_completer(cfg))
        replies = await asyncio.gather(*(client.chat([{"role": "system", "content": "be a user"},
                                                      {"role": "user", "content": f"turn {i}"}]) for i in range(8)))
        root = url.rsplit("/v1", 1)[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(root + "/stats") as resp:
                stats = await resp.json()
            async with http.get(root + "/nope") as resp:
                missing = resp.status
        close_pools()
        server.cancel()
        return replies, stats, missing

    replies, stats, missing = asyncio.run(go())
    assert all(r.usage["output_tokens"] == ROLE_OUTPUT_TOKENS["user"] for r in replies)
    assert stats["completed"] == 8 and stats["output_tokens"] == 8 * ROLE_OUTPUT_TOKENS["user"]
    assert stats["cached_tokens"] > 0  # the shared system prompt
    assert missing == 404
    assert json.dumps(stats["params"])  # the parameter table is reported with the counters


def test_the_request_log_holds_arrivals_or_completions(tmp_path):
    """`/log` with `"on": "done"` writes a body once its answer is ready; without it, as the request arrives."""

    async def go():
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve(0, time_scale=FAST, ready=ready))
        url = await ready
        root = url.rsplit("/v1", 1)[0]
        cfg = RoleConfig(provider="openai", model="fake-model", base_url=url, http_client="direct", max_retries=0)
        client = ModelClient("user", cfg, make_completer(cfg))
        async with aiohttp.ClientSession() as http:
            for name, on in (("arrived", None), ("done", "done")):
                async with http.post(root + "/log", json={"path": str(tmp_path / f"{name}.jsonl"), "on": on}) as r:
                    assert r.status == 200
                await asyncio.gather(*(client.chat([{"role": "user", "content": f"{name} {i}"}]) for i in range(3)))
            async with http.post(root + "/log", json={"path": None}) as r:
                assert r.status == 200
            async with http.post(root + "/log", data=b"[1]") as r:
                refused = r.status
        close_pools()
        server.cancel()
        return refused

    assert asyncio.run(go()) == 400
    for name in ("arrived", "done"):
        lines = (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert sorted(json.loads(x)["messages"][0]["content"] for x in lines) == [f"{name} {i}" for i in range(3)]
