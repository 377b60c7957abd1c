"""The local engine: documents through the pipeline with bounded asyncio concurrency, exactly once.

A fixed pool of `concurrency.documents` workers pulls documents from a stream, so a slow or
failing document holds one slot and never stalls the others; rollouts of all documents share
`concurrency.rollouts`; each model endpoint has its own limit (the hub). A document ends when its
outcome is committed to the store in one transaction; documents the store already holds are
skipped, so running the same command again after a kill finishes the rest and redoes nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gem_agents.run.context import RunContext
from gem_agents.run.document import process_document
from gem_agents.run.store import DocOutcome, RunStore, StoreWriteError
from tools_runtime.records import Document

Event = dict[str, Any]
EventSink = Callable[[Event], None]

USAGE_EVERY_S = 1.0
COMMIT_BATCH = 256
USAGE_FIELDS = ("calls", "cached_calls", "input_tokens", "output_tokens", "saved_tokens")


@dataclass
class RunSummary:
    """What one invocation of the engine did."""

    documents: int = 0
    skipped: int = 0
    processed: int = 0
    duplicates: int = 0
    status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the JSON log and `--json`)."""
        return dict(vars(self))

    def count(self, outcome: DocOutcome, written: bool, t0: float) -> dict[str, Any]:
        """Count a stored outcome and return its `doc` event (the same for every engine)."""
        self.processed += 1
        self.status[outcome.status] = self.status.get(outcome.status, 0) + 1
        return {"event": "doc", "doc": outcome.doc_id, "status": outcome.status, "stage": outcome.stage,
                "written": written, "reasons": outcome.reasons[:5], "error": outcome.error,
                "trajectories": len(outcome.trajectories),
                "verified": sum(1 for _, t in outcome.trajectories if t.verdict and t.verdict.passed),
                "seconds": round(time.perf_counter() - t0, 4)}


