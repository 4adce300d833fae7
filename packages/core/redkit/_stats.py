"""Counters every component increments: round trips, cache hits and misses, fail-open calls, ...

Read them with ``kit.stats.snapshot()``; they are per client object and per process.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["Stats"]


class Stats:
    """Thread-safe monotonically increasing counters, named by strings."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def round_trip(self, commands: int) -> None:
        """Count one round trip carrying ``commands`` commands (one lock for both counters)."""
        with self._lock:
            counts = self._counts
            counts["round_trips"] += 1
            counts["commands"] += commands

    def get(self, name: str, default: int = 0) -> int:
        """Current value of counter ``name`` (``default`` when never incremented)."""
        return self._counts.get(name, default)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"Stats({self.snapshot()!r})"
