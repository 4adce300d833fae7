"""Tasks of the Flask extension: registered on every application it serves, run inside the
application's context on a worker, and in-process workers stopped gracefully at exit."""

from __future__ import annotations

import atexit
import functools
import inspect
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from redkit.queue import Job, Task

__all__ = ["FlaskTask", "stop_at_exit"]

P = ParamSpec("P")
R = TypeVar("R")


def stop_at_exit(worker: Any) -> None:
    """Stop ``worker`` gracefully when the process exits, before thread pools refuse work."""
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


class FlaskTask(Generic[P, R]):
    """A task registered by :meth:`Redkit.task`: ``enqueue`` sends it on the current
    application's queue; calling it runs the function here."""

    def __init__(
        self,
        ext: Any,
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

    def _bind(self, state: Any) -> None:
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
