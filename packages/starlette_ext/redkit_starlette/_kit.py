"""One object wiring redkit into Starlette (and FastAPI, which is Starlette underneath): the
settings, the lifespan that opens each application's async kit, starts and stops its
in-process workers and closes its pools, and where a request finds that kit."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from redkit import web
from redkit.asyncio import Redkit as AsyncRedkit
from redkit.queue import AsyncTask, Worker
from redkit.settings import Settings

from ._depends import Dependencies
from ._leases import AsyncLeaseKeeper
from ._progress import EventHub, job_events
from ._rules import RouteDecorators

__all__ = ["STATE_NAME", "Redkit", "Running", "get_kit"]

log = logging.getLogger("redkit.starlette")

STATE_NAME = "redkit"
"""The attribute of ``app.state`` holding the application's :class:`redkit.asyncio.Redkit`."""

SECRET_ENV = "REDKIT_SESSION_SECRET"

F = TypeVar("F", bound=Callable[..., Any])
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


@dataclass
class _WorkerSpec:
    queue: str
    options: dict[str, Any]


@dataclass
class _TaskSpec:
    fn: Callable[..., Any]
    queue: str
    name: str | None
    options: dict[str, Any]


@dataclass
class _BindingSpec:
    target: Any
    rules: Mapping[type, Any]
    tables: Mapping[Any, Any] | None


@dataclass
class Running:
    """What one started application holds: its kit, its web flows, its workers."""

    kit: AsyncRedkit
    keeper: AsyncLeaseKeeper
    views: web.WebRules
    """The flows of what a dependency declares alone (no default or application limit)."""
    web: web.WebRules
    """The web flows of the settings (application-wide idempotency is the middleware's)."""
    tasks: dict[Callable[..., Any], AsyncTask[Any, Any]] = field(default_factory=dict)
    workers: list[tuple[Worker, asyncio.Task[None]]] = field(default_factory=list)
    hubs: dict[str, EventHub] = field(default_factory=dict)
    """The job-event readers of :meth:`Redkit.job_events`, by queue."""
    bindings: list[Any] = field(default_factory=list)
    """The SQLAlchemy bindings of :meth:`Redkit.bind_sqlalchemy`, on this kit."""


def _ended(worker: Worker, task: asyncio.Task[None]) -> None:
    """Log a worker that ended with an error, when it does (not at the application's stop)."""
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "redkit: the worker of queue %r stopped with an error; its jobs wait for another",
            worker.queue.name,
            exc_info=task.exception(),
        )


def get_kit(conn: HTTPConnection) -> AsyncRedkit:
    """The :class:`redkit.asyncio.Redkit` of the application serving ``conn`` (a ``Request``
    or a ``WebSocket``): ``conn.app.state.redkit``, set by :attr:`Redkit.lifespan`."""
    kit = getattr(conn.app.state, STATE_NAME, None)
    if not isinstance(kit, AsyncRedkit):
        raise RuntimeError(
            "redkit is not started for this application: pass lifespan=rk.lifespan to "
            "Starlette() or FastAPI() (and run the lifespan in tests: asgi_lifespan's "
            "LifespanManager, or Starlette's TestClient as a context manager)"
        )
    return kit


