"""redkit for Flask: ``pip install "redkit[flask]"``, then ``from redkit_flask import Redkit``.

The extension is thin: it reads ``REDKIT_*`` from ``app.config``, keeps one
:class:`redkit.Redkit` per application in ``app.extensions["redkit"]``, runs tasks inside an
application context, and closes the connection pool when the process exits. All the logic lives in
``redkit``.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from redkit.optional import require

require("flask", "flask")


import redkit  # noqa: E402
from flask import Blueprint, Flask, current_app, has_app_context, has_request_context  # noqa: E402
from flask import request as flask_request  # noqa: E402
from flask import session as flask_session  # noqa: E402
from redkit.queue import Job, Queue, Task  # noqa: E402
from redkit.settings import Settings  # noqa: E402
from redkit.web import ViewCachePolicy  # noqa: E402

from .cli import cli_group  # noqa: E402
from .hooks import (  # noqa: E402
    CacheRule,
    Hooks,
    IdempotentRule,
    Marks,
    RateLimitExceeded,
    limit_rule,
    marks_of,
)
from .sessions import RedkitSession, RedkitSessionInterface  # noqa: E402

__all__ = [
    "FlaskTask",
    "RateLimitExceeded",
    "Redkit",
    "RedkitSession",
    "RedkitSessionInterface",
    "regenerate_session",
    "settings_from_config",
]

P = ParamSpec("P")
R = TypeVar("R")
V = TypeVar("V")


def settings_from_config(config: Mapping[str, Any], **options: Any) -> Settings:
    """redkit's settings from a Flask config: every ``REDKIT_<SETTING>`` key (``REDKIT_URL``,
    ``REDKIT_PREFIX``, ``REDKIT_CACHE_TTL``, ...), then ``options`` over them; an unknown
    ``REDKIT_`` key is a :class:`~redkit.errors.ConfigurationError`."""
    return Settings.from_config(config, **options)


class _State:
    """What ``app.extensions["redkit"]`` holds for one application."""

    __slots__ = ("__weakref__", "app", "ext", "hooks", "kit", "tasks", "workers")

    def __init__(self, ext: Redkit, app: Flask, kit: redkit.Redkit) -> None:
        self.ext = ext
        self.app = app
        self.kit = kit
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.hooks: Hooks | None = None
        self.workers: weakref.WeakSet[Any] = weakref.WeakSet()


def _stop_at_exit(worker: Any) -> None:
    ref = weakref.ref(worker)

    def stop() -> None:
        live = ref()
        if live is not None and live._thread is not None:
            live.stop()

    # threading's exit hooks run before atexit's, and one of them makes thread pools refuse
    # work: the worker must be stopped before that, or a job it is handing to a thread fails
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(stop)
    else:  # pragma: no cover - every supported CPython has it
        atexit.register(stop)


def regenerate_session() -> None:
    """Give the current session a new id at the end of this request, keeping its data: call it
    in a login view (against session fixation). Needs ``REDKIT_SESSIONS``. With Flask-Login it
    is done for you when ``login_user`` or ``logout_user`` runs."""
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, RedkitSession):
        raise RuntimeError(
            "regenerate_session() needs redkit's sessions: set REDKIT_SESSIONS = True"
        )
    session.regenerate()


def _regenerate_on_signal(sender: Any, **extra: Any) -> None:
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    if isinstance(session, RedkitSession):
        session.regenerate()


def _close_at_exit(kit: redkit.Redkit) -> None:
    ref = weakref.ref(kit)

    def close() -> None:
        live = ref()
        if live is not None:
            live.close()

    atexit.register(close)


class Redkit:
    """The Flask extension: ``Redkit(app)``, or ``kit = Redkit()`` then ``kit.init_app(app)`` in
    an application factory. Keyword ``options`` are redkit settings and win over
    ``app.config``. Inside an application context, :attr:`kit` (and :attr:`cache`,
    :attr:`sessions`, :attr:`limiter`, :attr:`idempotency`) are the current application's."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        Settings.from_config({}, **options)  # an unknown setting fails here, not at init_app
        self._options = options
        self._tasks: list[FlaskTask[Any, Any]] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._blueprint_marks: dict[str, Marks] = {}
        self._scope_loader: Callable[[], object] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` (registering the same extension twice is harmless)."""
        state = app.extensions.get("redkit")
        if state is not None:
            if isinstance(state, _State) and state.ext is self:
                return
            raise RuntimeError("another redkit extension is already registered on this app")
        kit = redkit.Redkit(settings_from_config(app.config, **self._options))
        state = _State(self, app, kit)
        app.extensions["redkit"] = state
        self._apps.add(app)
        _close_at_exit(kit)
        for task in self._tasks:
            task._bind(state)
        hooks = state.hooks = Hooks(self, app)
        app.before_request(hooks.before)
        app.after_request(hooks.after)
        app.teardown_request(hooks.teardown)
        if kit.settings.sessions:
            app.session_interface = RedkitSessionInterface(self)
            try:
                from flask_login import (  # type: ignore[import-untyped, unused-ignore]
                    user_logged_in,
                    user_logged_out,
                )
            except ImportError:
                pass
            else:
                user_logged_in.connect(_regenerate_on_signal, app, weak=False)
                user_logged_out.connect(_regenerate_on_signal, app, weak=False)
        app.cli.add_command(cli_group(self))

    # -- the current application's client -------------------------------------------------------
    def state(self, app: Flask | None = None) -> Any:
        """The extension's state of ``app`` (default: the current application; outside an
        application context, the only application it was registered on)."""
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            else:
                apps = list(self._apps)
                if len(apps) != 1:
                    raise RuntimeError(
                        "no application context: use `with app.app_context():` (this redkit "
                        f"extension is registered on {len(apps)} applications)"
                    )
                app = apps[0]
        state = app.extensions.get("redkit")
        if not isinstance(state, _State) or state.ext is not self:
            raise RuntimeError("this redkit extension is not registered on the application")
        return state

    @property
    def kit(self) -> redkit.Redkit:
        """The current application's :class:`redkit.Redkit`."""
        return self.state().kit  # type: ignore[no-any-return]

    @property
    def cache(self) -> Any:
        """The current application's cache (:class:`redkit.cache.Cache`)."""
        return self.kit.cache

    @property
    def sessions(self) -> Any:
        """The current application's server-side sessions."""
        return self.kit.sessions

    @property
    def limiter(self) -> Any:
        """The current application's rate limiter."""
        return self.kit.limiter

    @property
    def idempotency(self) -> Any:
        """The current application's idempotency records."""
        return self.kit.idempotency

    def queue(self, name: str = "default", **options: Any) -> Queue:
        """The current application's job queue ``name`` (options as for ``kit.queue``)."""
        return self.kit.queue(name, **options)

    def close(self, app: Flask | None = None) -> None:
        """Stop the in-process workers of ``app`` (default: the current one) gracefully, then
        close its connection pool. Idempotent; it is also done when the process exits."""
        state = self.state(app)
        for worker in list(state.workers):
            worker.stop()
        state.kit.close()

    # -- views ----------------------------------------------------------------------------------
    def rate_limit(
        self,
        limits: Any,
        *,
        key: Callable[[], object] | None = None,
        scope: str | None = None,
        methods: Iterable[str] | None = None,
        cost: int | Callable[[], int] = 1,
        exempt_when: Callable[[], bool] | None = None,
        algorithm: str | None = None,
    ) -> Callable[[V], V]:
        """Limit a view (or every view of a blueprint): ``@kit.rate_limit("10/second;100/minute")``.

        ``key`` returns who is counted (default: the client address, resolved through
        ``REDKIT_TRUSTED_PROXIES``); ``scope`` names the counter (default: the endpoint, so
        views with one ``scope`` share it); ``methods`` limits only those; ``cost`` (or a
        callable returning it) is the units a request takes; ``exempt_when()`` returning true
        skips the limit. Over the limit the request gets ``429`` with ``Retry-After`` and the
        rate-limit headers (:class:`RateLimitExceeded`). Stack decorators for separate limits."""
        rule = limit_rule(limits, key, scope, methods, cost, exempt_when, algorithm)

        def decorate(target: V) -> V:
            marks = self._marks(target)
            marks.limits.append(rule)
            return target

        return decorate

    def exempt(self, target: V) -> V:
        """Exempt a view (or a blueprint) from ``REDKIT_RATELIMIT_DEFAULT`` and
        ``REDKIT_RATELIMIT_APPLICATION`` and any blueprint limit."""
        self._marks(target).exempt = True
        return target

    def cached(
        self,
        ttl: float | None = None,
        *,
        tags: Any = None,
        key: Any = None,
        query: bool | Iterable[str] = True,
        statuses: Iterable[int] = (200,),
        cookies: bool = False,
        vary: Iterable[str] = (),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Cache a view's response, or a plain function's result, for ``ttl`` seconds (default
        ``REDKIT_CACHE_TTL``) with ``tags`` (templates over the view's URL arguments or the
        function's parameters, like ``"user:{user_id}"``, or a callable).

        On a view, the key is the host, path and query arguments (``query=False`` ignores them,
        a list keeps only those), plus the request headers the response's ``Vary`` names (and
        ``Cookie`` when the view used the session) and those in ``vary``. Only GET responses
        with a status in ``statuses`` (200) that set no cookie (unless ``cookies``), are not
        ``Cache-Control: private``/``no-store``/``no-cache`` and do not vary on ``*`` are stored;
        HEAD is answered from the GET entry. Nothing is stored while a database transaction of
        the request has uncommitted writes (see ``redkit.sqlalchemy``).

        On any other function it is ``kit.cache.cached(ttl, key, tags)`` of the current
        application (``key`` as there)."""
        if isinstance(tags, str):
            raise TypeError("tags must be a list of strings or a callable, not a single string")
        policy = ViewCachePolicy.build(query, statuses, cookies, vary)
        rule = CacheRule(ttl, tags, policy)
        ext = self

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            per_app: weakref.WeakKeyDictionary[Flask, Any] = weakref.WeakKeyDictionary()

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                if has_request_context() and ext._is_view(wrapper):
                    return fn(*args, **kwargs)  # the response is cached by the request hooks
                if inspect.iscoroutinefunction(fn):
                    raise TypeError(
                        f"{fn.__qualname__} is async: @kit.cached caches it only as a view"
                    )
                app = ext.state().app
                cached = per_app.get(app)
                if cached is None:
                    cached = per_app[app] = ext.kit.cache.cached(ttl, key, tags)(fn)
                return cached(*args, **kwargs)  # type: ignore[no-any-return]

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    if has_request_context() and ext._is_view(async_wrapper):
                        return await fn(*args, **kwargs)
                    raise TypeError(
                        f"{fn.__qualname__} is async: @kit.cached caches it only as a view"
                    )

                chosen: Any = async_wrapper
            else:
                chosen = wrapper
            self._marks(chosen).cache = rule
            return chosen  # type: ignore[no-any-return]

        return decorate

    def idempotent(
        self,
        *,
        required: bool = False,
        methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
        scope: Callable[[], object] | None = None,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> Callable[[V], V]:
        """Make a view honour ``Idempotency-Key`` (``REDKIT_IDEMPOTENCY_HEADER``): the first
        request with a key runs, a retry gets the stored response again with
        ``Idempotent-Replayed: true``; ``409`` while the first still runs, ``422`` when the key
        was used for a different request (method, path, query, body, content type), ``400``
        for a malformed key (or a missing one when ``required``). Keys are scoped per user when
        :meth:`user_loader` (or ``scope``) gives one. 5xx responses and responses setting a
        cookie are not stored (the key is released, so the client may retry)."""
        if isinstance(methods, str):
            methods = [methods]
        rule = IdempotentRule(
            frozenset(m.upper() for m in methods),
            required,
            scope,
            store_server_errors,
            tuple(allow_headers),
        )

        def decorate(target: V) -> V:
            self._marks(target).idempotent = rule
            return target

        return decorate

    def user_loader(self, fn: Callable[[], object]) -> Callable[[], object]:
        """Register the function returning the current user's id (or ``None`` when anonymous):
        idempotency keys are kept apart per user. With Flask-Login, for example::

            @kit.user_loader
            def current_user_id():
                return current_user.get_id() if current_user.is_authenticated else None
        """
        self._scope_loader = fn
        return fn

    def _marks(self, target: Any) -> Marks:
        if isinstance(target, Blueprint):
            return self._blueprint_marks.setdefault(target.name, Marks())
        if not callable(target):
            raise TypeError(f"decorate a view function or a Blueprint, not {target!r}")
        marks = marks_of(target, create=True)
        assert marks is not None
        return marks

    def _is_view(self, fn: Any) -> bool:
        endpoint = flask_request.endpoint
        if endpoint is None:
            return False
        view = current_app.view_functions.get(endpoint)
        probe, depth = view, 0
        while probe is not None and depth < 16:
            if probe is fn:
                return True
            probe, depth = getattr(probe, "__wrapped__", None), depth + 1
        return False

    # -- SQLAlchemy -----------------------------------------------------------------------------
    def bind_sqlalchemy(
        self,
        target: Any,
        rules: Mapping[type, Any] | None = None,
        *,
        tables: Mapping[Any, Iterable[str]] | None = None,
    ) -> Any:
        """Invalidate cache tags after commit (see ``redkit.sqlalchemy.bind``) for the sessions
        of ``target``: a Flask-SQLAlchemy ``db`` (or its ``db.session``), a ``sessionmaker`` or a
        ``scoped_session``. The tags are invalidated, and jobs of
        ``redkit.sqlalchemy.enqueue_after_commit`` sent, through the application whose context
        the commit runs in; one call serves every application of this extension. Returns the
        binding (``.unbind()``)."""
        from redkit.sqlalchemy import bind

        session = getattr(target, "session", None)
        if session is not None and hasattr(session, "session_factory"):
            target = session  # a Flask-SQLAlchemy extension object
        return bind(target, _AppKit(self), rules, tables=tables)

    # -- tasks ----------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], /) -> FlaskTask[P, R]: ...

    @overload
    def task(
        self, fn: None = None, /, *, queue: str = "default", name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, R]], FlaskTask[P, R]]: ...

    def task(
        self,
        fn: Any = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        **options: Any,
    ) -> Any:
        """Register a task on queue ``queue`` of every application this extension serves; a
        worker runs it inside that application's context (``current_app``, extensions such as
        Flask-SQLAlchemy). ``options`` are the task's job defaults (``attempts``, ``backoff``,
        ``timeout``, ``priority``, ``keep``)."""

        def decorate(f: Callable[P, R]) -> FlaskTask[P, R]:
            task: FlaskTask[P, R] = FlaskTask(self, f, queue, name, options)
            self._tasks.append(task)
            for app in list(self._apps):
                task._bind(self.state(app))
            return task

        return decorate(fn) if fn is not None else decorate

    def worker(self, queue: str = "default", app: Flask | None = None, **options: Any) -> Any:
        """A worker for queue ``queue`` of ``app`` (default: the current one); ``options`` as for
        :class:`redkit.queue.worker.Worker`. Its tasks run inside the application's context.
        Started on a thread (``.start()``), it is stopped gracefully (running jobs get their
        ``shutdown_grace``) by :meth:`close` and when the process exits, before the pool
        closes."""
        state = self.state(app)
        worker = state.kit.queue(queue).worker(**options)
        state.workers.add(worker)
        _stop_at_exit(worker)
        return worker


class FlaskTask(Generic[P, R]):
    """A task registered by :meth:`Redkit.task`: ``enqueue`` sends it on the current
    application's queue; calling it runs the function here."""

    def __init__(
        self,
        ext: Redkit,
        fn: Callable[P, R],
        queue: str,
        name: str | None,
        options: dict[str, Any],
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@kit.task decorates a function, not {fn!r}")
        self.ext = ext
        self.fn = fn
        self.queue_name = queue
        self.name = name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        self.options_ = dict(options)
        functools.update_wrapper(self, fn)

    def _bind(self, state: _State) -> None:
        """Register the task on ``state``'s application, wrapped in its application context."""
        app, fn = state.app, self.fn
        if inspect.iscoroutinefunction(fn):

            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with app.app_context():
                    return await fn(*args, **kwargs)

            wrapped: Callable[..., Any] = run_async
        else:

            def run(*args: Any, **kwargs: Any) -> Any:
                with app.app_context():
                    return fn(*args, **kwargs)

            wrapped = run
        queue = state.kit.queue(self.queue_name)
        existing = queue.tasks.get(self.name)
        if existing is not None and getattr(existing.fn, "__wrapped__", None) is fn:
            return  # registered already (init_app twice)
        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        state.tasks[self.name] = queue.task(name=self.name, **self.options_)(wrapped)

    def _task(self) -> Task[P, R]:
        state = self.ext.state()
        task = state.tasks.get(self.name)
        if task is None:  # pragma: no cover - every registered app binds every task
            raise RuntimeError(f"task {self.name!r} is not registered on this application")
        return task  # type: ignore[no-any-return]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Add a job that runs the task on a worker of the current application."""
        return self._task().enqueue(*args, **kwargs)

    def enqueue_in(self, delay: float | timedelta, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``delay`` from now."""
        return self._task().enqueue_in(delay, *args, **kwargs)

    def enqueue_at(self, when: datetime, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like :meth:`enqueue`, run no sooner than ``when`` (an aware datetime)."""
        return self._task().enqueue_at(when, *args, **kwargs)

    def options(self, **options: Any) -> Any:
        """The task with per-job options (``job_id``, ``delay``, ``priority``, ...)."""
        return self._task().options(**options)


class _AppCache:
    """``kit.cache`` of whichever application is current when it is used."""

    def __init__(self, ext: Redkit) -> None:
        self._ext = ext

    def invalidate(self, tags: Iterable[str]) -> int:
        return self._ext.kit.cache.invalidate(tags)


class _AppKit:
    """What ``redkit.sqlalchemy.bind`` needs of a client, resolved per application."""

    def __init__(self, ext: Redkit) -> None:
        self.cache = _AppCache(ext)
