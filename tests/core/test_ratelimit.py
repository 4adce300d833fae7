"""Rate limiting through ``kit.limiter``: every algorithm on real Redis, a real cluster and
memory://, sync and async; limit strings; headers; hostile keys; failure policy."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import InvalidKeyError, InvalidRateLimit, RedkitConnectionError
from redkit.ratelimit import ALGORITHMS, Decision, Limit, parse_limits
from tests.conftest import Kits, call, new_prefix
from tests.servers import free_port

WINDOWED = ("fixed_window", "sliding_window_log", "sliding_window_counter")


# -- limit strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/minute", [(100, 60.0)]),
        ("10/second;1000/day", [(10, 1.0), (1000, 86400.0)]),
        ("10 per second, 5 per 2 hours", [(10, 1.0), (5, 7200.0)]),
        ("5/30s", [(5, 30.0)]),
        ("3 / 0.5 seconds", [(3, 0.5)]),
        ("7/250ms", [(7, 0.25)]),
        ("1/Week; 2/month; 3/year", [(1, 604800.0), (2, 2592000.0), (3, 31536000.0)]),
    ],
)
def test_limit_strings(text: str, expected: list[tuple[int, float]]) -> None:
    assert [(lim.amount, lim.period) for lim in parse_limits(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "100",
        "minute",
        "100/fortnight",
        "0/minute",
        "-1/minute",
        "1.5/minute",
        "10/0s",
        "100/minute;nonsense",
        "1/0.0001s",
    ],
)
def test_bad_limit_strings_raise_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidRateLimit):
        parse_limits(text)


def test_limits_as_objects_and_lists() -> None:
    assert parse_limits(Limit(5, 60)) == (Limit(5, 60),)
    assert str(Limit(5, 60)) == "5/minute"
    assert str(Limit(5, 7200)) == "5/2 hours"
    both = parse_limits(["1/second", Limit(2, 3600)])
    assert [(lim.amount, lim.period) for lim in both] == [(1, 1.0), (2, 3600)]
    for bad in (b"1/second", 5, [], [object()], Limit):
        with pytest.raises(InvalidRateLimit):
            parse_limits(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRateLimit):
        Limit(True, 60)  # type: ignore[arg-type]
    with pytest.raises(InvalidRateLimit):
        Limit(1, math.nan)


# -- the concurrency check: exactly N allowed ------------------------------------------


def _bound(algorithm: str, elapsed: float) -> int:
    """Most requests "100/minute" may admit within ``elapsed`` seconds: 100 for the window
    algorithms; the token bucket and GCRA also earn one request per 0.6 s that passes."""
    return 100 if algorithm in WINDOWED else 100 + int(elapsed / 0.6)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_20_threads_hammering_100_per_minute_get_exactly_100(
    url: str, prefix: str, algorithm: str
) -> None:
    kits = [redkit.Redkit.from_url(url, prefix=prefix) for _ in range(4)]
    barrier = threading.Barrier(20)

    def worker(i: int) -> int:
        kit = kits[i % len(kits)]
        barrier.wait()
        return sum(
            bool(kit.limiter.hit("api", "100/minute", algorithm=algorithm)) for _ in range(10)
        )

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            allowed = sum(pool.map(worker, range(20)))
        elapsed = time.monotonic() - started
        assert 100 <= allowed <= _bound(algorithm, elapsed)
        if algorithm in WINDOWED:
            assert not kits[0].limiter.test("api", "100/minute", algorithm=algorithm)
    finally:
        kits[0].clear()
        for kit in kits:
            kit.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_20_tasks_hammering_100_per_minute_get_exactly_100(
    url: str, prefix: str, algorithm: str
) -> None:
    kit = redkit.asyncio.Redkit.from_url(url, prefix=prefix)

    async def worker() -> int:
        n = 0
        for _ in range(10):
            n += bool(await kit.limiter.hit("api", "100/minute", algorithm=algorithm))
        return n

    try:
        started = time.monotonic()
        allowed = sum(await asyncio.gather(*(worker() for _ in range(20))))
        assert 100 <= allowed <= _bound(algorithm, time.monotonic() - started)
    finally:
        await kit.clear()
        await kit.aclose()


# -- decisions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_decision_fields_and_retry_after(kit: Any, algorithm: str) -> None:
    results = [
        await call(kit.limiter.hit("u", "3 per 400 ms", algorithm=algorithm)) for _ in range(4)
    ]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    denied = results[-1]
    assert isinstance(denied, Decision)
    assert not denied
    assert 0 < denied.retry_after <= 0.8
    assert denied.limit == Limit(3, 0.4, "3 per 400 ms")
    assert results[0].retry_after == 0
    await asyncio.sleep(denied.retry_after + 0.02)
    assert await call(kit.limiter.hit("u", "3 per 400 ms", algorithm=algorithm))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_several_limits_are_checked_and_charged_together(kit: Any, algorithm: str) -> None:
    limits = "2/second;3/minute"
    assert [
        bool(await call(kit.limiter.hit("k", limits, algorithm=algorithm))) for _ in range(3)
    ] == [
        True,
        True,
        False,
    ]
    # the denied third request charged neither limit: the minute has 1 left
    minute = await call(kit.limiter.test("k", "3/minute", algorithm=algorithm))
    assert minute.allowed
    assert minute.remaining == 1
    denied = await call(kit.limiter.hit("k", limits, algorithm=algorithm))
    assert denied.limit.text == "2/second"
    assert [s.allowed for s in denied.states] == [False, True]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_cost_and_test_mode(kit: Any, algorithm: str) -> None:
    first = await call(kit.limiter.hit("c", "10/minute", cost=7, algorithm=algorithm))
    assert first.allowed
    assert first.remaining == 3
    probe = await call(kit.limiter.test("c", "10/minute", cost=4, algorithm=algorithm))
    assert not probe.allowed
    assert probe.remaining == 3
    assert (await call(kit.limiter.test("c", "10/minute", cost=3, algorithm=algorithm))).allowed
    # test() counted nothing: three units are still there
    assert (
        await call(kit.limiter.hit("c", "10/minute", cost=3, algorithm=algorithm))
    ).remaining == 0
    never = await call(kit.limiter.hit("c2", "10/minute", cost=11, algorithm=algorithm))
    assert not never.allowed
    assert math.isinf(never.retry_after)
    assert never.headers()["Retry-After"] == str(2**31 - 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_reset_forgets_every_limit_and_algorithm(kit: Any, algorithm: str) -> None:
    await call(kit.limiter.hit("r", "1/minute;5/hour", algorithm=algorithm))
    await call(kit.limiter.hit("r", "1/day", algorithm="gcra"))
    assert not await call(kit.limiter.hit("r", "1/minute", algorithm=algorithm))
    assert await call(kit.limiter.reset("r")) == 3
    assert await call(kit.limiter.hit("r", "1/minute", algorithm=algorithm))
    assert await call(kit.limiter.hit("r", "1/day", algorithm="gcra"))
    assert await call(kit.limiter.reset("never-seen")) == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_every_key_has_a_ttl(kit: Any, algorithm: str) -> None:
    await call(kit.limiter.hit("ttl", "5/second;9/hour", algorithm=algorithm))
    keys = [k async for k in _scan(kit)]
    assert len(keys) == 3  # index + one per limit
    for key in keys:
        ttl = await call(kit.client.pttl(f"{kit.settings.prefix}:{key}"))
        assert 0 < ttl <= 2 * 3600 * 1000 + 1000, key


async def _scan(kit: Any) -> Any:
    found = kit.scan("ratelimit:*")
    if hasattr(found, "__aiter__"):
        async for key in found:
            yield key
    else:
        for key in found:
            yield key


def test_headers() -> None:
    minute, second = Limit(100, 60, "100/minute"), Limit(10, 1)
    from redkit.ratelimit import LimitState

    states = (LimitState(minute, 40, 30.2, 0.0), LimitState(second, 0, 0.7, 0.7))
    denied = Decision(False, second, 0, 0.7, 0.7, states, now=1000.5)
    assert denied.headers() == {
        "Retry-After": "1",
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1002",
        "RateLimit-Policy": '"100/minute";q=100;w=60, "10/second";q=10;w=1',
        "RateLimit": '"100/minute";r=40;t=31, "10/second";r=0;t=1',
    }
    allowed = Decision(True, minute, 40, 30.2, 0.0, states[:1], now=1000.5)
    assert set(allowed.headers(draft=False)) == {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert set(allowed.headers(legacy=False)) == {"RateLimit-Policy", "RateLimit"}
    quoted = Decision(
        True, Limit(1, 1, 'a"b\\c\n'), 0, 0, 0, (LimitState(Limit(1, 1, 'a"b\\c\n'), 0, 0, 0),)
    )
    assert quoted.headers(legacy=False)["RateLimit-Policy"] == '"a\\"b\\\\c";q=1;w=1'


# -- hostile input -------------------------------------------------------------------------------

HOSTILE = ["*", "a?b", "[x]", "{tag}", "line\nbreak", "x" * 10_000, b"\xff\xfe\x00", "ümlaut"]


@pytest.mark.parametrize("key", HOSTILE, ids=lambda k: repr(k)[:20])
async def test_hostile_keys_stay_inside_the_component(kit: Any, key: object) -> None:
    assert await call(kit.limiter.hit(key, "1/minute"))
    assert not await call(kit.limiter.hit(key, "1/minute"))
    keys = [k async for k in _scan(kit)]
    assert keys
    assert all(k.startswith("ratelimit:{") for k in keys)
    assert all("\n" not in k and "*" not in k and len(k) < 400 for k in keys)
    # a different key is a different counter, even one that looks like a pattern of the first
    assert await call(kit.limiter.hit("*" if key != "*" else "?", "1/minute"))
    assert await call(kit.limiter.reset(key)) == 1


async def test_bad_arguments_raise_typed_errors(kit: Any) -> None:
    with pytest.raises(InvalidKeyError):
        await call(kit.limiter.hit("", "1/minute"))
    with pytest.raises(InvalidKeyError):
        await call(kit.limiter.hit(1.5, "1/minute"))
    for cost in (0, -1, True, 1.5):
        with pytest.raises(InvalidRateLimit):
            await call(kit.limiter.hit("k", "1/minute", cost=cost))
    with pytest.raises(InvalidRateLimit):
        await call(kit.limiter.hit("k", "1/minute", algorithm="leaky"))
    with pytest.raises(InvalidRateLimit):
        kit.limiter.configure(algorithm="leaky")
    assert [k async for k in _scan(kit)] == []


# -- configuration and failure policy ------------------------------------------------------------


async def test_configure_returns_a_new_limiter(make_kit: Kits) -> None:
    kit = make_kit(ratelimit_algorithm="gcra", ratelimit_fail_open=False)
    assert kit.limiter.algorithm == "gcra"
    assert kit.limiter.fail_open is False
    other = kit.limiter.configure(algorithm="fixed_window", fail_open=True)
    assert (other.algorithm, other.fail_open) == ("fixed_window", True)
    assert (kit.limiter.algorithm, kit.limiter.fail_open) == ("gcra", False)
    assert await call(other.hit("k", "1/minute"))
    assert not await call(other.hit("k", "1/minute"))
    assert await call(kit.limiter.hit("k", "1/minute"))  # another algorithm, other state


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_redis_down_fails_open_by_default_and_closed_when_asked(mode: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit = cls.from_url(
        url, prefix=new_prefix(), retry_attempts=0, socket_connect_timeout=0.2, breaker_threshold=1
    )
    try:
        decision = await call(kit.limiter.hit("k", "1/minute;5/hour"))
        assert decision.allowed
        assert decision.degraded
        assert decision.remaining == 1
        assert decision.headers() == {}
        assert (await call(kit.limiter.hit("k", "1/minute"))).degraded
        assert kit.stats.get("ratelimit_fail_open") == 2
        strict = kit.limiter.configure(fail_open=False)
        with pytest.raises(RedkitConnectionError):
            await call(strict.hit("k", "1/minute"))
        with pytest.raises(RedkitConnectionError):
            await call(kit.limiter.reset("k"))
    finally:
        await call(kit.aclose() if mode == "async" else kit.close())


async def test_counters(kit: Any) -> None:
    await call(kit.limiter.hit("s", "1/minute"))
    await call(kit.limiter.hit("s", "1/minute"))
    assert kit.stats.get("ratelimit_allowed") == 1
    assert kit.stats.get("ratelimit_denied") == 1
    assert kit.stats.get("round_trips") == 2  # one round trip per check


async def test_gcra_admits_a_full_burst_with_exact_counts(kit: Any) -> None:
    results = [await call(kit.limiter.hit("g", "10/333ms", algorithm="gcra")) for _ in range(10)]
    assert all(results)
    assert results[0].remaining == 9
    assert results[-1].remaining == 0


async def test_limits_an_algorithm_cannot_count_are_refused(kit: Any) -> None:
    with pytest.raises(InvalidRateLimit, match="microsecond"):
        await call(kit.limiter.hit("k", "5/minute;10000000/second", algorithm="gcra"))
    with pytest.raises(InvalidRateLimit, match="one entry per request"):
        await call(kit.limiter.hit("k", "1000000/hour", algorithm="sliding_window_log"))
    assert [k async for k in _scan(kit)] == []  # refused before anything was written
    assert await call(kit.limiter.hit("k", "1000000/hour", algorithm="gcra"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_fresh_key_is_fully_available(kit: Any, algorithm: str) -> None:
    fresh = await call(kit.limiter.test("new", "5/minute", algorithm=algorithm))
    assert fresh.allowed
    assert fresh.remaining == 5
    assert fresh.reset_after == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_refund_gives_back_what_a_hit_charged(make_kit: Kits, algorithm: str) -> None:
    kit = make_kit()
    limits = "3/minute;10/hour"
    for _ in range(3):
        assert (await call(kit.limiter.hit("login:1", limits, algorithm=algorithm))).allowed
    assert not (await call(kit.limiter.hit("login:1", limits, algorithm=algorithm))).allowed
    await call(kit.limiter.refund("login:1", limits, algorithm=algorithm))
    again = await call(kit.limiter.hit("login:1", limits, algorithm=algorithm))
    assert again.allowed  # the unit given back is there again
    assert not (await call(kit.limiter.hit("login:1", limits, algorithm=algorithm))).allowed
    for _ in range(5):  # never below an empty state: refunds of nothing create no credit
        await call(kit.limiter.refund("fresh", limits, 2, algorithm=algorithm))
    for _ in range(3):
        assert (await call(kit.limiter.hit("fresh", limits, algorithm=algorithm))).allowed
    assert not (await call(kit.limiter.hit("fresh", limits, algorithm=algorithm))).allowed
    with pytest.raises(InvalidRateLimit):
        await call(kit.limiter.refund("fresh", limits, 0, algorithm=algorithm))
