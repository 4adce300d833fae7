"""``@q.task``, the worker's round trip and dispatch: what a job looks like after it ran."""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from redkit.queue import (
    STATES,
    AsyncJob,
    AsyncTask,
    Job,
    JobFailed,
    Task,
    current_job,
)
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, all_events, eventually, of_job, serving

ZERO = dict.fromkeys(STATES, 0)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_worker_runs_a_task_and_records_the_outcome(kit: Any, mode: str, kind: str) -> None:
    q = kit.queue("round-trip")
    seen: list[Any] = []

    if kind == "sync":

        @q.task
        def send(to: str, *, subject: str) -> dict[str, str]:
            seen.append(current_job())
            return {"to": to, "subject": subject}

    else:

        @q.task
        async def send(to: str, *, subject: str) -> dict[str, str]:
            await asyncio.sleep(0)
            seen.append(current_job())
            return {"to": to, "subject": subject}

    job = await call(send.enqueue("a@example.com", subject="hi"))
    assert job.state == "waiting"
    async with serving(q, concurrency=2) as w:
        assert await call(job.wait(10)) == {"to": "a@example.com", "subject": "hi"}
        await eventually(lambda: w.processed == 1)
    assert (w.processed, w.failed, w.lost, w.running) == (1, 0, 0, 0)

    assert job.state == "completed"
    assert job.result == {"to": "a@example.com", "subject": "hi"}
    fresh = await call(q.get_job(job.id))
    assert fresh.state == "completed"
    assert fresh.data == {"args": ["a@example.com"], "kwargs": {"subject": "hi"}}
    assert fresh.result == {"to": "a@example.com", "subject": "hi"}
    assert fresh.failed_reason is None
    assert fresh.stacktrace is None
    record = fresh.record
    assert record.attempts_started == 1
    assert record.created_at <= record.processed_at <= record.finished_at
    assert await call(q.counts()) == {**ZERO, "completed": 1}
    assert await call(q.jobs("completed")) == [job.id]
    assert of_job(await all_events(q), job.id) == ["added", "active", "completed"]

    # inside the task, current_job() is the running job (a Job in a sync task, an AsyncJob in an
    # async one); outside it is None
    assert len(seen) == 1
    assert isinstance(seen[0], AsyncJob if kind == "async" else Job)
    assert seen[0].id == job.id
    assert seen[0].state == "active"
    assert current_job() is None

    # the same id again gives the finished job back, it does not run again
    again = await call(send.options(job_id=job.id).enqueue("other", subject="x"))
    assert (again.state, again.result) == ("completed", fresh.result)


async def test_attempts_made_counts_the_attempt_that_completed(kit: Any) -> None:
    q = kit.queue("attempts")
    tries: list[int] = []

    @q.task(attempts=3)
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    @q.task
    def steady() -> str:
        return "ok"

    first = await call(steady.enqueue())
    second = await call(flaky.enqueue())
    async with serving(q, concurrency=1):
        await call(first.wait(10))
        await call(second.wait(10))
    # one attempt made and it succeeded; two attempts made, the second succeeded
    assert (first.attempts_made, second.attempts_made) == (1, 2)


async def test_a_task_called_directly_runs_here(kit: Any, mode: str) -> None:
    q = kit.queue("local")

    @q.task
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    @q.task(name="mul")
    async def mul(a: int, b: int) -> int:
        return a * b

    assert add(2, b=3) == 5
    assert await mul(2, 3) == 6
    assert current_job() is None
    assert add.__doc__ == "Add two numbers."
    assert add.__name__ == "add"
    assert inspect.signature(add) == inspect.signature(add.__wrapped__)
    assert add.name == f"{__name__}.test_a_task_called_directly_runs_here.<locals>.add"
    assert mul.name == "mul"
    assert isinstance(add, Task if mode == "sync" else AsyncTask)
    assert set(q.tasks) == {add.name, "mul"}
    assert q.name in repr(add)
    assert "mul" in repr(mul)
    assert await call(q.counts()) == ZERO  # nothing was queued


async def test_enqueue_variants_store_args_and_options(kit: Any) -> None:
    q = kit.queue("enqueue")

    @q.task(attempts=3, timeout=20, priority=5)
    def work(x: int, *, label: str = "") -> str:
        return f"{x}{label}"

    now = await call(work.enqueue(1, label="a"))
    assert now.state == "prioritized"  # the task's priority
    later = await call(work.enqueue_in(60, 2))
    later_td = await call(work.enqueue_in(timedelta(minutes=1), 3))
    at = await call(work.enqueue_at(datetime.now(timezone.utc) + timedelta(hours=1), 4))
    assert [j.state for j in (later, later_td, at)] == ["delayed"] * 3
    plain = await call(work.options(priority=0).enqueue(5))
    assert plain.state == "waiting"

    fixed = work.options(job_id="daily-report")
    assert isinstance(fixed, type(work))
    first = await call(fixed.enqueue(6, label="first"))
    second = await call(fixed.enqueue(7, label="second"))
    assert first.id == second.id == "daily-report"
    assert second.data == {"args": [6], "kwargs": {"label": "first"}}
    assert await call(fixed.options(priority=1).enqueue_in(5, 8)) == first

    record = (await call(q.get_job(now.id))).record
    assert record.name == work.name
    assert record.data == {"args": [1], "kwargs": {"label": "a"}}
    assert record.options == {"a": 3, "t": 20}
    assert record.priority == 5
    assert (await call(q.get_job(later.id))).data == {"args": [2], "kwargs": {}}
    assert await call(q.counts()) == {
        **ZERO,
        "waiting": 1,
        "prioritized": 2,
        "delayed": 3,
    }


