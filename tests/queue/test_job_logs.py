"""Job logs: ``current_job().log(line)`` from a task, a bounded list kept in the job's own hash
and read back from the job handle, across attempts, gone with the job."""

from __future__ import annotations

from typing import Any

import pytest

from redkit.queue import Backoff, JobFailed, current_job
from tests.conftest import call
from tests.queue.conftest import keys, serving


async def test_a_tasks_log_lines_are_read_back_in_order_across_attempts(kit: Any) -> None:
    q = kit.queue("logged")
    seen: list[list[str]] = []

    @q.task(name="import", attempts=2, backoff=Backoff.fixed(0.01))
    def import_rows(rows: int) -> int:
        job = current_job()
        assert job.log(f"attempt {job.attempts_made + 1}: reading {rows} rows") is True
        if job.attempts_made == 0:
            job.log("the source timed out")
            raise TimeoutError("source")
        job.log("done")
        seen.append(job.logs)
        return rows

    job = await call(import_rows.enqueue(12))
    async with serving(q):
        assert await call(job.wait(10)) == 12
    lines = [
        "attempt 1: reading 12 rows",
        "the source timed out",
        "attempt 2: reading 12 rows",
        "done",
    ]
    assert (await call(q.get_job(job.id))).logs == lines
    await call(job.refresh())
    assert job.logs == lines
    assert seen == [["attempt 2: reading 12 rows", "done"]]  # what this handle logged itself


async def test_a_log_keeps_its_latest_lines_each_cut_and_checked(make_kit: Any) -> None:
    kit = make_kit(queue_max_logs=3)
    q = kit.queue("bounded-log", keep=False)
    errors: list[BaseException] = []

    @q.task(name="chatty")
    def chatty() -> None:
        job = current_job()
        for i in range(5):
            job.log(f"line {i}")
        job.log("x" * 10_000)
        try:
            job.log(42)
        except TypeError as exc:
            errors.append(exc)
        raise RuntimeError("keep the job to read its log")

    failing = await call(q.add("chatty", {"args": [], "kwargs": {}}))
    async with serving(q):
        with pytest.raises(JobFailed):
            await call(failing.wait(10))
    logs = (await call(q.get_job(failing.id))).logs
    assert logs[:2] == ["line 3", "line 4"]
    assert len(logs) == 3
    assert logs[2] == "x" * 3999 + "\u2026"
    assert [str(e) for e in errors] == ["a job's log line is a str, not int"]
    await call(failing.remove())
    assert await call(q.get_job(failing.id)) is None
    assert [k for k in await keys(kit) if failing.id in k] == []  # the log went with the job


async def test_log_is_for_the_running_task(kit: Any) -> None:
    job = await call(kit.queue("outside").add("x", None))
    with pytest.raises(RuntimeError, match="for the task running the job"):
        await call(job.log("from outside"))
    assert (await call(job.refresh())).logs == []
