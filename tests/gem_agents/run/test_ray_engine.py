"""The Ray engine gives the local engine's results, in the same run directory format, exactly once."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gem_agents.config import RunConfig
from gem_agents.run.ray_worker import DocWorker, localize_config, outcome_from_dict, outcome_to_dict
from gem_agents.run.store import RunStore
from gem_agents.testing.fake_openai import FakeOpenAIServer, Faults
from gem_agents.testing.fault_run import (
    SAMPLES,
    check_run,
    reference_scenarios,
    run,
    variant_corpus,
    write_config,
)
from gem_agents.testing.role_responder import RoleResponder
from tools_runtime.records import Document

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'gem-agents[ray]')")
pytestmark = pytest.mark.ray


def snapshot(run_dir: Path) -> dict[str, Any]:
    """What a run produced, independent of timing and order: documents and trajectories by id."""
    store = RunStore(run_dir, readonly=True)
    try:
        docs = {d["doc_id"]: (d["status"], d["stage"], d["reasons"], d["error"], d["workflow"])
                for d in store.documents()}
        trajs = {t.id: (t.verdict.passed if t.verdict else None, t.verdict.codes() if t.verdict else [],
                        t.messages, t.stats.model_dump()) for t in store.trajectories()}
        kinds = store.trajectory_kinds()
    finally:
        store.close()
    return {"documents": docs, "trajectories": trajs, "kinds": kinds}


# ---------------------------------------------------------------------------------------------------------
# without Ray: the pieces the engine is made of


def test_outcome_survives_the_trip_to_and_from_a_worker(tmp_path: Path) -> None:
    doc = Document(id="d1", text=(SAMPLES / "share_a_printer.md").read_text(), source="s")
    worker = DocWorker(RunConfig(rollouts=2).model_dump(mode="json"), str(tmp_path / "run"), None, "w0")

    async def go() -> dict[str, Any]:
        try:
            return await worker.process(doc.model_dump(mode="json"))
        finally:
            await worker.close()

    result = asyncio.run(go())
    data = json.loads(json.dumps(result))  # plain JSON crosses the process boundary
    outcome = outcome_from_dict(data["outcome"])
    assert outcome.doc_id == "d1" and outcome.status == "kept"
    assert len(outcome.trajectories) >= 2 and all(t.verdict and t.verdict.passed for _, t in outcome.trajectories)
    assert outcome_to_dict(outcome) == data["outcome"]
    assert [e["stage"] for e in data["events"]][:3] == ["filter", "extract", "tasks"]
    assert data["worker"] == "w0" and data["roles"] == "scripted"
    assert not (tmp_path / "run" / "run.sqlite").exists()  # workers never write the store


def test_worker_records_a_failing_document_as_failed(tmp_path: Path) -> None:
    cfg = RunConfig().model_dump(mode="json")
    worker = DocWorker(cfg, str(tmp_path / "run"), None, "w0")
    worker._context = _broken_context  # type: ignore[method-assign]
    result = asyncio.run(worker.process(Document(id="d9", text="x").model_dump(mode="json")))
    outcome = outcome_from_dict(result["outcome"])
    assert outcome.status == "failed" and "cache is gone" in (outcome.error or "")


async def _broken_context() -> Any:
    raise OSError("cache is gone")


def test_node_ip_placeholder_gives_one_endpoint_per_node() -> None:
    cfg = RunConfig.model_validate({"roles": {
        "assistant": {"provider": "openai", "model": "m", "base_url": "http://{node_ip}:8000/v1"},
        "user": {"provider": "openai", "model": "m", "base_url": "http://10.0.0.9:8000/v1"}}})
    local = localize_config(cfg, "10.1.2.3")
    assert local.roles.assistant.base_url == "http://10.1.2.3:8000/v1"
    assert local.roles.user.base_url == "http://10.0.0.9:8000/v1"
    assert cfg.roles.assistant.base_url == "http://{node_ip}:8000/v1"  # the original is untouched
    assert localize_config(RunConfig(), "10.1.2.3") == RunConfig()


def test_engine_ray_without_ray_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as without the extra
    monkeypatch.delitem(sys.modules, "gem_agents.run.ray_engine", raising=False)
    (tmp_path / "d.md").write_text((SAMPLES / "share_a_printer.md").read_text())
    code, _, err = run(write_config(tmp_path / "c.yaml"), tmp_path / "d.md", tmp_path / "run", "--engine", "ray")
    assert code == 2
    assert "--engine ray is not available" in err and "gem-agents[ray]" in " ".join(err.split())


# ---------------------------------------------------------------------------------------------------------
# with a local Ray (2 CPUs)


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the module (starting one costs seconds); the engine reuses it."""
    if not HAVE_RAY:
        pytest.skip("ray is not installed (pip install 'gem-agents[ray]')")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             configure_logging=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_ray_equals_local_on_a_small_corpus(local_ray: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    ids = variant_corpus(corpus, copies=2)
    cfg = write_config(tmp_path / "c.yaml", rollouts=2)
    code, local, err = run(cfg, corpus, tmp_path / "local")
    assert code == 0, err
    code, ray_run, err = run(cfg, corpus, tmp_path / "ray", "--engine", "ray")
    assert code == 0, err
    assert ray_run is not None and local is not None
    assert ray_run["totals"] == local["totals"] and ray_run["this_run"]["processed"] == len(ids)
    a, b = snapshot(tmp_path / "local"), snapshot(tmp_path / "ray")
    assert set(b["documents"]) == set(ids)
    assert b == a
    assert sum(1 for v in b["trajectories"].values() if v[0]) > 0
    store = RunStore(tmp_path / "ray", readonly=True)
    assert store.get_meta("engine") == "ray" and store.get_meta("ray")["workers"] == 2
    assert store.get_meta("config") == RunConfig.model_validate({"seed": 0, "rollouts": 2,
                                                                 "refine_rounds": 0}).model_dump(mode="json")
    store.close()


@needs_ray
def test_ray_resumes_a_local_run_exactly_once(local_ray: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "docs.jsonl"
    ids = variant_corpus(corpus, copies=2)
    half = tmp_path / "half.jsonl"
    lines = corpus.read_text().splitlines(keepends=True)
    half.write_text("".join(lines[: len(lines) // 2]))
    cfg = write_config(tmp_path / "c.yaml")
    code, first, err = run(cfg, half, tmp_path / "run")  # a local run that got half-way
    assert code == 0, err
    monkeypatch.setenv("GEM_RAY_WORKERS", "1")
    code, second, err = run(cfg, corpus, tmp_path / "run", "--engine", "ray")
    assert code == 0, err
    store = RunStore(tmp_path / "run", readonly=True)
    assert store.get_meta("ray")["workers"] == 1
    store.close()
    assert second is not None and second["this_run"]["skipped"] == len(lines) // 2
    assert second["this_run"]["processed"] == len(ids) - len(lines) // 2
    assert check_run(tmp_path / "run", ids) == []
    code, third, err = run(cfg, corpus, tmp_path / "run", "--engine", "ray")
    assert code == 0 and third is not None and third["this_run"]["processed"] == 0
    assert third["totals"] == second["totals"]


@needs_ray
def test_ray_under_ten_percent_faults_matches_local(local_ray: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    ids = variant_corpus(corpus, copies=2)
    code, _, err = run(write_config(tmp_path / "s.yaml"), corpus, tmp_path / "reference")
    assert code == 0, err
    scenarios = reference_scenarios(tmp_path / "reference")
    faults = Faults.at_rate(0.10, seed=4, keyed=True, retry_after_s=0.01, timeout_s=3.0)
    with FakeOpenAIServer(RoleResponder(scenarios), faults=faults) as srv:
        # A client timeout well above a loaded machine's answer time: only the injected hangs time out,
        # so both engines meet exactly the same failures (0.5 s let ordinary answers time out at load 20).
        cfg = write_config(tmp_path / "m.yaml", srv.base_url, max_retries=2, timeout_s=2.0)
        code, ray_run, err = run(cfg, corpus, tmp_path / "ray", "--engine", "ray")
        assert code == 0, err
        on_ray = srv.summary()
        srv.reset()
        srv.faults = faults  # reseed: the local run meets the same faults
        code, local, err = run(cfg, corpus, tmp_path / "local")
        assert code == 0, err
    assert on_ray["faulted_requests"] > 0
    assert check_run(tmp_path / "ray", ids) == []
    assert ray_run is not None and local is not None and ray_run["totals"] == local["totals"]
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")


@needs_ray
def test_ray_stops_with_the_real_reason_when_the_store_is_full(local_ray: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk under Ray: the run stops naming it (not "cannot rollback – no transaction is active")."""
    from gem_agents.run import ray_engine
    from gem_agents.run.store import StoreWriteError

    class FullStore(RunStore):
        def finish_many(self, outcomes):  # type: ignore[no-untyped-def]
            self._db.execute("PRAGMA max_page_count = 1")  # the file cannot grow: a real SQLITE_FULL
            return super().finish_many(outcomes)

    monkeypatch.setattr(ray_engine, "RunStore", FullStore)
    text = (Path(__file__).resolve().parents[3] / "gem_agents" / "samples" / "share_a_printer.md").read_text()
    docs = [Document(id=f"d{i}", text=text) for i in range(3)]
    with pytest.raises(StoreWriteError, match="full") as info:
        ray_engine.run(RunConfig(rollouts=1, refine_rounds=0), docs, tmp_path / "run", workers=1)
    assert "no transaction is active" not in str(info.value)