async def test_registering_another_function_under_a_taken_name_is_refused(kit: Any) -> None:
    q = kit.queue("names")

    def one() -> None: ...

    def two() -> None: ...

    q.task(name="job")(one)
    q.task(name="job")(one)  # the same function again is fine
    with pytest.raises(ValueError, match="already registered"):
        q.task(name="job")(two)


@REDIS_AND_MEMORY
async def test_a_worker_dispatches_by_name(kit: Any) -> None:
    q = kit.queue("dispatch")
    calls: list[str] = []

    @q.task(name="a")
    def task_a(n: int) -> str:
        calls.append(f"a{n}")
        return "A"

    @q.task(name="b")
    async def task_b(n: int) -> str:
        calls.append(f"b{n}")
        return "B"

    jobs = await call(
        q.add_bulk(
            [
                ("a", {"args": [1], "kwargs": {}}),
                ("b", {"args": [2]}),
                ("a", {"kwargs": {"n": 3}}),
            ]
        )
    )
    async with serving(q, concurrency=1):
        results = [await call(j.wait(10)) for j in jobs]
    assert results == ["A", "B", "A"]
    assert calls == ["a1", "b2", "a3"]


@REDIS_AND_MEMORY
async def test_an_unknown_job_name_fails_at_once_with_a_clear_reason(kit: Any) -> None:
    q = kit.queue("unknown")

    @q.task
    def known() -> None: ...

    job = await call(q.add("nobody.knows.me", {"x": 1}, attempts=5))
    bad_data = await call(q.add(known.name, {"args": "not a list"}, attempts=5))
    async with serving(q) as w:
        with pytest.raises(JobFailed) as caught:
            await call(job.wait(10))
        with pytest.raises(JobFailed, match="args, kwargs"):
            await call(bad_data.wait(10))
    reason = caught.value.reason
    assert "no task named 'nobody.knows.me'" in reason
    assert "'unknown'" in reason
    await call(job.refresh())
    await call(bad_data.refresh())
    assert job.state == "failed"
    assert job.failed_reason == reason
    assert job.attempts_made == 1  # not retried: no attempt could succeed
    assert bad_data.attempts_made == 1
    assert w.failed == 2


@REDIS_AND_MEMORY
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_processor_handles_jobs_that_are_no_task(kit: Any, kind: str) -> None:
    q = kit.queue("processor")
    handled: list[tuple[str, Any]] = []

    @q.task(name="registered")
    def registered() -> str:
        return "task"

    if kind == "sync":

        def processor(job: Any) -> Any:
            assert current_job() is job
            assert isinstance(job, Job)
            handled.append((job.name, job.data))
            return {"echo": job.data}

    else:

        async def processor(job: Any) -> Any:
            assert current_job() is job
            assert isinstance(job, AsyncJob)
            handled.append((job.name, job.data))
            return {"echo": job.data}

    raw = await call(q.add("resize", {"w": 10}))
    task_job = await call(q.add("registered", {"args": []}))
    async with serving(q, processor=processor):
        assert await call(raw.wait(10)) == {"echo": {"w": 10}}
        assert await call(task_job.wait(10)) == "task"
    assert handled == [("resize", {"w": 10})]


@REDIS_AND_MEMORY
async def test_a_result_that_is_not_json_fails_the_job(kit: Any) -> None:
    q = kit.queue("bad-result")

    @q.task(attempts=3)
    def returns_a_set() -> Any:
        return {1, 2}

    job = await call(returns_a_set.enqueue())
    async with serving(q):
        with pytest.raises(JobFailed, match="SerializationError"):
            await call(job.wait(10))
    await call(job.refresh())
    assert job.attempts_made == 1  # retrying cannot help
    assert "result" in job.failed_reason


async def test_wait_on_a_failed_job_leaves_the_handle_up_to_date(kit: Any) -> None:
    q = kit.queue("wait-failed")

    @q.task
    def boom() -> None:
        raise ValueError("boom")

    job = await call(boom.enqueue())
    async with serving(q):
        with pytest.raises(JobFailed) as caught:
            await call(job.wait(10))
    assert caught.value.reason == "ValueError: boom"
    # like a completed job's handle after wait(), the failed one's says how it ended
    assert job.state == "failed"
    assert job.failed_reason == "ValueError: boom"
    assert job.attempts_made == 1
