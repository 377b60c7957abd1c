"""Which role a model is playing right now: providers report calls, progress displays listen.

A process-wide list of listeners, so an in-process model (the embedded default) can show in the
progress display which role it is working for without the provider knowing about the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_LISTENERS: list[Listener] = []


def add_listener(fn: Listener) -> None:
    """Receive every activity event (`{"event": "call_start"|"call_end", "role", "model", ...}`)."""
    _LISTENERS.append(fn)


def remove_listener(fn: Listener) -> None:
    """Stop receiving activity events."""
    if fn in _LISTENERS:
        _LISTENERS.remove(fn)


def report(event: dict[str, Any]) -> None:
    """Send one event to every listener; a failing listener never breaks a model call."""
    for fn in list(_LISTENERS):
        try:
            fn(event)
        except Exception:  # noqa: BLE001 — display code must not fail the run
            continue
