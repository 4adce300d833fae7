"""The handles: :class:`Job` (and :class:`AsyncJob`) read a job back and act on it; a function
registered with ``@queue.task`` becomes a :class:`Task` (or :class:`AsyncTask`) that enqueues
itself. The queues that make them are in ``_queue``."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from .._durations import Duration
from .._ops import Batch, Flow
from ._core import QueueCore, log_line, then
from ._flows import Node
from ._options import JobOptions, decode, to_delay
from ._records import AttemptError, ChildResult, JobRecord

if TYPE_CHECKING:
    from ._queue import AsyncQueue, Queue

__all__ = ["AsyncJob", "AsyncTask", "Job", "Task", "current_job"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
H = TypeVar("H", bound="_JobBase")


class _Runs(Protocol):
    """What a :class:`Job` sends its calls through: a blocking executor."""

    def run(self, batch: Batch[T], /) -> T: ...
    def drive(self, flow: Flow[T], /) -> T: ...


class _AsyncRuns(Protocol):
    """What an :class:`AsyncJob` (and an :class:`~._queue.AsyncQueue`) awaits its calls on."""

    async def run(self, batch: Batch[T], /) -> T: ...
    async def drive(self, flow: Flow[T], /) -> T: ...


_WHEN = ("cron", "every", "tz", "start", "end", "limit", "missed", "grace")
_current: contextvars.ContextVar[Any] = contextvars.ContextVar("redkit_current_job", default=None)


def current_job() -> Any:
    """The job the calling task is running (a :class:`Job` in a sync task, an :class:`AsyncJob`
    in an async one); ``None`` outside a task."""
    running = _current.get()  # what the worker set for this task (it builds the handle)
    return None if running is None else running.get()


def _options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"job_id", "delay", "priority", "attempts", "backoff", "timeout", "keep", "dedup"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
    return dict(kwargs)


class _JobBase:
    """Fields shared by :class:`Job` and :class:`AsyncJob`: a snapshot, refreshed on demand."""

    __slots__ = (
        "_core",
        "_pending",
        "_record",
        "_run",
        "_token",
        "_x",
        "id",
        "queue_name",
        "state",
    )

    def __init__(
        self,
        core: QueueCore,
        executor: Any,
        job_id: str,
        state: str,
        record: JobRecord | None = None,
        token: str | None = None,
    ) -> None:
        self._core = core
        self._x = executor
        self.id = job_id
        self.queue_name = core.name
        self.state = state
        """The state when this handle was last read: ``waiting``, ``prioritized``, ``delayed``,
        ``active``, ``completed`` or ``failed``."""
        self._record = record
        self._token = token
        self._pending: list[Any] | None = None  # what add() sent, until the job is read
        self._run: Any = None  # in the running task's handle: the worker's record of the run

    def _set(self, record: JobRecord | None) -> None:
        if record is not None:
            self._record = record
            self.state = record.state

    # what the twins run: the logic of each call, once (no I/O)
    def _refreshed(self, handle: H) -> Batch[H]:
        def parse(record: JobRecord | None) -> H:
            if record is None:
                self._core.wait_outcome(record, self.id)  # raises JobNotFound
            self._set(record)
            return handle

        return then(self._core.get(self.id), parse)

    def _waited(self, timeout: Duration | None) -> Flow[Any]:
        return self._core.wait_result(self.id, timeout, self._set)

    def _progressed(self, value: Any) -> Batch[bool]:
        if self._token is None:
            raise RuntimeError("update_progress() is for the task running the job")

        def parse(ok: bool) -> bool:
            if ok and self._record is not None:
                self._record.progress = value
            return bool(ok)

        return then(self._core.progress(self.id, self._token, value), parse)

    def _logged(self, line: object) -> Batch[bool]:
        if self._token is None:
            raise RuntimeError("log() is for the task running the job")
        kept = log_line(line)  # checked before anything is sent

        def parse(ok: bool) -> bool:
            if ok and self._record is not None:
                self._record.logs.append(kept)
            return bool(ok)

        batch = self._core.log(self.id, self._token, kept)

        return then(batch, parse)

    def _removed(self) -> Batch[bool]:
        def parse(code: int) -> bool:
            if code == -1:
                raise ValueError(f"job {self.id!r} is active: it cannot be removed while it runs")
            return code == 1

        return then(self._core.remove(self.id), parse)

    def _promoted(self) -> Batch[bool]:
        def parse(code: int) -> bool:
            if code > 0:
                self.state = "prioritized" if code == 2 else "waiting"
            return code > 0

        return then(self._core.promote(self.id), parse)

    def _cancelled(self, reason: object) -> Batch[bool]:
        def parse(code: int) -> bool:
            if code == 1:
                self.state = "cancelled"
            return code in (1, 2)

        return then(self._core.cancel(self.id, reason), parse)

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled: its state as last read is ``cancelled``; in the task
        running it, as soon as a cancel request reached the worker (a sync task should then
        return; an async one is cancelled)."""
        run = self._run
        return self.state == "cancelled" or (run is not None and run.cancelled)

    def _retried(self) -> Batch[bool]:
        return then(self._core.retry([self.id]), lambda moved_left: bool(moved_left[0]))

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
    def logs(self) -> list[str]:
        """The lines the task logged (``log()``), oldest first, as last read."""
        return list(self._field("logs") or [])

    @property
    def result(self) -> Any:
        """The task's return value, once completed."""
        return self._field("result")

    @property
    def parent(self) -> tuple[str, str] | None:
        """The (queue, id) of the job of a flow that waits for this one, as last read."""
        return self._field("parent")  # type: ignore[no-any-return]

    @property
    def children(self) -> list[ChildResult]:
        """The jobs of a flow this one waits for, in order, with how each ended
        (:class:`~redkit.queue.ChildResult`), as last read; in the task running a parent, as
        they were when it started."""
        return list(self._field("children") or [])

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
    def errors(self) -> list[AttemptError]:
        """How each of the last 10 failed attempts failed, oldest first."""
        return list(self._field("errors") or [])

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

    __slots__ = ()
    _x: _Runs

    def refresh(self) -> Job:
        """Read the job again (raises ``JobNotFound`` when it no longer exists)."""
        return self._x.run(self._refreshed(self))

    def wait(self, timeout: Duration | None = None) -> Any:
        """Block until the job completed and return its result; raises ``JobFailed`` when it
        failed, ``JobTimeout`` after ``timeout`` seconds. A job deleted as it finished
        (``keep=False``) keeps no result: ``None`` when its ``completed`` event is found,
        ``JobFailed`` for its ``failed`` event, else ``JobNotFound``."""
        return self._x.drive(self._waited(timeout))

    def update_progress(self, value: Any) -> bool:
        """From inside the task running this job: record its progress (any JSON value) and
        emit a ``progress`` event. False when the job's lock was lost."""
        return self._x.run(self._progressed(value))

    def log(self, line: str) -> bool:
        """From inside the task running this job: append ``line`` to the job's log (the latest
        ``queue_max_logs`` lines are kept, each cut to 4,000 characters). False when the job's
        lock was lost."""
        return self._x.run(self._logged(line))

    def remove(self) -> bool:
        """Delete the job unless it is running (``ValueError`` then). False when absent."""
        return self._x.run(self._removed())

    def retry(self) -> bool:
        """Move the job from ``failed`` back to the queue, attempts reset; False when it is not
        in ``failed``."""
        return self._x.run(self._retried())

    def promote(self) -> bool:
        """Make a delayed job due now (a scheduler's pending run: that run now, and the
        scheduler goes on to its next slot); False when the job is not delayed."""
        return self._x.run(self._promoted())

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel the job: one that waits or is delayed ends as ``cancelled`` now; for one that
        runs, its worker cancels the task (an async one at once; a sync one sees
        ``current_job().cancelled`` and the job ends as cancelled without waiting for it).
        False when the job had finished or does not exist."""
        return self._x.run(self._cancelled(reason))


class AsyncJob(_JobBase):
    """A handle on one job (asyncio)."""

    __slots__ = ()
    _x: _AsyncRuns

    async def refresh(self) -> AsyncJob:
        return await self._x.run(self._refreshed(self))

    async def wait(self, timeout: Duration | None = None) -> Any:
        return await self._x.drive(self._waited(timeout))

    async def update_progress(self, value: Any) -> bool:
        return await self._x.run(self._progressed(value))

    async def log(self, line: str) -> bool:
        return await self._x.run(self._logged(line))

    async def remove(self) -> bool:
        return await self._x.run(self._removed())

    async def retry(self) -> bool:
        return await self._x.run(self._retried())

    async def promote(self) -> bool:
        return await self._x.run(self._promoted())

    async def cancel(self, reason: str = "cancelled") -> bool:
        return await self._x.run(self._cancelled(reason))


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


def _at(when: object) -> dict[str, Any]:
    """The options of ``enqueue_at(when)``."""
    if not isinstance(when, datetime):
        raise TypeError(f"when must be a datetime, not {type(when).__name__}")
    return {"delay": to_delay(when)}


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

    def _job(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], extra: dict[str, Any]
    ) -> tuple[str, dict[str, Any], JobOptions]:
        """What an enqueue adds: the task's name, the call's arguments, the options (bound ones,
        then ``extra``), checked."""
        opts = JobOptions.build(**{**self._bound, **extra}, defaults=self.spec.options)
        return self.name, {"args": list(args), "kwargs": kwargs}, opts

    def _schedule_flow(
        self,
        schedule_id: str,
        args: Any,
        kwargs: Mapping[str, Any] | None,
        options: dict[str, Any],
    ) -> Any:
        """The flow of ``task.schedule``: the queue's, with this task's name, call and options."""
        when = {k: options.pop(k) for k in _WHEN if k in options}
        data = {"args": list(args), "kwargs": dict(kwargs or {})}
        opts = {**self._bound, **options}
        return self.queue._scheduled(schedule_id, self.name, data, when, opts, self.spec.options)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Node:
        """This task called with ``args`` and ``kwargs``, as one job of a flow (Celery's
        signature): in a ``chain`` or ``chord`` it also gets the results of the jobs before it
        as its first argument. Options come from ``task.options(...)``."""
        name, data, opts = self._job(args, kwargs, {})
        return Node(self.queue, name, data, opts)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Node:
        """Like :meth:`s`, taking no result from the jobs before it (an immutable signature)."""
        name, data, opts = self._job(args, kwargs, {})
        return Node(self.queue, name, data, opts, takes_results=False)

    def _bind(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self._bound, **_options(options)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.queue.name!r}>"


class Task(_TaskBase[P, R]):
    """A function registered with ``@queue.task``: call it to run it here, ``enqueue`` it to run
    it on a worker."""

    queue: Queue

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Add a job that runs ``fn(*args, **kwargs)`` on a worker."""
        return self.queue._add_one(*self._job(args, kwargs, {}))

    def enqueue_in(self, delay: Duration, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``delay`` (seconds or a timedelta) from now."""
        return self.queue._add_one(*self._job(args, kwargs, {"delay": delay}))

    def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``when`` (a timezone-aware datetime)."""
        return self.queue._add_one(*self._job(args, kwargs, _at(when)))

    def schedule(
        self,
        schedule_id: str,
        *,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` on a schedule: :meth:`Queue.schedule` with this task (its
        options, then ``options``: ``cron`` or ``every``, ``tz``, ``missed``, job options)."""
        return self.queue._x.drive(self._schedule_flow(schedule_id, args, kwargs, options))

    def options(self, **options: Any) -> Task[P, R]:
        """This task with job options bound (``job_id``, ``priority``, ``attempts``, ...)."""
        return Task(self.queue, self.spec, self._bind(options))


class AsyncTask(_TaskBase[P, R]):
    """A function registered with ``@queue.task`` on an :class:`AsyncQueue` (enqueue is awaited)."""

    queue: AsyncQueue

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        return await self.queue._add_one(*self._job(args, kwargs, {}))

    async def enqueue_in(self, delay: Duration, /, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        return await self.queue._add_one(*self._job(args, kwargs, {"delay": delay}))

    async def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        return await self.queue._add_one(*self._job(args, kwargs, _at(when)))

    async def schedule(
        self,
        schedule_id: str,
        *,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return await self.queue._x.drive(self._schedule_flow(schedule_id, args, kwargs, options))

    def options(self, **options: Any) -> AsyncTask[P, R]:
        return AsyncTask(self.queue, self.spec, self._bind(options))


def _share_docs(sync_cls: type, async_cls: type) -> None:
    """The async twin's methods do what the sync ones do, awaited: same docstrings."""
    for name, member in vars(async_cls).items():
        twin = getattr(sync_cls, name, None)
        if callable(member) and not getattr(member, "__doc__", None) and twin is not None:
            member.__doc__ = twin.__doc__


_share_docs(Job, AsyncJob)
_share_docs(Task, AsyncTask)
