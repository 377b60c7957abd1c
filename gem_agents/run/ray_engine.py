"""The Ray engine: the same per-document pipeline, sharded over Ray workers, stored exactly once.

Each worker is a Ray actor that builds its own run context from the config and the run directory
(`open_run`): its own model clients (one endpoint per node when a role's `base_url` holds
`{node_ip}`), its own connection to the model call cache, and it runs `process_document` on the
documents it is given, several at once (`concurrency.documents` per worker). The driver is the
only writer of the run store: it commits each outcome in one transaction as soon as it comes
back, so the run directory has the same format and the same exactly-once guarantee as the local
engine — documents the store already holds are skipped, a killed run resumed (with either
engine) finishes the rest. Workers keep no per-document checkpoints: a document interrupted by a
kill is redone whole, and the model calls it had already made come from the cache.

With no address a local Ray is started on this machine (`num_cpus`, default 2); with one, the
driver joins that cluster (every node needs gem-agents installed in the same environment).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ray  # the `ray` extra; importing this module without it raises ImportError, which `gem run` reports

from gem_agents.config import ROLE_NAMES, RunConfig
from gem_agents.run.engine import RunSummary, commit_outcomes, failed_outcome, merge_usage
from gem_agents.run.ray_worker import DocWorker, outcome_from_dict
from gem_agents.run.store import RunStore
from tools_runtime.records import Document

Event = dict[str, Any]
EventSink = Callable[[Event], None]

LOCAL_NUM_CPUS = 2


# ---------------------------------------------------------------------------------------------------------
# the driver


def _init_ray(address: str | None, num_cpus: int, cfg: RunConfig) -> bool:
    """Join `address`, or start a local Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    if address:
        # Workers on other nodes do not inherit this shell: hand them the key variables the roles name.
        names = {getattr(cfg.roles, r).api_key_env for r in ROLE_NAMES} - {None}
        env = {n: os.environ[n] for n in sorted(names) if n and n in os.environ}
        ray.init(address=address, log_to_driver=True, configure_logging=False,
                 runtime_env={"env_vars": env} if env else None)
    else:
        # "local" always starts a fresh instance, never joins one found on the machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 object_store_memory=256 * 1024**2, log_to_driver=True, configure_logging=False)
    return True


def default_workers(pending: int) -> int:
    """$GEM_RAY_WORKERS, else one worker per CPU of the cluster; never more workers than documents."""
    wanted = os.environ.get("GEM_RAY_WORKERS", "").strip()
    if wanted:
        try:
            n = int(wanted)
        except ValueError:
            raise ValueError(f"GEM_RAY_WORKERS must be a whole number, got {wanted!r}") from None
    else:
        n = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(n, pending))


def run(cfg: RunConfig, docs: Iterable[Document], out: str | Path, *, address: str | None = None,
        cache_path: str | Path | None = None, on_event: EventSink | None = None, workers: int | None = None,
        num_cpus: int = LOCAL_NUM_CPUS, problems: list[Any] | None = None) -> RunSummary:
    """Process every document not yet in OUT's store over Ray; same store, same events as the local engine."""
    out = Path(out)
    emit = on_event or (lambda e: None)
    summary = RunSummary()
    t_start = time.perf_counter()
    store = RunStore(out)
    started = False
    actors: list[Any] = []
    try:
        if store.get_meta("config") is None:
            store.set_meta("config", cfg.model_dump(mode="json"))
        if problems is not None:
            store.set_meta("input_problems", [p.model_dump(mode="json") if hasattr(p, "model_dump") else p
                                              for p in problems])
        store.set_meta("engine", "ray")
        finished = store.finished_ids()
        usage_base = store.get_meta("usage", {}) or {}
        todo: list[Document] = []
        seen: set[str] = set()
        for doc in docs:
            summary.documents += 1
            if doc.id in seen:
                summary.duplicates += 1
                emit({"event": "duplicate", "doc": doc.id})
            elif doc.id in finished:
                seen.add(doc.id)
                summary.skipped += 1
                emit({"event": "skip", "doc": doc.id})
            else:
                seen.add(doc.id)
                todo.append(doc)
        emit({"event": "start", "total": summary.documents, "already_done": len(finished), "engine": "ray"})
        if todo:
            started = _init_ray(address, num_cpus, cfg)
            n_workers = workers or default_workers(len(todo))
            per_worker = cfg.concurrency.documents
            remote = ray.remote(
                num_cpus=1, max_restarts=1, max_task_retries=1, max_concurrency=per_worker)(DocWorker)
            cache = str(cache_path) if cache_path else None
            actors = [remote.options(scheduling_strategy="SPREAD").remote(
                cfg.model_dump(mode="json"), str(out.resolve()), cache, f"w{i}") for i in range(n_workers)]
            _drive(actors, todo, per_worker, store, summary, usage_base, emit)
            store.set_meta("ray", {"workers": n_workers, "per_worker": per_worker, "address": address or "local"})
    finally:
        for actor in actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001, S110 — a dead actor has nothing left to close
                pass
            ray.kill(actor)
        if started:
            ray.shutdown()
        store.close()
    summary.seconds = round(time.perf_counter() - t_start, 3)
    emit({"event": "end", **summary.as_dict()})
    return summary


def _drive(actors: list[Any], todo: list[Document], per_worker: int, store: RunStore, summary: RunSummary,
           usage_base: dict[str, Any], emit: EventSink) -> None:
    """Keep every worker busy with up to `per_worker` documents; commit each outcome as it returns."""
    queue = list(reversed(todo))  # pop() from the end keeps input order
    in_flight: dict[Any, tuple[Document, int, float]] = {}
    load = [0] * len(actors)
    usage_by_worker: dict[str, dict[str, Any]] = {}
    roles_seen = ""

    def submit() -> None:
        while queue:
            i = min(range(len(actors)), key=lambda k: load[k])
            if load[i] >= per_worker:
                return
            doc = queue.pop()
            ref = actors[i].process.remote(doc.model_dump(mode="json"))
            in_flight[ref] = (doc, i, time.perf_counter())
            load[i] += 1
            emit({"event": "doc_start", "doc": doc.id, "worker": f"w{i}"})

    submit()
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            doc, i, t0 = in_flight.pop(ref)
            load[i] -= 1
            try:
                result = ray.get(ref)
                outcome = outcome_from_dict(result["outcome"])
                for ev in result.get("events", []):
                    emit(ev)
                usage_by_worker[result["worker"]] = result.get("usage") or {}
                roles_seen = result.get("roles") or roles_seen
            except Exception as exc:  # noqa: BLE001 — a worker lost for good: the document fails with why
                outcome = failed_outcome(doc, f"ray worker failed: {type(exc).__name__}: {exc}",
                                         time.perf_counter() - t0)
            if outcome.doc_id != doc.id:  # never store an answer under the wrong document
                outcome = failed_outcome(doc, f"worker answered for {outcome.doc_id!r}", time.perf_counter() - t0)
            written = commit_outcomes(store, [outcome])[0]  # StoreWriteError stops the run with the reason
            usage = merge_usage(usage_base, {})
            for worker_usage in usage_by_worker.values():
                usage = merge_usage(usage, worker_usage)
            store.set_meta("usage", usage)
            if roles_seen:
                store.set_meta("roles", roles_seen)
            emit({**summary.count(outcome, written, t0), "worker": f"w{i}"})
        submit()
