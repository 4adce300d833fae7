"""The producer side: ``kit.queue(name)`` returns a :class:`Queue` (or :class:`AsyncQueue`),
whose ``add`` / ``add_bulk`` / ``@task`` put jobs in Redis and whose :class:`Job` handles read
them back."""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ._core import (
    Backoff,
    Event,
    JobOptions,
    JobRecord,
    QueueCore,
    check_backoff,
    check_name,
    decode,
    to_delay,
)

__all__ = ["AsyncJob", "AsyncQueue", "AsyncTask", "Job", "Queue", "Task", "current_job"]

P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("redkit_current_job", default=None)


def current_job() -> Any:
    """The job the calling task is running (a :class:`Job` in a sync task, an :class:`AsyncJob`
    in an async one); ``None`` outside a task."""
    running = _current.get()  # what the worker set for this task (it builds the handle)
    return None if running is None else running.get()


def _options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"job_id", "delay", "priority", "attempts", "backoff", "timeout", "keep"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
    return dict(kwargs)


class _JobBase:
    """Fields shared by :class:`Job` and :class:`AsyncJob`: a snapshot, refreshed on demand."""

    __slots__ = ("_core", "_pending", "_record", "_token", "id", "queue_name", "state")

    def __init__(
        self,
        core: QueueCore,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        token: str | None = None,
    ) -> None:
        self._core = core
        self.id = job_id
        self.queue_name = core.name
        self.state = state
        """The state when this handle was last read: ``waiting``, ``prioritized``, ``delayed``,
        ``active``, ``completed`` or ``failed``."""
        self._record = record
        self._token = token
        self._pending: list[Any] | None = None  # what add() sent, until the job is read

    def _set(self, record: JobRecord | None) -> None:
        if record is not None:
            self._record = record
            self.state = record.state

    def _field(self, name: str) -> Any:
        return None if self._record is None else getattr(self._record, name)

    @property
    def name(self) -> str | None:
        if self._record is None and self._pending is not None:
            return str(self._pending[1])
        return self._field("name")  # type: ignore[no-any-return]

    @property
    def data(self) -> Any:
        if self._record is None and self._pending is not None:
            return decode(self._pending[2])
        return self._field("data")

    @property
    def progress(self) -> Any:
        return self._field("progress")

    @property
    def result(self) -> Any:
        """The task's return value, once completed."""
        return self._field("result")

    @property
    def attempts_made(self) -> int:
        return int(self._field("attempts_made") or 0)

    @property
    def failed_reason(self) -> str | None:
        return self._field("failed_reason")  # type: ignore[no-any-return]

    @property
    def stacktrace(self) -> str | None:
        return self._field("stacktrace")  # type: ignore[no-any-return]

    @property
    def record(self) -> JobRecord | None:
        """Everything read about the job the last time (None when only its id is known)."""
        return self._record

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} of {self.queue_name!r}: {self.state}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _JobBase)
            and other.id == self.id
            and other.queue_name == self.queue_name
        )

    def __hash__(self) -> int:
        return hash((self.queue_name, self.id))


