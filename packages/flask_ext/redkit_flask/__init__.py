"""redkit for Flask: ``pip install "redkit[flask]"``, then ``from redkit_flask import Redkit``.

The extension is glue: it reads ``REDKIT_*`` from ``app.config``, keeps one
:class:`redkit.Redkit` per application in ``app.extensions["redkit"]``, translates requests for
:mod:`redkit.web` (where every rule of sessions, view caching, rate limits and idempotency keys
lives), runs tasks inside an application context, and closes the pool when the process exits.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from redkit.web import require

require("flask", "flask")

import redkit  # noqa: E402
from flask import Flask, current_app, has_app_context  # noqa: E402
from flask import session as flask_session  # noqa: E402
from redkit import web  # noqa: E402
from redkit.queue import Queue, Task  # noqa: E402
from redkit.settings import Settings  # noqa: E402

from .cli import cli_group  # noqa: E402
from .config import settings_from_config  # noqa: E402
from .hooks import Hooks, RateLimitExceeded  # noqa: E402
from .sessions import RedkitSession, RedkitSessionInterface  # noqa: E402
from .tasks import FlaskTask, stop_at_exit  # noqa: E402
from .views import ViewDecorators  # noqa: E402

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


def _close_at_exit(state: _State) -> None:
    ref = weakref.ref(state)

    def close() -> None:
        live = ref()
        if live is not None:
            if live.hooks is not None:
                live.hooks.close()
            live.kit.close()

    atexit.register(close)


class Redkit(ViewDecorators):
    """The Flask extension: ``Redkit(app)``, or ``kit = Redkit()`` then ``kit.init_app(app)`` in
    an application factory. Keyword ``options`` are redkit settings and win over
    ``app.config``. Inside an application context, :attr:`kit` (and :attr:`cache`,
    :attr:`sessions`, :attr:`limiter`, :attr:`idempotency`) are the current application's."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        Settings.from_config({}, **options)  # an unknown setting fails here, not at init_app
        self._options = options
        self._tasks: list[FlaskTask[Any, Any]] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._groups: dict[str, web.ViewRules] = {}
        self._user_loader: Callable[[], object] | None = None
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
        _close_at_exit(state)
        for task in self._tasks:
            task._bind(state)
        state.hooks = Hooks(self, app, kit)
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
        if state.hooks is not None:
            state.hooks.close()
        state.kit.close()

    # -- SQLAlchemy -----------------------------------------------------------------------------
    def dashboard(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str = "/redkit",
        auth: Callable[[], Any] | None = None,
        token: str | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        queues: Iterable[str] | None = None,
        read_only: bool = False,
        title: str = "redkit",
    ) -> Any:
        """Mount redkit's :mod:`dashboard <redkit.dashboard>` on ``app`` (default: the only
        application the extension is registered on) under ``url_prefix``, as a blueprint,
        which it returns. It refuses to be made without ``auth`` (a callable of no argument,
        called in the request's context, that returns who the user is, or something false
        to refuse) or ``token``. ``redact(field, value)`` returns what is shown of a job's
        data, result, progress, logs and errors."""
        from .dashboard import mount_dashboard

        state = self.state(app)
        options: dict[str, Any] = {"auth": auth, "token": token, "redact": redact}
        options.update(queues=queues, read_only=read_only, title=title)
        return mount_dashboard(state.app, state.kit, url_prefix=url_prefix, **options)

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
        :class:`redkit.queue.Worker`. Its tasks run inside the application's context.
        Started on a thread (``.start()``), it is stopped gracefully (running jobs get their
        ``shutdown_timeout``) by :meth:`close` and when the process exits, before the pool
        closes."""
        state = self.state(app)
        worker = state.kit.queue(queue).worker(**options)
        state.workers.add(worker)
        stop_at_exit(worker)
        return worker


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
