"""The pipeline's checkpointer: LangGraph's SqliteSaver, driven from the event loop without a thread hop.

`AsyncSqliteSaver` sends every statement through aiosqlite's worker thread; with many documents in
flight the handoffs (and the GIL switches they cost) dominated a run — measured at 3-4× fewer
documents per second than with no checkpointer. Checkpoint statements are small local SQLite
writes (WAL, synchronous=NORMAL: microseconds, no fsync), so running them inline on the loop is
cheaper than any handoff. Only the async methods the pipeline uses are added; each calls its
synchronous twin.

The plain pipeline loop (`graphs.pipeline.run_pipeline_plain`, every bulk run) does not write
LangGraph checkpoints: after each stage it saves the document's state as one JSON row in a table of
its own (`pipeline_stages`: thread id, next node, state), replaced in place. A thread is either a
LangGraph thread (a run with GEM_PIPELINE=graph, or a run directory from before the plain loop) or a
stage row, and it resumes on the path that began it. JSON read back is data only, never code.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver

from graphs.serde import UnsafeCheckpoint, strict_serde

STAGE_TABLE = """CREATE TABLE IF NOT EXISTS pipeline_stages (
    thread_id TEXT PRIMARY KEY, next TEXT NOT NULL, state TEXT NOT NULL)"""


class LoopSqliteSaver(SqliteSaver):
    """SqliteSaver with inline async methods (for `astream`/`ainvoke` on one event loop)."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """See SqliteSaver.get_tuple."""
        return self.get_tuple(config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        """See SqliteSaver.list."""
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        """See SqliteSaver.put."""
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        """See SqliteSaver.put_writes."""
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """See SqliteSaver.delete_thread."""
        self.delete_thread(thread_id)

    def setup(self) -> None:
        """LangGraph's tables and the plain loop's stage table."""
        if self.is_setup:
            return
        super().setup()
        self.conn.execute(STAGE_TABLE)
        self.conn.commit()

    def delete_thread(self, thread_id: str) -> None:
        """A thread's LangGraph checkpoints and its stage row."""
        super().delete_thread(thread_id)
        with self.cursor() as cur:
            cur.execute("DELETE FROM pipeline_stages WHERE thread_id = ?", (str(thread_id),))

    def thread_ids(self) -> set[str]:
        """Every thread with a checkpoint or a stage row (documents left half-done by an earlier run)."""
        self.setup()
        with self.lock:
            return ({r[0] for r in self.conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
                    | {r[0] for r in self.conn.execute("SELECT thread_id FROM pipeline_stages")})

    def put_stage(self, thread_id: str, next_node: str, state: dict[str, Any]) -> None:
        """Save a document's pipeline state after a stage (replacing the last one); `next_node` runs next."""
        # stdlib json, not orjson: NaN and integers past 64 bits round-trip (orjson would null or refuse them).
        row = (str(thread_id), next_node, json.dumps(state, ensure_ascii=False, separators=(",", ":")))
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO pipeline_stages (thread_id, next, state) VALUES (?, ?, ?)", row)

    def get_stage(self, thread_id: str) -> tuple[dict[str, Any], str] | None:
        """(state, next node) saved for a thread by the plain loop; None when it has none or it does not parse."""
        with self.cursor(transaction=False) as cur:
            got = cur.execute("SELECT next, state FROM pipeline_stages WHERE thread_id = ?",
                              (str(thread_id),)).fetchone()
        if got is None:
            return None
        try:
            state = json.loads(got[1])
        except ValueError:
            return None  # a torn or edited row: the document starts over (the store keeps it exactly once)
        return (state, str(got[0])) if isinstance(state, dict) else None


@contextmanager
def open_checkpointer(path: str | Path) -> Iterator[LoopSqliteSaver]:
    """A checkpointer on the SQLite file `path` (WAL, synchronous=NORMAL), closed on exit."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
    try:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise UnsafeCheckpoint(f"{path}: not a usable checkpoint file ({exc})") from None
        # Survives any process kill; a power cut may lose the newest checkpoints, which costs a
        # redone stage, never a wrong record (the run store itself is synchronous=FULL).
        conn.execute("PRAGMA synchronous=NORMAL")
        saver = LoopSqliteSaver(conn, serde=strict_serde())  # a tampered entry is refused, never run
        try:
            saver.setup()
        except sqlite3.DatabaseError as exc:
            raise UnsafeCheckpoint(f"{path}: not a usable checkpoint file ({exc})") from None
        yield saver
    finally:
        conn.close()
