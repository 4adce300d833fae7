"""One thread renewing the leases of every running request of a process."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import ClientClosedError
from ._records import Begin

log = logging.getLogger("redkit.idempotency")


class LeaseKeeper:
    """Renews the leases of the requests begun through ``idempotency`` (a sync
    :class:`Idempotency`) that are running in this process, from one daemon thread (started on
    first use, again after a fork): every third of ``lease`` a running request's lease is
    extended, so a request shorter than that costs no renewal. Framework adapters keep one per
    application instead of a :class:`Guard` thread per request. The thread ends when nothing
    is left to renew, and :meth:`add` starts it again."""

    def __init__(self, idempotency: Any, lease: float) -> None:
        self._idem = idempotency
        self._every = lease / 3
        self._lock = threading.Lock()
        self._active: dict[int, list[Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, begun: Begin) -> int:
        """Keep ``begun``'s lease alive until :meth:`remove`; returns the handle to remove."""
        due = time.monotonic() + self._every
        with self._lock:
            self._next += 1
            handle = self._next
            self._active[handle] = [begun, due]
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="redkit-idempotency-leases",
                    daemon=True,
                )
                self._thread.start()
        return handle

    def remove(self, handle: int) -> None:
        with self._lock:
            self._active.pop(handle, None)

    def close(self) -> None:
        """Stop renewing (the thread ends; a later :meth:`add` starts it again)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._active.clear()
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(min(self._every / 4, 1.0)):
            now = time.monotonic()
            with self._lock:
                if not self._active:  # idle: end; the next add() starts a thread again
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                due = [(h, e[0]) for h, e in self._active.items() if e[1] <= now]
                for handle, _ in due:
                    self._active[handle][1] = now + self._every
            for handle, begun in due:
                try:
                    kept = self._idem.renew(begun.key, begun.token, begun.scope)
                except ClientClosedError:  # the client closed: nothing is renewed any more
                    with self._lock:
                        self._active.clear()
                        if self._thread is threading.current_thread():
                            self._thread = None
                    return
                except Exception as exc:  # keep renewing the others
                    log.warning("redkit: renewing an idempotency lease failed: %s", exc)
                    continue
                if not kept:
                    log.warning(
                        "redkit: the lease of idempotency key %r was lost: another request "
                        "may run it too",
                        begun.key,
                    )
                    self.remove(handle)
