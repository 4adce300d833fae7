"""Hostile inputs to every public call that takes names, keys, amounts or durations.

Each bad value must raise redkit's own error, or a ``ValueError`` / ``TypeError`` whose message
names the argument, and it must do so before anything is written: after the call the test's
prefix holds no key at all (checked with SCAN on real Redis, sync and async).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from redkit import RedkitConnectionError, RedkitError, ResponseError
from tests.conftest import REDIS_URL, Kits, backend_url, call

HUGE = 10**5000  # str() of it raises ValueError: more than 4,300 digits
NAN = math.nan

# the bad values, by a short id
NONE: Any = None
BOOL: Any = True
LIST: Any = [1]
DICT: Any = {"a": 1}
SET: Any = {1}
BAD_UTF8: Any = b"\xff\xfe"
SURROGATE: Any = "\ud800"
FLOAT: Any = 1.5
EMPTY: Any = ""

KEY_LIKE = [NONE, BOOL, LIST, DICT, SET, FLOAT, NAN, HUGE, EMPTY]
"""Bad as a key or name part (bytes and surrogates are fine there: keys are escaped bytes)."""
TEXT_NAME = [*KEY_LIKE, SURROGATE]
"""Bad where a name is sent as it is (stream groups and consumers): bytes are taken as they are,
a str must be valid text."""
DURATION = [NAN, math.inf, -math.inf, -1, BOOL, "5", LIST, HUGE, timedelta(seconds=-1)]
"""Bad as a duration (0 is left out: some durations take it)."""
COUNT = [NONE, BOOL, FLOAT, NAN, "5", LIST, HUGE, -1]
"""Bad as a count or an amount."""


def _no_loader() -> Any:
    raise AssertionError("the loader must not run")


def _held(kit: Any) -> Any:
    return kit.lock("hostile")


# (call id, argument named in the error, the call, bad values)
CASES: list[tuple[str, str, Callable[[Any, Any], Any], list[Any]]] = [
    # -- cache ---------------------------------------------------------------------------------
    ("cache.set", "key", lambda k, v: k.cache.set(v, 1), KEY_LIKE),
    ("cache.set", "ttl", lambda k, v: k.cache.set("k", 1, ttl=v), [0, *DURATION]),
    (
        "cache.set",
        "tags",
        lambda k, v: k.cache.set("k", 1, tags=v),
        [BOOL, "tag", b"tag", 5, [SURROGATE], ["ok", SURROGATE], [NONE], [BOOL], [EMPTY], [LIST]],
    ),
    ("cache.get", "key", lambda k, v: k.cache.get(v), KEY_LIKE),
    ("cache.get_many", "keys", lambda k, v: k.cache.get_many(v), [5, BOOL, "abc", [LIST], [NONE]]),
    (
        "cache.set_many",
        "mapping",
        lambda k, v: k.cache.set_many(v),
        [LIST, 5, "abc", {NONE: 1}, {1.5: 1}, {BOOL: 1}],
    ),
    ("cache.set_many", "ttl", lambda k, v: k.cache.set_many({"a": 1}, ttl=v), DURATION),
    ("cache.delete", "key", lambda k, v: k.cache.delete(v), KEY_LIKE),
    ("cache.delete_many", "keys", lambda k, v: k.cache.delete_many(v), [5, "abc", [LIST]]),
    ("cache.get_or_set", "key", lambda k, v: k.cache.get_or_set(v, _no_loader), KEY_LIKE),
    ("cache.get_or_set", "loader", lambda k, v: k.cache.get_or_set("k", v), [NONE, 5, "f"]),
    ("cache.get_or_set", "ttl", lambda k, v: k.cache.get_or_set("k", _no_loader, v), DURATION),
    (
        "cache.get_or_set",
        "tags",
        lambda k, v: k.cache.get_or_set("k", _no_loader, tags=v),
        [BOOL, "tag", [SURROGATE], [NONE]],
    ),
    (
        "cache.get_or_set",
        "stale_ttl",
        lambda k, v: k.cache.get_or_set("k", _no_loader, stale_ttl=v),
        DURATION,
    ),
    (
        "cache.get_or_set",
        "early_refresh",
        lambda k, v: k.cache.get_or_set("k", _no_loader, early_refresh=v),
        [NAN, math.inf, -1, BOOL, "1"],
    ),
    ("cache.touch", "ttl", lambda k, v: k.cache.touch("k", v), DURATION),
    ("cache.incr", "key", lambda k, v: k.cache.incr(v), KEY_LIKE),
    ("cache.incr", "delta", lambda k, v: k.cache.incr("k", v), [BOOL, FLOAT, NAN, "1", HUGE]),
    ("cache.incr", "ttl", lambda k, v: k.cache.incr("k", 1, v), DURATION),
    ("cache.invalidate", "tags", lambda k, v: k.cache.invalidate(v), [BOOL, "t", 5, [SURROGATE]]),
    ("cache.cached", "ttl", lambda k, v: k.cache.cached(ttl=v), DURATION),
    # -- rate limits ---------------------------------------------------------------------------
    ("limiter.hit", "key", lambda k, v: k.limiter.hit(v, "1/second"), KEY_LIKE),
    (
        "limiter.hit",
        "limits",
        lambda k, v: k.limiter.hit("k", v),
        [
            NONE,
            BOOL,
            5,
            b"1/second",
            "1" * 5000 + "/minute",
            "5/" + "1" * 5000 + " seconds",
            "0/second",
            "nan/second",
            "1/0 seconds",
            [LIST],
            [],
            "",
        ],
    ),
    ("limiter.hit", "cost", lambda k, v: k.limiter.hit("k", "1/second", v), [0, *COUNT]),
    (
        "limiter.hit",
        "algorithm",
        lambda k, v: k.limiter.hit("k", "1/second", algorithm=v),
        ["nope", LIST, 5, BOOL],
    ),
    ("limiter.test", "cost", lambda k, v: k.limiter.test("k", "1/second", v), [0, *COUNT]),
    ("limiter.refund", "cost", lambda k, v: k.limiter.refund("k", "1/second", v), [0, *COUNT]),
    ("limiter.refund", "key", lambda k, v: k.limiter.refund(v, "1/second"), KEY_LIKE),
    # -- locks ---------------------------------------------------------------------------------
    ("lock", "name", lambda k, v: k.lock(v), KEY_LIKE),
    ("lock", "ttl", lambda k, v: k.lock("n", ttl=v), [0, *DURATION, 400 * 86400]),
    ("lock", "timeout", lambda k, v: k.lock("n", timeout=v), DURATION),
    ("lock", "auto_renew", lambda k, v: k.lock("n", auto_renew=v), [NONE, 1, "yes"]),
    ("lock.acquire", "timeout", lambda k, v: _held(k).acquire(timeout=v), DURATION),
    ("lock.acquire", "blocking", lambda k, v: _held(k).acquire(blocking=v), [1, "yes", LIST]),
    # -- sessions ------------------------------------------------------------------------------
    (
        "sessions.create",
        "data",
        lambda k, v: k.sessions.create(v),
        [BOOL, LIST, 5, "abc", {1: "a"}, {SURROGATE: 1}, {"a": {1, 2}}, {"a": NAN}],
    ),
    (
        "sessions.save",
        "changes",
        lambda k, v: k.sessions.save("x" * 45, v),
        [BOOL, LIST, {1: "a"}, {SURROGATE: 1}, {"a": {1}}],
    ),
    (
        "sessions.save",
        "removed",
        lambda k, v: k.sessions.save("x" * 45, {}, v),
        [BOOL, "abc", [1], [SURROGATE]],
    ),
    ("sessions.open", "session_class", lambda k, v: k.sessions.open(None, v), [dict, 5]),
    ("sessions.commit", "session", lambda k, v: k.sessions.commit(v), [NONE, DICT]),
    # -- pub/sub -------------------------------------------------------------------------------
    ("pubsub.publish", "channel", lambda k, v: k.pubsub.publish(v, "m"), KEY_LIKE),
    ("pubsub.publish", "message", lambda k, v: k.pubsub.publish("c", v), [{1, 2}, NAN, object()]),
    # -- streams -------------------------------------------------------------------------------
    ("stream", "name", lambda k, v: k.stream(v), KEY_LIKE),
    (
        "stream.add",
        "message",
        lambda k, v: k.stream("s").add(v),
        [NONE, BOOL, LIST, "abc", {1: "a"}, {SURROGATE: 1}, {"a": {1}}, {"a": NAN}],
    ),
    ("stream.add", "maxlen", lambda k, v: k.stream("s").add({"a": 1}, v), [0, *COUNT[1:]]),
    ("stream.add", "ttl", lambda k, v: k.stream("s").add({"a": 1}, ttl=v), [0, *DURATION]),
    ("stream.create_group", "group", lambda k, v: k.stream("s").create_group(v), TEXT_NAME),
    (
        "stream.create_group",
        "start",
        lambda k, v: k.stream("s").create_group("g", v),
        [NONE, 5, "nope", SURROGATE],
    ),
    ("stream.read", "group", lambda k, v: k.stream("s").read(v, "c"), TEXT_NAME),
    ("stream.read", "consumer", lambda k, v: k.stream("s").read("g", v), TEXT_NAME),
    ("stream.read", "count", lambda k, v: k.stream("s").read("g", "c", v), [0, *COUNT]),
    ("stream.read", "timeout", lambda k, v: k.stream("s").read("g", "c", timeout=v), DURATION),
    ("stream.ack", "group", lambda k, v: k.stream("s").ack(v, "1-0"), TEXT_NAME),
    ("stream.ack", "ids", lambda k, v: k.stream("s").ack("g", v), [NONE, 5, "nope", SURROGATE]),
    (
        "stream.claim_stale",
        "min_idle",
        lambda k, v: k.stream("s").claim_stale("g", "c", v),
        DURATION,
    ),
    (
        "stream.claim_stale",
        "consumer",
        lambda k, v: k.stream("s").claim_stale("g", v, 1),
        TEXT_NAME,
    ),
    ("stream.pending", "group", lambda k, v: k.stream("s").pending(v), TEXT_NAME),
    ("stream.trim", "maxlen", lambda k, v: k.stream("s").trim(v), COUNT),
    # -- job queue -----------------------------------------------------------------------------
    ("queue", "name", lambda k, v: k.queue(v), [*KEY_LIKE, SURROGATE]),
    ("queue.add", "name", lambda k, v: k.queue("q").add(v), [NONE, BOOL, LIST, 5, EMPTY]),
    ("queue.add", "data", lambda k, v: k.queue("q").add("t", v), [{1, 2}, NAN, object()]),
    ("queue.add", "delay", lambda k, v: k.queue("q").add("t", delay=v), DURATION),
    ("queue.add", "timeout", lambda k, v: k.queue("q").add("t", timeout=v), [0, *DURATION]),
    ("queue.add", "priority", lambda k, v: k.queue("q").add("t", priority=v), COUNT[1:]),
    ("queue.add", "attempts", lambda k, v: k.queue("q").add("t", attempts=v), [0, *COUNT[1:]]),
    ("queue.add", "job_id", lambda k, v: k.queue("q").add("t", job_id=v), [BOOL, LIST, EMPTY]),
    # -- idempotency ---------------------------------------------------------------------------
    (
        "idempotency.begin",
        "key",
        lambda k, v: k.idempotency.begin(v, "fp"),
        [*KEY_LIKE, BAD_UTF8, SURROGATE, "x" * 300, "a\nb"],
    ),
    (
        "idempotency.begin",
        "fingerprint",
        lambda k, v: k.idempotency.begin("key", v),
        [NONE, BOOL, LIST, 5, SURROGATE],
    ),
    (
        "idempotency.begin",
        "scope",
        lambda k, v: k.idempotency.begin("key", "fp", v),
        [BOOL, LIST, FLOAT, NAN, HUGE],
    ),
    (
        "idempotency.begin",
        "timeout",
        lambda k, v: k.idempotency.begin("key", "fp", timeout=v),
        DURATION,
    ),
    (
        "idempotency.begin",
        "token",
        lambda k, v: k.idempotency.begin("key", "fp", token=v),
        [BOOL, LIST, 5, EMPTY, SURROGATE],
    ),
]


def _label(value: Any) -> str:
    if value is HUGE:
        return "10**5000"
    text = repr(value)
    return text if len(text) <= 24 else text[:12] + "..." + text[-6:]


PARAMS = [
    pytest.param(fn, arg, bad, id=f"{name}-{arg}-{_label(bad)}")
    for name, arg, fn, bads in CASES
    for bad in bads
]


@pytest.fixture(scope="module")
def raw() -> Iterator[redis.Redis]:
    backend_url("redis")  # skips without a real Redis
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
async def hostile_kit(mode: str) -> Any:
    kits = Kits(backend_url("redis"), mode)
    yield kits()
    await kits.close()


async def _drive(result: Any) -> Any:
    """Await a coroutine, and run a context manager or a decorator factory far enough to use."""
    return await call(result)


@pytest.mark.parametrize(("fn", "arg", "bad"), PARAMS)
async def test_bad_input_is_refused_before_anything_is_written(
    hostile_kit: Any, raw: redis.Redis, fn: Callable[[Any, Any], Any], arg: str, bad: Any
) -> None:
    kit = hostile_kit
    with pytest.raises((RedkitError, ValueError, TypeError)) as info:
        await _drive(fn(kit, bad))
    exc = info.value
    text = str(exc)
    # not an error from Redis, the network or the codec: the input was refused by redkit
    assert not isinstance(exc, (RedkitConnectionError, ResponseError, UnicodeError)), repr(exc)
    for leak in ("unhashable", "not iterable", "Exceeds the limit", "codec can't"):
        assert leak not in text, text
    if not isinstance(exc, RedkitError):
        assert arg in text, f"{type(exc).__name__}({text!r}) does not name {arg!r}"
    written = list(raw.scan_iter(match=f"{kit.settings.prefix}:*", count=1000))
    assert written == [], f"{len(written)} keys written: {written[:5]}"
