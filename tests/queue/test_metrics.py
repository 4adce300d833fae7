"""Queue metrics: the workers count jobs completed, failed and cancelled per minute and record
wait and run time histograms in one bounded hash per queue; ``q.metrics()`` reads them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from redkit.queue import Histogram, Metrics, Unrecoverable
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, eventually, keys, serving


@REDIS_AND_MEMORY
async def test_finished_jobs_are_counted_with_their_wait_and_run_times(kit: Any) -> None:
    q = kit.queue("measured")

    @q.task(name="work")
    def work(ms: int) -> int:
        time.sleep(ms / 1000)
        if ms == 13:
            raise Unrecoverable("no")
        return ms

    for ms in (1, 40, 40, 13, 200):
        await call(work.enqueue(ms))
    cancelled = await call(work.enqueue(1))
    await call(cancelled.cancel())
    async with serving(q, concurrency=5):
        await eventually(lambda: _done(q, 5), 10, "five finished jobs")
    m = await call(q.metrics(5))
    assert isinstance(m, Metrics)
    assert m.minutes == 5
    assert sum(m.completed) == 4
    assert sum(m.failed) == 1
    assert sum(m.cancelled) == 1
    assert m.completed[-1] + m.completed[-2] == 4  # this minute (or the one before)
    assert m.totals == {"completed": 4, "failed": 1, "cancelled": 1}
    assert m.run.count == 5
    assert m.wait.count == 5  # the cancelled job never started
    # each run is measured at least as long as it slept (a loaded machine only adds), so the
    # sorted runs are bounded below: the third (p50) by 40 ms, the last by 200 ms
    assert m.run.percentile(50) >= 0.025
    assert m.run.percentile(100) >= 0.1
    assert m.run.percentile(10) <= m.run.percentile(50) <= m.run.percentile(100)
    assert (m.start.second, m.start.microsecond) == (0, 0)


async def _done(q: Any, n: int) -> bool:
    counts = await call(q.counts())
    return bool(counts["completed"] + counts["failed"] >= n)


def test_a_histograms_percentiles_are_estimated_within_buckets() -> None:
    hist = Histogram((0.01, 0.1, 1.0), (10, 0, 10, 0))
    assert hist.count == 20
    assert hist.percentile(0) == 0.0
    assert hist.percentile(25) == pytest.approx(0.005)
    assert hist.percentile(50) == pytest.approx(0.01)
    assert hist.percentile(75) == pytest.approx(0.55)
    assert Histogram((0.01,), (0, 3)).percentile(90) == 0.01  # beyond the last bound
    assert Histogram((0.01,), (0, 0)).percentile(50) is None
    with pytest.raises(ValueError, match="between 0 and 100"):
        hist.percentile(101)


async def test_old_minutes_are_overwritten_so_the_hash_stays_bounded(make_kit: Any) -> None:
    kit = make_kit(queue_metrics_minutes=3)
    q = kit.queue("ring")
    client = kit.client
    # a slot that holds a minute from long ago: the next count in that slot starts it again
    now_minute = int(time.time() // 60)
    for m in range(now_minute - 10, now_minute + 1):
        await call(client.hset(q._core.metrics, mapping={f"m:{m % 3}": m - 3, f"c:{m % 3}": 99}))
    await call(client.hset(q._core.metrics, mapping={f"hm:{now_minute % 60}": now_minute - 60}))
    await call(client.hset(q._core.metrics, f"w:{now_minute % 60}:1", 99))

    @q.task(name="quick")
    def quick() -> None:
        return None

    job = await call(quick.enqueue())
    async with serving(q):
        await call(job.wait(10))
    m = await call(q.metrics(3))
    assert m.completed[-1] == 1  # not 99 + 1: the slot was taken back from an old minute
    assert sum(m.completed) == 1
    assert m.wait.count == 1
    fields = await call(client.hkeys(q._core.metrics))
    assert len(fields) < 3 * 4 + 60 * 35 + 60  # rings of 3 minutes and of 60 for histograms
    with pytest.raises(ValueError, match="between 1 and queue_metrics_minutes"):
        await call(q.metrics(4))
    with pytest.raises(TypeError, match="minutes must be an int"):
        await call(q.metrics("5"))


async def test_no_metrics_are_kept_when_turned_off(make_kit: Any) -> None:
    kit = make_kit(queue_metrics_minutes=0)
    q = kit.queue("unmeasured")

    @q.task(name="quick")
    def quick() -> None:
        return None

    job = await call(quick.enqueue())
    async with serving(q):
        await call(job.wait(10))
    assert not [k for k in await keys(kit) if k.endswith(":metrics")]
    with pytest.raises(ValueError, match="between 1 and queue_metrics_minutes"):
        await call(q.metrics(2))
    m = await call(q.metrics(1))
    assert (m.completed, m.totals["completed"]) == ([0], 0)


async def test_delayed_jobs_wait_from_when_they_came_due(kit: Any) -> None:
    q = kit.queue("measured-delay")

    @q.task(name="later")
    def later() -> None:
        return None

    async with serving(q):
        job = await call(later.options(delay=0.5).enqueue())
        await call(job.wait(10))
        await asyncio.sleep(0.05)
    m = await call(q.metrics(2))
    assert m.wait.count == 1
    assert m.wait.percentile(100) <= 0.25  # not the half second it was delayed
