"""The run store: one SQLite file (WAL) per run directory, where every record is written.

Why SQLite and not JSONL: a document's outcome — its status, relevance, workflow and every
trajectory it produced — is committed in ONE transaction together with its done-mark. A process
killed at any instant (`kill -9`) leaves either the whole outcome or none of it, never a torn
line or a duplicate; a resumed run asks the store which documents are finished and skips them.
WAL mode lets the report and exports read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gem_agents.io import InputError, redact
from tools_runtime.records import Relevance, Trajectory, Workflow
from tools_runtime.tasks import Task, TaskRejection

STORE_NAME = "run.sqlite"
Status = Literal["kept", "rejected", "failed"]
Kind = Literal["original", "refined"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id    TEXT PRIMARY KEY,
    source    TEXT NOT NULL DEFAULT '',
    text      TEXT NOT NULL DEFAULT '',
    status    TEXT NOT NULL,
    stage     TEXT NOT NULL,
    relevance TEXT,
    workflow  TEXT,
    reasons   TEXT NOT NULL DEFAULT '[]',
    error     TEXT,
    seconds   REAL NOT NULL DEFAULT 0,
    finished  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trajectories (
    id       TEXT PRIMARY KEY,
    doc_id   TEXT NOT NULL REFERENCES documents(doc_id),
    kind     TEXT NOT NULL,
    passed   INTEGER NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trajectories_doc ON trajectories(doc_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Stage 3a's output per document: every task written, valid (a Task, simulated) or rejected (a
-- TaskRejection, never simulated). With `documents` (relevance, workflow, reasons) and `trajectories`
-- it gives the funnel documents → relevant → environment valid → tasks valid → rollouts verified.
CREATE TABLE IF NOT EXISTS tasks (
    task_id  TEXT NOT NULL,
    doc_id   TEXT NOT NULL REFERENCES documents(doc_id),
    valid    INTEGER NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (doc_id, task_id)
);
"""


class StoreWriteError(RuntimeError):
    """The run store cannot be written at all (disk full, read-only, I/O error): the run must stop."""


@dataclass
class DocOutcome:
    """Everything one document produced, written at once when it ends."""

    doc_id: str
    status: Status
    stage: str
    source: str = ""
    text: str = ""
    relevance: Relevance | None = None
    workflow: Workflow | None = None
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    trajectories: list[tuple[Kind, Trajectory]] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    task_rejections: list[TaskRejection] = field(default_factory=list)


