"""Failures: retries with fixed, exponential and custom backoff, Unrecoverable, exhausted jobs,
the dead-letter queue, moving failed jobs back, and timeouts."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from redkit.queue import STATES, AttemptError, Backoff, Event, JobFailed, Keep, Unrecoverable
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, eventually, read_events, serving

ZERO = dict.fromkeys(STATES, 0)


def finished(job_id: str) -> Any:
    def until(events: list[Event]) -> bool:
        return any(e.job_id == job_id and e.event in ("completed", "failed") for e in events)

    return until


async def job_events(q: Any, job_id: str) -> list[Event]:
    return [e for e in await read_events(q, finished(job_id)) if e.job_id == job_id]


def ms(event: Event) -> int:
    return int(event.id.split("-")[0])


async def test_fixed_backoff_retries_until_the_task_succeeds(kit: Any) -> None:
    q = kit.queue("fixed")
    tries: list[int] = []

    @q.task(attempts=3, backoff=Backoff.fixed(0.05))
    def flaky() -> str:
        tries.append(len(tries) + 1)
        if len(tries) < 3:
            raise ConnectionError(f"try {len(tries)}")
        return "done"

    job = await call(flaky.enqueue())
    async with serving(q, concurrency=1) as w:
        assert await call(job.wait(10)) == "done"
    assert tries == [1, 2, 3]
    assert w.failed == 2
    assert w.processed == 1
    events = await job_events(q, job.id)
    assert [e.event for e in events] == [
        "added",
        "active",
        "retried",
        "active",
        "retried",
        "active",
        "completed",
    ]
    retried = [e for e in events if e.event == "retried"]
    assert [e.fields["delay"] for e in retried] == ["50", "50"]
    assert [e.fields["reason"] for e in retried] == [
        "ConnectionError: try 1",
        "ConnectionError: try 2",
    ]
    # each retry was handed out no sooner than its backoff (times from Redis' clock)
    for i, e in enumerate(events):
        if e.event == "retried":
            assert ms(events[i + 1]) - ms(e) >= 50
    assert job.record.attempts_started == 3


@REDIS_AND_MEMORY
async def test_exponential_backoff_doubles(kit: Any) -> None:
    q = kit.queue("exponential")

    @q.task(attempts=4, backoff=Backoff.exponential(0.02, max=0.05))
    def always() -> None:
        raise ValueError("no")

    job = await call(always.enqueue())
    async with serving(q, concurrency=1):
        with pytest.raises(JobFailed):
            await call(job.wait(10))
    events = await job_events(q, job.id)
    assert [e.fields["delay"] for e in events if e.event == "retried"] == ["20", "40", "50"]
    assert events[-1].event == "failed"


def test_backoff_delays() -> None:
    exp = Backoff.exponential(1, max=5)
    assert [exp.seconds(n, lambda: 0.0) for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]
    assert Backoff.exponential(1).seconds(200, lambda: 0.0) == 2.0**60  # no overflow
    assert Backoff.fixed(3).seconds(9, lambda: 0.0) == 3
    jittered = Backoff.exponential(10, jitter=0.2)
    assert jittered.seconds(1, lambda: 0.0) == 10
    assert jittered.seconds(1, lambda: 1.0) == pytest.approx(8)
    assert Backoff.from_json(jittered.to_json()) == jittered


@REDIS_AND_MEMORY
async def test_a_backoff_function_gets_the_attempt_and_the_exception(kit: Any) -> None:
    q = kit.queue("custom-backoff")
    calls: list[tuple[int, str]] = []
    errors = [KeyError("a"), ValueError("b"), TimeoutError("c")]

    def backoff(attempt: int, exc: BaseException) -> float:
        calls.append((attempt, type(exc).__name__))
        return 0.01 * attempt

    @q.task(attempts=4, backoff=backoff)
    async def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    job = await call(flaky.enqueue())
    async with serving(q):
        assert await call(job.wait(10)) == "ok"
    assert calls == [(1, "KeyError"), (2, "ValueError"), (3, "TimeoutError")]
    events = await job_events(q, job.id)
    assert [e.fields["delay"] for e in events if e.event == "retried"] == ["10", "20", "30"]


@REDIS_AND_MEMORY
async def test_a_queue_backoff_function_serves_processor_jobs_and_a_broken_one_retries_at_once(
    kit: Any,
) -> None:
    calls: list[int] = []

    def backoff(attempt: int, exc: BaseException) -> float:
        calls.append(attempt)
        if attempt == 1:
            raise RuntimeError("backoff bug")
        return float("nan")

    q = kit.queue("queue-backoff", backoff=backoff, attempts=3)

    def processor(job: Any) -> None:
        raise ValueError("nope")

    job = await call(q.add("raw", {}))
    async with serving(q, processor=processor):
        with pytest.raises(JobFailed):
            await call(job.wait(10))
    assert calls == [1, 2]
    events = await job_events(q, job.id)
    assert [e.fields["delay"] for e in events if e.event == "retried"] == ["0", "0"]


@REDIS_AND_MEMORY
async def test_unrecoverable_fails_at_once(kit: Any) -> None:
    q = kit.queue("unrecoverable")
    runs: list[int] = []

    @q.task(attempts=5, backoff=0.01)
    def charge(card: str) -> None:
        runs.append(1)
        raise Unrecoverable(f"card {card} declined")

    job = await call(charge.enqueue("4242"))
    async with serving(q) as w:
        with pytest.raises(JobFailed) as caught:
            await call(job.wait(10))
    assert caught.value.reason == "Unrecoverable: card 4242 declined"
    assert runs == [1]
    assert w.failed == 1
    failed = await call(q.get_job(job.id))
    assert (failed.state, failed.attempts_made) == ("failed", 1)
    assert [e.event for e in await job_events(q, job.id)] == ["added", "active", "failed"]


async def test_an_exhausted_job_fails_with_its_traceback(kit: Any) -> None:
    q = kit.queue("exhausted")

    def inner_helper(n: int) -> None:
        raise ValueError(f"boom {n}")

    @q.task(attempts=2)
    def explode(n: int) -> None:
        inner_helper(n)

    job = await call(explode.enqueue(7))
    async with serving(q):
        with pytest.raises(JobFailed, match="boom 7") as caught:
            await call(job.wait(10))
    assert caught.value.reason == "ValueError: boom 7"
    failed = await call(q.get_job(job.id))
    assert failed.state == "failed"
    assert failed.failed_reason == "ValueError: boom 7"
    assert failed.attempts_made == 2
    assert failed.stacktrace.startswith("Traceback (most recent call last):")
    assert "inner_helper" in failed.stacktrace
    assert failed.stacktrace.rstrip().endswith("ValueError: boom 7")
    assert failed.record.finished_at is not None
    assert await call(q.counts()) == {**ZERO, "failed": 1}
    assert await call(q.jobs("failed")) == [job.id]
    events = await job_events(q, job.id)
    assert [e.event for e in events] == ["added", "active", "retried", "active", "failed"]
    assert events[-1].fields["reason"] == "ValueError: boom 7"
    first, last = failed.errors  # each attempt's own error, oldest first
    assert isinstance(first, AttemptError)
    assert [(e.attempt, e.reason) for e in failed.errors] == [
        (1, "ValueError: boom 7"),
        (2, "ValueError: boom 7"),
    ]
    assert "inner_helper" in first.stacktrace
    assert last.stacktrace == failed.stacktrace
    assert first.failed_at <= last.failed_at == failed.record.finished_at


async def test_each_attempts_error_is_kept_the_last_ten_and_across_a_retry(kit: Any) -> None:
    q = kit.queue("attempt-errors")
    seen = {"n": 0}

    @q.task(name="flaky", attempts=12, backoff=Backoff.fixed(0))
    def flaky() -> str:
        seen["n"] += 1
        if seen["n"] == 3:
            raise RuntimeError("x" * 20_000)  # a long message, and so a long traceback
        if seen["n"] <= 13:
            raise ValueError(f"attempt {seen['n']}")
        return "ok"

    job = await call(flaky.enqueue())
    async with serving(q):
        with pytest.raises(JobFailed):
            await call(job.wait(10))
        failed = await call(q.get_job(job.id))
        assert [e.attempt for e in failed.errors] == list(range(3, 13))  # the last ten
        assert [e.reason for e in failed.errors][1:] == [
            f"ValueError: attempt {n}" for n in range(4, 13)
        ]
        assert len(failed.errors[0].stacktrace) <= 8192  # the tail of a long traceback
        assert failed.errors[0].stacktrace.startswith("...")
        assert await call(job.retry()) is True
        assert await call(job.wait(10)) == "ok"  # attempt 13 fails too, 14 completes
        again = await call(q.get_job(job.id))
    assert [e.attempt for e in again.errors] == list(range(4, 14))  # kept across the retry
    assert again.errors[-1].reason == "ValueError: attempt 13"


@REDIS_AND_MEMORY
async def test_a_failed_job_goes_to_the_dead_letter_queue(kit: Any) -> None:
    q = kit.queue("payments", dead_letter="payments-dead")
    dead = kit.queue("payments-dead")
    assert q.dead_letter == "payments-dead"

    @q.task(name="pay", attempts=2)
    def pay(amount: int) -> None:
        raise RuntimeError(f"gateway down for {amount}")

    @q.task(name="refuse")
    def refuse() -> None:
        raise Unrecoverable("never")

    job = await call(pay.enqueue(12))
    other = await call(refuse.enqueue())
    async with serving(q, concurrency=1):
        for j in (job, other):
            with pytest.raises(JobFailed):
                await call(j.wait(10))
        await eventually(lambda: _count(dead, "waiting", 2), what="two dead letters")
    letters = {}
    for letter_id in await call(dead.jobs("waiting")):
        letter = await call(dead.get_job(letter_id))
        letters[letter.data["job_id"]] = letter
    assert set(letters) == {job.id, other.id}
    letter = letters[job.id]
    assert letter.name == "pay"
    assert letter.data == {
        "queue": "payments",
        "job_id": job.id,
        "name": "pay",
        "data": {"args": [12], "kwargs": {}},
        "failed_reason": "RuntimeError: gateway down for 12",
        "attempts_made": 2,
    }
    assert letters[other.id].data["failed_reason"] == "Unrecoverable: never"
    assert letters[other.id].data["attempts_made"] == 1
    # the failed jobs themselves stay in their queue
    assert (await call(q.get_job(job.id))).state == "failed"
    assert (await call(q.get_job(other.id))).state == "failed"
    assert await call(dead.counts()) == {**ZERO, "waiting": 2}


@REDIS_AND_MEMORY
async def test_a_job_deleted_when_it_fails_is_still_dead_lettered(kit: Any) -> None:
    q = kit.queue("fire-and-forget", dead_letter="ff-dead", keep=Keep(failed=0))
    dead = kit.queue("ff-dead")

    def processor(job: Any) -> None:
        raise RuntimeError("lost")

    job = await call(q.add("notify", {"user": 5}))
    async with serving(q, processor=processor):
        await eventually(lambda: _count(dead, "waiting", 1), what="the dead letter")
    assert await call(q.get_job(job.id)) is None
    (letter_id,) = await call(dead.jobs("waiting"))
    letter = await call(dead.get_job(letter_id))
    assert letter.data["job_id"] == job.id
    assert letter.data["data"] == {"user": 5}
    assert letter.data["failed_reason"] == "RuntimeError: lost"


async def _count(q: Any, state: str, n: int) -> bool:
    return (await call(q.counts()))[state] == n


@REDIS_AND_MEMORY
async def test_failed_jobs_move_back_and_complete(kit: Any) -> None:
    q = kit.queue("retry-failed")
    broken = {"on": True}

    @q.task(name="fragile", attempts=2)
    def fragile(n: int) -> int:
        if broken["on"]:
            raise RuntimeError("down")
        return n * 10

    jobs = [await call(fragile.enqueue(i)) for i in range(4)]
    prio = await call(fragile.options(priority=3).enqueue(9))
    async with serving(q) as w:
        for job in (*jobs, prio):
            with pytest.raises(JobFailed):
                await call(job.wait(10))
        await eventually(lambda: _count(q, "failed", 5))
        assert await call(q.jobs("failed", 0, -1)) == [j.id for j in (*jobs, prio)]
        await call(q.pause())  # so the states in between can be read
        broken["on"] = False

        assert await call(jobs[0].retry()) is True
        assert await call(jobs[0].retry()) is False  # no longer failed
        back = await call(q.get_job(jobs[0].id))
        assert back.state == "waiting"
        assert back.attempts_made == 0
        assert back.failed_reason is None
        assert back.stacktrace is None

        assert await call(q.retry_failed(limit=2)) == 2
        assert await call(q.counts()) == {**ZERO, "waiting": 3, "failed": 2}
        assert await call(q.retry_failed()) == 2
        assert await call(q.retry_failed()) == 0
        assert (await call(q.get_job(prio.id))).state == "prioritized"
        await call(q.resume())
        results = [await call(j.wait(10)) for j in (*jobs, prio)]
    assert results == [0, 10, 20, 30, 90]
    assert await call(q.counts()) == {**ZERO, "completed": 5}
    assert w.processed == 5
    completed = await call(q.get_job(jobs[1].id))
    assert completed.record.attempts_started == 3  # two failed attempts, then the retry


@REDIS_AND_MEMORY
async def test_an_async_task_past_its_timeout_fails_and_is_retried(kit: Any) -> None:
    q = kit.queue("timeout-async")
    runs: list[int] = []

    @q.task(attempts=2, timeout=0.1)
    async def slow() -> str:
        runs.append(1)
        if len(runs) == 1:
            await asyncio.sleep(30)
        return "second time lucky"

    job = await call(slow.enqueue())
    async with serving(q):
        assert await call(job.wait(10)) == "second time lucky"
    events = await job_events(q, job.id)
    retried = [e for e in events if e.event == "retried"]
    assert len(retried) == 1
    assert retried[0].fields["reason"].startswith("JobTimeout: ")
    assert "0.1s" in retried[0].fields["reason"]


@REDIS_AND_MEMORY
async def test_a_sync_task_past_its_timeout_fails(kit: Any) -> None:
    q = kit.queue("timeout-sync")
    release = threading.Event()

    @q.task(timeout=0.1)
    def stuck() -> None:
        release.wait(10)

    job = await call(stuck.enqueue())
    try:
        async with serving(q) as w:
            with pytest.raises(JobFailed) as caught:
                await call(job.wait(10))
    finally:
        release.set()
    assert caught.value.reason.startswith("JobTimeout: ")
    assert w.failed == 1
    failed = await call(q.get_job(job.id))
    assert "JobTimeout" in failed.stacktrace


@REDIS_AND_MEMORY
async def test_a_timed_out_sync_task_does_not_starve_the_next_job(kit: Any) -> None:
    q = kit.queue("timeout-starve")
    release = threading.Event()

    @q.task(name="stuck", timeout=0.1)
    def stuck() -> None:
        release.wait(10)

    @q.task(name="quick", timeout=0.5)
    def quick() -> str:
        return "ran"

    first = await call(stuck.enqueue())
    second = await call(quick.enqueue())
    try:
        async with serving(q, concurrency=1):
            with pytest.raises(JobFailed, match="JobTimeout"):
                await call(first.wait(10))
            # the worker took the next job: it must get to run, not time out in the queue of
            # a thread pool whose only thread is still inside the abandoned task
            assert await call(second.wait(10)) == "ran"
    finally:
        release.set()
