"""Queue metrics, as the worker step writes them (``queue_step.lua``) and ``q.metrics()`` reads
them: jobs completed, failed and cancelled per minute (a ring of ``queue_metrics_minutes``
minutes), wait and run time histograms per minute (a ring of the last 60 minutes), and totals
since the start for Prometheus. All in one hash per queue, ``<queue>:metrics``, whose size is
bounded by the rings (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["BOUNDS", "HISTOGRAM_MINUTES", "Histogram", "Metrics", "parse_metrics"]

BOUNDS = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    900000,
    3600000,
)
"""Upper bounds of the histogram buckets, in ms (one more bucket counts longer durations);
the same as ``BOUNDS`` in ``queue_step.lua``."""
HISTOGRAM_MINUTES = 60
"""Minutes of per-minute histograms kept."""


@dataclass(frozen=True)
class Histogram:
    """Durations counted by bucket: ``counts[i]`` is how many were at most ``bounds[i]`` seconds
    (and above the bound before); the last count, longer than the last bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float | None = None
    """Seconds in all (kept for the totals only)."""

    @property
    def count(self) -> int:
        return sum(self.counts)

    def percentile(self, p: float) -> float | None:
        """An estimate of the ``p``-th percentile (0 to 100), in seconds: linear within its
        bucket (the last bucket, unbounded, gives its lower bound); None without data."""
        if not 0 <= p <= 100 or isinstance(p, bool):
            raise ValueError(f"a percentile is between 0 and 100, not {p!r}")
        total = self.count
        if total == 0:
            return None
        rank = p / 100 * total
        seen = 0
        for i, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = self.bounds[i - 1] if i > 0 else 0.0
                if i >= len(self.bounds):
                    return low
                return low + (self.bounds[i] - low) * max(0.0, rank - seen) / n
            seen += n
        return self.bounds[-1]  # pragma: no cover - rank <= total always lands above


@dataclass(frozen=True)
class Metrics:
    """A queue's metrics over its last ``minutes`` minutes, read from Redis (``q.metrics()``)."""

    queue: str
    start: datetime
    """The first minute of the lists (UTC); each list has one count per minute, oldest first."""
    completed: list[int]
    failed: list[int]
    cancelled: list[int]
    wait: Histogram
    """Wait before the first start (from the add, or from when a delayed job came due), over
    the last ``min(minutes, 60)`` minutes."""
    run: Histogram
    """Run time of each attempt that ended (completed, failed or retried), same window."""
    totals: dict[str, int] = field(default_factory=dict)
    """Since the metrics began: ``completed``, ``failed``, ``cancelled``."""

    @property
    def minutes(self) -> int:
        return len(self.completed)


def _int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def _seconds_bounds() -> tuple[float, ...]:
    return tuple(b / 1000 for b in BOUNDS)


def parse_metrics(
    queue: str, now_ms: int, raw: Mapping[bytes, bytes], minutes: int, kept: int
) -> Metrics:
    """The :class:`Metrics` of the last ``minutes`` minutes in the hash ``raw``, read at
    ``now_ms`` (Redis' clock); ``kept``: the ring's size when the hash does not say it."""
    fields = {k.decode("utf-8", "replace"): v for k, v in raw.items()}
    size = _int(fields.get("size")) or kept
    minute = now_ms // 60000
    first = minute - minutes + 1
    counts: dict[str, list[int]] = {"c": [], "f": [], "x": []}
    for m in range(first, minute + 1):
        slot = m % size if size else -1
        mine = size and m > minute - size and _int(fields.get(f"m:{slot}")) == m
        for kind, out in counts.items():
            out.append(_int(fields.get(f"{kind}:{slot}")) if mine else 0)
    buckets = len(BOUNDS) + 1
    hist = {"w": [0] * buckets, "r": [0] * buckets}
    for m in range(max(first, minute - HISTOGRAM_MINUTES + 1), minute + 1):
        hslot = m % HISTOGRAM_MINUTES
        if _int(fields.get(f"hm:{hslot}")) != m:
            continue
        for kind, out in hist.items():
            for b in range(buckets):
                out[b] += _int(fields.get(f"{kind}:{hslot}:{b + 1}"))
    bounds = _seconds_bounds()
    return Metrics(
        queue=queue,
        start=datetime.fromtimestamp(first * 60, timezone.utc),
        completed=counts["c"],
        failed=counts["f"],
        cancelled=counts["x"],
        wait=Histogram(bounds, tuple(hist["w"])),
        run=Histogram(bounds, tuple(hist["r"])),
        totals={
            "completed": _int(fields.get("ct")),
            "failed": _int(fields.get("ft")),
            "cancelled": _int(fields.get("xt")),
        },
    )


TOTAL_FIELDS: tuple[str, ...] = (
    "ct",
    "ft",
    "xt",
    "wsum",
    "rsum",
    *(f"wt:{b + 1}" for b in range(len(BOUNDS) + 1)),
    *(f"rt:{b + 1}" for b in range(len(BOUNDS) + 1)),
)
"""The fields of the totals since the start (what a Prometheus scrape reads)."""


def parse_totals(values: Sequence[Any]) -> tuple[dict[str, int], Histogram, Histogram]:
    """The totals (``TOTAL_FIELDS`` read by HMGET): counts, and the wait and run histograms."""
    got = [_int(v) for v in values]
    buckets = len(BOUNDS) + 1
    counts = {"completed": got[0], "failed": got[1], "cancelled": got[2]}
    bounds = _seconds_bounds()
    wait = Histogram(bounds, tuple(got[5 : 5 + buckets]), got[3] / 1000)
    run = Histogram(bounds, tuple(got[5 + buckets : 5 + 2 * buckets]), got[4] / 1000)
    return counts, wait, run


def check_minutes(minutes: object, kept: int) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise TypeError(f"minutes must be an int, not {type(minutes).__name__}")
    if not 1 <= minutes <= max(1, kept):
        raise ValueError(f"minutes must be between 1 and queue_metrics_minutes ({kept})")
    return minutes
