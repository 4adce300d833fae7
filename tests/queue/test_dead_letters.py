"""Exactly one dead letter per job that fails for good, and a worker that survives every per-job
error: a lost reply of the letter's add, a job whose data or options cannot be read, and a loop
that does end by an error (logged, raised by ``stop()`` and ``join()``)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.errors import RedkitConnectionError
from redkit.queue import AsyncQueue, JobFailed
from tests.conftest import call, proxied_url
from tests.queue.conftest import REDIS_AND_MEMORY, eventually, serving, start_worker
from tests.servers import ReplyDroppingProxy


def _through(proxy: ReplyDroppingProxy, mode: str, prefix: str, **options: Any) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(proxied_url(proxy.port), prefix=prefix, **options)


async def _letters(dead: Any) -> list[Any]:
    out = []
    for letter_id in await call(dead.jobs("waiting", 0, -1)):
        out.append(await call(dead.get_job(letter_id)))
    return out


async def test_a_letter_whose_add_reply_is_lost_arrives_once(
    kit: Any, mode: str, backend: str, proxy: ReplyDroppingProxy
) -> None:
    if backend != "redis":
        pytest.skip("the proxy stands in front of the single real Redis")
    # the worker's client goes through the proxy and does not re-send by itself, so the
    # worker's own re-send is what meets the lost reply
    far = _through(proxy, mode, kit.settings.prefix, retry_attempts=0)
    try:
        q = far.queue("lossy", dead_letter="lossy-dead")

        @q.task(name="charge", attempts=1)
        def charge(n: int) -> None:
            raise RuntimeError(f"declined {n}")

        jobs = [
            await call(kit.queue("lossy").add("charge", {"args": [n], "kwargs": {}}))
            for n in range(3)
        ]
        proxy.drop_reply_of(b"{lossy-dead}:wait", count=2)  # the letters' add, twice
        dead = kit.queue("lossy-dead")
        async with serving(q, concurrency=1):
            for job in jobs:
                with pytest.raises(JobFailed):
                    await call(job.wait(10))
            await eventually(lambda: _count(dead, 3), what="three letters")
            await asyncio.sleep(0.5)  # a duplicate, if any, would follow now
        assert proxy.dropped == 2
        letters = await _letters(dead)
        assert sorted(letter.data["job_id"] for letter in letters) == sorted(j.id for j in jobs)
        assert all(letter.id.startswith(f"lossy/{letter.data['job_id']}@") for letter in letters)
    finally:
        await call(far.aclose() if hasattr(far, "aclose") else far.close())


async def _count(q: Any, n: int) -> bool:
    return (await call(q.counts()))["waiting"] == n


@REDIS_AND_MEMORY
async def test_a_job_that_cannot_be_read_fails_for_good_with_its_letter_and_the_worker_goes_on(
    kit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    q = kit.queue("unreadable", dead_letter="unreadable-dead")
    dead = kit.queue("unreadable-dead")

    @q.task(name="ok")
    def ok(n: int) -> int:
        return n * 2

    client = kit.client
    broken_data = await call(q.add("ok", {"args": [1], "kwargs": {}}, attempts=3))
    broken_opts = await call(q.add("ok", {"args": [2], "kwargs": {}}, attempts=3))
    # written by hand, as a producer in another language (or a bug) could
    await call(client.hset(q._core.job_key(broken_data.id), "d", b"\xff{not json"))
    await call(
        client.hset(q._core.job_key(broken_opts.id), "o", json.dumps({"a": "many", "t": "soon"}))
    )
    fine = await call(q.add("ok", {"args": [21], "kwargs": {}}))
    with caplog.at_level(logging.ERROR, logger="redkit.worker"):
        async with serving(q, concurrency=1):
            assert await call(fine.wait(10)) == 42
            for job in (broken_data, broken_opts):
                with pytest.raises(JobFailed):
                    await call(job.wait(10))
            await eventually(lambda: _count(dead, 2), what="two letters")
            later = await call(q.add("ok", {"args": [5], "kwargs": {}}))
            assert await call(later.wait(10)) == 10
    data_letter = next(x for x in await _letters(dead) if x.data["job_id"] == broken_data.id)
    assert data_letter.data["data"] == "\ufffd{not json"
    assert "no JSON" in data_letter.data["data_error"]
    failed = await call(q.get_job(broken_data.id))
    assert failed.attempts_made == 1  # reading it fails the same way each time: no retry
    assert "cannot be read" in failed.failed_reason
    assert (await call(q.get_job(broken_opts.id))).state == "failed"
    assert not any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_a_loop_that_ends_by_an_error_is_logged_and_raised_by_stop_and_join(
    kit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    q = kit.queue("broken-loop")
    with caplog.at_level(logging.ERROR, logger="redkit.worker"):
        running = await start_worker(q, shutdown_timeout=1)
        worker = running.worker

        def broken(*args: Any) -> Any:
            raise RuntimeError("a bug in the loop")

        worker._step = broken  # type: ignore[method-assign]
        await call(q.add("anything", None))  # wakes the loop, which now fails
        if isinstance(q, AsyncQueue):
            assert running.task is not None
            with pytest.raises(RuntimeError, match="a bug in the loop"):
                await asyncio.wait_for(running.task, 10)
        else:
            # its end can wait out one blocking call of the cancel watcher (a block slice)
            await eventually(lambda: worker._finished.is_set(), 30, what="the worker's end")
            with pytest.raises(RuntimeError, match="a bug in the loop"):
                worker.stop()
            with pytest.raises(RuntimeError, match="a bug in the loop"):
                worker.join(5)
    (record,) = [r for r in caplog.records if "its loop ended by an error" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert not worker.serving
    # the rest of the shutdown ran although reporting the last jobs hit the same error
    renewers = [t for t in threading.enumerate() if t.name == f"redkit-renew-{q.name}"]
    assert not [t for t in renewers if t.is_alive()]


@REDIS_AND_MEMORY
async def test_a_finished_job_whose_report_waits_keeps_its_lock_and_runs_once(kit: Any) -> None:
    q = kit.queue("held-report")
    runs: list[str] = []

    @q.task(name="work")
    def work() -> str:
        runs.append("run")
        return "done"

    @q.task(name="poke")
    def poke() -> None:
        return None

    cut = {"on": True}
    a = await start_worker(q, lock_ttl=0.5, concurrency=1)
    step = a.worker._step

    def refused(finishes: list[Any], want: int) -> Any:
        if cut["on"] and finishes:
            raise RedkitConnectionError("the step cannot reach Redis")
        return step(finishes, want)

    # the report of every job this worker finishes is held back (its step fails); its renewal
    # thread still reaches Redis, as it does when only the loop's connection is cut
    a.worker._step = refused  # type: ignore[method-assign]
    job = await call(q.add("work", {"args": [], "kwargs": {}}))
    await eventually(lambda: runs, what="the job to run")
    async with serving(q, lock_ttl=0.5, concurrency=1):  # recovers whatever stalls
        for _ in range(4):  # four times the lock's lifetime; each poke makes the worker look
            await asyncio.sleep(0.5)
            await call(q.add("poke", {"args": [], "kwargs": {}}))
        cut["on"] = False
        assert await call(job.wait(10)) == "done"
    await a.stop()
    assert runs == ["run"], "the held job did not stall and run again"
    assert a.worker.lost == 0
