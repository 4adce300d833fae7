"""The lock shells: :class:`Lock` (a renewal thread) and :class:`AsyncLock` (a renewal task),
each running :class:`~redkit.lock._core.LockCore`'s batches and flows on its executor."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import weakref
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from .. import _durations as durations
from .._durations import NOT_GIVEN, Duration, to_ms
from .._executor import AsyncExecutor, SyncExecutor
from ..errors import LockError, LockLost, LockNotAcquired
from ._core import LockCore, _Hold, _ttl

__all__ = ["AsyncLock", "Lock"]

T = TypeVar("T")


def _renew_in_thread(x: SyncExecutor, core: LockCore, hold: _Hold) -> None:
    interval = core.ttl / 3
    batch = core.renew(hold.token)
    while not hold.stopped.wait(interval):
        sent = time.monotonic()
        result: int | BaseException
        try:
            result = x.run(batch)
        except Exception as exc:
            result = exc
        if not core.renewed(hold, sent, result):
            return


async def _renew_in_task(x: AsyncExecutor, core: LockCore, hold: _Hold) -> None:
    interval = core.ttl / 3
    batch = core.renew(hold.token)
    while True:
        await asyncio.sleep(interval)
        if hold.stopped.is_set():
            return
        sent = time.monotonic()
        result: int | BaseException
        try:
            result = await x.run(batch)
        except Exception as exc:
            result = exc
        if not core.renewed(hold, sent, result):
            return


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _forget(task: asyncio.Task[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a failed background release is not logged as unhandled


def _in_background(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``coro`` as a task that finishes even when its awaiter is cancelled."""
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_forget)
    return task


