"""Turn the engine's events into rich progress bars per stage and an optional JSON-lines log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from rich.progress import Progress, TaskID

from gem_agents.cli.progress import make_progress
from gem_agents.io import redact
from gem_agents.models import activity

BARS = ("documents", "filter", "extract", "simulate", "refine")


class RunMonitor:
    """An event sink: advances one bar per stage and writes every event to the JSON log."""

    def __init__(self, total: int, *, quiet: bool = False, json_log: Path | None = None, refine: bool = True):
        self.progress: Progress = make_progress(quiet)
        self.tasks: dict[str, TaskID] = {}
        self._log: IO[str] | None = None
        self._json_log = json_log
        self.total = total
        self.refine = refine
        self.counts: dict[str, int] = {}
        self.model_calls: dict[str, dict[str, float]] = {}
        self._model_task: TaskID | None = None

    def __enter__(self) -> RunMonitor:
        if self._json_log is not None:
            self._json_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._json_log.open("a", encoding="utf-8")
        self.progress.__enter__()
        for name in BARS:
            if name == "refine" and not self.refine:
                continue
            # Later stages learn their totals as documents are routed to them.
            self.tasks[name] = self.progress.add_task(name, total=self.total if name in ("documents", "filter")
                                                      else 0)
        activity.add_listener(self.on_model)
        return self

    def on_model(self, event: dict[str, Any]) -> None:
        """An in-process model's call: show which role it is playing (one line under the stage bars)."""
        role = str(event.get("role") or "?")
        if event.get("event") == "call_start":
            what = f"model: playing {role} ({event.get('model')}, {event.get('prompt_tokens')} prompt tokens)"
        else:
            row = self.model_calls.setdefault(role, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                     "seconds": 0.0})
            row["calls"] += 1
            row["prompt_tokens"] += int(event.get("prompt_tokens") or 0)
            row["completion_tokens"] += int(event.get("completion_tokens") or 0)
            row["seconds"] = round(row["seconds"] + float(event.get("seconds") or 0), 3)
            what = "model: " + ", ".join(f"{r} {int(n['calls'])} calls" for r, n in self.model_calls.items())
        if self._model_task is None:
            self._model_task = self.progress.add_task(what, total=None)
        else:
            self.progress.update(self._model_task, description=what)

    def __exit__(self, *exc: object) -> None:
        activity.remove_listener(self.on_model)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]
        if self._log is not None:
            self._log.close()

    def _grow(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is not None:
            current = self.progress.tasks[self._index(task)].total or 0
            self.progress.update(task, total=current + 1)

    def _index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task)

    def __call__(self, event: dict[str, Any]) -> None:
        """Handle one engine event."""
        kind = event.get("event")
        if self._log is not None:
            line = json.dumps({"t": round(time.time(), 3), **event}, ensure_ascii=False, default=str)
            self._log.write(redact(line) + "\n")
            self._log.flush()
        if kind == "start" and event.get("already_done"):
            done = min(int(event["already_done"]), self.total)
            for name in ("documents", "filter"):
                self.progress.update(self.tasks[name], completed=done)
        elif kind in ("skip", "duplicate"):
            pass
        elif kind == "stage":
            stage = str(event.get("stage"))
            if stage in self.tasks:
                task = self.progress.tasks[self._index(self.tasks[stage])]
                if (task.total or 0) <= task.completed:  # a resumed document skipped the earlier routing
                    self.progress.update(task.id, total=task.completed + 1)
                self.progress.advance(task.id)
            route = event.get("route")
            if route in self.tasks and route != stage:
                self._grow(str(route))
        elif kind == "doc":
            status = str(event.get("status"))
            self.counts[status] = self.counts.get(status, 0) + 1
            self.progress.advance(self.tasks["documents"])
