"""Huge ints, ints past Redis' 64-bit range and strings with lone surrogates, at every public call
that sends them on to Redis.

Each must raise redkit's own error, or a ``ValueError`` / ``TypeError`` naming the argument, never
a raw ``UnicodeEncodeError``, a ``ValueError`` from the int-to-text limit, an ``OverflowError``, a
``ResponseError`` from Redis (or a crash of the protocol parser), and nothing may be written: after
the call the test's prefix holds no key, on real Redis and on the test cluster, sync and async.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redkit.asyncio
from redkit import (
    InvalidKeyError,
    RedkitConnectionError,
    RedkitError,
    ResponseError,
    SerializationError,
)
from redkit.queue import Backoff
from redkit.ratelimit import Limit
from tests.conftest import call

HUGE = 10**5000  # str() of it raises ValueError: more than 4,300 digits
WIDE = 2**64  # fits in no 64-bit int Redis takes as an argument
JUST_OVER = 2**63  # one past the signed 64-bit range
BELOW = -(2**63) - 1
SURROGATE = "\udcff"
BIG_ID = "99999999999999999999999-0"  # an entry id whose milliseconds pass 64 bits
BIG_SEQ = f"1-{2**64}"

INTS = [HUGE, WIDE, JUST_OVER, BELOW]
SID = "x" * 45  # a well-formed session id (no such session)


def _job(kit: Any) -> Any:
    return kit.queue("q")


def _plain(x: Any = None) -> Any:
    raise AssertionError("the function must not run")


async def _aplain(x: Any = None) -> Any:
    raise AssertionError("the function must not run")


def _fn(kit: Any) -> Callable[..., Any]:
    """A function the kit's cache can decorate (async for the async client)."""
    return _aplain if isinstance(kit, redkit.asyncio.Redkit) else _plain


