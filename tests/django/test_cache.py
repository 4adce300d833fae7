"""The cache backend behaves as Django's cache tests say a backend must (their BaseCacheTests,
rewritten here), sync and native async, on real Redis and the cluster."""

# ruff: noqa: F811 (the fixtures imported from test_cache_support are parameters here)
from __future__ import annotations

import datetime
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from .test_cache_support import Twin, backend, cache, caches_on, mode  # noqa: F401


async def test_get_set_add_delete(cache: Twin) -> None:
    assert await cache.get("k") is None
    assert await cache.get("k", "dflt") == "dflt"
    await cache.set("k", "v")
    assert await cache.get("k") == "v"
    assert await cache.add("k", "other") is False
    assert await cache.get("k") == "v"
    assert await cache.add("new", "n") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_values_of_every_pickleable_type_round_trip(cache: Twin) -> None:
    values = {
        "str": "hello",
        "int": 42,
        "big": 2**100,
        "neg": -7,
        "float": 1.5,
        "bool": True,
        "none": None,
        "bytes": b"\x00\xff",
        "list": [1, "a", None],
        "dict": {"a": {"b": (1, 2)}},
        "set": {1, 2},
        "decimal": Decimal("1.10"),
        "date": datetime.date(2024, 1, 2),
        "when": datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.UTC),
    }
    for key, value in values.items():
        await cache.set(key, value)
    for key, value in values.items():
        got = await cache.get(key, "missing")
        assert got == value, key
        assert type(got) is type(value), key


async def test_none_is_a_value_and_has_key_sees_it(cache: Twin) -> None:
    await cache.set("n", None)
    assert await cache.get("n", "dflt") is None
    assert await cache.has_key("n") is True
    assert await cache.has_key("absent") is False


async def test_get_many_set_many_delete_many(cache: Twin) -> None:
    assert await cache.set_many({"a": 1, "b": "two", "c": None}) == []
    assert await cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": None}
    assert await cache.get_many([]) == {}
    assert await cache.delete_many(["a", "c", "zz"]) == 2
    assert await cache.get_many(["a", "b", "c"]) == {"b": "two"}


async def test_incr_decr_are_atomic_and_past_64_bits(cache: Twin) -> None:
    await cache.set("n", 1)
    assert await cache.incr("n") == 2
    assert await cache.incr("n", 10) == 12
    assert await cache.decr("n") == 11
    assert await cache.decr("n", 20) == -9
    with pytest.raises(ValueError, match="not found"):
        await cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        await cache.decr("missing")
    await cache.set("big", 2**63 - 1)
    assert await cache.incr("big") == 2**63
    assert await cache.incr("big", 2**64) == 2**63 + 2**64
    assert await cache.decr("big", 2**63 + 2**64 + 5) == -5
    assert await cache.get("big") == -5
    await cache.set("neg", -(2**63))
    assert await cache.decr("neg") == -(2**63) - 1
    assert await cache.incr("neg", 2**63 + 1) == 0
    assert await cache.incr("z", 5, ignore_key_check=True) == 5


async def test_incr_keeps_the_lifetime(cache: Twin) -> None:
    await cache.set("n", 1, 100)
    await cache.incr("n", 2**70)
    assert 0 < await cache.ttl("n") <= 110
    assert await cache.get("n") == 2**70 + 1


