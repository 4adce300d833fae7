"""Tasks of a Django project: ``@redkit_django.task`` in an app's ``tasks.py``, sent with
``enqueue`` / ``aenqueue`` (or after the transaction commits with ``enqueue_on_commit``) and run
inside Django by ``manage.py redkit_worker``.

The process's client is rebuilt when ``settings.REDKIT`` changes, so a task is kept here, in a
registry of definitions, and bound to whichever client is current when it is sent or served.
On a worker every job runs between two ``close_old_connections()`` calls, as requests do: a
connection that broke or outlived ``CONN_MAX_AGE`` is closed before the next job uses it, and
a database error fails that job only.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, overload

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, transaction
from django.utils.module_loading import autodiscover_modules

from redkit.queue import AsyncJob, AsyncTask, Job, Task, Worker
from redkit.serializers import JsonSerializer

from .conf import get_async_kit, get_kit

__all__ = ["DjangoTask", "discover", "queue_names", "registered", "task", "worker"]

log = logging.getLogger("redkit.django")
P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_QUEUE = "default"

_registry: dict[str, DjangoTask[Any, Any]] = {}
_strict_json = JsonSerializer()


def _close_connections() -> None:
    """``close_old_connections()``; a connection that fails even to close is only logged (Django
    has dropped it either way), so it never turns a finished job into a failed one."""
    try:
        close_old_connections()
    except DatabaseError as exc:
        log.warning("redkit: closing a database connection between jobs failed: %s", exc)


def in_django(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run as a worker runs a job: database connections checked before and after."""
    if inspect.iscoroutinefunction(fn):
        close = sync_to_async(_close_connections)  # the thread the async ORM runs queries on

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await close()
            try:
                return await fn(*args, **kwargs)
            finally:
                await close()

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        _close_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            _close_connections()

    return run


