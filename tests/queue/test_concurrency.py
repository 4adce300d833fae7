"""Jobs in flight: a worker runs up to ``concurrency`` jobs at once, and several workers never run
one job twice."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, serving


@REDIS_AND_MEMORY
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_worker_runs_up_to_concurrency_jobs_at_once(kit: Any, kind: str) -> None:
    q = kit.queue("parallel")
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    # every job waits for two others to be running: only a worker that runs three at once
    # gets past it
    barrier = threading.Barrier(3, timeout=10)

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    if kind == "sync":

        @q.task(name="meet")
        def meet(i: int) -> int:
            enter()
            try:
                barrier.wait()
            finally:
                leave()
            return i

    else:

        @q.task(name="meet")
        async def meet(i: int) -> int:
            enter()
            try:
                await asyncio.to_thread(barrier.wait)
            finally:
                leave()
            return i

    jobs = await call(q.add_bulk([("meet", {"args": [i]}) for i in range(6)]))
    async with serving(q, concurrency=3) as w:
        assert [await call(j.wait(15)) for j in jobs] == list(range(6))
    assert state["most"] == 3
    assert w.processed == 6
    assert w.failed == 0


@REDIS_AND_MEMORY
async def test_several_workers_run_each_job_once(kit: Any) -> None:
    q = kit.queue("shared")
    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()
    lock = threading.Lock()

    @q.task(name="count")
    def count(i: int) -> int:
        with lock:
            runs[i] += 1
        return i

    jobs = await call(q.add_bulk([("count", {"args": [i]}) for i in range(300)]))
    async with (
        serving(q, concurrency=4, name="w1") as w1,
        serving(q, concurrency=4, name="w2") as w2,
        serving(q, concurrency=4, name="w3") as w3,
    ):
        more = await call(q.add_bulk([("count", {"args": [i]}) for i in range(300, 400)]))
        for job in (*jobs, *more):
            await call(job.wait(20))
    for w in (w1, w2, w3):
        by_worker[w.id] = w.processed
    assert sorted(runs) == list(range(400))
    assert set(runs.values()) == {1}
    assert sum(by_worker.values()) == 400
    assert (w1.lost, w2.lost, w3.lost) == (0, 0, 0)
    counts = await call(q.counts())
    assert (counts["completed"], counts["active"], counts["waiting"]) == (400, 0, 0)
