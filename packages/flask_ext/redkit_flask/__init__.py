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
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from redkit.optional import require

require("flask", "flask")

import redkit  # noqa: E402
from flask import Flask, current_app, has_app_context  # noqa: E402
from redkit.queue import Job, Queue, Task  # noqa: E402
from redkit.settings import Settings  # noqa: E402

__all__ = ["FlaskTask", "Redkit", "settings_from_config"]

P = ParamSpec("P")
R = TypeVar("R")


def settings_from_config(config: Mapping[str, Any], **options: Any) -> Settings:
    """redkit's settings from a Flask config: every ``REDKIT_<SETTING>`` key (``REDKIT_URL``,
    ``REDKIT_PREFIX``, ``REDKIT_CACHE_TTL``, ...), then ``options`` over them; an unknown
    ``REDKIT_`` key is a :class:`~redkit.errors.ConfigurationError`."""
    return Settings.from_config(config, **options)


class _State:
    """What ``app.extensions["redkit"]`` holds for one application."""

    __slots__ = ("__weakref__", "app", "ext", "kit", "tasks")

    def __init__(self, ext: Redkit, app: Flask, kit: redkit.Redkit) -> None:
        self.ext = ext
        self.app = app
        self.kit = kit
        self.tasks: dict[str, Task[Any, Any]] = {}


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
        """Close the connection pool of ``app`` (default: the current one). Idempotent; it is
        also done when the process exits."""
        self.state(app).kit.close()

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
        :class:`redkit.queue.worker.Worker`. Its tasks run inside the application's context."""
        return self.state(app).kit.queue(queue).worker(**options)


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