class Redkit(RouteDecorators, Dependencies):
    """redkit for one or more Starlette/FastAPI applications.

    ``Redkit(url, **settings)`` takes the URL and any redkit setting; without ``url``, every
    setting comes from the environment (``REDKIT_URL`` or ``REDIS_URL``, ``REDKIT_<SETTING>``;
    keyword ``settings`` win). ``session_secret`` signs the session cookie (a list: the current
    key first, then older ones still accepted; default ``REDKIT_SESSION_SECRET``);
    ``user_loader(request)`` (sync or async) returns who the request is for (idempotency
    scopes; default: ``request.user``'s ``identity`` when authenticated).

    Pass ``lifespan=rk.lifespan`` (or ``rk.lifespan(app_lifespan)`` to wrap the application's
    own) and ``middleware=rk.middleware()``. Each application started gets its own kit."""

    def __init__(
        self,
        url: str | None = None,
        *,
        session_secret: str | Sequence[str] | None = None,
        user_loader: Callable[[Any], Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        env = os.environ if environ is None else environ
        if url is None:
            self.settings = Settings.from_env(env, **settings)
        else:
            self.settings = Settings.from_url(url, **settings)
        if session_secret is None:
            session_secret = env.get(SECRET_ENV) or None
        if isinstance(session_secret, (str, bytes)):
            session_secret = [session_secret]
        self.session_secrets: tuple[str, ...] = tuple(session_secret or ())
        if self.settings.sessions and not any(self.session_secrets):
            raise ValueError(
                f"sessions=True needs session_secret (or {SECRET_ENV}): it signs the cookie"
            )
        if user_loader is not None and not callable(user_loader):
            raise TypeError(f"user_loader must be a callable, not {user_loader!r}")
        self.user_loader = user_loader
        self._workers: list[_WorkerSpec] = []
        self._tasks: list[_TaskSpec] = []
        self._bindings: list[_BindingSpec] = []
        self._running: weakref.WeakKeyDictionary[Any, Running] = weakref.WeakKeyDictionary()
        self._started = False

    def dashboard(
        self,
        *,
        auth: Callable[[Any], Any] | None = None,
        token: str | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        queues: Iterable[str] | None = None,
        read_only: bool = False,
        title: str = "redkit",
    ) -> Any:
        """redkit's :mod:`dashboard <redkit.dashboard>` as an ASGI application to mount
        (``Mount("/redkit", app=rk.dashboard(auth=...))``), on each application's client. It
        refuses to be made without ``auth`` (a callable of Starlette's ``Request``, sync or
        async, that returns who the user is, or something false to refuse) or ``token``."""
        from redkit.dashboard import Dashboard

        from ._dashboard import DashboardApp

        return DashboardApp(
            Dashboard(
                auth=auth,
                token=token,
                redact=redact,
                queues=queues,
                read_only=read_only,
                title=title,
            )
        )

    def middleware(self, *, cache_every_get: bool = False) -> list[Middleware]:
        """Starlette's ``middleware=`` list of redkit's middleware in their order: rate limits
        (when ``ratelimit_enabled``), the cache (when ``cache_enabled``), idempotency keys,
        sessions (when ``sessions``)."""
        from ._middleware import CacheMiddleware, IdempotencyMiddleware, RateLimitMiddleware
        from ._sessions import SessionMiddleware

        s = self.settings
        made = []
        if s.ratelimit_enabled:
            made.append(Middleware(RateLimitMiddleware, redkit=self))
        if s.cache_enabled:
            made.append(Middleware(CacheMiddleware, redkit=self, every_get=cache_every_get))
        made.append(Middleware(IdempotencyMiddleware, redkit=self))
        if s.sessions:
            made.append(Middleware(SessionMiddleware, redkit=self))
        return made

    # -- workers and tasks -----------------------------------------------------------------------
    @overload
    def task(self, fn: F, /) -> F: ...
    @overload
    def task(
        self, fn: None = None, /, *, queue: str = ..., name: str | None = ..., **options: Any
    ) -> Callable[[F], F]: ...
    def task(
        self,
        fn: F | None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        **options: Any,
    ) -> Any:
        """Register ``fn`` as a task of queue ``queue`` on every application started (the
        function is returned as it is; :meth:`task_for` gives its enqueuing handle)."""

        def decorate(f: F) -> F:
            if not callable(f):
                raise TypeError(f"rk.task decorates a function, not {f!r}")
            self._tasks.append(_TaskSpec(f, queue, name, dict(options)))
            return f

        return decorate(fn) if fn is not None else decorate

    def task_for(
        self, conn: HTTPConnection | Starlette, fn: Callable[..., Any]
    ) -> AsyncTask[Any, Any]:
        """The :class:`redkit.queue.AsyncTask` of ``fn`` on the application of ``conn`` (a
        request, or the application): ``await rk.task_for(request, send).enqueue(...)``."""
        task = self.running(conn).tasks.get(fn)
        if task is None:
            raise KeyError(f"{fn!r} is not a task registered with rk.task")
        return task

    def worker(self, queue: str = "default", **options: Any) -> None:
        """Run a worker of ``queue`` in each application's event loop while it is up (declare
        it before the application starts). ``options`` are those of
        :class:`redkit.queue.Worker` (``concurrency``, ``shutdown_timeout``, ...); on shutdown
        running jobs get ``shutdown_timeout`` to finish, the rest go back to the queue."""
        if self._started:
            raise RuntimeError("declare workers before an application using them starts")
        self._workers.append(_WorkerSpec(queue, dict(options)))

    def bind_sqlalchemy(
        self,
        target: Any,
        rules: Mapping[type, Any],
        *,
        tables: Mapping[Any, Any] | None = None,
    ) -> None:
        """Invalidate cache tags after commit for the sessions of ``target`` (an
        ``async_sessionmaker``, ``AsyncSession`` class, ``async_scoped_session`` or
        ``AsyncEngine``), as :func:`redkit.sqlalchemy.bind` does, on each application's kit
        while it runs (bound at start-up, unbound at shutdown); ``enqueue_after_commit`` then
        works for those sessions with the tasks of :meth:`task_for`. Declare it before an
        application starts."""
        if self._started:
            raise RuntimeError("bind SQLAlchemy before an application using it starts")
        from sqlalchemy.ext.asyncio import (
            AsyncEngine,
            AsyncSession,
            async_scoped_session,
            async_sessionmaker,
        )

        is_async = isinstance(
            target, (async_sessionmaker, async_scoped_session, AsyncEngine, AsyncSession)
        ) or (isinstance(target, type) and issubclass(target, AsyncSession))
        if not is_async:
            raise TypeError(
                "bind an async_sessionmaker, AsyncSession, async_scoped_session or AsyncEngine: "
                "the application's kit is an asyncio one"
            )
        self._bindings.append(_BindingSpec(target, dict(rules), tables))

    # -- the lifespan -----------------------------------------------------------------------------
    def lifespan(self, target: Any) -> Any:
        """Starlette's ``lifespan``: ``lifespan=rk.lifespan``, or ``lifespan=rk.lifespan(own)``
        to wrap the application's own lifespan (``own(app)``, an async context manager; the
        state it yields is passed on). On start: the kit opens (``app.state.redkit``), the
        tasks are registered, then the application's lifespan runs, then the workers start;
        on shutdown the same in reverse, the pools closed last."""
        if isinstance(target, Starlette):
            return self._lifespan(target, None)
        if not callable(target):
            raise TypeError(f"lifespan takes the application's own lifespan, not {target!r}")
        own: Lifespan = target

        def wrapped(app: Any) -> contextlib.AbstractAsyncContextManager[Any]:
            return self._lifespan(app, own)

        return wrapped

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any, own: Lifespan | None) -> AsyncIterator[Any]:
        running = await self.start(app)
        try:
            if own is None:
                await self._start_workers(running)
                yield None
            else:
                async with own(app) as state:
                    await self._start_workers(running)
                    try:
                        yield state
                    finally:
                        await self._stop_workers(running)
        finally:
            await self.stop(app)

    async def start(self, app: Any) -> Running:
        """Open ``app``'s kit and register the tasks (what :attr:`lifespan` does first)."""
        if app in self._running:
            raise RuntimeError("this application is started already")
        self._started = True
        kit = AsyncRedkit(self.settings)
        keeper = AsyncLeaseKeeper(kit.idempotency, self.settings.idempotency_lease)
        quiet = self.settings.replace(idempotency_methods=())
        alone = quiet.replace(ratelimit_default=None, ratelimit_application=None)
        running = Running(
            kit, keeper, views=web.WebRules(alone, keeper), web=web.WebRules(quiet, keeper)
        )
        for spec in self._tasks:
            queue = kit.queue(spec.queue)
            running.tasks[spec.fn] = queue.task(name=spec.name, **spec.options)(spec.fn)
        if self._bindings:
            from redkit.sqlalchemy import bind

            for binding in self._bindings:
                running.bindings.append(
                    bind(binding.target, kit, binding.rules, tables=binding.tables)
                )
        self._running[app] = running
        setattr(app.state, STATE_NAME, kit)
        return running

    async def _start_workers(self, running: Running) -> None:
        """Start the declared workers and wait until each serves: one that cannot start (its
        kit closed, Redis evicting keys under ``queue_eviction_policy="refuse"``) stops the
        others and fails the application's start-up with its error."""
        for spec in self._workers:
            worker = running.kit.queue(spec.queue).worker(**spec.options)
            task = asyncio.create_task(worker.serve(), name=f"redkit-worker-{spec.queue}")
            running.workers.append((worker, task))
            if not await worker.started():
                await asyncio.wait({task})
                if task.exception() is not None:
                    running.workers.pop()
                    await self._stop_workers(running)
                    raise task.exception()  # type: ignore[misc]
            task.add_done_callback(functools.partial(_ended, worker))

    async def _stop_workers(self, running: Running) -> None:
        workers, running.workers = running.workers, []
        for worker, _ in workers:
            worker.stop(wait=False)
        # a worker that failed was logged when it did (``_ended``)
        await asyncio.gather(*(task for _, task in workers), return_exceptions=True)

    async def stop(self, app: Any) -> None:
        """Stop ``app``'s workers gracefully and close its kit (what :attr:`lifespan` does
        last). Idempotent."""
        running = self._running.pop(app, None)
        if running is None:
            return
        await self._stop_workers(running)
        bindings, running.bindings = running.bindings, []
        for binding in bindings:
            binding.unbind()
        hubs, running.hubs = list(running.hubs.values()), {}
        for hub in hubs:
            await hub.aclose()
        await running.keeper.aclose()
        if getattr(app.state, STATE_NAME, None) is running.kit:
            delattr(app.state, STATE_NAME)
        await running.kit.aclose()

    # -- job progress -------------------------------------------------------------------------
    async def job_events(
        self,
        request: Request,
        job_id: str,
        *,
        queue: str = "default",
        result: bool = False,
        errors: bool = False,
        heartbeat: float = 15.0,
        retry: float = 3.0,
        lifetime: float = 30.0,
    ) -> Response:
        """A ``text/event-stream`` response following job ``job_id`` of ``queue``: a ``state``
        event (``state``, ``progress``, ``attempts``), then each of the job's events as it
        happens (``active``, ``progress``, ``retried``, ``stalled``, ...) until the last one
        (``completed``, ``failed`` for good, ``removed``), where the stream ends. ``404`` for
        no such job, ``503`` when Redis is unreachable. The job's result and failure reason
        are left out unless ``result=True`` / ``errors=True``: check that the caller may see
        the job before answering with this. A comment every ``heartbeat`` seconds keeps
        proxies from closing an idle stream; ``retry`` is the browser's reconnection delay.
        A stream ends after ``lifetime`` seconds (the browser reconnects and gets the job's
        state): a server shutting down gracefully waits for open streams at most that long.
        All streams of a queue share one reader of its events."""
        if not isinstance(queue, str) or not queue:
            raise TypeError(f"queue must be a queue name, not {queue!r}")
        for name, value in (("heartbeat", heartbeat), ("retry", retry), ("lifetime", lifetime)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
            if value > 86400:
                raise ValueError(f"{name} must be at most a day, not {value!r}")
        running = self.running(request)
        hub = running.hubs.get(queue)
        if hub is None:
            hub = running.hubs[queue] = EventHub(running.kit.queue(queue))
        return await job_events(
            hub,
            job_id,
            result=result,
            errors=errors,
            heartbeat=float(heartbeat),
            retry_ms=int(retry * 1000),
            lifetime=float(lifetime),
        )

    def running(self, where: Any) -> Running:
        """The started state of the application of ``where`` (a request, a scope's app, or
        the application)."""
        app = where.app if isinstance(where, HTTPConnection) else where
        found = self._running.get(app)
        if found is None:
            raise RuntimeError(
                "redkit is not started for this application: pass lifespan=rk.lifespan to "
                "Starlette() or FastAPI() (in tests run the lifespan: asgi_lifespan's "
                "LifespanManager, or Starlette's TestClient as a context manager)"
            )
        return found
