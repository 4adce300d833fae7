"""The threads sync tasks run on: a pool of daemon threads, so that a task still running after
its worker stopped (its job went back to the queue at the end of the shutdown timeout) does not
hold the process up when it exits, as the non-daemon threads of ``ThreadPoolExecutor`` do (the
interpreter joins them at exit)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["TaskThreads"]

_STOP = None


class TaskThreads(Executor):
    """At most ``max_workers`` daemon threads, started as work comes, reused while idle."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._work.put((future, lambda: fn(*args, **kwargs)))
            if self._idle > 0:
                self._idle -= 1  # one idle thread takes it
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{self._threads}", daemon=True
                ).start()
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, call
            with self._lock:
                if self._shut:
                    return
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; cancel what has not started (``cancel_futures``); idle threads
        end. A thread inside a task ends when the task returns (``wait`` is not supported:
        nothing waits for a task that may never return)."""
        with self._lock:
            self._shut = True
            threads = self._threads
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item[0].cancel()
        for _ in range(threads):
            self._work.put(_STOP)