async def test_concurrent_incr_loses_nothing(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    c.set("hits", 2**64)

    def work() -> None:
        for _ in range(50):
            c.incr("hits")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.get("hits") == 2**64 + 200


async def test_touch_and_timeouts(cache: Twin) -> None:
    await cache.set("k", "v", 10)
    assert await cache.touch("k", 1000) is True
    assert 900 < await cache.ttl("k") <= 1100
    assert await cache.touch("absent") is False
    assert await cache.touch("k", 0) is True  # 0 expires it now
    assert await cache.get("k") is None
    await cache.set("gone", "v", 0)
    await cache.set("gone2", "v", -1)
    assert await cache.get("gone") is None
    assert await cache.get("gone2") is None
    assert await cache.add("zero", "v", 0) is True  # could have been added; stores nothing
    assert await cache.get("zero") is None
    await cache.set("half", "v", 0.5)  # Django's own backend would store it for 0 seconds
    assert await cache.get("half") == "v"


async def test_timeout_none_lives_forever_ttl(caches_on: Any, mode: str) -> None:
    both = caches_on(default=backend(TIMEOUT=None), short=backend(TIMEOUT=None, FOREVER_TTL=1000))
    c, short = Twin(both["default"], mode), Twin(both["short"], mode)
    await c.set("k", "v")
    assert await c.ttl("k") > 364 * 86400
    await short.set("k", "v")
    assert 900 < await short.ttl("k") <= 1100
    await short.set("k2", "v", None)
    assert await short.ttl("k2") <= 1100
    assert await short.persist("k2") is True
    assert await short.ttl("k2") <= 1100  # persist gives the longest lifetime, not none


async def test_get_or_set(cache: Twin) -> None:
    assert await cache.get_or_set("k", "value") == "value"
    assert await cache.get("k") == "value"
    assert await cache.get_or_set("k", "other") == "value"
    assert await cache.get_or_set("c", lambda: 3) == 3
    assert await cache.get_or_set("none", lambda: None) is None
    assert await cache.get("none", "dflt") == "dflt"  # a None from the callable is not stored
    assert await cache.get_or_set("z", lambda: "x", 0) == "x"
    assert await cache.get("z") is None


async def test_async_get_or_set_awaits_an_async_callable(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]

    async def load() -> str:
        return "loaded"

    assert await c.aget_or_set("k", load) == "loaded"
    assert await c.aget("k") == "loaded"
    assert await c.aget_or_set("z", load, 0) == "loaded"


def test_get_or_set_runs_the_callable_once_across_threads(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    calls: list[int] = []
    started = threading.Barrier(5)

    def slow() -> str:
        calls.append(1)
        threading.Event().wait(0.2)
        return "v"

    results: list[Any] = []

    def worker() -> None:
        started.wait()
        results.append(c.get_or_set("hot", slow))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["v"] * 5
    assert calls == [1]


async def test_versions(cache: Twin) -> None:
    await cache.set("k", "v1", version=1)
    await cache.set("k", "v2", version=2)
    assert await cache.get("k") == "v1"
    assert await cache.get("k", version=2) == "v2"
    assert await cache.incr_version("k", version=2) == 3
    assert await cache.get("k", version=2) is None
    assert await cache.get("k", version=3) == "v2"
    assert await cache.decr_version("k", version=3) == 2
    assert await cache.get("k", version=2) == "v2"
    await cache.set("n", None)
    assert await cache.incr_version("n") == 2  # a key holding None moves too
    assert await cache.has_key("n", version=2) is True
    with pytest.raises(ValueError, match="not found"):
        await cache.incr_version("absent")


async def test_incr_version_keeps_the_lifetime(cache: Twin) -> None:
    await cache.set("k", "v", 50)
    await cache.incr_version("k")
    assert 0 < await cache.ttl("k", version=2) <= 55


async def test_incr_version_moves_the_value_without_its_tags(cache: Twin) -> None:
    # documented (docs/django.md): the entry at the new version carries no tags, so
    # invalidating them leaves it; the old version, with its tags, is gone
    await cache.set("k", "v", 50, tags=["users"])
    assert await cache.incr_version("k") == 2
    await cache.invalidate_tags(["users"])
    assert await cache.get("k", version=2) == "v"
    assert await cache.get("k", "gone", version=1) == "gone"


async def test_key_prefix_version_and_key_function(caches_on: Any, mode: str) -> None:
    aliases = caches_on(
        default=backend(),
        prefixed=backend(KEY_PREFIX="site2"),
        v2=backend(VERSION=2),
        custom=backend(KEY_FUNCTION=lambda key, prefix, version: f"custom-{key}"),
    )
    default, prefixed = Twin(aliases["default"], mode), Twin(aliases["prefixed"], mode)
    v2, custom = Twin(aliases["v2"], mode), Twin(aliases["custom"], mode)
    await default.set("k", "default")
    assert await prefixed.get("k") is None
    await prefixed.set("k", "prefixed")
    assert await default.get("k") == "default"
    assert await v2.get("k") is None
    assert await v2.get("k", version=1) == "default"
    await custom.set("k", "custom")
    assert aliases["custom"].make_key("k") == "custom-k"
    assert await custom.get("k") == "custom"


async def test_clear_empties_only_this_backends_prefix(caches_on: Any, mode: str) -> None:
    aliases = caches_on(default=backend(), other=backend(KEY_PREFIX="other"))
    default, other = Twin(aliases["default"], mode), Twin(aliases["other"], mode)
    await default.set("k", 1, version=1)
    await default.set("k", 2, version=7)
    await other.set("k", 3)
    await default.clear()
    assert await default.get("k") is None
    assert await default.get("k", version=7) is None
    assert await other.get("k") == 3


async def test_get_backend_timeout(caches_on: Any) -> None:
    c = caches_on(default=backend(TIMEOUT=100))["default"]
    import time

    now = time.time()
    assert now + 99 < c.get_backend_timeout() < now + 102
    assert c.get_backend_timeout(0) < time.time()
    assert c.get_backend_timeout(None) > now + 364 * 86400
    assert c.get_backend_timeout(DEFAULT_TIMEOUT) > now + 99


async def test_in_operator_and_close(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    c.set("k", 1)
    assert "k" in c
    assert "absent" not in c
    c.close()
    await c.aclose()
    assert c.get("k") == 1  # closing after a request keeps the pools
