"""The model path end to end with no network: the real ChatOpenAI client → a local fake server."""

import asyncio

import pytest

from gem_agents.config import RoleConfig, RunConfig
from gem_agents.models.client import ModelCallError
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.testing.fake_openai import FakeOpenAIServer, Faults, Reply, ToolCall
from gem_agents.testing.role_responder import RoleResponder
from graphs.rollouts import run_dialogue
from tests.helpers import example
from tools_runtime.executor import parse_tool_content
from tools_runtime.scenario import build_scenario


def model_config(base_url: str, **kw) -> RunConfig:
    role = RoleConfig(provider="openai", model="fake-model", base_url=base_url, **kw)
    return RunConfig.model_validate({"roles": {"user": role.model_dump(), "assistant": role.model_dump()}})


def run(sc, hub):
    return asyncio.run(run_dialogue(sc, make_roles(hub)))


def test_chatopenai_roles_through_the_graph_verify(tmp_path):
    sc = build_scenario(example("shop_return"), 0)
    with FakeOpenAIServer(RoleResponder([sc])) as srv:
        hub = ModelHub(model_config(srv.base_url), tmp_path / "cache.sqlite")
        traj = run(sc, hub)
        calls = srv.count
    assert traj.verdict.passed, traj.verdict.failures
    assert calls >= traj.stats.tool_calls
    assert traj.provenance.model == "fake-model" and "model" in traj.provenance.policy
    assert len(traj.provenance.prompts_hash) >= 8  # which role prompts played the dialogue
    totals = hub.meter.totals()
    assert totals["calls"] == calls and totals["input_tokens"] > 0 and totals["output_tokens"] > 0


def test_second_run_is_served_from_the_cache(tmp_path):
    sc = build_scenario(example("calendar_booking"), 1)
    with FakeOpenAIServer(RoleResponder([sc])) as srv:
        first = run(sc, ModelHub(model_config(srv.base_url), tmp_path / "c.sqlite"))
        n = srv.count
        hub = ModelHub(model_config(srv.base_url), tmp_path / "c.sqlite")
        second = run(sc, hub)
        assert srv.count == n  # zero endpoint calls the second time
    assert first.messages == second.messages and second.verdict.passed
    assert hub.meter.totals()["calls"] == 0 and hub.meter.totals()["cached_calls"] > 0


def test_malformed_tool_call_becomes_a_tool_error_the_assistant_sees(tmp_path):
    sc = build_scenario(example("support_ticket"), 0)
    inner = RoleResponder([sc])
    state = {"broken": False}

    def responder(body):
        if body.get("tools") and not state["broken"] and any(m["role"] == "user" for m in body["messages"]):
            state["broken"] = True
            return Reply(tool_calls=[ToolCall(name="create_ticket", arguments='{"title": "Laptop", ')])
        return inner(body)

    with FakeOpenAIServer(responder) as srv:
        traj = run(sc, ModelHub(model_config(srv.base_url), None, use_cache=False))
    tool_msgs = [m for m in traj.messages if m["role"] == "tool"]
    is_err, payload = parse_tool_content(tool_msgs[0]["content"])
    assert is_err and payload["error"]["code"] == "invalid_arguments"
    # The assistant carried on after the error and the rest of the dialogue completed.
    assert traj.stats.tool_calls >= 5
    assert "invalid_arguments" in traj.verdict.codes()  # an unplanned error is never exported


def test_retries_on_429_and_500_with_backoff(tmp_path):
    sc = build_scenario(example("router_wifi_password"), 0)
    faults = Faults(error_429=0.3, error_500=0.3, retry_after_s=0.01, seed=1)
    with FakeOpenAIServer(RoleResponder([sc]), faults=faults) as srv:
        hub = ModelHub(model_config(srv.base_url, max_retries=6), None, use_cache=False)
        for c in ("user", "assistant"):
            hub.client(c).backoff_base_s = 0.01
        traj = run(sc, hub)
        assert srv.fault_counts["error_429"] > 0 and srv.fault_counts["error_500"] > 0
    assert traj.verdict.passed, traj.verdict.failures
    assert hub.client("assistant").retries + hub.client("user").retries > 0


def test_timeout_gives_up_with_a_clear_error():
    sc = build_scenario(example("router_wifi_password"), 0)
    with FakeOpenAIServer(RoleResponder([sc]), faults=Faults(timeout=1.0, timeout_s=5)) as srv:
        hub = ModelHub(model_config(srv.base_url, timeout_s=0.2, max_retries=1), None, use_cache=False)
        hub.client("user").backoff_base_s = 0.01
        with pytest.raises(ModelCallError, match="user .*Timeout"):
            run(sc, hub)
