"""The producer side: ``kit.queue(name)`` returns a :class:`Queue` (or :class:`AsyncQueue`),
whose ``add`` / ``add_bulk`` / ``@task`` put jobs in Redis and whose :class:`Job` handles read
them back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from .._checks import int64, shown
from .._durations import Duration, seconds, to_ms
from .._ops import Batch, Flow
from ._api import (
    AsyncJob,
    AsyncTask,
    Job,
    P,
    R,
    Task,
    TaskSpec,
    _AsyncRuns,
    _JobBase,
    _options,
    _Runs,
    _share_docs,
)
from ._core import BULK_CHUNK, EventReader, QueueCore, check_since, then
from ._flows import Group, Node, batches, plan
from ._metrics import Metrics
from ._options import Backoff, JobOptions, check_backoff, check_name
from ._records import Event, JobRecord, WorkerInfo
from ._schedules import Schedule, ScheduleSpec

__all__ = ["AsyncQueue", "Queue"]

J = TypeVar("J", bound=_JobBase)


# -- queues -----------------------------------------------------------------------------------
class _QueueBase(Generic[J]):
    """What :class:`Queue` and :class:`AsyncQueue` share: the logic of each call, as batches and
    flows of the queue's core (no I/O); the twins send them through their executor."""

    _job_class: Any = None  # Job or AsyncJob

    def __init__(self, kit: Any, name: object, **defaults: Any) -> None:
        self._kit = kit
        self._x = kit._executor
        self._core = QueueCore(kit, name, **defaults)
        self.name = self._core.name
        self.tasks: dict[str, TaskSpec] = {}
        """Tasks registered on this queue, by name (what a worker dispatches on)."""

    def _job(
        self,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        pending: list[Any] | None = None,
    ) -> J:
        job: J = self._job_class(self._core, self._x, job_id, state, record)
        job._pending = pending
        return job

    def _added(self, prepared: list[list[Any]]) -> Flow[list[J]]:
        """Flow of ``add`` and ``add_bulk``: the jobs added (validated before: ``prepared``)."""
        rows = yield from self._core.add_jobs(prepared)
        return [self._job(job_id, state, record, sent) for job_id, state, record, sent in rows]

    def _one(self, name: str, data: Any, opts: JobOptions | None) -> Flow[J]:
        """Flow of adding one job (``add``, ``task.enqueue``), checked before it is sent."""
        return _first(self._added([self._core.prepare(name, data, opts)]))

    def _bulk(self, jobs: Iterable[Any]) -> Flow[list[J]]:
        prepared = [_prepare(self._core, item) for item in jobs]  # all checked before a send
        return self._added(prepared)

    def _got(self, job_id: str) -> Batch[J | None]:
        """Batch of ``get_job``."""

        def handle(record: JobRecord | None) -> J | None:
            return None if record is None else self._job(job_id, record.state, record)

        return then(self._core.get(job_id), handle)

    def _task(self, cls: Any, fn: Any, name: str | None, options: dict[str, Any]) -> Any:
        """``@task`` and ``@task(...)``: ``cls`` (Task or AsyncTask) of each function."""
        _options(options)

        def wrap(f: Callable[..., Any]) -> Any:
            return cls(self, self._spec(f, name, dict(options)))

        return wrap(fn) if fn is not None else wrap

    @property
    def dead_letter(self) -> str | None:
        return self._core.dead_letter

    def _spec(self, fn: Callable[..., Any], name: str | None, options: dict[str, Any]) -> TaskSpec:
        if not callable(fn):
            raise TypeError(f"@queue.task decorates a function, not {fn!r}")
        task_name = check_name(
            "task name", name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        )
        if "job_id" in options:
            raise TypeError("job_id is per job: use task.options(job_id=...).enqueue(...)")
        checked = check_backoff(options.pop("backoff", None), allow_callable=True)
        fn_backoff = self._core.backoff_fn
        if checked is not None and not isinstance(checked, Backoff):
            fn_backoff, checked = checked, None
        opts = JobOptions.build(**options, backoff=checked, defaults=self._core.defaults)
        existing = self.tasks.get(task_name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"a different task named {task_name!r} is already registered")
        spec = TaskSpec(fn, task_name, opts, fn_backoff)
        self.tasks[task_name] = spec
        return spec

    def _scheduled(
        self,
        schedule_id: object,
        name: object,
        data: Any,
        when: dict[str, Any],
        options: Mapping[str, Any],
        task_defaults: JobOptions | None = None,
    ) -> Flow[Schedule]:
        """Flow of ``schedule`` (and ``task.schedule``): everything checked before a send."""
        if isinstance(name, (Task, AsyncTask)):  # q.schedule(id, task): its name and options
            task_defaults = task_defaults or name.spec.options
            name = name.name
        if data is None and name in self.tasks:  # a task called with no argument
            data = {"args": [], "kwargs": {}}
        spec = ScheduleSpec.build(**when)
        opts = JobOptions.build(**_options(options), defaults=task_defaults or self._core.defaults)
        return self._core.sched.upsert(schedule_id, name, data, spec, opts)

    def node(self, name: str, data: Any = None, **options: Any) -> Node:
        """A job ``name`` with ``data`` on this queue, as one job of a flow (``add_flow``,
        ``chain``, ``chord``, ``group``); job options as for ``add`` (no ``dedup``; no
        ``delay`` on a job with children). Its handler reads the outcomes of its children in
        ``job.children``."""
        opts = _job_options(self._core, options) or self._core.defaults
        return Node(self, check_name("job name", name), data, opts, takes_results=False)

    def _flowed(self, item: Node | Group) -> Flow[Any]:
        """Flow of ``add_flow``: every job planned and checked, then added parents first."""
        if isinstance(item, Node):
            roots: tuple[Node, ...] = (item,)
        elif isinstance(item, Group):
            roots = item.nodes
        else:
            raise TypeError(f"add_flow takes a Node or a Group, not {type(item).__name__}")
        placed = plan(self._kit, roots)
        states: dict[tuple[str, str], str | None] = {}
        for queue, jobs in batches(placed):
            core = queue._core
            for i in range(0, len(jobs), BULK_CHUNK):
                for job_id, state, _ in (yield core.add(jobs[i : i + BULK_CHUNK])):
                    states[(core.name, job_id)] = state
        out = []
        for p in placed[: len(roots)]:
            queue = p.node.queue
            state = states.get((queue.name, p.id))
            record = None
            if state is None:  # added before (a re-sent flow): read back
                record = yield queue._core.get(p.id)
                state = "unknown" if record is None else record.state
            out.append(queue._job(p.id, state, record, None if record else p.args))
        return out[0] if isinstance(item, Node) else out

    def _cleaned(self, state: object, older_than: Duration, limit: int | None) -> Flow[int]:
        """Flow of ``clean``: the arguments checked before the first call."""
        if not isinstance(state, str):
            raise TypeError(f"state is a str, not {shown(state)}")
        self._core.ended_set(state)
        age = to_ms(seconds("older_than", older_than, zero=True))
        if limit is not None:
            int64("limit", limit, 1)
        return self._core.clean_all(state, age, limit)

    def register(self, spec: TaskSpec) -> None:
        """Register a task spec made elsewhere (framework adapters)."""
        self.tasks[spec.name] = spec

    def worker(self, **options: Any) -> Any:
        """A :class:`~redkit.queue.Worker` for this queue (see its options)."""
        from ._worker import Worker

        return Worker(self, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Queue(_QueueBase[Job]):
    """A job queue over a blocking client: ``kit.queue("emails")``."""

    _job_class = Job
    _x: _Runs

    def _add_one(self, name: str, data: Any, opts: JobOptions | None) -> Job:
        return self._x.drive(self._one(name, data, opts))

    def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job: ``name`` says what to run, ``data`` (JSON) what with. Options:
        ``job_id`` (an existing id returns that job instead), ``delay`` (seconds, timedelta or
        aware datetime), ``priority`` (1 is the highest; 0/None: before every prioritized
        job), ``attempts``, ``backoff``, ``timeout`` (seconds), ``keep`` (retention)."""
        return self._x.drive(self._one(name, data, _job_options(self._core, options)))

    def add_bulk(self, jobs: Iterable[Any]) -> list[Job]:
        """Add many jobs, one round trip per 1,000: each item is ``(name, data)``, ``(name, data,
        options)`` or a mapping with ``name``, ``data`` and options. Every job is validated
        before anything is sent."""
        return self._x.drive(self._bulk(jobs))

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def task(self, fn: Any = None, /, *, name: str | None = None, **options: Any) -> Any:
        """Register a sync or async function as a task of this queue: ``@q.task`` or
        ``@q.task(attempts=3, backoff=Backoff.exponential(1), timeout=60, priority=5)``."""
        return self._task(Task, fn, name, options)

    @overload
    def add_flow(self, flow: Node, /) -> Job: ...
    @overload
    def add_flow(self, flow: Group, /) -> list[Job]: ...
    def add_flow(self, flow: Node | Group, /) -> Job | list[Job]:
        """Add a flow: a job and the children it waits for (``task.s(...).after(...)``,
        ``chain``, ``chord``), on any queues of this kit; returns the handle of its root (a
        ``group``: one per job). Every job is checked before anything is written, parents are
        written before their children; a flow on one queue is written in one atomic call."""
        return self._x.drive(self._flowed(flow))  # type: ignore[no-any-return]

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, read now; None when there is none."""
        return self._x.run(self._got(job_id))

    def counts(self) -> dict[str, int]:
        """Jobs per state: waiting, prioritized, delayed, active, completed, failed, cancelled
        and waiting_children (parents of flows)."""
        return self._x.run(self._core.counts())

    def jobs(self, state: str, start: int = 0, stop: int = 99) -> list[str]:
        """Ids of the jobs in ``state``, oldest first, by position (``stop`` inclusive)."""
        return self._x.run(self._core.ids(state, start, stop))

    def pause(self) -> bool:
        """Stop handing out jobs (running ones finish). True when it was running."""
        return self._x.run(self._core.pause(True))

    def resume(self) -> bool:
        """Hand out jobs again (wakes the waiting workers). True when it was paused."""
        return self._x.run(self._core.pause(False))

    def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return self._x.run(self._core.is_paused())

    def metrics(self, minutes: int = 60) -> Metrics:
        """Jobs completed, failed and cancelled per minute over the last ``minutes`` (up to
        ``queue_metrics_minutes``), wait and run time histograms over the last hour of those,
        and totals, as the workers record them."""
        return self._x.run(self._core.read_metrics(minutes))

    def retry_failed(self, limit: int | None = None) -> int:
        """Move failed jobs (all, or the oldest ``limit``) back to the queue; returns how many."""
        return self._x.drive(self._core.retry_all(limit))

    def clean(self, state: str, older_than: Duration = 0, *, limit: int | None = None) -> int:
        """Delete the ``completed``, ``failed`` or ``cancelled`` jobs that ended at least
        ``older_than`` seconds ago (Redis' clock), oldest first, 1,000 per round trip: all of
        them, or the oldest ``limit``. Returns how many were deleted."""
        return self._x.drive(self._cleaned(state, older_than, limit))

    def drain(self, *, delayed: bool = False) -> int:
        """Delete every waiting job (and delayed ones when asked); running jobs go on."""
        return self._x.drive(self._core.drain_all(delayed))

    def events(self, since: str = "$", timeout: Duration | None = None) -> Iterator[Event]:
        """The queue's events as they come: after Redis' newest event at the moment of this
        call (``since="$"``), from the oldest kept (``"0"``) or after an event id. Ends after
        ``timeout`` seconds without an event (None: never)."""
        since = check_since(since)
        last = since if since != "$" else self._x.run(self._core.last_event_id())
        return self._events(EventReader(self._core, last, timeout))

    def _events(self, reader: EventReader) -> Iterator[Event]:
        while (batch := reader.next()) is not None:
            yield from reader.seen(self._x.run(batch))

    def last_event_id(self) -> str:
        """The id of the newest event kept (``"0-0"`` for none), from Redis: as ``since`` of
        :meth:`events`, every event after it."""
        return self._x.run(self._core.last_event_id())

    def workers(self) -> list[tuple[str, float]]:
        """Workers seen on this queue: (worker id, last heartbeat in ms since the epoch)."""
        return self._x.run(self._core.workers_info())

    def worker_details(self) -> list[WorkerInfo]:
        """The workers seen on this queue with what their last heartbeat told (host, pid,
        concurrency, jobs in hand, jobs processed and failed), the least recently seen first."""
        return self._x.drive(self._core.worker_details())

    def schedule(
        self,
        schedule_id: str,
        name: str,
        data: Any = None,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        tz: str = "UTC",
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        missed: str = "run_once",
        grace: Duration = 60,
        **options: Any,
    ) -> Schedule:
        """Create or change the job scheduler ``schedule_id``: a job ``name`` with ``data`` on
        every slot of ``cron`` (in time zone ``tz``) or ``every`` interval (aligned on the epoch,
        or on ``start``), from ``start`` to ``end``, at most ``limit`` runs. ``missed``: a run
        that comes due more than ``grace`` late (no worker ran) runs once (``"run_once"``) or is
        skipped (``"skip"``). Job options: ``priority``, ``attempts``, ``backoff``, ``timeout``,
        ``keep``. Calling it again with the same definition changes nothing (call it at every
        start-up); a different one replaces the pending run."""
        return self._x.drive(
            self._scheduled(
                schedule_id,
                name,
                data,
                _when(cron, every, tz, start, end, limit, missed, grace),
                options,
            )
        )

    def get_schedule(self, schedule_id: str) -> Schedule | None:
        """The job scheduler with this id; None when there is none."""
        return self._x.run(self._core.sched.get(schedule_id))

    def schedules(self, start: int = 0, stop: int = 99) -> list[Schedule]:
        """The queue's job schedulers, the next to run first (those that are over last), by
        position (``stop`` inclusive)."""
        return self._x.drive(self._core.sched.listed(start, stop))

    def unschedule(self, schedule_id: str) -> bool:
        """Remove a job scheduler and its pending run (a run already started goes on). True
        when there was one."""
        return self._x.run(self._core.sched.remove(schedule_id))


class AsyncQueue(_QueueBase[AsyncJob]):
    """A job queue over an asyncio client: ``kit.queue("emails")`` on ``redkit.asyncio.Redkit``."""

    _job_class = AsyncJob
    _x: _AsyncRuns

    async def _add_one(self, name: str, data: Any, opts: JobOptions | None) -> AsyncJob:
        return await self._x.drive(self._one(name, data, opts))

    async def add(self, name: str, data: Any = None, **options: Any) -> AsyncJob:
        return await self._x.drive(self._one(name, data, _job_options(self._core, options)))

    async def add_bulk(self, jobs: Iterable[Any]) -> list[AsyncJob]:
        return await self._x.drive(self._bulk(jobs))

    @overload
    def task(self, fn: Callable[P, R], /) -> AsyncTask[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], AsyncTask[P, R]]: ...
    def task(self, fn: Any = None, /, *, name: str | None = None, **options: Any) -> Any:
        return self._task(AsyncTask, fn, name, options)

    @overload
    async def add_flow(self, flow: Node, /) -> AsyncJob: ...
    @overload
    async def add_flow(self, flow: Group, /) -> list[AsyncJob]: ...
    async def add_flow(self, flow: Node | Group, /) -> AsyncJob | list[AsyncJob]:
        return await self._x.drive(self._flowed(flow))

    async def get_job(self, job_id: str) -> AsyncJob | None:
        return await self._x.run(self._got(job_id))

    async def counts(self) -> dict[str, int]:
        return await self._x.run(self._core.counts())

    async def jobs(self, state: str, start: int = 0, stop: int = 99) -> list[str]:
        return await self._x.run(self._core.ids(state, start, stop))

    async def pause(self) -> bool:
        return await self._x.run(self._core.pause(True))

    async def resume(self) -> bool:
        return await self._x.run(self._core.pause(False))

    async def is_paused(self) -> bool:
        return await self._x.run(self._core.is_paused())

    async def metrics(self, minutes: int = 60) -> Metrics:
        return await self._x.run(self._core.read_metrics(minutes))

    async def retry_failed(self, limit: int | None = None) -> int:
        return await self._x.drive(self._core.retry_all(limit))

    async def clean(self, state: str, older_than: Duration = 0, *, limit: int | None = None) -> int:
        return await self._x.drive(self._cleaned(state, older_than, limit))

    async def drain(self, *, delayed: bool = False) -> int:
        return await self._x.drive(self._core.drain_all(delayed))

    def events(self, since: str = "$", timeout: Duration | None = None) -> AsyncIterator[Event]:
        """The queue's events as they come (``async for``): from the moment of this call
        (``since="$"``, by Redis' clock: nothing is sent before the first iteration, which asks
        Redis its time and goes back by the time passed since the call), from the oldest kept
        (``"0"``) or after an event id. Ends after ``timeout`` seconds without an event (None:
        never)."""
        reader = EventReader(self._core, check_since(since), timeout)
        return self._events(reader, time.monotonic())

    async def _events(self, reader: EventReader, called: float) -> AsyncIterator[Event]:
        if reader.last == "$":
            reader.last = await self._x.run(self._core.since_moment(called))
        while (batch := reader.next()) is not None:
            for event in reader.seen(await self._x.run(batch)):
                yield event

    async def last_event_id(self) -> str:
        return await self._x.run(self._core.last_event_id())

    async def workers(self) -> list[tuple[str, float]]:
        return await self._x.run(self._core.workers_info())

    async def worker_details(self) -> list[WorkerInfo]:
        return await self._x.drive(self._core.worker_details())

    async def schedule(
        self,
        schedule_id: str,
        name: str,
        data: Any = None,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        tz: str = "UTC",
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        missed: str = "run_once",
        grace: Duration = 60,
        **options: Any,
    ) -> Schedule:
        return await self._x.drive(
            self._scheduled(
                schedule_id,
                name,
                data,
                _when(cron, every, tz, start, end, limit, missed, grace),
                options,
            )
        )

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        return await self._x.run(self._core.sched.get(schedule_id))

    async def schedules(self, start: int = 0, stop: int = 99) -> list[Schedule]:
        return await self._x.drive(self._core.sched.listed(start, stop))

    async def unschedule(self, schedule_id: str) -> bool:
        return await self._x.run(self._core.sched.remove(schedule_id))