class RunStore:
    """Read and write one run's records."""

    def __init__(self, run_dir: str | Path, *, readonly: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_NAME
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"{self.run_dir}: not a run directory (no {STORE_NAME})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        self._db = sqlite3.connect(uri, uri=readonly, check_same_thread=False, isolation_level=None, timeout=60)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(documents)")}
                if "text" not in columns:  # a run directory written before texts were kept
                    self._db.execute("ALTER TABLE documents ADD COLUMN text TEXT NOT NULL DEFAULT ''")
            else:
                self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # fails at once on a non-database
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InputError(f"{self.path}: not a usable run store ({exc}); the file is corrupt or truncated") \
                from None

    # -- writing ---------------------------------------------------------------------------
    def finish(self, outcome: DocOutcome) -> bool:
        """Commit a document's outcome atomically; False when it had already been finished."""
        return self.finish_many([outcome])[0]

    def finish_many(self, outcomes: list[DocOutcome]) -> list[bool]:
        """Commit several outcomes in one transaction (one fsync for all); per outcome, False if already stored."""
        written: list[bool] = []
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for outcome in outcomes:
                    if cur.execute("SELECT 1 FROM documents WHERE doc_id = ?", (outcome.doc_id,)).fetchone():
                        written.append(False)
                        continue
                    # Redacted: an endpoint's error body may echo the key; no configured key reaches the disk.
                    rows = [(t.id, outcome.doc_id, kind, int(bool(t.verdict and t.verdict.passed)),
                             redact(t.model_dump_json())) for kind, t in outcome.trajectories]
                    cur.execute(
                        "INSERT INTO documents (doc_id, source, text, status, stage, relevance, workflow, reasons, "
                        "error, seconds, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (outcome.doc_id, redact(outcome.source), redact(outcome.text), outcome.status, outcome.stage,
                         redact(outcome.relevance.model_dump_json()) if outcome.relevance else None,
                         redact(outcome.workflow.model_dump_json()) if outcome.workflow else None,
                         redact(json.dumps(outcome.reasons, ensure_ascii=False)),
                         redact(outcome.error) if outcome.error else outcome.error, outcome.seconds, time.time()))
                    cur.executemany("INSERT INTO trajectories (id, doc_id, kind, passed, record) VALUES (?, ?, ?, ?, ?)",
                                    rows)
                    task_rows = [(t.id, outcome.doc_id, 1, t.model_dump_json()) for t in outcome.tasks]
                    task_rows += [(r.task_id, outcome.doc_id, 0, r.model_dump_json()) for r in outcome.task_rejections]
                    cur.executemany("INSERT OR REPLACE INTO tasks (task_id, doc_id, valid, record) VALUES (?, ?, ?, ?)",
                                    task_rows)
                    written.append(True)
                cur.execute("COMMIT")
            except BaseException as exc:
                # SQLite may already have rolled back (a full disk does): a second ROLLBACK would raise
                # "no transaction is active" and hide the real reason.
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if isinstance(exc, sqlite3.OperationalError | OSError):
                    raise StoreWriteError(f"{self.path}: cannot write the run store: {exc}") from exc
                raise
        return written

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under `key` (config, usage, timings)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (key, redact(json.dumps(value, ensure_ascii=False, default=str))))

    # -- reading ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`."""
        with self._lock:
            try:
                row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                row = None  # a store whose creator was killed before its tables: nothing recorded yet
        return json.loads(row[0]) if row else default

    def finished_ids(self) -> set[str]:
        """Ids of documents that have ended (kept, rejected or failed)."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT doc_id FROM documents")}

    def documents(self) -> list[dict[str, Any]]:
        """Every finished document as a dict (text kept; relevance/workflow/reasons decoded)."""
        with self._lock:
            cur = self._db.execute("SELECT doc_id, source, text, status, stage, relevance, workflow, reasons, "
                                   "error, seconds FROM documents ORDER BY finished, doc_id")
            rows = cur.fetchall()
        out = []
        for doc_id, source, text, status, stage, rel, wf, reasons, err, secs in rows:
            out.append({"doc_id": doc_id, "source": source, "text": text, "status": status, "stage": stage,
                        "relevance": json.loads(rel) if rel else None, "workflow": json.loads(wf) if wf else None,
                        "reasons": json.loads(reasons), "error": err, "seconds": secs})
        return out

    def trajectories(self, *, kind: Kind | None = None, verified_only: bool = False) -> Iterator[Trajectory]:
        """Stored trajectories, in document order."""
        sql = "SELECT record FROM trajectories"
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if verified_only:
            where.append("passed = 1")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid"
        with self._lock:
            records = [r[0] for r in self._db.execute(sql, args)]
        for rec in records:
            yield Trajectory.model_validate_json(rec)

    def trajectory_kinds(self) -> dict[str, str]:
        """Trajectory id → kind (original or refined)."""
        with self._lock:
            return dict(self._db.execute("SELECT id, kind FROM trajectories"))

    def _task_rows(self, valid: int) -> list[tuple[str, str]]:
        with self._lock:
            try:
                return self._db.execute("SELECT doc_id, record FROM tasks WHERE valid = ? ORDER BY doc_id, task_id",
                                        (valid,)).fetchall()
            except sqlite3.OperationalError:  # a run directory written before tasks were kept
                return []

    def tasks(self) -> Iterator[Task]:
        """The valid tasks of the run (each was simulated), in document order."""
        for _, rec in self._task_rows(1):
            yield Task.model_validate_json(rec)

    def task_rejections(self) -> Iterator[dict[str, Any]]:
        """The rejected tasks: `{task_id, code, reason, doc_id}` each (never simulated)."""
        for doc_id, rec in self._task_rows(0):
            yield {**json.loads(rec), "doc_id": doc_id}

    def counts(self) -> dict[str, Any]:
        """Documents by status and trajectories by kind and verdict."""
        with self._lock:
            docs = dict(self._db.execute("SELECT status, COUNT(*) FROM documents GROUP BY status"))
            trajs = self._db.execute("SELECT kind, passed, COUNT(*) FROM trajectories GROUP BY kind, passed").fetchall()
        out: dict[str, Any] = {"documents": docs, "trajectories": {}}
        for kind, passed, n in trajs:
            out["trajectories"].setdefault(kind, {"verified": 0, "failed": 0})["verified" if passed else "failed"] += n
        return out

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
