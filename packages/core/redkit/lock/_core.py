"""The lock's logic without I/O: the scripts, the checks of names and durations, the state of
one acquisition (:class:`_Hold`) and :class:`LockCore`, which builds the batches and the
blocking-acquire flow that :class:`~redkit.lock.Lock` and :class:`~redkit.lock.AsyncLock` run."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

from .. import _durations as durations
from .._durations import Duration, to_ms
from .._ops import Batch, Flow, Script, Sleep, command, script
from ..errors import ClientClosedError

__all__ = ["ACQUIRE", "EXTEND", "FENCE_MARGIN", "MAX_TTL", "RELEASE", "LockCore"]

log = logging.getLogger("redkit.lock")

ACQUIRE = Script.load("lock_acquire")
RELEASE = Script.load("lock_release")
EXTEND = Script.load("lock_extend")

FENCE_MARGIN = 30 * 86400.0
"""Seconds the fencing counter outlives the lock (refreshed by every acquire and extend)."""
MAX_TTL = 365 * 86400.0
"""The longest lock lifetime accepted, in seconds."""
_FENCE_MARGIN_MS = int(FENCE_MARGIN * 1000)
_FIRST_WAIT = 0.002  # first pause of a blocking acquire; doubles up to _MAX_WAIT
_MAX_WAIT = 0.1


def _ttl(name: str, value: object) -> float:
    return durations.seconds(name, value, maximum=MAX_TTL)


def _timeout(name: str, value: object) -> float | None:
    return durations.optional_seconds(name, value, zero=True)


def _describe(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def _acquire_reply(reply: Any) -> tuple[bool, int]:
    return int(reply[0]) == 1, int(reply[1])


class _Hold:
    """One acquisition: its tokens, whether it was lost, and the renewal's bookkeeping."""

    __slots__ = ("_mutex", "expires_by", "fence", "last_sent", "lost", "stopped", "task", "token")

    def __init__(self, token: str, fence: int, sent: float, ttl: float) -> None:
        self.token = token
        self.fence = fence
        self.last_sent = sent
        # the lock expires no earlier than this (monotonic clock): its TTL started after `sent`
        self.expires_by = sent + ttl
        self.lost = False
        self.stopped = threading.Event()  # set on release: renewal ends and its answers are ignored
        self.task: asyncio.Task[None] | None = None  # the async renewal
        self._mutex = threading.Lock()

    def confirmed(self, sent: float, pttl_ms: int) -> None:
        """Redis answered a call sent at ``sent``: the lock is ours for ``pttl_ms`` more."""
        with self._mutex:
            if sent >= self.last_sent:
                self.last_sent = sent
                self.expires_by = sent + pttl_ms / 1000

    def mark_lost(self) -> bool:
        """Record that the lock is no longer ours; True the first time."""
        with self._mutex:
            first = not self.lost
            self.lost = True
        self.stopped.set()
        return first