# (call id, argument named in the error, the call, bad values)
CASES: list[tuple[str, str, Callable[[Any, Any], Any], list[Any]]] = [
    # -- job queue -----------------------------------------------------------------------------
    ("queue.jobs", "start", lambda k, v: _job(k).jobs("waiting", v), [*INTS, SURROGATE, 1.5]),
    ("queue.jobs", "stop", lambda k, v: _job(k).jobs("completed", 0, v), [*INTS, SURROGATE]),
    ("queue.jobs", "state", lambda k, v: _job(k).jobs(v), [HUGE, SURROGATE]),
    (
        "queue.events",
        "since",
        lambda k, v: _job(k).events(since=v, timeout=0.01),
        [
            *INTS,
            SURROGATE,
            BIG_ID,
            BIG_SEQ,
            5,
            "nope",
        ],
    ),
    ("queue.retry_failed", "limit", lambda k, v: _job(k).retry_failed(v), [*INTS, -1, 1.5]),
    ("queue.add", "priority", lambda k, v: _job(k).add("t", priority=v), INTS),
    ("queue.add", "attempts", lambda k, v: _job(k).add("t", attempts=v), INTS),
    ("queue.add", "job_id", lambda k, v: _job(k).add("t", job_id=v), [HUGE, SURROGATE]),
    ("queue.add", "name", lambda k, v: _job(k).add(v), [HUGE, SURROGATE]),
    ("queue.add", "data", lambda k, v: _job(k).add("t", {v: 1}), [HUGE]),
    ("queue.add_bulk", "jobs", lambda k, v: _job(k).add_bulk([v]), [HUGE, [HUGE]]),
    ("queue.add_bulk", "name", lambda k, v: _job(k).add_bulk([(v, None)]), [HUGE, SURROGATE]),
    (
        "queue.add_bulk",
        "priority",
        lambda k, v: _job(k).add_bulk([("t", None, {"priority": v})]),
        INTS,
    ),
    ("queue.worker", "batch", lambda k, v: _job(k).worker(batch=v), [*INTS, 0, 1.5]),
    ("queue.worker", "max_stalled", lambda k, v: _job(k).worker(max_stalled=v), [*INTS, -1, 1.5]),
    ("queue.worker", "concurrency", lambda k, v: _job(k).worker(concurrency=v), [HUGE, -1]),
    ("kit.queue", "priority", lambda k, v: k.queue("q2", priority=v), INTS),
    ("kit.queue", "attempts", lambda k, v: k.queue("q2", attempts=v), INTS),
    ("queue.get_job", "job_id", lambda k, v: _job(k).get_job(v), [HUGE, SURROGATE]),
    ("Backoff.fixed", "jitter", lambda k, v: Backoff.fixed(1, jitter=v), [HUGE]),
    ("Backoff.exponential", "jitter", lambda k, v: Backoff.exponential(1, jitter=v), [HUGE]),
    ("queue.add", "backoff", lambda k, v: _job(k).add("t", backoff=v), [HUGE, WIDE]),
    # -- cache ---------------------------------------------------------------------------------
    ("cache.set", "value", lambda k, v: k.cache.set("k", {v: 1}), [HUGE]),
    ("cache.set", "value", lambda k, v: k.cache.set("k", [{"a": {v: 1}}]), [HUGE]),
    ("cache.set", "tags", lambda k, v: k.cache.set("k", 1, tags=[v]), [HUGE, SURROGATE]),
    ("cache.invalidate", "tags", lambda k, v: k.cache.invalidate([v]), [HUGE]),
    # incr adds wider deltas in decimal, up to 100 digits
    ("cache.incr", "delta", lambda k, v: k.cache.incr("k", v), [HUGE, 10**100, -(10**100)]),
    (
        "cache.get_or_set",
        "early_refresh",
        lambda k, v: k.cache.get_or_set("k", _plain, early_refresh=v),
        [HUGE, 10**400],
    ),
    (
        "cache.cached",
        "tags",
        lambda k, v: k.cache.cached(tags=v)(_fn(k)),
        [
            [5],
            [HUGE],
            ["u:{"],
            ["u:}"],
            ["u:{0}"],
            [SURROGATE],
            "tag",
            5,
        ],
    ),
    (
        "cache.cached",
        "early_refresh",
        lambda k, v: k.cache.cached(early_refresh=v)(_fn(k)),
        [HUGE],
    ),
    # -- sessions ------------------------------------------------------------------------------
    ("sessions.create", "data", lambda k, v: k.sessions.create({v: 1}), [HUGE]),
    ("sessions.create", "data", lambda k, v: k.sessions.create({"a": {v: 1}}), [HUGE]),
    ("sessions.save", "changes", lambda k, v: k.sessions.save(SID, {v: 1}), [HUGE]),
    ("sessions.save", "removed", lambda k, v: k.sessions.save(SID, {}, [v]), [HUGE]),
    # -- rate limits ---------------------------------------------------------------------------
    ("limiter.hit", "algorithm", lambda k, v: k.limiter.hit("k", "1/s", algorithm=v), [HUGE]),
    ("limiter.configure", "algorithm", lambda k, v: k.limiter.configure(algorithm=v), [HUGE]),
    ("limiter.hit", "cost", lambda k, v: k.limiter.hit("k", "1/second", v), INTS),
    ("Limit", "amount", lambda k, v: k.limiter.hit("k", Limit(v, 1)), INTS),
    ("Limit", "period", lambda k, v: k.limiter.hit("k", Limit(1, v)), [HUGE]),
    ("limiter.hit", "limits", lambda k, v: k.limiter.hit("k", [v]), [HUGE]),
    # -- pub/sub -------------------------------------------------------------------------------
    ("pubsub.subscribe", "patterns", lambda k, v: k.pubsub.subscribe(patterns=[v]), [HUGE]),
    ("pubsub.subscribe", "channels", lambda k, v: k.pubsub.subscribe(v), [HUGE]),
    ("pubsub.publish", "message", lambda k, v: k.pubsub.publish("c", {v: 1}), [HUGE]),
    # -- streams -------------------------------------------------------------------------------
    ("stream.add", "message", lambda k, v: k.stream("s").add({v: 1}), [HUGE]),
    ("stream.add", "maxlen", lambda k, v: k.stream("s").add({"a": 1}, v), INTS),
    ("stream.ack", "ids", lambda k, v: k.stream("s").ack("g", v), [HUGE, BIG_ID, BIG_SEQ]),
    (
        "stream.create_group",
        "start",
        lambda k, v: k.stream("s").create_group("g", v),
        [HUGE, BIG_ID, BIG_SEQ],
    ),
    ("stream.read", "count", lambda k, v: k.stream("s").read("g", "c", v), INTS),
    (
        "stream.claim_stale",
        "count",
        lambda k, v: k.stream("s").claim_stale("g", "c", 1, v),
        [*INTS, 0, 1.5],
    ),
    ("stream.trim", "maxlen", lambda k, v: k.stream("s").trim(v), INTS),
    # -- idempotency ---------------------------------------------------------------------------
    (
        "idempotency.complete",
        "status",
        lambda k, v: k.idempotency.complete("key", "t" * 20, v, {}, b""),
        [*INTS, 99, 600, True, "200", 200.0],
    ),
    (
        "idempotency.complete",
        "headers",
        lambda k, v: k.idempotency.complete("key", "t" * 20, 200, {v: "x"}, b""),
        [HUGE],
    ),
]


