"""The circuit breaker, with a fake clock (pure)."""

from __future__ import annotations

import pytest

from redkit import CircuitOpenError
from redkit._breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_fails_fast() -> None:
    clock = Clock()
    b = CircuitBreaker(3, 5.0, clock)
    for _ in range(2):
        b.before_call()
        assert b.record_failure() is False
    b.before_call()
    assert b.record_failure() is True
    assert b.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        b.before_call()
    assert 4.9 < info.value.retry_after <= 5.0


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(3, 5.0, Clock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"


def test_one_probe_after_cooldown_then_close_or_reopen() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock)
    b.record_failure()
    clock.now += 5.0
    assert b.state == "half-open"
    b.before_call()  # the probe
    with pytest.raises(CircuitOpenError):
        b.before_call()  # nobody else while the probe is out
    assert b.record_failure() is True  # probe failed: open again for a full cool-down
    with pytest.raises(CircuitOpenError):
        b.before_call()
    clock.now += 5.0
    b.before_call()
    b.record_success()
    assert b.state == "closed"
    b.before_call()
    assert b.times_opened == 2


def test_threshold_zero_disables() -> None:
    b = CircuitBreaker(0, 5.0, Clock())
    for _ in range(10):
        assert b.record_failure() is False
        b.before_call()