class DjangoTask(Generic[P, R]):
    """A task declared with :func:`task`. Calling it runs the function here; ``enqueue`` adds a
    job on the process's client (``aenqueue`` on the running loop's asyncio client)."""

    def __init__(
        self,
        fn: Callable[P, R],
        queue: str,
        name: str | None,
        defaults: dict[str, Any],
        bound: dict[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@redkit_django.task decorates a function, not {fn!r}")
        self.fn = fn
        self.queue_name = queue
        self.name = name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        self.defaults = dict(defaults)
        self._bound = dict(bound or {})
        self._runner = in_django(fn)
        self._tasks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<DjangoTask {self.name!r} on {self.queue_name!r}>"

    # -- binding -----------------------------------------------------------------------------
    def bind(self, queue: Any) -> Any:
        """This task registered on ``queue`` (a :class:`redkit.queue.Queue` or ``AsyncQueue``
        of the current client): the :class:`redkit.queue.Task` that enqueues it there."""
        origin = _registry.get(self.name, self)
        if origin is not self:  # a copy made by options(): the registered one binds
            bound = origin.bind(queue)
            options = self._job_options
            return bound.options(**options) if options else bound
        found = self._tasks.get(queue)
        if found is None:
            found = self._tasks[queue] = queue.task(name=self.name, **self.defaults)(self._runner)
        return found

    @property
    def _job_options(self) -> dict[str, Any]:
        """The bound options that go to the queue (``using`` names a database, not a job's)."""
        return {k: v for k, v in self._bound.items() if k != "using"}

    def _task(self) -> Task[P, R]:
        bound = self.bind(get_kit().queue(self.queue_name))
        options = self._job_options
        return bound.options(**options) if options else bound  # type: ignore[no-any-return]

    def _atask(self) -> AsyncTask[P, R]:
        bound = self.bind(get_async_kit().queue(self.queue_name))
        options = self._job_options
        return bound.options(**options) if options else bound  # type: ignore[no-any-return]

    # -- sending -----------------------------------------------------------------------------
    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Add a job that runs ``fn(*args, **kwargs)`` on a worker; its handle."""
        return self._task().enqueue(*args, **kwargs)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        """:meth:`enqueue` on the running event loop's asyncio client."""
        return await self._atask().enqueue(*args, **kwargs)

    def enqueue_in(self, delay: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``delay`` (seconds or a timedelta) from now."""
        return self._task().enqueue_in(delay, *args, **kwargs)

    async def aenqueue_in(self, delay: Any, /, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        """:meth:`enqueue_in`, awaited."""
        return await self._atask().enqueue_in(delay, *args, **kwargs)

    def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``when`` (a timezone-aware datetime)."""
        return self._task().enqueue_at(when, *args, **kwargs)

    async def aenqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> AsyncJob:
        """:meth:`enqueue_at`, awaited."""
        return await self._atask().enqueue_at(when, *args, **kwargs)

    def options(self, **options: Any) -> DjangoTask[P, R]:
        """This task with job options bound (``job_id``, ``priority``, ``delay``, ``attempts``,
        ``backoff``, ``timeout``, ``keep``), like ``task.options(priority=1).enqueue(...)``;
        ``using``: the database whose commit :meth:`enqueue_on_commit` waits for."""
        unknown = set(options) - _JOB_OPTIONS - {"using"}
        if unknown:
            raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        return DjangoTask(
            self.fn, self.queue_name, self.name, self.defaults, {**self._bound, **options}
        )

    def enqueue_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Add the job once the current transaction of the database ``using`` commits (default
        ``"default"``; ``task.options(using="other")``, or ``using=`` in this call when the
        task's function has no parameter of that name), after the outermost ``atomic`` block;
        nothing when it rolls back; at once in autocommit. The arguments are checked now.
        Returns the job's id now (the job exists once the transaction commits).

        With ``REDKIT["OUTBOX"]`` on, the job is also written to the outbox table in that
        transaction, so a process that dies after the COMMIT loses nothing: the relay
        (``manage.py redkit_outbox``, or the worker) adds it (:mod:`redkit_django.outbox`)."""
        using = self._bound.get("using")
        if "using" in kwargs and "using" not in _parameters(self.fn):
            using = kwargs.pop("using")
        using = using or DEFAULT_DB_ALIAS
        if not isinstance(using, str):
            raise TypeError(f"using must be a database alias, not {using!r}")
        _strict_json.dumps({"args": list(args), "kwargs": kwargs})  # SerializationError now
        job_id = str(self._bound.get("job_id") or uuid.uuid4().hex)
        send = self.options(job_id=job_id)
        from . import outbox

        if outbox.enabled():
            outbox.write(send._task(), job_id, args, kwargs, using)
        else:
            transaction.on_commit(lambda: send.enqueue(*args, **kwargs), using=using)
        return job_id


def _parameters(fn: Callable[..., Any]) -> set[str]:
    """The names of ``fn``'s parameters that can be passed by keyword."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


_JOB_OPTIONS = frozenset({"job_id", "delay", "priority", "attempts", "backoff", "timeout", "keep"})


@overload
def task(fn: Callable[P, R], /) -> DjangoTask[P, R]: ...
@overload
def task(
    fn: None = None, /, *, queue: str = DEFAULT_QUEUE, name: str | None = None, **options: Any
) -> Callable[[Callable[P, R]], DjangoTask[P, R]]: ...
def task(
    fn: Any = None, /, *, queue: str = DEFAULT_QUEUE, name: str | None = None, **options: Any
) -> Any:
    """Declare a task of the project: ``@redkit_django.task`` or ``@redkit_django.task(queue=
    "emails", attempts=3, backoff=Backoff.exponential(1), timeout=60, priority=5, keep=...)``.
    The task's name defaults to ``module.function``: the worker finds its function by it."""
    unknown = set(options) - (_JOB_OPTIONS - {"job_id", "delay"})
    if unknown:
        raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
    if not isinstance(queue, str):
        raise TypeError(f"queue must be a queue name (str), not {queue!r}")

    def declare(f: Callable[P, R]) -> DjangoTask[P, R]:
        declared: DjangoTask[P, R] = DjangoTask(f, queue, name, options)
        existing = _registry.get(declared.name)
        other = None if existing is None or existing.fn is f else existing.fn
        if other is not None and getattr(other, "__qualname__", None) != f.__qualname__:
            raise ValueError(f"a different task named {declared.name!r} is declared already")
        _registry[declared.name] = declared  # a module imported again declares it again
        return declared

    return declare(fn) if fn is not None else declare


def registered() -> list[DjangoTask[Any, Any]]:
    """Every task declared so far, by name."""
    return [_registry[name] for name in sorted(_registry)]


def discover() -> None:
    """Import the ``tasks`` module of every installed app (what the worker does first)."""
    autodiscover_modules("tasks")


def queue_names() -> list[str]:
    """The queues a worker serves by default: those of the declared tasks and of the
    ``django.tasks`` backends of ``settings.TASKS`` that are redkit's."""
    from .tasks import backend_queues

    names = {t.queue_name for t in _registry.values()} | backend_queues()
    return sorted(names) or [DEFAULT_QUEUE]


def worker(queue: str = DEFAULT_QUEUE, **options: Any) -> Worker:
    """A :class:`redkit.queue.Worker` of ``queue`` on the process's client, serving the tasks
    declared for it and the ``django.tasks`` tasks sent to it. ``options`` are those of
    ``queue.worker()`` (``concurrency``, ``burst``, ``shutdown_timeout``, ...)."""
    from .tasks import TaskRunner

    q = get_kit().queue(queue)
    for declared in _registry.values():
        if declared.queue_name == q.name:
            declared.bind(q)
    runner = TaskRunner()
    options.setdefault("processor", runner)
    made: Worker = q.worker(**options)
    runner.worker_id = made.id
    return made
