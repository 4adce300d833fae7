"""``queue.worker(burst=True)``: the worker runs the jobs that are ready (retries made ready
included), then stops by itself; jobs delayed to later stay. Finished jobs name their worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from redkit.queue import AsyncQueue, Worker
from tests.conftest import call


async def burst(queue: Any, **options: Any) -> Worker:
    """Serve ``queue`` in burst mode until it stops by itself (a deadline, not a sleep)."""
    worker = queue.worker(burst=True, shutdown_timeout=5, **options)
    if isinstance(queue, AsyncQueue):
        await asyncio.wait_for(worker.serve(), 30)
    else:
        await asyncio.wait_for(asyncio.to_thread(worker.run), 30)
    return worker


async def test_a_burst_worker_runs_what_is_ready_then_stops(kit: Any) -> None:
    q = kit.queue("burst")
    seen: list[int] = []

    @q.task(name="note", attempts=2)
    def note(n: int) -> int:
        seen.append(n)
        if n == 2 and seen.count(2) == 1:
            raise RuntimeError("first attempt fails")  # retried at once: ready again
        return n

    for n in range(4):
        await call(note.enqueue(n))
    later = await call(note.enqueue_in(3600, 99))
    worker = await burst(q, concurrency=2)
    assert sorted(seen) == [0, 1, 2, 2, 3]
    assert worker.processed == 4
    assert worker.failed == 1
    assert worker.running == 0
    counts = await call(q.counts())
    assert counts["completed"] == 4
    assert counts["delayed"] == 1
    assert counts["active"] == 0
    assert (await call(q.get_job(later.id))).state == "delayed"
    done = await call(q.get_job((await call(q.jobs("completed")))[0]))
    assert done.record.worker_id == worker.id
    assert await call(q.workers()) == []  # it left the queue's list as it stopped


async def test_a_burst_worker_on_an_empty_or_paused_queue_stops_at_once(kit: Any) -> None:
    q = kit.queue("burst-idle")
    assert (await burst(q)).processed == 0
    await call(q.add("never", {}))
    await call(q.pause())
    assert (await burst(q)).processed == 0
    assert (await call(q.counts()))["waiting"] == 1


async def test_burst_is_a_bool(kit: Any) -> None:
    with pytest.raises(TypeError, match="burst"):
        kit.queue("q").worker(burst=1)
    job = await call(kit.queue("q").add("x", {}))
    assert (await call(job.refresh())).record.worker_id is None  # it never ran
