"""Helpers of the job queue tests: run a worker the way the test's client mode would, wait for a
condition, read a queue's events and keys."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from redkit.queue import AsyncQueue, Event, Worker
from tests.conftest import call

F = TypeVar("F", bound=Callable[..., Any])

#: Tests marked ``@REDIS_AND_MEMORY`` that also run on the test cluster: one of each feature path
#: (add and process, retry, dead letters, timeouts, delay, priority, events, pause, progress,
#: retention, rate limit, stalled recovery, shutdown, admin) so that every script and key of the
#: queue meets a cluster, without running the whole worker suite three times.
ON_CLUSTER: dict[str, frozenset[str]] = {
    "test_admin": frozenset(
        {
            "test_drain_deletes_waiting_jobs_and_delayed_ones_when_asked",
            "test_remove_deletes_a_job_that_is_not_running",
            "test_running_workers_are_listed_and_leave_the_list_when_they_stop",
        }
    ),
    "test_concurrency": frozenset({"test_several_workers_run_each_job_once"}),
    "test_ordering": frozenset(
        {
            "test_a_delayed_job_that_becomes_due_joins_the_back_of_the_queue",
            "test_a_delayed_prioritized_job_keeps_its_priority",
            "test_priorities_lower_number_first_unprioritized_before_all",
        }
    ),
    "test_retries": frozenset(
        {
            "test_a_failed_job_goes_to_the_dead_letter_queue",
            "test_an_async_task_past_its_timeout_fails_and_is_retried",
            "test_failed_jobs_move_back_and_complete",
            "test_unrecoverable_fails_at_once",
        }
    ),
    "test_schedules": frozenset(
        {
            "test_a_limit_makes_that_many_runs_then_the_scheduler_is_over",
            "test_a_retried_run_and_a_deleted_one_make_no_extra_run",
            "test_runs_missed_while_no_worker_ran",
            "test_three_workers_run_each_slot_once_and_none_is_skipped",
        }
    ),
    "test_tasks": frozenset({"test_a_processor_handles_jobs_that_are_no_task"}),
    "test_worker": frozenset(
        {
            "test_a_consumer_sees_each_jobs_events",
            "test_a_job_still_running_after_the_grace_goes_back_to_the_queue",
            "test_a_job_that_ends_within_the_grace_completes",
            "test_a_paused_queue_hands_out_nothing_until_resumed",
            "test_a_queue_that_keeps_nothing_deletes_every_finished_job",
            "test_a_stalled_job_is_taken_over_and_the_late_result_rejected",
            "test_progress_is_recorded_and_published",
            "test_the_rate_limit_holds_across_workers",
        }
    ),
}
_marked: set[tuple[str, str]] = set()


def REDIS_AND_MEMORY(test: F) -> F:
    """Run ``test`` on real Redis and the embedded backend, and also on the test cluster when
    :data:`ON_CLUSTER` names it (the unmarked queue tests run on all three)."""
    module = test.__module__.rpartition(".")[2]
    _marked.add((module, test.__name__))
    backends = ["redis", "memory"]
    if test.__name__ in ON_CLUSTER.get(module, ()):
        backends.append("cluster")
    return pytest.mark.parametrize("backend", backends, indirect=True)(test)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A name in :data:`ON_CLUSTER` that no ``@REDIS_AND_MEMORY`` test carries (renamed, or
    removed) is an error, not a cluster run silently lost."""
    imported = {m.rpartition(".")[2] for m in sys.modules if m.startswith("tests.queue.")}
    lost = sorted(
        f"{module}::{name}"
        for module, names in ON_CLUSTER.items()
        if module in imported
        for name in names
        if (module, name) not in _marked
    )
    if lost:
        raise pytest.UsageError(f"ON_CLUSTER names no @REDIS_AND_MEMORY test: {', '.join(lost)}")


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
    options.setdefault("shutdown_timeout", 5.0)
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