class LockCore:
    """Keys, validation, batches and flows of one lock name (no I/O; shared by sync and async)."""

    def __init__(self, kit: Any, name: object, ttl: Duration, timeout: Duration | None) -> None:
        self.name = name
        self.ttl = _ttl("ttl", ttl)
        self.ttl_ms = to_ms(self.ttl)
        self.timeout = _timeout("timeout", timeout)
        self.key: str = kit.keyspace.tagged("lock", name)
        self.fence_key: str = kit.keyspace.tagged("lock", name, "fence")
        self.stats = kit.stats

    def describe(self) -> str:
        """The name for messages (``repr``, shortened)."""
        return _describe(self.name)

    def wait_time(self, blocking: bool | None, timeout: Duration | None) -> float | None:
        """How long an ``acquire(blocking, timeout)`` waits: None = forever, 0 = one attempt."""
        if blocking is not None and not isinstance(blocking, bool):
            raise TypeError(f"blocking must be True, False or None, not {type(blocking).__name__}")
        wait = _timeout("timeout", timeout)
        if blocking is False:
            if wait is not None:
                raise ValueError("a non-blocking acquire (blocking=False) takes no timeout")
            return 0.0
        if wait is not None:
            return wait
        if blocking is None:
            return self.timeout
        # blocking=True without a timeout: the lock's timeout, or forever when that says "try once"
        return self.timeout or None

    def acquire(self, token: str, wait: float | None) -> Flow[tuple[int, float] | None]:
        """Flow of ``acquire``: try to take the lock; while someone else holds it, pause with
        capped, jittered exponential backoff (never past the holder's expiry or the deadline)
        and try again, for ``wait`` seconds at most (None: forever). Returns ``(fencing token,
        monotonic time the winning attempt was sent)``, or None when the wait ran out.

        A re-sent attempt is harmless (the script succeeds again on its own token), so the call
        is idempotent and the executor may retry it after a connection error."""
        call = script(ACQUIRE, [self.key, self.fence_key], [token, self.ttl_ms, _FENCE_MARGIN_MS])
        batch = Batch.one(call, _acquire_reply)
        deadline = None if wait is None else time.monotonic() + wait
        delay = _FIRST_WAIT
        while True:
            sent = time.monotonic()
            acquired, value = yield batch
            if acquired:
                self.stats.incr("lock_acquired")
                return value, sent
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.stats.incr("lock_not_acquired")
                return None
            pause = random.uniform(delay / 2, delay)
            if value > 0:  # the holder's lock expires in `value` ms at the latest
                pause = min(pause, value / 1000)
            if deadline is not None:
                pause = min(pause, deadline - now)
            yield Sleep(pause)
            delay = min(delay * 2, _MAX_WAIT)

    def release(self, token: str) -> Batch[bool]:
        """Delete the lock if it holds ``token``; True when it did. Never re-sent: a second send
        after a lost reply would find the lock gone and report it lost."""
        call = script(RELEASE, [self.key], [token], idempotent=False)
        return Batch.one(call, lambda reply: int(reply) == 1)

    def extend(self, token: str, ttl_ms: int, only_lengthen: bool = False) -> Batch[int]:
        """Give the lock ``ttl_ms`` more if it holds ``token`` (with ``only_lengthen``, keep a
        longer remaining lifetime); the remaining ms after the call, or 0 when not ours."""
        flag = "1" if only_lengthen else "0"
        call = script(EXTEND, [self.key, self.fence_key], [token, ttl_ms, _FENCE_MARGIN_MS, flag])
        return Batch.one(call, int)

    def locked(self) -> Batch[bool]:
        """Whether anyone holds the lock."""
        return Batch.one(command("EXISTS", self.key), lambda reply: int(reply) > 0)

    def owned(self, token: str) -> Batch[bool]:
        """Whether the lock holds ``token``."""
        mine = token.encode()
        return Batch.one(command("GET", self.key), lambda reply: reply == mine)

    # -- renewal --------------------------------------------------------------------------------
    def renew(self, token: str) -> Batch[int]:
        """One renewal: back to the full ttl, never shortening a longer explicit extension."""
        return self.extend(token, self.ttl_ms, only_lengthen=True)

    def renewed(self, hold: _Hold, sent: float, result: int | BaseException) -> bool:
        """Record one renewal's outcome (remaining ms, 0 = not ours, or the error raised);
        returns whether to keep renewing."""
        if hold.stopped.is_set():  # released (or lost) meanwhile: this answer no longer matters
            return False
        if isinstance(result, ClientClosedError):  # the client closed: renewing is over
            hold.stopped.set()
            return False
        if isinstance(result, BaseException):
            self.stats.incr("lock_renewal_errors")
            if time.monotonic() < hold.expires_by:
                log.debug("redkit: could not renew lock %s, retrying: %s", self.describe(), result)
                return True
            reason = f"it could not be renewed before it expired ({result})"
        elif result > 0:
            hold.confirmed(sent, result)
            self.stats.incr("lock_renewals")
            return True
        else:
            reason = "Redis says it is no longer ours"
        if hold.mark_lost():
            self.stats.incr("lock_lost")
            log.warning("redkit: lock %s lost while held: %s", self.describe(), reason)
        return False
