"""A circuit breaker shared by every call of one client.

After ``threshold`` consecutive connection failures the breaker opens: calls fail at once with
:class:`~redkit.errors.CircuitOpenError` instead of each waiting out a socket timeout. After
``cooldown`` seconds one probe call is let through (half-open); its success closes the breaker, its
failure opens it for another cool-down. Thread-safe; used from sync and async code alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import CircuitOpenError

__all__ = ["CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker. ``threshold=0`` disables it (never opens)."""

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = CLOSED
        self._probe_started = 0.0
        self.times_opened = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
                return HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go to Redis now."""
        if self._state == CLOSED:  # fast path, no lock: a stale read only delays by one call
            return
        with self._lock:
            now = self._clock()
            if self._state == OPEN:
                remaining = self.cooldown - (now - self._opened_at)
                if remaining > 0:
                    raise CircuitOpenError(remaining)
                self._state = HALF_OPEN
                self._probe_started = now
                return  # this caller is the probe
            if self._state == HALF_OPEN:
                # one probe at a time; a probe that never reports back frees the slot after cooldown
                if now - self._probe_started < max(self.cooldown, 0.001):
                    raise CircuitOpenError(self.cooldown - (now - self._probe_started))
                self._probe_started = now

    def record_success(self) -> None:
        """A call reached Redis: reset the failure count and close the breaker."""
        if self._state == CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._state = CLOSED

    def record_failure(self) -> bool:
        """A call failed to reach Redis. Returns True when this failure opened the breaker."""
        if self.threshold <= 0:
            return False
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (
                self._state == CLOSED and self._failures >= self.threshold
            ):
                self._state = OPEN
                self._opened_at = self._clock()
                self.times_opened += 1
                return True
            return False