def _when(*values: Any) -> dict[str, Any]:
    """The schedule's parameters of ``schedule(...)``, by name."""
    names = ("cron", "every", "tz", "start", "end", "limit", "missed", "grace")
    return dict(zip(names, values))


def _first(flow: Flow[list[J]]) -> Flow[J]:
    return (yield from flow)[0]


def _job_options(core: QueueCore, options: Mapping[str, Any]) -> JobOptions | None:
    """The options of one job; ``None`` for the queue's defaults (the common case, kept cheap)."""
    if not options:
        return None
    return JobOptions.build(**_options(options), defaults=core.defaults)


def _prepare(core: QueueCore, item: Any) -> list[Any]:
    if type(item) is tuple and len(item) == 2:
        return core.prepare(item[0], item[1])
    if isinstance(item, Mapping):
        rest = dict(item)
        try:
            name = rest.pop("name")
        except KeyError:
            raise ValueError("a bulk job mapping needs a 'name'") from None
        data = rest.pop("data", None)
        return core.prepare(name, data, JobOptions.build(**_options(rest), defaults=core.defaults))
    if isinstance(item, tuple) and len(item) in (2, 3):
        name, data = item[0], item[1]
        opts = _options(item[2]) if len(item) == 3 else {}
        return core.prepare(name, data, JobOptions.build(**opts, defaults=core.defaults))
    raise TypeError(
        f"each of jobs is (name, data), (name, data, options) or a mapping, not {shown(item)}"
    )


_share_docs(Queue, AsyncQueue)