class Job(_JobBase):
    """A handle on one job (blocking calls)."""

    __slots__ = ("_drive", "_run")

    def __init__(
        self,
        core: QueueCore,
        executor: Any,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(core, job_id, state, record, token)
        self._run: Callable[[Any], Any] = executor.run
        self._drive: Callable[[Any], Any] = executor.drive

    def refresh(self) -> Job:
        """Read the job again (raises ``JobNotFound`` when it no longer exists)."""
        record = self._run(self._core.get(self.id))
        if record is None:
            self._core.wait_outcome(record, self.id)  # raises JobNotFound
        self._set(record)
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job completed and return its result; raises ``JobFailed`` when it
        failed, ``JobTimeout`` after ``timeout`` seconds. A job deleted as it finished
        (``keep=False``) keeps no result: ``None`` when its ``completed`` event is found,
        ``JobFailed`` for its ``failed`` event, else ``JobNotFound``."""
        return self._drive(self._core.wait_result(self.id, timeout, self._set))

    def update_progress(self, value: Any) -> bool:
        """From inside the task running this job: record its progress (any JSON value) and
        emit a ``progress`` event. False when the job's lock was lost."""
        if self._token is None:
            raise RuntimeError("update_progress() is for the task running the job")
        ok = bool(self._run(self._core.progress(self.id, self._token, value)))
        if ok and self._record is not None:
            self._record.progress = value
        return ok

    def remove(self) -> bool:
        """Delete the job unless it is running (``ValueError`` then). False when absent."""
        code = self._run(self._core.remove(self.id))
        if code == -1:
            raise ValueError(f"job {self.id!r} is active: it cannot be removed while it runs")
        return bool(code == 1)

    def retry(self) -> bool:
        """Move the job from ``failed`` back to the queue, attempts reset; False when it is not
        in ``failed``."""
        moved, _ = self._run(self._core.retry([self.id]))
        return bool(moved)


class AsyncJob(_JobBase):
    """A handle on one job (asyncio)."""

    __slots__ = ("_drive", "_run")

    def __init__(
        self,
        core: QueueCore,
        executor: Any,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(core, job_id, state, record, token)
        self._run: Callable[[Any], Awaitable[Any]] = executor.run
        self._drive: Callable[[Any], Awaitable[Any]] = executor.drive

    async def refresh(self) -> AsyncJob:
        record = await self._run(self._core.get(self.id))
        if record is None:
            self._core.wait_outcome(record, self.id)
        self._set(record)
        return self

    async def wait(self, timeout: float | None = None) -> Any:
        return await self._drive(self._core.wait_result(self.id, timeout, self._set))

    async def update_progress(self, value: Any) -> bool:
        if self._token is None:
            raise RuntimeError("update_progress() is for the task running the job")
        ok = bool(await self._run(self._core.progress(self.id, self._token, value)))
        if ok and self._record is not None:
            self._record.progress = value
        return ok

    async def remove(self) -> bool:
        code = await self._run(self._core.remove(self.id))
        if code == -1:
            raise ValueError(f"job {self.id!r} is active: it cannot be removed while it runs")
        return bool(code == 1)

    async def retry(self) -> bool:
        moved, _ = await self._run(self._core.retry([self.id]))
        return bool(moved)


# -- tasks ------------------------------------------------------------------------------------
class TaskSpec:
    """What the worker needs to run a task: its function and retry policy."""

    __slots__ = ("backoff_fn", "fn", "is_async", "name", "options")

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        options: JobOptions,
        backoff_fn: Callable[..., float] | None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.backoff_fn = backoff_fn
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )


def _task_data(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


class _TaskBase(Generic[P, R]):
    def __init__(self, queue: Any, spec: TaskSpec, bound: dict[str, Any] | None = None) -> None:
        self.queue = queue
        self.spec = spec
        self.name = spec.name
        self._bound = bound or {}
        functools.update_wrapper(self, spec.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (no queue)."""
        return self.spec.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def _opts(self, extra: dict[str, Any]) -> JobOptions:
        merged = {**self._bound, **extra}
        return JobOptions.build(**merged, defaults=self.spec.options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.queue.name!r}>"


class Task(_TaskBase[P, R]):
    """A function registered with ``@queue.task``: call it to run it here, ``enqueue`` it to run
    it on a worker."""

    queue: Queue

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Add a job that runs ``fn(*args, **kwargs)`` on a worker."""
        return self.queue._add_one(self.name, _task_data(args, kwargs), self._opts({}))

    def enqueue_in(self, delay: float | timedelta, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``delay`` (seconds or a timedelta) from now."""
        opts = self._opts({"delay": delay})
        return self.queue._add_one(self.name, _task_data(args, kwargs), opts)

    def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``when`` (a timezone-aware datetime)."""
        if not isinstance(when, datetime):
            raise TypeError(f"when must be a datetime, not {type(when).__name__}")
        opts = self._opts({"delay": to_delay(when)})
        return self.queue._add_one(self.name, _task_data(args, kwargs), opts)

    def options(self, **options: Any) -> Task[P, R]:
        """This task with job options bound (``job_id``, ``priority``, ``attempts``, ...)."""
        return Task(self.queue, self.spec, {**self._bound, **_options(options)})


class AsyncTask(_TaskBase[P, R]):
    """A function registered with ``@queue.task`` on an :class:`AsyncQueue` (enqueue is awaited)."""

    queue: AsyncQueue

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        return await self.queue._add_one(self.name, _task_data(args, kwargs), self._opts({}))

    async def enqueue_in(
        self, delay: float | timedelta, /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncJob:
        opts = self._opts({"delay": delay})
        return await self.queue._add_one(self.name, _task_data(args, kwargs), opts)

    async def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        if not isinstance(when, datetime):
            raise TypeError(f"when must be a datetime, not {type(when).__name__}")
        opts = self._opts({"delay": to_delay(when)})
        return await self.queue._add_one(self.name, _task_data(args, kwargs), opts)

    def options(self, **options: Any) -> AsyncTask[P, R]:
        return AsyncTask(self.queue, self.spec, {**self._bound, **_options(options)})


# -- queues -----------------------------------------------------------------------------------
class _QueueBase:
    _job_class: Any = None  # Job or AsyncJob

    def _job(
        self,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        pending: list[Any] | None = None,
    ) -> Any:
        job = self._job_class(self._core, self._kit._executor, job_id, state, record)
        job._pending = pending
        return job

    def _handles(self, rows: list[tuple[str, str, JobRecord | None, list[Any] | None]]) -> Any:
        """Job handles for what ``QueueCore.add_jobs`` gave."""
        return [self._job(job_id, state, record, sent) for job_id, state, record, sent in rows]

    def __init__(self, kit: Any, name: object, **defaults: Any) -> None:
        self._kit = kit
        self._core = QueueCore(kit, name, **defaults)
        self.name = self._core.name
        self.tasks: dict[str, TaskSpec] = {}
        """Tasks registered on this queue, by name (what a worker dispatches on)."""

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

    def register(self, spec: TaskSpec) -> None:
        """Register a task spec made elsewhere (framework adapters)."""
        self.tasks[spec.name] = spec

    def worker(self, **options: Any) -> Any:
        """A :class:`~redkit.queue._worker.Worker` for this queue (see its options)."""
        from ._worker import Worker

        return Worker(self, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Queue(_QueueBase):
    """A job queue over a blocking client: ``kit.queue("emails")``."""

    _job_class = Job

    def _add_one(self, name: str, data: Any, opts: JobOptions | None) -> Job:
        prepared = self._core.prepare(name, data, opts)
        return self._handles(self._kit._executor.drive(self._core.add_jobs([prepared])))[0]  # type: ignore[no-any-return]

    def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job: ``name`` says what to run, ``data`` (JSON) what with. Options:
        ``job_id`` (an existing id returns that job instead), ``delay`` (seconds, timedelta or
        aware datetime), ``priority`` (1 is the highest; 0/None: before every prioritized
        job), ``attempts``, ``backoff``, ``timeout`` (seconds), ``keep`` (retention)."""
        return self._add_one(name, data, _job_options(self._core, options))

    def add_bulk(self, jobs: Iterable[Any]) -> list[Job]:
        """Add many jobs, one round trip per 1,000: each item is ``(name, data)``, ``(name, data,
        options)`` or a mapping with ``name``, ``data`` and options. Every job is validated
        before anything is sent."""
        prepared = [_prepare(self._core, item) for item in jobs]
        return self._handles(self._kit._executor.drive(self._core.add_jobs(prepared)))  # type: ignore[no-any-return]

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def task(self, fn: Any = None, /, *, name: str | None = None, **options: Any) -> Any:
        """Register a sync or async function as a task of this queue: ``@q.task`` or
        ``@q.task(attempts=3, backoff=Backoff.exponential(1), timeout=60, priority=5)``."""
        _options(dict(options.items()))

        def wrap(f: Callable[P, R]) -> Task[P, R]:
            return Task(self, self._spec(f, name, dict(options)))

        return wrap(fn) if fn is not None else wrap

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, read now; None when there is none."""
        record = self._kit._executor.run(self._core.get(job_id))
        return None if record is None else self._job(job_id, record.state, record)

    def counts(self) -> dict[str, int]:
        """Jobs per state: waiting, prioritized, delayed, active, completed, failed."""
        return self._kit._executor.run(self._core.counts())  # type: ignore[no-any-return]

    def jobs(self, state: str, start: int = 0, stop: int = 99) -> list[str]:
        """Ids of the jobs in ``state``, oldest first, by position (``stop`` inclusive)."""
        return self._kit._executor.run(self._core.ids(state, start, stop))  # type: ignore[no-any-return]

    def pause(self) -> bool:
        """Stop handing out jobs (running ones finish). True when it was running."""
        return bool(self._kit._executor.run(self._core.pause(True)))

    def resume(self) -> bool:
        """Hand out jobs again (wakes the waiting workers). True when it was paused."""
        return bool(self._kit._executor.run(self._core.pause(False)))

    def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(self._kit._executor.run(self._core.is_paused()))

    def retry_failed(self, limit: int | None = None) -> int:
        """Move failed jobs (all, or the oldest ``limit``) back to the queue; returns how many."""
        return int(self._kit._executor.drive(self._core.retry_all(limit)))

    def drain(self, *, delayed: bool = False) -> int:
        """Delete every waiting job (and delayed ones when asked); running jobs go on."""
        return int(self._kit._executor.drive(self._core.drain_all(delayed)))

    def events(self, since: str = "$", timeout: float | None = None) -> Iterator[Event]:
        """The queue's events as they come: from the moment of this call (``since="$"``), from
        the oldest kept (``"0"``) or after an event id. Ends after ``timeout`` seconds without an
        event (None: never)."""
        last = since if since != "$" else self._kit._executor.run(self._core.last_event_id())
        return self._events(last, timeout)

    def _events(self, last: str, timeout: float | None) -> Iterator[Event]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self._core.block_slice
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            batch = self._kit._executor.run(self._core.read_events(last, max(1, int(wait * 1000))))
            for event in batch:
                last = event.id
                yield event
            if batch and deadline is not None:
                deadline = time.monotonic() + (timeout or 0)

    def workers(self) -> list[tuple[str, float]]:
        """Workers seen on this queue: (worker id, last heartbeat in ms since the epoch)."""
        return self._kit._executor.run(self._core.workers_info())  # type: ignore[no-any-return]


class AsyncQueue(_QueueBase):
    """A job queue over an asyncio client: ``kit.queue("emails")`` on ``redkit.asyncio.Redkit``."""

    _job_class = AsyncJob

    async def _add_one(self, name: str, data: Any, opts: JobOptions | None) -> AsyncJob:
        prepared = self._core.prepare(name, data, opts)
        rows = await self._kit._executor.drive(self._core.add_jobs([prepared]))
        return self._handles(rows)[0]  # type: ignore[no-any-return]

    async def add(self, name: str, data: Any = None, **options: Any) -> AsyncJob:
        return await self._add_one(name, data, _job_options(self._core, options))

    async def add_bulk(self, jobs: Iterable[Any]) -> list[AsyncJob]:
        prepared = [_prepare(self._core, item) for item in jobs]
        return self._handles(await self._kit._executor.drive(self._core.add_jobs(prepared)))  # type: ignore[no-any-return]

    @overload
    def task(self, fn: Callable[P, R], /) -> AsyncTask[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], AsyncTask[P, R]]: ...
    def task(self, fn: Any = None, /, *, name: str | None = None, **options: Any) -> Any:
        _options(dict(options.items()))

        def wrap(f: Callable[P, R]) -> AsyncTask[P, R]:
            return AsyncTask(self, self._spec(f, name, dict(options)))

        return wrap(fn) if fn is not None else wrap

    async def get_job(self, job_id: str) -> AsyncJob | None:
        record = await self._kit._executor.run(self._core.get(job_id))
        return None if record is None else self._job(job_id, record.state, record)

    async def counts(self) -> dict[str, int]:
        return await self._kit._executor.run(self._core.counts())  # type: ignore[no-any-return]

    async def jobs(self, state: str, start: int = 0, stop: int = 99) -> list[str]:
        return await self._kit._executor.run(self._core.ids(state, start, stop))  # type: ignore[no-any-return]

    async def pause(self) -> bool:
        return bool(await self._kit._executor.run(self._core.pause(True)))

    async def resume(self) -> bool:
        return bool(await self._kit._executor.run(self._core.pause(False)))

    async def is_paused(self) -> bool:
        return bool(await self._kit._executor.run(self._core.is_paused()))

    async def retry_failed(self, limit: int | None = None) -> int:
        return int(await self._kit._executor.drive(self._core.retry_all(limit)))

    async def drain(self, *, delayed: bool = False) -> int:
        return int(await self._kit._executor.drive(self._core.drain_all(delayed)))

    def events(self, since: str = "$", timeout: float | None = None) -> AsyncIterator[Event]:
        """The queue's events as they come (``async for``): from the moment of this call
        (``since="$"``, by this host's clock: nothing is sent before the first iteration), from
        the oldest kept (``"0"``) or after an event id. Ends after ``timeout`` seconds without an
        event (None: never)."""
        # every entry from this millisecond on: the last possible id of the one before
        last = since if since != "$" else f"{int(time.time() * 1000) - 1}-{2**64 - 1}"
        return self._events(last, timeout)

    async def _events(self, last: str, timeout: float | None) -> AsyncIterator[Event]:
        run = self._kit._executor.run
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self._core.block_slice
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            batch = await run(self._core.read_events(last, max(1, int(wait * 1000))))
            for event in batch:
                last = event.id
                yield event
            if batch and deadline is not None:
                deadline = time.monotonic() + (timeout or 0)

    async def workers(self) -> list[tuple[str, float]]:
        return await self._kit._executor.run(self._core.workers_info())  # type: ignore[no-any-return]


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
    raise TypeError(f"a bulk job is (name, data), (name, data, options) or a mapping, not {item!r}")


def _share_docs(sync_cls: type, async_cls: type) -> None:
    """The async twin's methods do what the sync ones do, awaited: same docstrings."""
    for name, member in vars(async_cls).items():
        twin = getattr(sync_cls, name, None)
        if callable(member) and not getattr(member, "__doc__", None) and twin is not None:
            member.__doc__ = twin.__doc__


_share_docs(Queue, AsyncQueue)
_share_docs(Job, AsyncJob)
_share_docs(Task, AsyncTask)
