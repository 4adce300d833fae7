"""What a failed Redis call means: redis-py's errors in redkit's hierarchy (:func:`wrap_error`),
the circuit breaker and outage log fed by them (:class:`Health`), and when a call is sent again
(:class:`RetryPolicy`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis.exceptions as rex

from ._breaker import CircuitBreaker
from ._ops import Call
from ._stats import Stats
from .errors import (
    AuthenticationError,
    PoolExhaustedError,
    RedkitConnectionError,
    RedkitError,
    RedkitTimeoutError,
    ResponseError,
)

__all__ = ["Health", "RetryPolicy", "wrap_error"]

log = logging.getLogger("redkit")


def wrap_error(exc: BaseException) -> RedkitError:
    """Translate a redis-py exception into redkit's hierarchy (the original becomes the cause)."""
    if isinstance(exc, RedkitError):
        return exc
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)):
        err: RedkitError = AuthenticationError(f"Redis refused the credentials: {exc}")
    elif _is_pool_exhausted(exc):
        err = PoolExhaustedError(f"no free Redis connection in the pool: {exc}")
    elif isinstance(exc, (rex.TimeoutError, TimeoutError)):
        err = RedkitTimeoutError(f"Redis call timed out: {exc}")
    elif isinstance(
        exc,
        (
            rex.ConnectionError,
            rex.ReadOnlyError,
            rex.ClusterDownError,
            rex.TryAgainError,
            rex.RedisClusterException,
            ConnectionError,
            OSError,
        ),
    ):
        err = RedkitConnectionError(f"Redis is unreachable: {exc}")
    elif isinstance(exc, rex.RedisError):
        err = ResponseError(f"Redis error: {exc}")
    else:  # pragma: no cover - only redis errors are passed in
        err = RedkitError(str(exc))
    err.__cause__ = exc
    return err


# What says "Redis cannot be reached right now": also a cluster that is down, failing over or
# missing a slot owner, which fail open like an unreachable standalone server.
_CONNECTION_ERRORS = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ReadOnlyError,  # a replica during failover
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.RedisClusterException,
    ConnectionError,
    TimeoutError,
    OSError,
)


def _is_pool_exhausted(exc: BaseException) -> bool:
    return isinstance(exc, rex.MaxConnectionsError) or (
        isinstance(exc, rex.ConnectionError) and "No connection available" in str(exc)
    )


def _not_an_outage(exc: BaseException) -> bool:
    """Errors that say nothing about Redis being reachable: they must not open the breaker."""
    return isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError)) or _is_pool_exhausted(
        exc
    )


class Health:
    """Breaker plus outage bookkeeping: one warning when Redis goes away, one when it is back."""

    def __init__(self, breaker: CircuitBreaker, stats: Stats, where: str) -> None:
        self.breaker = breaker
        self.stats = stats
        self.where = where
        self._down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def is_down(self) -> bool:
        """True between a connection failure and the next successful call."""
        return self._down_since is not None

    def ok(self) -> None:
        self.breaker.record_success()
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    took = time.monotonic() - self._down_since
                    self._down_since = None
                    log.warning(
                        "redkit: Redis at %s is reachable again after %.1fs", self.where, took
                    )

    def failed(self, exc: BaseException) -> None:
        if _not_an_outage(exc):
            self.stats.incr("pool_exhausted" if _is_pool_exhausted(exc) else "auth_errors")
            return
        self.stats.incr("connection_errors")
        if self.breaker.record_failure():
            self.stats.incr("breaker_opened")
        if self._down_since is None:
            with self._lock:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("redkit: Redis at %s is unreachable: %s", self.where, exc)


class RetryPolicy:
    """Re-sending after a connection error: ``attempts`` retries, the n-th (from 1) after
    ``min(cap, base * 2**n)`` seconds. Timeouts are never retried (the call may have run)."""

    __slots__ = ("attempts", "base", "cap")

    def __init__(self, attempts: int = 3, base: float = 0.008, cap: float = 0.25) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2**attempt))

    def may_retry(self, exc: BaseException, calls: Sequence[Call], attempt: int) -> bool:
        return (
            attempt < self.attempts
            and isinstance(exc, rex.ConnectionError)
            and not _not_an_outage(exc)
            and all(c.idempotent for c in calls)
        )
