"""Counters every component increments: round trips, cache hits and misses, fail-open calls, ...

Read them with ``kit.stats.snapshot()``; they are per client object and per process.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Stats"]

_ROUND_TRIP = ""  # pending entry of round_trip(): one round trip and its commands
_FOLD_AT = 4096  # pending increments folded into the totals by the thread that adds this one


class Stats:
    """Thread-safe monotonically increasing counters, named by strings.

    An increment is one append to a deque (atomic, no lock: it sits on every Redis call); the
    pending increments are folded into the totals under a lock when they are read, or when
    :data:`_FOLD_AT` have piled up.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._pending: deque[tuple[str, int]] = deque()
        self._lock = threading.Lock()

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        pending = self._pending
        pending.append((name, amount))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def round_trip(self, commands: int) -> None:
        """Count one round trip carrying ``commands`` commands."""
        pending = self._pending
        pending.append((_ROUND_TRIP, commands))
        if len(pending) >= _FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        with self._lock:
            counts, pop = self._counts, self._pending.popleft
            for _ in range(len(self._pending)):  # appends made meanwhile wait for the next fold
                name, amount = pop()
                if name == _ROUND_TRIP:
                    counts["round_trips"] = counts.get("round_trips", 0) + 1
                    name = "commands"
                counts[name] = counts.get(name, 0) + amount

    def get(self, name: str, default: int = 0) -> int:
        """Current value of counter ``name`` (``default`` when never incremented)."""
        self._fold()
        return self._counts.get(name, default)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        self._fold()
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"Stats({self.snapshot()!r})"
