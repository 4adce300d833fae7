"""The order a worker takes jobs in: FIFO, priorities, delays. One job at a time
(``concurrency=1``), so the order the task runs in is the order the queue handed jobs out in."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, all_events, eventually, serving


def recorder(q: Any) -> tuple[Any, list[Any]]:
    ran: list[Any] = []

    @q.task(name="record")
    def record(tag: Any) -> Any:
        ran.append(tag)
        return tag

    return record, ran


async def test_jobs_run_first_in_first_out(kit: Any) -> None:
    q = kit.queue("fifo")
    record, ran = recorder(q)
    for i in range(10):
        await call(record.enqueue(i))
    jobs = await call(q.add_bulk([("record", {"args": [i]}) for i in range(10, 40)]))
    async with serving(q, concurrency=1):
        await call(jobs[-1].wait(10))
    assert ran == list(range(40))


@REDIS_AND_MEMORY
async def test_priorities_lower_number_first_unprioritized_before_all(kit: Any) -> None:
    q = kit.queue("prio")
    record, ran = recorder(q)
    order = [
        ("p5", 5),
        ("plain1", 0),
        ("p1a", 1),
        ("p3", 3),
        ("p1b", 1),
        ("plain2", None),
        ("p2", 2),
        ("p1c", 1),
    ]
    for tag, prio in order:
        await call(record.options(priority=prio).enqueue(tag))
    last = await call(q.add("record", {"args": ["big"]}, priority=2**31 - 1))
    async with serving(q, concurrency=1):
        await call(last.wait(10))
    assert ran == ["plain1", "plain2", "p1a", "p1b", "p1c", "p2", "p3", "p5", "big"]


@REDIS_AND_MEMORY
async def test_jobs_of_one_priority_run_in_the_order_they_were_added(kit: Any) -> None:
    q = kit.queue("prio-fifo")
    record, ran = recorder(q)
    for i in range(20):
        await call(record.options(priority=7).enqueue(i))
    jobs = await call(
        q.add_bulk([("record", {"args": [i]}, {"priority": 7}) for i in range(20, 50)])
    )
    jobs += await call(q.add_bulk([("record", {"args": [-1]}, {"priority": 6})]))
    async with serving(q, concurrency=1):
        await call(jobs[-2].wait(10))
    assert ran == [-1, *range(50)]


@REDIS_AND_MEMORY
async def test_a_delayed_job_waits_for_its_delay(kit: Any) -> None:
    q = kit.queue("delay")
    record, ran = recorder(q)
    later = await call(record.enqueue_in(0.4, "later"))
    soon = await call(record.enqueue_in(0.1, "soon"))
    now = await call(record.enqueue("now"))
    async with serving(q, concurrency=1):
        assert await call(later.wait(10)) == "later"
    assert ran == ["now", "soon", "later"]
    for job, delay in ((later, 0.4), (soon, 0.1)):
        record_ = (await call(q.get_job(job.id))).record
        # never handed out before it was due (both times are Redis' clock)
        assert (record_.processed_at - record_.created_at).total_seconds() >= delay
    assert (await call(q.get_job(now.id))).state == "completed"


@REDIS_AND_MEMORY
async def test_a_delayed_job_that_becomes_due_joins_the_back_of_the_queue(kit: Any) -> None:
    q = kit.queue("delay-due")
    gate = threading.Event()
    ran: list[str] = []

    @q.task(name="step")
    def step(tag: str) -> str:
        if tag == "blocker":
            gate.wait(10)
        ran.append(tag)
        return tag

    async with serving(q, concurrency=1):
        blocker = await call(step.enqueue("blocker"))
        delayed = await call(step.enqueue_in(0.05, "delayed"))
        queued = await call(step.enqueue("queued"))
        # the delayed job is due while the worker is busy; it then waits behind "queued"
        await asyncio.sleep(0.1)
        gate.set()
        await call(delayed.wait(10))
    assert ran == ["blocker", "queued", "delayed"]
    assert (await call(q.get_job(queued.id))).state == "completed"
    assert blocker.id != delayed.id


@REDIS_AND_MEMORY
async def test_a_delayed_prioritized_job_keeps_its_priority(kit: Any) -> None:
    q = kit.queue("delay-prio")
    record, ran = recorder(q)
    first = await call(record.options(priority=1).enqueue_in(0.05, "urgent-later"))
    await asyncio.sleep(0.1)  # due now, still in the delayed set until a worker looks
    await call(record.options(priority=5).enqueue("low"))
    await call(record.enqueue("plain"))
    async with serving(q, concurrency=1) as w:
        await call(first.wait(10))
        await eventually(lambda: w.processed == 3)
    assert ran == ["plain", "urgent-later", "low"]
    events = [e.event for e in await all_events(q) if e.job_id == first.id]
    assert events[:1] == ["added"]
    assert "completed" in events
