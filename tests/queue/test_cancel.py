"""Cancellation: ``job.cancel()`` ends a waiting, prioritized or delayed job at once; a running
async task is cancelled, a running sync task sees ``current_job().cancelled``, and the job ends as
``cancelled`` (its state, its event, ``JobCancelled`` from ``wait``), never retried."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from redkit.errors import JobCancelled, JobFailed
from redkit.queue import Backoff, Keep, current_job
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, all_events, eventually, serving

NOARGS = {"args": [], "kwargs": {}}


async def test_a_job_that_has_not_started_is_cancelled_at_once(kit: Any) -> None:
    q = kit.queue("cancel-waiting")
    waiting = await call(q.add("x", 1))
    prioritized = await call(q.add("x", 2, priority=3))
    delayed = await call(q.add("x", 3, delay=60))
    assert await call(waiting.cancel("not needed")) is True
    assert waiting.state == "cancelled"
    assert waiting.cancelled
    assert await call(prioritized.cancel()) is True
    assert await call(delayed.cancel()) is True
    counts = await call(q.counts())
    assert (counts["waiting"], counts["prioritized"], counts["delayed"]) == (0, 0, 0)
    assert counts["cancelled"] == 3
    assert await call(q.jobs("cancelled")) == [waiting.id, prioritized.id, delayed.id]
    record = (await call(q.get_job(waiting.id))).record
    assert (record.state, record.failed_reason) == ("cancelled", "not needed")
    with pytest.raises(JobCancelled, match="was cancelled: not needed") as caught:
        await call(waiting.wait(5))
    assert caught.value.reason == "not needed"
    assert isinstance(caught.value, JobFailed)  # code that handles failures handles it too
    assert await call(waiting.cancel()) is False  # finished already
    events = await all_events(q)
    assert [e.job_id for e in events if e.event == "cancelled"] == [
        waiting.id,
        prioritized.id,
        delayed.id,
    ]
    assert await call(waiting.remove()) is True
    assert (await call(q.counts()))["cancelled"] == 2


@REDIS_AND_MEMORY
async def test_a_running_async_task_is_cancelled_and_the_worker_goes_on(kit: Any) -> None:
    q = kit.queue("cancel-async")
    started = asyncio.Event() if not hasattr(kit, "close") else threading.Event()
    seen: list[str] = []

    @q.task(name="long")
    async def long() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "done"

    @q.task(name="short")
    async def short() -> str:
        return "short"

    job = await call(long.enqueue())
    async with serving(q, concurrency=1):
        await eventually(started.is_set, 10, "the long task")
        asked = time.monotonic()
        assert await call(job.cancel("stop it")) is True
        with pytest.raises(JobCancelled):
            await call(job.wait(10))
        assert time.monotonic() - asked < 2  # carried out at once, not at a renewal
        assert await call((await call(short.enqueue())).wait(10)) == "short"
    assert seen == ["cancelled"]
    assert (await call(q.get_job(job.id))).state == "cancelled"
    events = [e.event for e in await all_events(q) if e.job_id == job.id]
    assert events == ["added", "active", "cancelling", "cancelled"]


async def test_a_running_sync_task_sees_the_cancel_and_the_job_ends_cancelled(kit: Any) -> None:
    q = kit.queue("cancel-sync")
    started = threading.Event()
    noticed = threading.Event()

    @q.task(name="loop")
    def loop() -> str:
        job = current_job()
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if job.cancelled:
                noticed.set()
                return "stopped early"
            time.sleep(0.01)
        return "ran to the end"

    job = await call(loop.enqueue())
    async with serving(q):
        await eventually(started.is_set, 10, "the task")
        assert await call(job.cancel()) is True
        with pytest.raises(JobCancelled, match="cancelled: cancelled"):
            await call(job.wait(10))
        await eventually(noticed.is_set, 10, "the task to see it")
    record = (await call(q.get_job(job.id))).record
    assert (record.state, record.result) == ("cancelled", None)  # its return value is not kept


async def test_a_sync_task_that_ignores_the_cancel_does_not_hold_the_job(kit: Any) -> None:
    q = kit.queue("cancel-stubborn")
    started = threading.Event()
    release = threading.Event()

    @q.task(name="stubborn")
    def stubborn() -> str:
        started.set()
        release.wait(10)
        return "late"

    job = await call(stubborn.enqueue())
    try:
        async with serving(q, concurrency=1):
            await eventually(started.is_set, 10, "the task")
            await call(job.cancel())
            with pytest.raises(JobCancelled):
                await call(job.wait(5))  # ended without waiting for the thread
            after = await call(q.add("stubborn", NOARGS))
            release.set()
            assert await call(after.wait(10)) == "late"
    finally:
        release.set()
    assert (await call(q.get_job(job.id))).state == "cancelled"


@REDIS_AND_MEMORY
async def test_a_cancelled_job_is_never_retried(kit: Any) -> None:
    q = kit.queue("cancel-retry")
    runs: list[int] = []

    @q.task(name="flaky", attempts=5, backoff=Backoff.fixed(30))
    def flaky() -> None:
        runs.append(1)
        raise RuntimeError("down")

    job = await call(flaky.enqueue())
    async with serving(q):
        await eventually(lambda: _state(q, job.id, "delayed"), 10, "the retry to wait its backoff")
        assert await call(job.cancel()) is True  # between two attempts
    assert runs == [1]
    assert (await call(q.get_job(job.id))).state == "cancelled"


async def _state(q: Any, job_id: str, state: str) -> bool:
    found = await call(q.get_job(job_id))
    return found is not None and found.state == state


async def test_cancelling_frees_the_dedup_id_and_follows_retention(kit: Any) -> None:
    q = kit.queue("cancel-misc", keep=Keep(failed=0))  # cancelled jobs are kept like failed ones
    held = await call(q.add("x", 1, dedup="d"))
    assert await call(held.cancel()) is True
    assert await call(q.get_job(held.id)) is None  # deleted as it was cancelled
    fresh = await call(q.add("x", 2, dedup="d"))
    assert fresh.id != held.id
    assert await call(q.get_job("no-such-job")) is None
    missing = await call(q.add("x", 3, job_id="gone"))
    assert await call(missing.remove()) is True
    assert await call(missing.cancel()) is False
    with pytest.raises(TypeError, match="reason is a str"):
        await call(fresh.cancel(5))  # type: ignore[arg-type]
    made = await call(q.schedule("s", "x", every=3600))
    pending = await call(q.get_job(f"sched:s:{int(made.next_run.timestamp() * 1000)}"))
    assert await call(pending.cancel()) is True  # a scheduler's run: the scheduler goes on
    later = await call(q.get_schedule("s"))
    assert later.next_run is not None
    assert later.next_run > made.next_run
