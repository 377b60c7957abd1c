"""Faults: the fake server's injection is seeded and reproducible, and runs survive it.

At about 10% injected faults (HTTP 500, 429 with Retry-After, timeouts, dropped connections,
malformed bodies, empty choices, invalid tool-call JSON, calls to unknown tools) every document
of a `gem run` ends exactly once — kept, or rejected/failed with a reason — and nothing crashes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path

import pytest

from gem_agents.config import RoleConfig, RunConfig
from gem_agents.models.client import classify
from gem_agents.models.hub import ModelHub
from gem_agents.roles_factory import make_roles
from gem_agents.testing.fake_openai import FAULT_KINDS, FakeOpenAIServer, Faults, main
from gem_agents.testing.fault_run import check_run, reference_scenarios, run, variant_corpus, write_config
from gem_agents.testing.role_responder import RoleResponder
from graphs.rollouts import simulate
from tests.helpers import example, example_names
from tools_runtime.scenario import build_scenario

FAST = {"retry_after_s": 0.01, "timeout_s": 3.0}  # a "timeout" hangs 3 s; clients give up after 0.5 s


def post(srv: FakeOpenAIServer, body: dict) -> int | None:
    """POST a chat request; the status, or None when the connection was dropped."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=0.5)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def bodies(n: int) -> list[dict]:
    return [{"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]


# ---------------------------------------------------------------------------------------------------------
# the fake server's fault settings


def test_at_rate_spreads_the_rate_over_kinds() -> None:
    f = Faults.at_rate(0.10, seed=3)
    per_kind = [getattr(f, k) for k in FAULT_KINDS]
    assert len(set(per_kind)) == 1 and 0 < per_kind[0] < 0.10
    assert 1 - (1 - per_kind[0]) ** len(FAULT_KINDS) == pytest.approx(0.10)
    only = Faults.at_rate(0.5, kinds=["error_500"], latency_s=0.1)
    assert only.error_500 == pytest.approx(0.5) and only.error_429 == 0 and only.latency_s == 0.1
    with pytest.raises(ValueError, match="unknown fault kinds"):
        Faults.at_rate(0.1, kinds=["error_418"])
    with pytest.raises(ValueError, match="within"):
        Faults.at_rate(1.5)


def test_keyed_faults_follow_the_request_not_the_arrival_order() -> None:
    faults = Faults(error_500=0.3, empty_choices=0.2, seed=11, keyed=True, **FAST)
    reqs = bodies(40)

    def faults_by_question(order: list[dict]) -> dict[str, list[str]]:
        with FakeOpenAIServer(faults=faults) as srv:
            for body in order:
                post(srv, body)
            return {r.body["messages"][0]["content"]: r.faults for r in srv.requests}

    forward = faults_by_question(reqs)
    backward = faults_by_question(list(reversed(reqs)))
    assert forward == backward
    assert sum(1 for f in forward.values() if f) >= 5  # some faults did fire
    # Without keying, the sequence follows arrival order instead.
    plain = Faults(error_500=0.3, empty_choices=0.2, seed=11)
    with FakeOpenAIServer(faults=plain) as srv:
        for body in reversed(reqs):
            post(srv, body)
        unkeyed = {r.body["messages"][0]["content"]: r.faults for r in srv.requests}
    assert unkeyed != forward


def test_keyed_retry_of_the_same_request_draws_again_and_ids_follow_the_request() -> None:
    body = bodies(1)[0]
    with FakeOpenAIServer(faults=Faults(error_500=0.5, seed=2, keyed=True)) as srv:
        statuses = [post(srv, body) for _ in range(12)]
        keys = [r.key for r in srv.requests]
    assert set(statuses) == {200, 500}  # the same body does not always meet the same fault
    assert len(set(keys)) == 12
    with FakeOpenAIServer(faults=Faults(seed=2, keyed=True)) as a, FakeOpenAIServer(faults=Faults(seed=2,
                                                                                                  keyed=True)) as b:
        post(a, bodies(2)[1])  # a different request first shifts nothing
        assert a._new_ids(2, a.requests[0].key)[1][0].startswith("call_")
        post(a, body)
        post(b, body)
        assert a.requests[1].key == b.requests[0].key


def test_summary_counts_requests_and_faults() -> None:
    with FakeOpenAIServer(faults=Faults(error_429=1.0, retry_after_s=0.5)) as srv:
        assert [post(srv, b) for b in bodies(3)] == [429, 429, 429]
        summary = srv.summary()
    assert summary == {"requests": 3, "faulted_requests": 3, "faults": {"error_429": 3}, "responder_errors": 0}


def test_server_binds_loopback_only() -> None:
    with FakeOpenAIServer() as srv:
        assert srv._httpd is not None and srv._httpd.server_address[0] == "127.0.0.1"


def test_manual_entry_point_rejects_unknown_fault_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--fault-rate", "0.1", "--fault-kinds", "error_500,error_418"])
    assert info.value.code == 2 and "error_418" in capsys.readouterr().err


def test_timeouts_from_langchain_openai_are_retryable() -> None:
    # langchain-openai raises its own subclass of openai.APITimeoutError; it must still be retried.
    from langchain_openai.chat_models.base import OpenAITimeoutError

    err = OpenAITimeoutError.__new__(OpenAITimeoutError)
    assert classify(err)[0] is True
    assert classify(ValueError("malformed"))[0] is True
    assert classify(RuntimeError("a bug"))[0] is False


# ---------------------------------------------------------------------------------------------------------
# dialogues under faults


def _simulate_under_faults(seed: int, max_retries: int) -> tuple[list, dict]:
    scenarios = [build_scenario(example(n), 0) for n in example_names()]
    role = RoleConfig(provider="openai", model="fake-model", max_retries=max_retries, timeout_s=0.5)
    with FakeOpenAIServer(RoleResponder(scenarios), faults=Faults.at_rate(0.10, seed=seed, keyed=True,
                                                                         **FAST)) as srv:
        role = role.model_copy(update={"base_url": srv.base_url})
        cfg = RunConfig.model_validate({"roles": {"user": role.model_dump(), "assistant": role.model_dump()}})
        hub = ModelHub(cfg, None, use_cache=False)
        for name in ("user", "assistant"):
            hub.client(name).backoff_base_s = 0.01
        roles = make_roles(hub)
        trajs = asyncio.run(simulate(scenarios, lambda sc: roles, concurrency=6))
        return trajs, srv.summary()


def test_dialogues_under_faults_all_end_with_a_verdict_and_reproduce() -> None:
    trajs, summary = _simulate_under_faults(seed=5, max_retries=0)
    assert summary["faulted_requests"] > 0
    assert len(trajs) == len(example_names())
    assert len({t.id for t in trajs}) == len(trajs)
    for t in trajs:
        assert t.verdict is not None
        assert t.verdict.passed or all(f.reason for f in t.verdict.failures) and t.verdict.failures
    # With no retries some dialogues fail, each with the model error or the verification failure as reason.
    assert any(not t.verdict.passed for t in trajs)
    again, summary_again = _simulate_under_faults(seed=5, max_retries=0)
    assert summary_again == summary  # keyed faults: the same requests meet the same faults
    assert [(t.id, t.verdict.passed, t.verdict.codes()) for t in again] == \
        [(t.id, t.verdict.passed, t.verdict.codes()) for t in trajs]


# ---------------------------------------------------------------------------------------------------------
# `gem run` under faults


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list]:
    """The variant corpus and the scenarios of the workflows a scripted run extracts from it."""
    tmp = tmp_path_factory.mktemp("faults")
    path = tmp / "docs.jsonl"
    ids = variant_corpus(path, copies=3)
    code, summary, err = run(write_config(tmp / "scripted.yaml"), path, tmp / "reference")
    assert code == 0, err
    return path, ids, reference_scenarios(tmp / "reference")


@pytest.mark.parametrize("max_retries", [3, 0])
def test_run_at_ten_percent_faults_loses_nothing(corpus: tuple[Path, list[str], list], tmp_path: Path,
                                                 max_retries: int) -> None:
    path, ids, scenarios = corpus
    assert len(scenarios) >= 6
    faults = Faults.at_rate(0.10, seed=7, keyed=True, **FAST)
    with FakeOpenAIServer(RoleResponder(scenarios), faults=faults) as srv:
        cfg = write_config(tmp_path / "model.yaml", srv.base_url, max_retries=max_retries)
        code, summary, err = run(cfg, path, tmp_path / "run")
        served = srv.summary()
        # Running again (same config, same endpoint) finishes nothing twice.
        code_again, again, _ = run(cfg, path, tmp_path / "run")
    assert code == 0, err
    assert served["faulted_requests"] >= 3 and len(served["faults"]) >= 3, served
    assert summary is not None and summary["this_run"]["processed"] == len(ids)
    assert check_run(tmp_path / "run", ids) == []
    statuses = summary["totals"]["documents"]
    assert sum(statuses.values()) == len(ids)
    if max_retries == 3:
        # Transport faults are retried away; only a broken or unknown tool call (a well-formed reply the
        # assistant really sent) can still fail a dialogue's verification.
        content = served["faults"].get("invalid_tool_json", 0) + served["faults"].get("unknown_tool", 0)
        # Scenarios are per task now (several per document): count the documents they belong to.
        assert statuses.get("kept", 0) >= len({sc.workflow.id for sc in scenarios}) - content
    else:  # unretried faults sink some rollouts; their documents are rejected saying why
        assert statuses.get("kept", 0) < len({sc.workflow.id for sc in scenarios})
        from gem_agents.run.store import RunStore

        store = RunStore(tmp_path / "run", readonly=True)
        reasons = [r for d in store.documents() if d["status"] == "rejected" for r in d["reasons"]]
        store.close()
        assert any("no rollout verified" in r for r in reasons)
    assert code_again == 0 and again is not None
    assert again["this_run"]["processed"] == 0 and again["this_run"]["skipped"] == len(ids)
    assert again["totals"] == summary["totals"]
