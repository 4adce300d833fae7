"""django-redis' API on the backend, redkit's tags and fail-open, compression, cache_page."""

# ruff: noqa: F811 (the fixtures imported from test_cache_support are parameters here)
from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_page

import redkit_django
from redkit.errors import RedkitConnectionError

from .test_cache_support import Twin, backend, cache, caches_on, mode  # noqa: F401


async def test_ttl_pttl_expire_persist(cache: Twin) -> None:
    assert await cache.ttl("absent") == 0
    await cache.set("k", "v", 100)
    assert 90 < await cache.ttl("k") <= 110
    assert await cache.expire("k", 20) is True
    assert 19 <= await cache.ttl("k") <= 20  # exactly, no jitter
    assert 19_000 < await cache.pttl("k") <= 20_000
    assert await cache.persist("k") is True
    assert await cache.ttl("k") > 364 * 86400
    assert await cache.expire("absent", 10) is False


def test_pexpire_and_expire_at(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    c.set("k", "v")
    assert c.pexpire("k", 5000) is True
    assert 4000 < c.pttl("k") <= 5000
    assert c.expire_at("k", datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=50))
    assert 45 <= c.ttl("k") <= 50
    assert c.pexpire_at("k", int((time.time() + 30) * 1000))
    assert 25 <= c.ttl("k") <= 30


async def test_set_nx_xx_and_incr_ignore_key_check(cache: Twin) -> None:
    assert await cache.set("k", 1, nx=True) is True
    assert await cache.set("k", 2, nx=True) is False
    assert await cache.set("absent", 2, xx=True) is False
    assert await cache.set("k", 3, xx=True) is True
    assert await cache.get("k") == 3
    assert await cache.get("absent") is None
    assert await cache.incr("counter", ignore_key_check=True) == 1


async def test_keys_iter_keys_and_delete_pattern_use_scan(cache: Twin) -> None:
    for key in ["user:1", "user:2", "user:10", "item:1", "us*r", "odd%key?"]:
        await cache.set(key, key)
    assert sorted(await cache.iter_keys("user:*")) == ["user:1", "user:10", "user:2"]
    assert sorted(await cache.iter_keys("user:?")) == ["user:1", "user:2"]
    assert sorted(await cache.iter_keys("user:[12]")) == ["user:1", "user:2"]
    assert await cache.iter_keys("us\\*r") == ["us*r"]
    assert await cache.delete_pattern("user:*") == 3
    assert await cache.get("user:1") is None
    assert await cache.get("item:1") == "item:1"
    assert sorted(cache.cache.keys("*")) == ["item:1", "odd%key?", "us*r"]


def test_lock_is_a_redkit_lock(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    with c.lock("job", timeout=10) as held:
        other = c.lock("job", blocking_timeout=0)
        assert other.acquire(blocking=False) is False
        assert held.fencing_token is not None
    assert c.lock("job", blocking=False).acquire() is True


async def test_async_lock(caches_on: Any) -> None:
    c = caches_on(default=backend())["default"]
    async with c.alock("job", timeout=10):
        assert await c.alock("job").acquire(blocking=False) is False


def test_get_redis_connection_is_the_raw_client(caches_on: Any) -> None:
    caches_on(default=backend(), other={"BACKEND": "django.core.cache.backends.dummy.DummyCache"})
    client = redkit_django.get_redis_connection("default")
    assert client.ping() is True
    with pytest.raises(TypeError, match="not redkit_django"):
        redkit_django.get_redis_connection("other")


async def test_tags_invalidate_entries(cache: Twin) -> None:
    await cache.set("u1", "ada", tags=["users"])
    await cache.set_many({"u2": "bob", "u3": "cy"}, tags=["users"])
    assert await cache.get_or_set("list", lambda: ["ada", "bob"], tags=["users"]) == ["ada", "bob"]
    await cache.set("other", "kept")
    assert await cache.invalidate_tags(["users"]) == 1
    assert await cache.get_many(["u1", "u2", "u3", "list", "other"]) == {"other": "kept"}


async def test_compression_is_read_whatever_the_readers_setting(caches_on: Any, mode: str) -> None:
    aliases = caches_on(
        default=backend(),
        packed=backend(COMPRESSOR="django_redis.compressors.zlib.ZlibCompressor"),
    )
    plain, packed = Twin(aliases["default"], mode), Twin(aliases["packed"], mode)
    big = "x" * 100_000
    await packed.set("big", big)
    assert await plain.get("big") == big
    assert await packed.get("big") == big
    await plain.set("big", big)
    assert await packed.get("big") == big


def test_compressed_payloads_are_smaller(caches_on: Any) -> None:
    aliases = caches_on(
        default=backend(), packed=backend(COMPRESSOR="zlib", COMPRESS_MIN_SIZE=10, KEY_PREFIX="z")
    )
    aliases["default"].set("k", "y" * 10_000)
    aliases["packed"].set("k", "y" * 10_000)
    client = aliases["default"].kit.client
    sizes = {
        alias: client.strlen(next(client.scan_iter(match=f"*{{{aliases[alias].make_key('k')}}}")))
        for alias in ("default", "packed")
    }
    assert sizes["packed"] < sizes["default"] / 10


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
async def test_json_and_msgpack(caches_on: Any, mode: str, serializer: str) -> None:
    c = Twin(caches_on(default=backend(SERIALIZER=serializer))["default"], mode)
    await c.set("k", {"a": [1, "b", None]})
    assert await c.get("k") == {"a": [1, "b", None]}
    await c.set("n", 5)
    assert await c.incr("n") == 6


def test_fail_open_reads_miss_and_writes_drop(caches_on: Any) -> None:
    aliases = caches_on(
        open=backend("redis://127.0.0.1:1/0", IGNORE_EXCEPTIONS=True, SOCKET_CONNECT_TIMEOUT=0.2),
        closed=backend(
            "redis://127.0.0.1:1/0", IGNORE_EXCEPTIONS=False, SOCKET_CONNECT_TIMEOUT=0.2
        ),
    )
    c = aliases["open"]
    assert c.get("k", "dflt") == "dflt"
    assert c.set("k", 1) is False
    assert c.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert c.get_many(["a"]) == {}
    assert c.get_or_set("k", lambda: "computed") == "computed"
    with pytest.raises(RedkitConnectionError):
        aliases["closed"].get("k")


async def test_fail_open_async(caches_on: Any) -> None:
    c = caches_on(
        default=backend("redis://127.0.0.1:1/0", IGNORE_EXCEPTIONS=True, SOCKET_CONNECT_TIMEOUT=0.2)
    )["default"]
    assert await c.aget("k", "dflt") == "dflt"
    assert await c.aset("k", 1) is False


def test_cache_page_stores_http_responses(caches_on: Any) -> None:
    caches_on(default=backend())
    calls: list[int] = []

    @cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"hello {len(calls)}", headers={"X-Extra": "1"})

    def request() -> HttpRequest:
        r = HttpRequest()
        r.method = "GET"
        r.path = "/page"
        r.META = {"SERVER_NAME": "testserver", "SERVER_PORT": "80"}
        return r

    first, second = view(request()), view(request())
    assert first.content == second.content == b"hello 1"
    assert second["X-Extra"] == "1"
    assert calls == [1]
