"""Administration: remove, drain, the workers' registry and the check of Redis' eviction policy
(the ``redkit`` command is tested in tests/test_cli.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import ConfigurationError
from redkit.queue import STATES, JobNotFound, Keep, WorkerInfo
from tests.conftest import call, new_prefix
from tests.queue.conftest import (
    REDIS_AND_MEMORY,
    all_events,
    eventually,
    of_job,
    serving,
    start_worker,
)
from tests.servers import RedisProcess

ZERO = dict.fromkeys(STATES, 0)


# -- remove and drain -----------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_remove_deletes_a_job_that_is_not_running(kit: Any) -> None:
    q = kit.queue("remove")
    started = threading.Event()
    gate = threading.Event()

    @q.task(name="hold")
    def hold() -> str:
        started.set()
        gate.wait(10)
        return "held"

    waiting = await call(q.add("x", 1))
    prio = await call(q.add("x", 2, priority=4))
    later = await call(q.add("x", 3, delay=60))
    for job in (waiting, prio, later):
        assert await call(job.remove()) is True
        assert await call(q.get_job(job.id)) is None
    assert await call(waiting.remove()) is False  # gone already
    with pytest.raises(JobNotFound):
        await call(waiting.wait(1))
    with pytest.raises(JobNotFound):
        await call(waiting.refresh())
    assert await call(q.counts()) == ZERO
    assert of_job(await all_events(q), waiting.id) == ["added", "removed"]

    running = await call(q.add("hold", {"args": []}))
    try:
        async with serving(q):
            await eventually(started.is_set)
            with pytest.raises(ValueError, match="active"):
                await call(running.remove())
            assert (await call(q.get_job(running.id))).state == "active"
            gate.set()
            assert await call(running.wait(10)) == "held"
    finally:
        gate.set()
    assert await call(running.remove()) is True  # a completed job can go
    assert await call(q.counts()) == ZERO


@REDIS_AND_MEMORY
async def test_drain_deletes_waiting_jobs_and_delayed_ones_when_asked(kit: Any) -> None:
    q = kit.queue("drain")
    # more than one drain call's worth (1000) of waiting and prioritized jobs
    plain = await call(q.add_bulk([("x", {"i": i}) for i in range(600)]))
    prio = await call(q.add_bulk([("x", {"i": i}, {"priority": 1 + i % 3}) for i in range(500)]))
    later = await call(q.add_bulk([("x", {"i": i}, {"delay": 60}) for i in range(20)]))
    assert await call(q.drain()) == 1100
    assert await call(q.counts()) == {**ZERO, "delayed": 20}
    assert await call(q.get_job(plain[0].id)) is None
    assert await call(q.get_job(prio[-1].id)) is None
    assert (await call(q.get_job(later[0].id))).state == "delayed"
    assert await call(q.drain(delayed=True)) == 20
    assert await call(q.counts()) == ZERO
    assert await call(q.drain(delayed=True)) == 0
    assert [e.event for e in await all_events(q) if e.job_id is None].count("drained") >= 2


# -- promote and clean ----------------------------------------------------------------------------
async def test_promote_makes_a_delayed_job_due_now(kit: Any) -> None:
    q = kit.queue("promote")
    ran: list[Any] = []

    @q.task(name="later")
    def later(n: int) -> int:
        ran.append(n)
        return n

    plain = await call(later.options(delay=3600).enqueue(1))
    urgent = await call(later.options(delay=3600, priority=2).enqueue(2))
    waiting = await call(later.enqueue(3))
    assert await call(plain.promote()) is True
    assert plain.state == "waiting"
    assert await call(urgent.promote()) is True
    assert urgent.state == "prioritized"  # among the prioritized jobs, by its priority
    assert (await call(urgent.refresh())).state == "prioritized"
    assert await call(urgent.promote()) is False  # no longer delayed: nothing changes
    assert await call(waiting.promote()) is False
    assert (await call(q.counts()))["delayed"] == 0
    async with serving(q):
        await call(plain.wait(10))
        await call(urgent.wait(10))
    assert sorted(ran) == [1, 2, 3]
    assert await call(plain.promote()) is False  # completed
    assert "promoted" in of_job(await all_events(q), plain.id)
    gone = await call(later.options(delay=60).enqueue(4))
    assert await call(gone.remove()) is True
    assert await call(gone.promote()) is False


async def test_promoting_a_schedulers_run_runs_it_now_and_the_scheduler_goes_on(kit: Any) -> None:
    q = kit.queue("promote-sched")
    made = await call(q.schedule("hourly", "tick", every=3600))
    pending = await call(q.jobs("delayed"))
    assert len(pending) == 1
    run = await call(q.get_job(pending[0]))
    assert await call(run.promote()) is True
    after = await call(q.jobs("delayed"))
    assert len(after) == 1  # the next slot's run
    assert after != pending
    assert (await call(q.get_schedule("hourly"))).next_run > made.next_run
    assert (await call(q.counts()))["waiting"] == 1


async def test_clean_deletes_ended_jobs_older_than_asked(kit: Any) -> None:
    q = kit.queue("clean")

    @q.task(name="work")
    def work(n: int) -> int:
        if n < 0:
            raise ValueError("no")
        return n

    jobs = await call(q.add_bulk([("work", {"args": [n]}) for n in (1, 2, 3, -1, -2)]))
    async with serving(q):
        await eventually(lambda: _ended(q, 5), 10, "five jobs ended")
    assert await call(q.clean("completed", 3600)) == 0  # none is an hour old
    assert await call(q.clean("completed", limit=2)) == 2  # the two that ended first
    assert (await call(q.counts()))["completed"] == 1
    assert await call(q.clean("failed")) == 2
    assert await call(q.clean("cancelled")) == 0
    assert await call(q.counts()) == {**ZERO, "completed": 1}
    left = [await call(q.get_job(j.id)) for j in jobs]
    assert [j.state for j in left if j is not None] == ["completed"]
    assert "cleaned" in [e.event for e in await all_events(q)]
    for bad, error, says in [
        ("waiting", ValueError, "jobs that ended"),
        (5, TypeError, "state is a str"),
    ]:
        with pytest.raises(error, match=says):
            await call(q.clean(bad))
    with pytest.raises(ValueError, match="older_than"):
        await call(q.clean("failed", -1))
    with pytest.raises(ValueError, match="limit"):
        await call(q.clean("failed", limit=0))
    assert (await call(q.counts()))["completed"] == 1  # the bad calls deleted nothing


@REDIS_AND_MEMORY
async def test_clean_removes_more_than_a_calls_worth(kit: Any) -> None:
    q = kit.queue("clean-many")

    @q.task(name="noop")
    def noop() -> None:
        return None

    keep = {"keep": Keep(completed=5_000)}  # more than the default retention
    await call(q.add_bulk([("noop", {"args": []}, keep) for _ in range(1_500)]))
    async with serving(q, concurrency=50):
        await eventually(lambda: _ended(q, 1_500), 30, "1,500 jobs ended")
    assert await call(q.clean("completed", limit=1_200)) == 1_200
    assert await call(q.clean("completed")) == 300
    assert (await call(q.counts()))["completed"] == 0


async def _ended(q: Any, n: int) -> bool:
    counts = await call(q.counts())
    return bool(counts["completed"] + counts["failed"] >= n)


# -- workers --------------------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_running_workers_are_listed_and_leave_the_list_when_they_stop(kit: Any) -> None:
    q = kit.queue("registry")
    assert await call(q.workers()) == []
    first = await start_worker(q, name="first")
    second = await start_worker(q, name="second")
    try:
        listed = await call(q.workers())
        assert sorted(wid for wid, _ in listed) == ["first", "second"]
        assert all(seen > 0 for _, seen in listed)
    finally:
        await first.stop()
    assert [wid for wid, _ in await call(q.workers())] == ["second"]
    await second.stop()
    assert await call(q.workers()) == []


async def test_worker_details_tell_what_each_worker_last_said(kit: Any) -> None:
    import os
    import socket

    q = kit.queue("details")
    assert await call(q.worker_details()) == []
    worker = await start_worker(q, name="busy", concurrency=7)
    try:
        info = await eventually(lambda: q.worker_details(), 10, "the heartbeat")
        (only,) = info
        assert isinstance(only, WorkerInfo)
        assert (only.id, only.host, only.pid, only.concurrency) == (
            "busy",
            socket.gethostname(),
            os.getpid(),
            7,
        )
        assert (only.running, only.processed, only.failed) == (0, 0, 0)
        assert only.last_seen.tzinfo is not None
    finally:
        await worker.stop()
    assert await call(q.worker_details()) == []


async def test_queue_names_lists_every_queue_added_to(kit: Any) -> None:
    assert await call(kit.queue_names()) == []
    await call(kit.queue("zeta").add("x", None))
    await call(kit.queue("alpha").add("x", None))
    await call(kit.queue("odd name/é").add("x", None))
    assert await call(kit.queue_names()) == ["alpha", "odd name/é", "zeta"]


# -- eviction policy ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evicting_redis() -> Iterator[str]:
    proc = RedisProcess(None, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru").start()
    yield proc.url
    proc.cleanup()


def _kit(mode: str, url: str, **settings: Any) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), **settings)


async def _close(kit: Any) -> None:
    await call(kit.clear())
    await call(kit.close() if isinstance(kit, redkit.Redkit) else kit.aclose())


async def test_an_evicting_redis_is_refused(evicting_redis: str, mode: str) -> None:
    kit = _kit(mode, evicting_redis, queue_eviction_policy="refuse")
    try:
        w = kit.queue("jobs").worker()
        task = asyncio.ensure_future(w.serve())
        assert not await w.started()  # the start-up failed
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            await task
        assert w.processed == 0
        assert not w.serving
    finally:
        await _close(kit)


def test_start_raises_when_the_worker_cannot_serve(evicting_redis: str) -> None:
    kit = _kit("sync", evicting_redis, queue_eviction_policy="refuse")
    try:
        w = kit.queue("jobs").worker()
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            w.start()
        w.stop()
    finally:
        kit.clear()
        kit.close()


async def test_an_evicting_redis_is_reported(
    evicting_redis: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = _kit(mode, evicting_redis)  # the default: warn
    q = kit.queue("jobs")

    @q.task(name="ok")
    def ok() -> str:
        return "ran"

    try:
        with caplog.at_level(logging.INFO, logger="redkit.worker"):
            async with serving(q):
                assert await call((await call(q.add("ok", {"args": []}))).wait(10)) == "ran"
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].name == "redkit.worker"
        assert "allkeys-lru" in errors[0].getMessage()
        assert "noeviction" in errors[0].getMessage()
    finally:
        await _close(kit)


async def test_ignore_skips_the_eviction_check(
    evicting_redis: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = _kit(mode, evicting_redis, queue_eviction_policy="ignore")
    try:
        with caplog.at_level(logging.WARNING, logger="redkit.worker"):
            async with serving(kit.queue("jobs")):
                pass
        assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]
    finally:
        await _close(kit)
