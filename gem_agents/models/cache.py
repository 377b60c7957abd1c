"""A persistent cache of model calls, so a re-run or a resume spends nothing twice.

Keyed by (provider, model, messages, tools, tool choice, output schema, sampling params, salt);
the salt keeps independent rollouts independent when their prompts happen to coincide. SQLite in
WAL mode: one file per run directory, safe across processes and crashes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gem_agents.io import InputError, redact
from tools_runtime.state import canonical_json


def cache_key(**parts: Any) -> str:
    """The hex key of one call."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


class CallCache:
    """Key → (reply message, usage) in SQLite; `None` path means an in-memory cache."""

    def __init__(self, path: str | Path | None = None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InputError(f"{self.path}: not a usable model call cache ({exc}); move it away or pass "
                             "another --cache") from None
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply for `key`, or None."""
        with self._lock:
            row = self._db.execute("SELECT reply FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, reply: dict[str, Any]) -> None:
        """Store a reply (first writer wins; replies for one key are interchangeable)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO calls (key, reply) VALUES (?, ?)",
                             (key, redact(json.dumps(reply, ensure_ascii=False))))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
