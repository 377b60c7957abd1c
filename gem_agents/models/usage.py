"""Token accounting per stage, from each reply's usage (cache hits are counted apart)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class StageUsage:
    """Tokens and calls of one stage."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    saved_tokens: int = 0


@dataclass
class UsageMeter:
    """Thread-safe per-stage counters."""

    stages: dict[str, StageUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, usage: dict[str, int] | None, *, cached: bool) -> None:
        """Count one call: spent tokens for a real call, saved tokens for a cache hit."""
        usage = usage or {}
        tokens_in = int(usage.get("input_tokens", 0) or 0)
        tokens_out = int(usage.get("output_tokens", 0) or 0)
        with self._lock:
            s = self.stages.setdefault(stage, StageUsage())
            if cached:
                s.cached_calls += 1
                s.saved_tokens += tokens_in + tokens_out
            else:
                s.calls += 1
                s.input_tokens += tokens_in
                s.output_tokens += tokens_out

    def totals(self) -> dict[str, int]:
        """Sums over all stages."""
        with self._lock:
            rows = list(self.stages.values())
        return {
            "calls": sum(r.calls for r in rows),
            "cached_calls": sum(r.cached_calls for r in rows),
            "input_tokens": sum(r.input_tokens for r in rows),
            "output_tokens": sum(r.output_tokens for r in rows),
            "saved_tokens": sum(r.saved_tokens for r in rows),
        }

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Per-stage figures as plain dicts (for the report)."""
        with self._lock:
            return {k: vars(v).copy() for k, v in sorted(self.stages.items())}