def merge_usage(base: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per-stage usage summed over runs (a resumed run adds to what the killed one spent)."""
    out = {k: dict(v) for k, v in base.items()}
    for stage, row in more.items():
        acc = out.setdefault(stage, {f: 0 for f in USAGE_FIELDS})
        for f in USAGE_FIELDS:
            acc[f] = int(acc.get(f, 0)) + int(row.get(f, 0))
    return out


def commit_outcomes(store: RunStore, outcomes: list[DocOutcome]) -> list[bool]:
    """Store outcomes in one transaction; a record that cannot be stored fails its document with the reason.

    Raises StoreWriteError when the store cannot be written at all (disk full, read-only): the run stops.
    """
    try:
        return store.finish_many(outcomes)
    except StoreWriteError:
        raise
    except (sqlite3.Error, ValueError, OverflowError):
        # One bad record (a clashing id, text SQLite cannot encode) must not sink the batch: one by one.
        written = []
        for o in outcomes:
            try:
                written.append(store.finish(o))
            except StoreWriteError:
                raise
            except (sqlite3.Error, ValueError, OverflowError) as exc:
                reason = f"could not store its records: {type(exc).__name__}: {exc}"
                safe = replace(o, status="failed", trajectories=[], text="", relevance=None, workflow=None,
                               reasons=[], error=reason, source=o.source.encode("utf-8", "replace").decode())
                try:
                    written.append(store.finish(safe))
                except (sqlite3.Error, ValueError, OverflowError) as again:
                    raise StoreWriteError(f"{store.path}: cannot store document {o.doc_id!r}: {again}") from again
        return written


def failed_outcome(doc: Document, error: str, seconds: float) -> DocOutcome:
    """The outcome of a document whose pipeline raised or ran out of time."""
    return DocOutcome(doc_id=doc.id, source=doc.source, text=doc.text, status="failed", stage="pipeline", error=error,
                      seconds=round(seconds, 4))


async def run_documents(ctx: RunContext, docs: Iterable[Document], *, on_event: EventSink | None = None,
                        total: int | None = None) -> RunSummary:
    """Process every document not yet in the store; returns counts for this invocation."""
    store = ctx.store
    if store is None:
        raise RuntimeError("run_documents needs a context with a store")
    emit = on_event or (lambda e: None)
    summary = RunSummary()
    t_start = time.perf_counter()
    finished = store.finished_ids()
    usage_base = store.get_meta("usage", {}) or {}
    seen: set[str] = set()
    # Documents with a checkpointed thread (left half-done by a killed run); None: ask per document.
    threads = ctx.checkpointer.thread_ids() if hasattr(ctx.checkpointer, "thread_ids") else None
    timeout = ctx.config.limits.doc_timeout_s
    queue: asyncio.Queue[Document | None] = asyncio.Queue(maxsize=ctx.config.concurrency.documents * 2)
    emit({"event": "start", "total": total, "already_done": len(finished)})

    def on_stage(doc_id: str, stage: str, update: dict[str, Any]) -> None:
        emit({"event": "stage", "doc": doc_id, "stage": stage, "route": update.get("route"),
              "status": update.get("status"), "seconds": (update.get("timings") or {}).get(stage)})

    commits: asyncio.Queue[tuple[DocOutcome, float] | None] = asyncio.Queue(
        maxsize=ctx.config.concurrency.documents * 4)

    async def one(doc: Document) -> None:
        t0 = time.perf_counter()
        emit({"event": "doc_start", "doc": doc.id})
        try:
            work = process_document(doc, ctx, on_stage, resume=threads is None or doc.id in threads)
            outcome = await (asyncio.wait_for(work, timeout) if timeout else work)
        except TimeoutError:
            outcome = failed_outcome(doc, f"timed out after {timeout:g} s", time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 — the document fails, the run goes on
            outcome = failed_outcome(doc, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        await commits.put((outcome, t0))

    def commit(outcomes: list[DocOutcome]) -> list[bool]:
        return commit_outcomes(store, outcomes)

    fatal: list[BaseException] = []  # set when the store cannot be written: the run stops with the reason

    async def writer() -> None:
        # Group commit: outcomes that finish together share one transaction (one fsync). A document
        # whose outcome is not committed yet when the process dies is simply done again on resume.
        # The writer never dies while workers wait on it: after a fatal error it drains the queue.
        done = False
        while not done:
            item = await commits.get()
            batch: list[tuple[DocOutcome, float]] = []
            while item is not None:
                batch.append(item)
                if commits.empty() or len(batch) >= COMMIT_BATCH:
                    break
                item = commits.get_nowait()
            done = item is None
            if not batch or fatal:
                continue
            try:
                await write_batch(batch)
            except Exception as exc:  # noqa: BLE001 — recorded, then raised once the workers have stopped
                fatal.append(exc)

    async def write_batch(batch: list[tuple[DocOutcome, float]]) -> None:
        nonlocal last_usage
        written = await asyncio.to_thread(commit, [o for o, _ in batch])
        if ctx.checkpointer is not None:
            for o, _ in batch:
                await ctx.checkpointer.adelete_thread(o.doc_id)  # stored: its thread is done
        if time.monotonic() - last_usage > USAGE_EVERY_S:
            last_usage = time.monotonic()
            await asyncio.to_thread(store.set_meta, "usage", merge_usage(usage_base, ctx.hub.meter.as_dict()))
        for (outcome, t0), w in zip(batch, written, strict=True):
            emit(summary.count(outcome, w, t0))

    last_usage = time.monotonic()

    async def worker() -> None:
        while (doc := await queue.get()) is not None:
            if not fatal:  # once the store cannot be written, the rest are left for a resume
                await one(doc)

    writer_task = asyncio.create_task(writer())
    workers = [asyncio.create_task(worker()) for _ in range(ctx.config.concurrency.documents)]
    try:
        for doc in docs:
            if fatal:
                break
            summary.documents += 1
            if doc.id in seen:
                summary.duplicates += 1
                emit({"event": "duplicate", "doc": doc.id})
                continue
            seen.add(doc.id)
            if doc.id in finished:
                summary.skipped += 1
                emit({"event": "skip", "doc": doc.id})
                continue
            await queue.put(doc)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        await commits.put(None)
        await writer_task
    finally:
        for w in [*workers, writer_task]:
            w.cancel()
        try:
            store.set_meta("usage", merge_usage(usage_base, ctx.hub.meter.as_dict()))
        except sqlite3.Error:
            pass  # the store cannot be written: the reason is raised below (or already on its way)
    if fatal:
        raise StoreWriteError(f"the run stopped: {fatal[0]}; finished documents are stored — free the "
                              "space or fix the folder, then run the same command again") from fatal[0]
    summary.seconds = round(time.perf_counter() - t_start, 3)
    emit({"event": "end", **summary.as_dict()})
    return summary