class _LockBase:
    """State and rules shared by :class:`Lock` and :class:`AsyncLock`; no I/O."""

    def __init__(
        self,
        kit: Any,
        name: object,
        ttl: Duration,
        timeout: Duration | None,
        auto_renew: bool,
        blocking_timeout: Any,
    ) -> None:
        if not isinstance(auto_renew, bool):
            raise TypeError(f"auto_renew must be True or False, not {type(auto_renew).__name__}")
        timeout = durations.renamed(
            type(self).__name__ + "()",
            "timeout",
            timeout,
            "blocking_timeout",
            blocking_timeout,
        )
        self._core = LockCore(kit, name, ttl, timeout)
        self._auto_renew = auto_renew
        self._mutex = threading.Lock()
        self._hold: _Hold | None = None
        self._acquiring = False
        self._finalizer: Any = None

    # -- properties -----------------------------------------------------------------------------
    @property
    def name(self) -> object:
        """The lock's name, as given."""
        return self._core.name

    @property
    def key(self) -> str:
        """The Redis key of the lock (``<prefix>:lock:{<name>}``)."""
        return self._core.key

    @property
    def ttl(self) -> float:
        """Lifetime in seconds given to the lock by ``acquire`` and, by default, ``extend``."""
        return self._core.ttl

    @property
    def timeout(self) -> float | None:
        """How long ``acquire()`` and ``with`` wait by default (None: forever; 0: one attempt)."""
        return self._core.timeout

    @property
    def blocking_timeout(self) -> float | None:
        """Deprecated name of :attr:`timeout`."""
        durations.warn_deprecated(
            "Lock.blocking_timeout is deprecated, use Lock.timeout (same meaning)"
        )
        return self._core.timeout

    @property
    def auto_renew(self) -> bool:
        """Whether the lock is extended in the background while held."""
        return self._auto_renew

    @property
    def token(self) -> str | None:
        """The random token of the current acquisition, or None when not held."""
        hold = self._hold
        return hold.token if hold else None

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of the current acquisition (larger than every one drawn before for
        this name), or None when not held."""
        hold = self._hold
        return hold.fence if hold else None

    @property
    def lost(self) -> bool:
        """True once the current acquisition is known or presumed lost: Redis answered that the
        lock is not ours, or renewal could not reach Redis before the lock's TTL ran out.
        ``release`` will raise :class:`~redkit.errors.LockLost`. False when not held."""
        hold = self._hold
        return hold.lost if hold else False

    def __repr__(self) -> str:
        hold = self._hold
        state = "not held" if hold is None else ("lost" if hold.lost else "held")
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} "
            f"name={self._core.describe()} ttl={self._core.ttl} {state}>"
        )

    # -- state transitions ----------------------------------------------------------------------
    def _begin_acquire(self) -> str:
        with self._mutex:
            if self._hold is not None or self._acquiring:
                raise LockError(
                    f"this {type(self).__name__} object already holds (or is acquiring) lock "
                    f"{self._core.describe()}; locks are not reentrant: release it first, or "
                    "use another object from kit.lock(...)"
                )
            self._acquiring = True
        return secrets.token_hex(16)

    def _abort_acquire(self) -> None:
        with self._mutex:
            self._acquiring = False

    def _end_acquire(self, token: str, result: tuple[int, float] | None) -> _Hold | None:
        with self._mutex:
            self._acquiring = False
            if result is None:
                return None
            fence, sent = result
            hold = self._hold = _Hold(token, fence, sent, self._core.ttl)
        if self._auto_renew:
            # a Lock dropped without release stops renewing; its key then expires by its TTL
            self._finalizer = weakref.finalize(self, hold.stopped.set)
        return hold

    def _not_acquired(self) -> LockNotAcquired:
        wait = self._core.timeout
        waited = "" if wait == 0 else " for the whole wait" if wait is None else f" for {wait:g}s"
        return LockNotAcquired(f"lock {self._core.describe()} was held by someone else{waited}")

    def _current(self) -> _Hold:
        hold = self._hold
        if hold is None:
            raise LockError(f"lock {self._core.describe()} is not held by this object")
        return hold

    def _begin_release(self) -> _Hold:
        with self._mutex:
            hold = self._current()
            self._hold = None
        hold.stopped.set()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return hold

    def _end_release(self, hold: _Hold, released: bool) -> None:
        if released and not hold.lost:
            self._core.stats.incr("lock_released")
            return
        if hold.mark_lost():
            self._core.stats.incr("lock_lost")
        raise LockLost(
            f"lock {self._core.describe()} was lost before it was released: it expired, and "
            "someone else may have held it meanwhile"
        )

    def _begin_extend(self, ttl: Duration | None) -> tuple[_Hold, int]:
        ms = self._core.ttl_ms if ttl is None else to_ms(_ttl("ttl", ttl))
        hold = self._current()
        if hold.lost:
            raise LockLost(f"lock {self._core.describe()} was lost: it cannot be extended")
        return hold, ms

    def _end_extend(self, hold: _Hold, sent: float, pttl: int) -> None:
        if pttl > 0:
            hold.confirmed(sent, pttl)
            self._core.stats.incr("lock_extended")
            return
        if hold.mark_lost():
            self._core.stats.incr("lock_lost")
        raise LockLost(
            f"lock {self._core.describe()} was lost before it was extended: it expired, and "
            "someone else may hold it now"
        )

    def _end_owned(self, hold: _Hold, ours: bool) -> bool:
        if not ours and hold.mark_lost():
            self._core.stats.incr("lock_lost")
        return ours


class Lock(_LockBase):
    """A distributed lock on ``name`` for blocking code, made by ``kit.lock(name, ...)``.

    ``with kit.lock("report:42", ttl=60, timeout=5) as lock:`` takes it (waiting up to
    ``timeout`` seconds, then raising :class:`~redkit.errors.LockNotAcquired`) and
    releases it at the end of the block (raising :class:`~redkit.errors.LockLost` if it expired
    meanwhile). ``ttl`` is the lock's lifetime; ``timeout`` None waits
    forever, 0 tries once. With ``auto_renew=True`` a daemon thread extends the lock every
    ``ttl / 3`` seconds while it is held.

    One object is one holder: it is not reentrant, and concurrent acquires of the same object
    raise :class:`~redkit.errors.LockError`. After a release it can be acquired again (with a new
    token and fencing token). Redis errors raise ``RedkitConnectionError``.
    """

    def __init__(
        self,
        kit: Any,
        name: object,
        ttl: Duration = 30.0,
        timeout: Duration | None = None,
        *,
        auto_renew: bool = False,
        blocking_timeout: Any = NOT_GIVEN,
    ) -> None:
        super().__init__(kit, name, ttl, timeout, auto_renew, blocking_timeout)
        self._x: SyncExecutor = kit._executor

    def acquire(self, blocking: bool | None = None, timeout: Duration | None = None) -> bool:
        """Take the lock; True when taken, False when someone else held it for the whole wait.

        ``acquire()`` waits as set by the lock's ``timeout``; ``blocking=False`` tries once;
        ``timeout=`` waits up to that many seconds; ``blocking=True`` without a timeout waits up
        to the lock's ``timeout``, or forever when that is None or 0. On success ``token`` and
        ``fencing_token`` are set. Raises :class:`~redkit.errors.LockError` when this object
        already holds the lock."""
        wait = self._core.wait_time(blocking, timeout)
        token = self._begin_acquire()
        try:
            result = self._x.drive(self._core.acquire(token, wait))
        except BaseException:
            self._abort_acquire()
            raise
        hold = self._end_acquire(token, result)
        if hold is None:
            return False
        if self._auto_renew:
            threading.Thread(
                target=_renew_in_thread,
                args=(self._x, self._core, hold),
                name="redkit-lock-renewal",
                daemon=True,
            ).start()
        return True

    def release(self) -> None:
        """Release the lock and stop its renewal. Raises :class:`~redkit.errors.LockLost` when
        it was no longer ours (the other holder's lock is left alone), and
        :class:`~redkit.errors.LockError` when this object does not hold it. The object is free
        to acquire again afterwards, whatever the outcome."""
        hold = self._begin_release()
        released = self._x.run(self._core.release(hold.token))
        self._end_release(hold, released)

    def extend(self, ttl: Duration | None = None) -> None:
        """Set the lock's remaining lifetime to ``ttl`` seconds (default: the lock's ``ttl``),
        counted from now; it may shorten it. Raises :class:`~redkit.errors.LockLost` when the
        lock is no longer ours."""
        hold, ms = self._begin_extend(ttl)
        sent = time.monotonic()
        pttl = self._x.run(self._core.extend(hold.token, ms))
        self._end_extend(hold, sent, pttl)

    def locked(self) -> bool:
        """Whether anyone (this object included) holds the lock now."""
        return self._x.run(self._core.locked())

    def owned(self) -> bool:
        """Whether this object holds the lock now, according to Redis."""
        hold = self._hold
        if hold is None:
            return False
        return self._end_owned(hold, self._x.run(self._core.owned(hold.token)))

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise self._not_acquired()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class AsyncLock(_LockBase):
    """The asyncio twin of :class:`Lock`, made by ``redkit.asyncio.Redkit().lock(name, ...)``:
    ``async with kit.lock("report:42") as lock:``. Same parameters and methods, awaited; with
    ``auto_renew=True`` an asyncio task extends the lock every ``ttl / 3`` seconds.

    A release cancelled mid-way still completes in the background, and so does the cleanup of an
    acquire cancelled while its attempt was in flight, so cancellation does not leave the lock
    taken until its TTL runs out.
    """

    def __init__(
        self,
        kit: Any,
        name: object,
        ttl: Duration = 30.0,
        timeout: Duration | None = None,
        *,
        auto_renew: bool = False,
        blocking_timeout: Any = NOT_GIVEN,
    ) -> None:
        super().__init__(kit, name, ttl, timeout, auto_renew, blocking_timeout)
        self._x: AsyncExecutor = kit._executor

    async def acquire(self, blocking: bool | None = None, timeout: Duration | None = None) -> bool:
        """Take the lock; True when taken, False when someone else held it for the whole wait
        (see :meth:`Lock.acquire`)."""
        wait = self._core.wait_time(blocking, timeout)
        token = self._begin_acquire()
        try:
            result = await self._x.drive(self._core.acquire(token, wait))
        except asyncio.CancelledError:
            self._abort_acquire()
            # the attempt in flight may have taken the lock: release it (a no-op otherwise)
            _in_background(self._x.run(self._core.release(token)))
            raise
        except BaseException:
            self._abort_acquire()
            raise
        hold = self._end_acquire(token, result)
        if hold is None:
            return False
        if self._auto_renew:
            hold.task = asyncio.get_running_loop().create_task(
                _renew_in_task(self._x, self._core, hold), name="redkit-lock-renewal"
            )
        return True

    async def release(self) -> None:
        """Release the lock and stop its renewal (see :meth:`Lock.release`)."""
        hold = self._begin_release()
        if hold.task is not None:
            hold.task.cancel()
        released = await asyncio.shield(_in_background(self._x.run(self._core.release(hold.token))))
        self._end_release(hold, released)

    async def extend(self, ttl: Duration | None = None) -> None:
        """Set the lock's remaining lifetime to ``ttl`` seconds (see :meth:`Lock.extend`)."""
        hold, ms = self._begin_extend(ttl)
        sent = time.monotonic()
        pttl = await self._x.run(self._core.extend(hold.token, ms))
        self._end_extend(hold, sent, pttl)

    async def locked(self) -> bool:
        """Whether anyone (this object included) holds the lock now."""
        return await self._x.run(self._core.locked())

    async def owned(self) -> bool:
        """Whether this object holds the lock now, according to Redis."""
        hold = self._hold
        if hold is None:
            return False
        return self._end_owned(hold, await self._x.run(self._core.owned(hold.token)))

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire():
            raise self._not_acquired()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