def _label(value: Any) -> str:
    for name, known in (("10**5000", HUGE), ("2**64", WIDE), ("2**63", JUST_OVER)):
        if value is known:
            return name
    if value is BELOW:
        return "-2**63-1"
    if isinstance(value, int) and abs(value) > 10**40:
        return f"{'-' if value < 0 else ''}{len(str(abs(value)))}-digits"
    try:
        text = repr(value)
    except ValueError:
        return "holds-10**5000"
    return text if len(text) <= 24 else text[:12] + "..." + text[-6:]


PARAMS = [
    pytest.param(fn, arg, bad, id=f"{name}-{arg}-{_label(bad)}")
    for name, arg, fn, bads in CASES
    for bad in bads
]


@pytest.fixture(params=["redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def raw(url: str) -> Iterator[Any]:
    if url.startswith("redis+cluster://"):
        host, port = url.removeprefix("redis+cluster://").split(",")[0].split(":")
        client: Any = redis.RedisCluster(host=host, port=int(port))
    else:
        client = redis.Redis.from_url(url)
    yield client
    client.close()


async def _drive(result: Any) -> Any:
    """Await a coroutine; take the first item of an iterator (``queue.events()``)."""
    result = await call(result)
    if hasattr(result, "__anext__"):
        try:
            return await result.__anext__()
        except StopAsyncIteration:
            return None
    if hasattr(result, "__next__"):
        return next(result, None)
    return result


def _written(raw: Any, prefix: str) -> list[Any]:
    if isinstance(raw, redis.RedisCluster):
        return list(raw.scan_iter(match=f"{prefix}:*", count=1000, target_nodes="primaries"))
    return list(raw.scan_iter(match=f"{prefix}:*", count=1000))


@pytest.mark.parametrize(("fn", "arg", "bad"), PARAMS)
async def test_a_bad_int_or_text_is_refused_before_anything_is_written(
    kit: Any, raw: Any, fn: Callable[[Any, Any], Any], arg: str, bad: Any
) -> None:
    with pytest.raises((RedkitError, ValueError, TypeError)) as info:
        await _drive(fn(kit, bad))
    exc = info.value
    text = str(exc)
    # refused by redkit, not by Redis, the network, the codec or the int-to-text limit
    assert not isinstance(exc, (RedkitConnectionError, ResponseError, UnicodeError)), repr(exc)
    for leak in ("Exceeds the limit", "codec can't", "unhashable", "not iterable", "out of range"):
        assert leak not in text, text
    if not isinstance(exc, RedkitError):
        assert arg in text, f"{type(exc).__name__}({text!r}) does not name {arg!r}"
    written = _written(raw, kit.settings.prefix)
    assert written == [], f"{len(written)} keys written: {written[:5]}"


def test_an_int_past_64_bits_is_refused_where_a_call_is_built() -> None:
    from redkit._ops import Script, command, script

    for bad in INTS:
        with pytest.raises(ValueError, match="LRANGE argument 3 must be a 64-bit integer"):
            command("LRANGE", "k", 0, bad)
    with pytest.raises(ValueError, match="cache_fetch argument 2 must be a 64-bit integer"):
        script(Script.load("cache_fetch"), ["a", "b"], [1, HUGE])
    # the edges themselves are fine
    assert command("INCRBY", "k", 2**63 - 1).args[-1] == 2**63 - 1
    assert command("INCRBY", "k", -(2**63)).args[-1] == -(2**63)


async def test_the_edges_of_the_64_bit_range_still_work(kit: Any) -> None:
    assert await call(kit.cache.incr("n", 2**63 - 1)) == 2**63 - 1
    assert await call(kit.cache.incr("m", -(2**63))) == -(2**63)
    queue = kit.queue("q")
    assert await call(queue.jobs("waiting", 0, 2**63 - 1)) == []
    assert await call(queue.jobs("completed", -(2**63), -1)) == []
    stream = kit.stream("s")
    assert await call(stream.create_group("g", f"{2**64 - 1}-{2**64 - 1}")) is True
    assert await call(stream.ack("g", f"{2**64 - 1}-{2**64 - 1}")) == 0
    events = queue.events(since=f"{2**64 - 1}-{2**64 - 1}", timeout=0.01)
    assert await _drive(events) is None  # nothing after the last possible id


async def test_tag_templates_still_work_and_fail_typed_when_a_call_cannot_fill_them(
    kit: Any,
) -> None:
    calls: list[Any] = []
    is_async = isinstance(kit, redkit.asyncio.Redkit)

    def load(user: Any) -> Any:
        calls.append(user)
        return {"n": len(calls)}

    async def aload(user: Any) -> Any:
        return load(user)

    cached = kit.cache.cached(ttl=60, tags=["user:{user}", "users", "u:{{literal}}"])
    profile = cached(aload if is_async else load)
    assert await call(profile(7)) == {"n": 1}
    assert await call(profile(7)) == {"n": 1}  # a hit
    assert await call(kit.cache.invalidate(["user:7"])) == 1
    assert await call(profile(7)) == {"n": 2}  # the tag filled from the argument was invalidated
    assert await call(kit.cache.invalidate(["u:{literal}"])) == 1
    assert await call(profile(7)) == {"n": 3}  # doubled braces are a literal brace

    fixed = {"ttl": 60, "key": "one"}
    by_attr = kit.cache.cached(**fixed, tags=["user:{user.id}"])(aload if is_async else load)
    before = len(calls)
    for bad in (None, HUGE):  # no attribute .id; an int too long to print
        with pytest.raises(InvalidKeyError, match="cannot be filled"):
            await call(by_attr(bad))
    # filled with a value that makes a bad tag: the cache's own check, still typed
    empty = kit.cache.cached(**fixed, tags=["{user}"])(aload if is_async else load)
    with pytest.raises(InvalidKeyError, match="tags must be valid text"):
        await call(empty(SURROGATE))
    by_fn = kit.cache.cached(**fixed, tags=lambda user: [user])(aload if is_async else load)
    with pytest.raises(InvalidKeyError, match="non-empty strings"):
        await call(by_fn(5))
    assert len(calls) == before  # no loader ran for a call whose tags were bad


async def test_a_huge_int_is_data_where_the_serializer_can_hold_it(make_kit: Any) -> None:
    kit = make_kit(serializer="pickle", secret_key="s" * 32)
    assert await call(kit.cache.set("k", {"n": HUGE})) is True
    assert (await call(kit.cache.get("k")))["n"] == HUGE
    with pytest.raises(SerializationError, match="wider than 64 bits"):
        await call(make_kit().cache.set("k", HUGE))  # JSON holds 64-bit ints only
