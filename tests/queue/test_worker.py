"""The worker over time: rate limits, progress, events, pause and resume, retention, stalled jobs
and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from redkit.queue import STATES, JobFailed, JobNotFound, JobTimeout, Keep, current_job
from tests.conftest import call
from tests.queue.conftest import (
    REDIS_AND_MEMORY,
    all_events,
    eventually,
    of_job,
    read_events,
    serving,
    start_worker,
)

ZERO = dict.fromkeys(STATES, 0)


# -- rate limit -----------------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_the_rate_limit_holds_across_workers(kit: Any) -> None:
    q = kit.queue("limited")

    @q.task(name="hit")
    async def hit(i: int) -> int:
        return i

    jobs = await call(q.add_bulk([("hit", {"args": [i]}) for i in range(10)]))
    async with (
        serving(q, concurrency=5, limiter=(5, 1.0)) as w1,
        serving(q, concurrency=5, limiter=(5, 1.0)) as w2,
    ):
        for job in jobs:
            await call(job.wait(10))
    assert w1.processed + w2.processed == 10
    starts = sorted([(await call(q.get_job(j.id))).record.processed_at for j in jobs])
    for start in starts:
        window = [s for s in starts if start <= s < start + timedelta(seconds=1)]
        assert len(window) <= 5, f"{len(window)} jobs handed out within 1s of {start}"
    active = [e for e in await all_events(q) if e.event == "active"]
    assert len(active) == 10


# -- progress -------------------------------------------------------------------------------------
@REDIS_AND_MEMORY
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_progress_is_recorded_and_published(kit: Any, kind: str) -> None:
    q = kit.queue("progress")
    gate = threading.Event()
    outcomes: list[Any] = []

    if kind == "sync":

        @q.task(name="work")
        def work() -> str:
            job = current_job()
            outcomes.append(job.update_progress(50))
            gate.wait(10)
            outcomes.append(job.update_progress({"step": 2, "of": 2}))
            return "done"

    else:

        @q.task(name="work")
        async def work() -> str:
            job = current_job()
            outcomes.append(await job.update_progress(50))
            await asyncio.to_thread(gate.wait, 10)
            outcomes.append(await job.update_progress({"step": 2, "of": 2}))
            return "done"

    job = await call(q.add("work", {"args": []}))
    try:
        async with serving(q):

            async def progress() -> Any:
                return (await call(q.get_job(job.id))).progress == 50

            await eventually(progress, what="progress 50 while running")
            running = await call(q.get_job(job.id))
            assert running.state == "active"
            with pytest.raises(RuntimeError, match="for the task running the job"):
                await call(running.update_progress(60))
            gate.set()
            assert await call(job.wait(10)) == "done"
    finally:
        gate.set()
    assert outcomes == [True, True]
    assert job.progress == {"step": 2, "of": 2}
    events = [e for e in await all_events(q) if e.job_id == job.id]
    assert [e.event for e in events] == ["added", "active", "progress", "progress", "completed"]
    assert [json.loads(e.fields["progress"]) for e in events if e.event == "progress"] == [
        50,
        {"step": 2, "of": 2},
    ]


# -- events ---------------------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_a_consumer_sees_each_jobs_events(kit: Any) -> None:
    q = kit.queue("events")

    @q.task(name="ok")
    def ok() -> str:
        return "fine"

    @q.task(name="bad", attempts=2)
    def bad() -> None:
        raise ValueError("broken")

    good = await call(ok.enqueue())
    failing = await call(bad.enqueue())

    def done(events: list[Any]) -> bool:
        ends = {(e.job_id, e.event) for e in events}
        return (good.id, "completed") in ends and (failing.id, "failed") in ends

    async with serving(q, concurrency=1):
        events = await read_events(q, done, since="0", timeout=10)
    assert done(events)
    assert of_job(events, good.id) == ["added", "active", "completed"]
    assert of_job(events, failing.id) == ["added", "active", "retried", "active", "failed"]
    failed = next(e for e in events if e.event == "failed")
    assert failed.fields["reason"] == "ValueError: broken"
    added = next(e for e in events if e.event == "added")
    assert added.fields["state"] == "waiting"
    assert all(e.time.tzinfo is not None for e in events)
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    # from a given id on, only what came after it
    rest = await read_events(q, lambda _: False, since=events[2].id, timeout=0.2)
    assert [e.id for e in rest] == ids[3:]


async def test_events_from_now_include_what_happens_after_the_call(kit: Any, mode: str) -> None:
    q = kit.queue("events-now")
    await call(q.add("before", None))
    if mode == "async":
        # the async stream starts at the call's millisecond by Redis' clock
        await asyncio.sleep(0.005)
    stream = q.events(timeout=0.5)  # from now on: "before" is not part of it
    job = await call(q.add("after", None))
    events = list(stream) if mode == "sync" else [e async for e in stream]
    assert [(e.event, e.job_id) for e in events] == [("added", job.id)]


async def test_last_event_id_is_where_reading_after_it_starts(kit: Any) -> None:
    q = kit.queue("events-last")
    assert await call(q.last_event_id()) == "0-0"  # no event yet
    first = await call(q.add("first", None))
    mark = await call(q.last_event_id())
    second = await call(q.add("second", None))
    events = await read_events(q, lambda _: False, since=mark, timeout=0.2)
    assert [(e.event, e.job_id) for e in events] == [("added", second.id)]
    before = await read_events(q, lambda _: False, since="0", timeout=0.2)
    assert [e.job_id for e in before] == [first.id, second.id]
    assert before[0].id == mark


async def test_an_idle_event_stream_ends_after_its_timeout(kit: Any, mode: str) -> None:
    q = kit.queue("idle")
    await call(q.add("x", None))
    if mode == "async":
        await asyncio.sleep(0.005)  # the async stream starts by this host's clock (to the ms)
    events = await read_events(q, lambda _: False, since="$", timeout=0.2)
    assert events == []


async def test_a_queue_without_events_writes_none(kit: Any) -> None:
    q = kit.queue("quiet", events=0)
    await call(q.add("x", None))
    await call(q.pause())
    assert await all_events(q) == []
    assert await call(q.counts()) == {**ZERO, "waiting": 1}


# -- pause and resume -----------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_a_paused_queue_hands_out_nothing_until_resumed(kit: Any) -> None:
    q = kit.queue("pausable")
    ran: list[int] = []

    @q.task(name="step")
    def step(i: int) -> int:
        ran.append(i)
        return i

    assert await call(q.pause()) is True
    assert await call(q.pause()) is False  # already paused
    assert await call(q.is_paused()) is True
    async with serving(q) as w:
        jobs = [await call(step.enqueue(i)) for i in range(3)]
        with pytest.raises(JobTimeout):
            await call(jobs[0].wait(0.3))
        assert await call(q.counts()) == {**ZERO, "waiting": 3}
        assert ran == []
        assert await call(q.resume()) is True
        assert await call(q.resume()) is False
        assert await call(q.is_paused()) is False
        assert [await call(j.wait(10)) for j in jobs] == [0, 1, 2]
    assert w.processed == 3
    queue_events = [e.event for e in await all_events(q) if e.job_id is None]
    assert queue_events == ["paused", "resumed"]


@REDIS_AND_MEMORY
async def test_pausing_lets_running_jobs_finish(kit: Any) -> None:
    q = kit.queue("pause-running")
    started = threading.Event()
    gate = threading.Event()

    @q.task(name="slow")
    def slow(i: int) -> int:
        started.set()
        gate.wait(10)
        return i

    first = await call(slow.enqueue(1))
    second = await call(slow.enqueue(2))
    try:
        async with serving(q, concurrency=1):
            await eventually(started.is_set)
            await call(q.pause())
            gate.set()
            assert await call(first.wait(10)) == 1
            with pytest.raises(JobTimeout):
                await call(second.wait(0.3))
            assert (await call(q.get_job(second.id))).state == "waiting"
            await call(q.resume())
            assert await call(second.wait(10)) == 2
    finally:
        gate.set()


# -- retention ------------------------------------------------------------------------------------
async def _run_all(q: Any, jobs: list[Any]) -> None:
    """Run the jobs one at a time, in order, and return once the last one has finished (the
    earlier ones may be gone by then: retention deletes them)."""
    async with serving(q, concurrency=1):
        with contextlib.suppress(JobFailed):
            await call(jobs[-1].wait(10))


@REDIS_AND_MEMORY
async def test_keep_completed_keeps_the_newest(kit: Any) -> None:
    q = kit.queue("keep5", keep=Keep(completed=5))

    @q.task(name="n")
    def n(i: int) -> int:
        return i

    jobs = [await call(n.enqueue(i)) for i in range(8)]
    await _run_all(q, jobs)
    assert await call(q.counts()) == {**ZERO, "completed": 5}
    assert await call(q.jobs("completed")) == [j.id for j in jobs[3:]]
    for job in jobs[:3]:
        assert await call(q.get_job(job.id)) is None
    for job in jobs[3:]:
        assert (await call(q.get_job(job.id))).result == jobs.index(job)


@REDIS_AND_MEMORY
async def test_keep_false_deletes_a_job_when_it_completes(kit: Any) -> None:
    q = kit.queue("keep-false")

    @q.task(name="n")
    def n(i: int) -> int:
        return i

    kept = await call(n.enqueue(1))
    await _run_all(q, [kept])
    dropped = await call(n.options(keep=False).enqueue(2))
    async with serving(q, concurrency=1):
        await read_events(
            q, lambda es: (dropped.id, "completed") in {(e.job_id, e.event) for e in es}
        )
    assert await call(q.get_job(dropped.id)) is None
    # only that job: the others' history stays
    assert (await call(q.get_job(kept.id))).result == 1
    assert await call(q.counts()) == {**ZERO, "completed": 1}


@REDIS_AND_MEMORY
async def test_wait_on_a_job_deleted_as_it_finished_reads_how_it_ended(kit: Any) -> None:
    q = kit.queue("keep-nothing-wait", keep=Keep(completed=0, failed=0))

    @q.task(name="ok")
    def ok(i: int) -> int:
        return i

    @q.task(name="bad")
    def bad() -> None:
        raise ValueError("broken input")

    async with serving(q, concurrency=2):
        done = await call(ok.enqueue(1))
        assert await call(done.wait(10)) is None  # completed; keep=False kept no result
        failed = await call(bad.enqueue())
        with pytest.raises(JobFailed, match="broken input") as caught:
            await call(failed.wait(10))
        assert "ValueError" in caught.value.reason
        await eventually(lambda: _counts_are(q, ZERO))
    assert await call(q.get_job(done.id)) is None
    assert await call(q.get_job(failed.id)) is None
    ghost = await call(q.add("x", None, job_id="gone-soon"))
    assert await call(ghost.remove()) is True  # removed: no end to find
    with pytest.raises(JobNotFound):
        await call(ghost.wait(1))


@REDIS_AND_MEMORY
async def test_a_queue_that_keeps_nothing_deletes_every_finished_job(kit: Any) -> None:
    q = kit.queue("keep-nothing", keep=False)

    @q.task(name="n")
    def n(i: int) -> int:
        return i

    jobs = [await call(n.enqueue(i)) for i in range(3)]
    async with serving(q, concurrency=1) as w:
        await eventually(lambda: w.processed == 3)
        await eventually(lambda: _counts_are(q, ZERO))
    for job in jobs:
        assert await call(q.get_job(job.id)) is None
    assert await keys_of_jobs(kit) == []


async def _counts_are(q: Any, counts: dict[str, int]) -> bool:
    return bool(await call(q.counts()) == counts)


async def keys_of_jobs(kit: Any) -> list[str]:
    from tests.queue.conftest import keys

    return [k for k in await keys(kit) if ":j:" in k]


@REDIS_AND_MEMORY
async def test_keep_failed_keeps_the_newest_failures(kit: Any) -> None:
    q = kit.queue("keep-failed", keep=Keep(failed=2))

    @q.task(name="f")
    def f(i: int) -> None:
        raise RuntimeError(str(i))

    jobs = [await call(f.enqueue(i)) for i in range(4)]
    await _run_all(q, jobs)
    assert await call(q.counts()) == {**ZERO, "failed": 2}
    assert [await call(q.get_job(j.id)) for j in jobs[:2]] == [None, None]
    assert [(await call(q.get_job(j.id))).failed_reason for j in jobs[2:]] == [
        "RuntimeError: 2",
        "RuntimeError: 3",
    ]


@REDIS_AND_MEMORY
async def test_queue_level_and_setting_level_retention(make_kit: Any) -> None:
    kit = make_kit(queue_keep_completed=2, queue_keep_failed=1)
    three = kit.queue("three", keep=3)
    default = kit.queue("default")
    for q in (three, default):

        @q.task(name="n")
        def n(i: int) -> int:
            if i < 0:
                raise ValueError("negative")
            return i

    three_jobs = [await call(three.add("n", {"args": [i]})) for i in range(5)]
    default_jobs = [await call(default.add("n", {"args": [i]})) for i in (1, 2, 3, -1, -2)]
    await _run_all(three, three_jobs)
    await _run_all(default, default_jobs)
    assert (await call(three.counts()))["completed"] == 3
    counts = await call(default.counts())
    assert (counts["completed"], counts["failed"]) == (2, 1)
    assert await call(default.jobs("failed")) == [default_jobs[-1].id]


@REDIS_AND_MEMORY
async def test_keep_by_age(kit: Any) -> None:
    q = kit.queue("keep-age", keep=Keep(completed_age=0.2))

    @q.task(name="n")
    def n(i: int) -> int:
        return i

    old = await call(n.enqueue(1))
    await _run_all(q, [old])
    assert (await call(q.get_job(old.id))).state == "completed"
    await asyncio.sleep(0.3)  # the age passes
    new = await call(n.enqueue(2))
    await _run_all(q, [new])
    assert await call(q.get_job(old.id)) is None
    assert (await call(q.get_job(new.id))).result == 2


# -- stalled jobs ---------------------------------------------------------------------------------
def _slow_task(q: Any) -> tuple[threading.Event, threading.Event, list[Any]]:
    started = threading.Event()
    gate = threading.Event()
    log: list[Any] = []

    @q.task(name="slow")
    def slow() -> str:
        log.append("run")
        if len(log) == 1:
            started.set()
            gate.wait(10)
            log.append(("late progress", current_job().update_progress(99)))
            return "first"
        return "second"

    return started, gate, log


@REDIS_AND_MEMORY
async def test_a_stalled_job_is_taken_over_and_the_late_result_rejected(make_kit: Any) -> None:
    kit = make_kit(socket_timeout=1.0)  # idle workers look at the queue every third of a second
    q = kit.queue("stall")
    started, gate, log = _slow_task(q)
    job = await call(q.add("slow", {"args": []}))
    frozen = await start_worker(q, lock_ttl=0.3, concurrency=1, name="frozen")
    rescuer = None
    try:
        await eventually(started.is_set)
        frozen.worker._renew_stop.set()  # its lock renewals stop, as in a frozen process
        rescuer = await start_worker(q, lock_ttl=0.3, concurrency=1, name="rescuer")
        assert await call(job.wait(10)) == "second"
        gate.set()
        await eventually(lambda: frozen.worker.lost == 1, what="the late result's rejection")
    finally:
        gate.set()
        await frozen.stop()
        if rescuer is not None:
            await rescuer.stop()
    assert log == ["run", "run", ("late progress", False)]
    assert (frozen.worker.processed, rescuer.worker.processed) == (1, 1)
    final = await call(q.get_job(job.id))
    assert (final.state, final.result) == ("completed", "second")
    assert final.record.stalls == 1
    assert final.record.attempts_started == 2
    assert final.progress is None
    events = of_job(await all_events(q), job.id)
    assert events == ["added", "active", "stalled", "active", "completed"]


@REDIS_AND_MEMORY
async def test_a_job_that_stalls_too_often_fails(make_kit: Any) -> None:
    kit = make_kit(socket_timeout=1.0)
    q = kit.queue("stall-fail", dead_letter="stall-dead")
    dead = kit.queue("stall-dead")
    started, gate, log = _slow_task(q)
    job = await call(q.add("slow", {"args": []}, attempts=3))
    frozen = await start_worker(q, lock_ttl=0.3, concurrency=1, max_stalled=0)
    rescuer = None
    try:
        await eventually(started.is_set)
        frozen.worker._renew_stop.set()
        rescuer = await start_worker(q, lock_ttl=0.3, concurrency=1, max_stalled=0)
        with pytest.raises(JobFailed, match="stalled") as caught:
            await call(job.wait(10))
        gate.set()
        await eventually(lambda: frozen.worker.lost == 1)

        async def dead_lettered() -> bool:
            return bool((await call(dead.counts()))["waiting"] == 1)

        await eventually(dead_lettered, what="the dead letter")
    finally:
        gate.set()
        await frozen.stop()
        if rescuer is not None:
            await rescuer.stop()
    assert "max_stalled is 0" in caught.value.reason
    assert log == ["run", ("late progress", False)]  # it did not run again
    failed = await call(q.get_job(job.id))
    assert failed.state == "failed"
    assert failed.failed_reason == caught.value.reason
    (letter_id,) = await call(dead.jobs("waiting"))
    letter = await call(dead.get_job(letter_id))
    assert letter.data["job_id"] == job.id
    assert "stalled" in letter.data["failed_reason"]


# -- graceful shutdown ----------------------------------------------------------------------------
@REDIS_AND_MEMORY
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_job_still_running_after_the_grace_goes_back_to_the_queue(
    kit: Any, kind: str
) -> None:
    q = kit.queue("grace")
    started = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    if kind == "sync":

        @q.task(name="long")
        def long() -> str:
            runs.append(1)
            started.set()
            if len(runs) == 1:
                release.wait(10)
            return "done"

    else:

        @q.task(name="long")
        async def long() -> str:
            runs.append(1)
            started.set()
            if len(runs) == 1:
                await asyncio.sleep(30)
            return "done"

    job = await call(q.add("long", {"args": []}))
    running = await start_worker(q, concurrency=1)
    try:
        await eventually(started.is_set)
        await running.stop(grace=0.1)
    finally:
        release.set()
    assert running.worker.processed == 0
    back = await call(q.get_job(job.id))
    assert back.state == "waiting"
    assert await call(q.counts()) == {**ZERO, "waiting": 1}
    assert of_job(await all_events(q), job.id) == ["added", "active", "released"]
    assert all(wid != running.worker.id for wid, _ in await call(q.workers()))
    async with serving(q):
        assert await call(job.wait(10)) == "done"
    assert len(runs) == 2


@REDIS_AND_MEMORY
async def test_a_job_that_ends_within_the_grace_completes(kit: Any) -> None:
    q = kit.queue("grace-ok")
    started = threading.Event()
    release = threading.Event()

    @q.task(name="long")
    def long(i: int) -> int:
        started.set()
        release.wait(10)
        return i

    job = await call(q.add("long", {"args": [1]}))
    running = await start_worker(q, concurrency=1)
    try:
        await eventually(started.is_set)
        queued = await call(q.add("long", {"args": [2]}))
        running.begin_stop(grace=10)
        await eventually(lambda: running.worker._stopping, what="the stop")
        release.set()
        await running.join()
    finally:
        release.set()
    assert running.worker.processed == 1
    assert (await call(q.get_job(job.id))).result == 1
    # a stopping worker takes no new job
    assert (await call(q.get_job(queued.id))).state == "waiting"
    assert "released" not in of_job(await all_events(q), job.id)


@REDIS_AND_MEMORY
async def test_serving_is_true_from_set_up_until_the_worker_stopped(kit: Any) -> None:
    running = await start_worker(kit.queue("serving"))
    await eventually(lambda: running.worker.serving, what="the worker to serve")
    if running.task is not None:  # asyncio: the loop serve() runs in
        assert await running.worker.started()
    await running.stop()
    assert not running.worker.serving
    assert not kit.queue("serving").worker().serving  # not started


@REDIS_AND_MEMORY
async def test_a_stop_right_after_serve_was_scheduled_is_not_lost(async_kit: Any) -> None:
    w = async_kit.queue("early-stop").worker()
    task = asyncio.create_task(w.serve())
    w.stop(wait=False)  # e.g. the application shuts down while it is still starting
    done, _ = await asyncio.wait({task}, timeout=3)
    if not done:
        w.stop(wait=False)
        await asyncio.wait_for(task, 10)
    assert done, "serve() did not return after stop()"


@REDIS_AND_MEMORY
async def test_stopping_an_idle_worker_does_not_wait_out_its_blocking_call(
    make_kit: Any,
) -> None:
    # an idle worker blocks on the queue for up to socket_timeout - 0.5 s (9.5 s here); a stop
    # must interrupt that, whenever it comes
    kit = make_kit(socket_timeout=10.0)
    q = kit.queue("idle-stop")
    for pause in (0, 0, 0.001, 0.005, 0.02, 0.1):
        running = await start_worker(q)
        await asyncio.sleep(pause)
        running.begin_stop()
        if running.task is not None:
            done, _ = await asyncio.wait({running.task}, timeout=5)
            stopped = bool(done)
        else:
            thread = running.worker._thread
            await asyncio.to_thread(thread.join, 5)
            stopped = not thread.is_alive()
        if not stopped:
            await running.join()
        assert stopped, f"stop() {pause}s after start waited for the blocking call to time out"


class _SkewedClock:
    """The time module as seen from a host whose clock is ``skew`` seconds ahead of Redis'."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
