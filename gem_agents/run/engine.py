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


@dataclass
class _LocalRun:
    """One invocation of the local engine: a feeder, `concurrency.documents` workers and one store writer.

    Documents flow feeder → `docs` queue → workers → `commits` queue → writer; both queues are bounded so
    a slow store or slow documents hold the feeder back instead of filling memory.
    """

    ctx: RunContext
    store: RunStore
    emit: EventSink
    usage_base: dict[str, dict[str, int]]
    # Documents with a checkpointed thread (left half-done by a killed run); None: ask per document.
    threads: set[str] | None
    summary: RunSummary = field(default_factory=RunSummary)
    fatal: list[BaseException] = field(default_factory=list)  # set when the store cannot be written
    last_usage: float = field(default_factory=time.monotonic)
    docs: asyncio.Queue[Document | None] = field(init=False)
    commits: asyncio.Queue[tuple[DocOutcome, float] | None] = field(init=False)

    def __post_init__(self) -> None:
        n = self.ctx.config.concurrency.documents
        self.docs = asyncio.Queue(maxsize=n * 2)
        self.commits = asyncio.Queue(maxsize=n * 4)

    def on_stage(self, doc_id: str, stage: str, update: dict[str, Any]) -> None:
        """A pipeline node finished for a document: one `stage` event."""
        self.emit({"event": "stage", "doc": doc_id, "stage": stage, "route": update.get("route"),
                   "status": update.get("status"), "seconds": (update.get("timings") or {}).get(stage)})

    async def process(self, doc: Document) -> None:
        """One document through the pipeline (bounded by `doc_timeout_s`); its outcome goes to the writer."""
        t0 = time.perf_counter()
        timeout = self.ctx.config.limits.doc_timeout_s
        self.emit({"event": "doc_start", "doc": doc.id})
        try:
            work = process_document(doc, self.ctx, self.on_stage, resume=self.threads is None or doc.id in self.threads)
            outcome = await (asyncio.wait_for(work, timeout) if timeout else work)
        except TimeoutError:
            outcome = failed_outcome(doc, f"timed out after {timeout:g} s", time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 — the document fails, the run goes on
            outcome = failed_outcome(doc, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        await self.commits.put((outcome, t0))

    async def worker(self) -> None:
        """Process documents until the feeder says there are no more."""
        while (doc := await self.docs.get()) is not None:
            if not self.fatal:  # once the store cannot be written, the rest are left for a resume
                await self.process(doc)

    async def feed(self, docs: Iterable[Document], finished: set[str], workers: int) -> None:
        """Queue every document not stored yet (duplicates and finished ones are counted, not queued)."""
        seen: set[str] = set()
        for doc in docs:
            if self.fatal:
                break
            self.summary.documents += 1
            if doc.id in seen:
                self.summary.duplicates += 1
                self.emit({"event": "duplicate", "doc": doc.id})
                continue
            seen.add(doc.id)
            if doc.id in finished:
                self.summary.skipped += 1
                self.emit({"event": "skip", "doc": doc.id})
                continue
            await self.docs.put(doc)
        for _ in range(workers):
            await self.docs.put(None)

    async def _next_batch(self) -> tuple[list[tuple[DocOutcome, float]], bool]:
        """The outcomes waiting now (at least one, at most COMMIT_BATCH) and whether the end was reached."""
        item = await self.commits.get()
        batch: list[tuple[DocOutcome, float]] = []
        while item is not None:
            batch.append(item)
            if self.commits.empty() or len(batch) >= COMMIT_BATCH:
                break
            item = self.commits.get_nowait()
        return batch, item is None

    async def writer(self) -> None:
        """Group commit: outcomes that finish together share one transaction (one fsync).

        A document whose outcome is not committed yet when the process dies is simply done again on
        resume. The writer never dies while workers wait on it: after a fatal error it drains the queue.
        """
        done = False
        while not done:
            batch, done = await self._next_batch()
            if not batch or self.fatal:
                continue
            try:
                await self.write_batch(batch)
            except Exception as exc:  # noqa: BLE001 — recorded, then raised once the workers have stopped
                self.fatal.append(exc)

    async def write_batch(self, batch: list[tuple[DocOutcome, float]]) -> None:
        """Store a batch, drop the finished threads' checkpoints, save usage now and then, emit `doc` events."""
        written = await asyncio.to_thread(commit_outcomes, self.store, [o for o, _ in batch])
        if self.ctx.checkpointer is not None:
            for o, _ in batch:
                await self.ctx.checkpointer.adelete_thread(o.doc_id)  # stored: its thread is done
        if time.monotonic() - self.last_usage > USAGE_EVERY_S:
            self.last_usage = time.monotonic()
            await asyncio.to_thread(self.store.set_meta, "usage", self.usage())
        for (outcome, t0), w in zip(batch, written, strict=True):
            self.emit(self.summary.count(outcome, w, t0))

    def usage(self) -> dict[str, dict[str, int]]:
        """Usage of every run in this directory so far (the earlier runs' plus this one's)."""
        return merge_usage(self.usage_base, self.ctx.hub.meter.as_dict())


async def run_documents(ctx: RunContext, docs: Iterable[Document], *, on_event: EventSink | None = None,
                        total: int | None = None) -> RunSummary:
    """Process every document not yet in the store; returns counts for this invocation."""
    store = ctx.store
    if store is None:
        raise RuntimeError("run_documents needs a context with a store")
    t_start = time.perf_counter()
    threads = ctx.checkpointer.thread_ids() if hasattr(ctx.checkpointer, "thread_ids") else None
    run = _LocalRun(ctx, store, on_event or (lambda e: None), store.get_meta("usage", {}) or {}, threads)
    finished = store.finished_ids()
    run.emit({"event": "start", "total": total, "already_done": len(finished)})
    n_workers = ctx.config.concurrency.documents
    writer_task = asyncio.create_task(run.writer())
    workers = [asyncio.create_task(run.worker()) for _ in range(n_workers)]
    try:
        await run.feed(docs, finished, n_workers)
        await asyncio.gather(*workers)
        await run.commits.put(None)
        await writer_task
    finally:
        for w in [*workers, writer_task]:
            w.cancel()
        try:
            store.set_meta("usage", run.usage())
        except sqlite3.Error:
            pass  # the store cannot be written: the reason is raised below (or already on its way)
    if run.fatal:
        raise StoreWriteError(f"the run stopped: {run.fatal[0]}; finished documents are stored — free the "
                              "space or fix the folder, then run the same command again") from run.fatal[0]
    run.summary.seconds = round(time.perf_counter() - t_start, 3)
    run.emit({"event": "end", **run.summary.as_dict()})
    return run.summary
