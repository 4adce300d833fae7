"""Helpers of the job queue tests: run a worker the way the test's client mode would, wait for a
condition, read a queue's events and keys."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from redkit.queue import AsyncQueue, Event, Worker
from tests.conftest import call

#: Real Redis and the embedded backend (the cluster runs the tests that need a slot per queue).
REDIS_AND_MEMORY = pytest.mark.parametrize("backend", ["redis", "memory"], indirect=True)


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition"
) -> Any:
    """Poll ``predicate`` (sync, or returning an awaitable) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await call(predicate())
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.01)


class Running:
    """A worker serving in the background: on its own thread for a blocking client, as a task of
    the test's event loop for an asyncio one."""

    def __init__(self, queue: Any, worker: Worker) -> None:
        self.queue = queue
        self.worker = worker
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Running:
        w = self.worker
        if not isinstance(self.queue, AsyncQueue):
            w.start()
            return self
        self.task = asyncio.create_task(w.serve())

        async def registered() -> bool:
            assert self.task is not None
            if self.task.done():
                self.task.result()  # raises what serve() raised
                raise AssertionError("the worker stopped before serving")
            return any(wid == w.id for wid, _ in await self.queue.workers())

        await eventually(registered, what="the worker's registration")
        return self

    def begin_stop(self, grace: float | None = None) -> None:
        self.worker.stop(grace, wait=False)

    async def join(self) -> None:
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
        else:
            await asyncio.to_thread(self.worker.stop)

    async def stop(self, grace: float | None = None) -> None:
        self.begin_stop(grace)
        await self.join()


async def start_worker(queue: Any, **options: Any) -> Running:
    options.setdefault("shutdown_grace", 5.0)
    return await Running(queue, queue.worker(**options)).start()


@contextlib.asynccontextmanager
async def serving(queue: Any, **options: Any) -> AsyncIterator[Worker]:
    """``async with serving(q, concurrency=1) as w:`` a worker runs inside the block."""
    running = await start_worker(queue, **options)
    try:
        yield running.worker
    finally:
        await running.stop()


async def read_events(
    queue: Any,
    until: Callable[[list[Event]], bool],
    *,
    since: str = "0",
    timeout: float = 10.0,
) -> list[Event]:
    """The queue's events from ``since`` until ``until(events so far)`` holds (or ``timeout``
    seconds pass without an event)."""
    seen: list[Event] = []
    if isinstance(queue, AsyncQueue):
        async with contextlib.aclosing(queue.events(since=since, timeout=timeout)) as events:
            async for event in events:
                seen.append(event)
                if until(seen):
                    break
    else:
        for event in queue.events(since=since, timeout=timeout):
            seen.append(event)
            if until(seen):
                break
    return seen


def of_job(events: list[Event], job_id: str) -> list[str]:
    return [e.event for e in events if e.job_id == job_id]


async def all_events(queue: Any) -> list[Event]:
    """Every event kept so far (returns after a short quiet period)."""
    return await read_events(queue, lambda _: False, since="0", timeout=0.2)


async def keys(kit: Any) -> list[str]:
    found = kit.scan()
    if hasattr(found, "__aiter__"):
        return [k async for k in found]
    return list(found)


async def wait_result(job: Any, timeout: float = 10.0) -> Any:
    return await call(job.wait(timeout))
