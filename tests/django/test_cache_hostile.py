"""The cache backend against hostile keys, planted payloads and bad arguments: a clean answer
(a miss, a warning, a typed error before anything is written), never an exception from deep
inside, never unpickling what this site did not sign."""

# ruff: noqa: F811 (the fixtures imported from test_cache_support are parameters here)
from __future__ import annotations

import logging
import math
import pickle
import zlib
from typing import Any

import pytest
from django.core.cache import CacheKeyWarning
from django.core.exceptions import ImproperlyConfigured

from redkit.errors import AuthenticationError, ResponseError
from redkit_django import _cache_codec

from .test_cache_support import Twin, backend, cache, caches_on, mode  # noqa: F401

EXECUTED: list[str] = []


class Exploit:
    """A pickle that runs code when loaded."""

    def __reduce__(self) -> Any:
        return (EXECUTED.append, ("pwned",))


def plant(twin: Twin, key: str, payload: bytes) -> None:
    """Write raw bytes where the backend keeps ``key``, as someone with access to Redis could."""
    c = twin.cache
    c.set(key, "placeholder")  # find the Redis key through the public client
    raw = c.make_key(key)
    (stored,) = [k for k in c.kit.client.scan_iter(match=f"*{raw}*") if not k.endswith(b":lock")]
    c.kit.client.set(stored, b"\x00" + payload, px=60_000)  # \x00: an entry without metadata


@pytest.mark.parametrize(
    "key", ["with space", "tab\there", "nl\nkey", "del\x7f", "x" * 300, "ünïcödé ☃", "a:b:c"]
)
async def test_keys_memcached_refuses_warn_and_still_work(cache: Twin, key: str) -> None:
    unsafe = len(key) > 250 or any(ord(ch) < 33 or ord(ch) == 127 for ch in key)
    if unsafe:
        with pytest.warns(CacheKeyWarning):
            await cache.set(key, "v")
        with pytest.warns(CacheKeyWarning):
            assert await cache.get(key) == "v"
    else:
        await cache.set(key, "v")
        assert await cache.get(key) == "v"


async def test_non_str_keys_are_made_like_django(cache: Twin) -> None:
    await cache.set(42, "int")
    await cache.set(("t",), "tuple")
    assert await cache.get("42") == "int"  # Django's key function formats the key with %s
    assert await cache.get(("t",)) == "tuple"
    assert await cache.get("('t',)") == "tuple"


async def test_a_key_function_returning_no_str_is_a_typed_error(caches_on: Any, mode: str) -> None:
    c = Twin(caches_on(default=backend(KEY_FUNCTION=lambda k, p, v: [k]))["default"], mode)
    with pytest.raises(ValueError, match="KEY_FUNCTION"):
        await c.set("k", 1)


async def test_an_unsigned_pickle_planted_in_redis_is_a_miss_never_loaded(
    cache: Twin, caplog: pytest.LogCaptureFixture
) -> None:
    plant(cache, "victim", b"\x10" + pickle.dumps(Exploit()))
    with caplog.at_level(logging.WARNING, "redkit.cache"):
        assert await cache.get("victim", "miss") == "miss"
        assert await cache.get_many(["victim"]) == {}
        assert await cache.has_key("victim") is False
    assert EXECUTED == []
    assert "could not be read" in caplog.text
    # get_or_set replaces it with a value of its own
    assert await cache.get_or_set("victim", lambda: "fresh") == "fresh"
    assert await cache.get("victim") == "fresh"


async def test_a_pickle_signed_with_another_key_is_a_miss(cache: Twin) -> None:
    other = pickle.dumps(Exploit())
    plant(cache, "victim", b"\x10" + b"\x00" * 32 + other)
    assert await cache.get("victim", "miss") == "miss"
    plant(cache, "victim", b"\x10")  # no room for a signature
    assert await cache.get("victim", "miss") == "miss"
    assert EXECUTED == []


async def test_corrupt_compressed_data_is_a_miss(
    cache: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache_codec, "MAX_UNPACKED", 64 * 1024)
    plant(cache, "z", b"\x11" + b"not zlib at all")
    assert await cache.get("z", "miss") == "miss"
    bomb = zlib.compress(b"\x00" * (1024 * 1024))  # unpacks past the allowed size
    plant(cache, "z", b"\x11" + bomb)
    assert await cache.get("z", "miss") == "miss"
    plant(cache, "z", b"\x1f" + b"unknown method")
    assert await cache.get("z", "miss") == "miss"
    plant(cache, "z", b"")
    assert await cache.get("z", "miss") == "miss"


async def test_a_value_of_another_serializer_is_a_miss(caches_on: Any, mode: str) -> None:
    both = caches_on(default=backend(), js=backend(SERIALIZER="json"))
    pickled, js = Twin(both["default"], mode), Twin(both["js"], mode)
    await js.set("shared", {"a": 1})
    assert await pickled.get("shared", "miss") == "miss"  # a JSON entry is never unpickled
    await pickled.set("shared", {"a": 1})
    assert await js.get("shared", "miss") == "miss"


async def test_bad_timeouts_are_refused_before_writing(cache: Twin) -> None:
    for bad, error in [
        ("10", TypeError),
        (True, TypeError),
        (math.nan, ValueError),
        ([], TypeError),
    ]:
        with pytest.raises(error, match="timeout"):
            await cache.set("k", 1, bad)
        with pytest.raises(error, match="timeout"):
            await cache.set_many({"k": 1}, bad)
    assert await cache.get("k", "none") == "none"


async def test_bad_deltas_and_non_integers_are_typed_errors(cache: Twin) -> None:
    await cache.set("n", 1)
    for bad in [1.5, "1", True, None]:
        with pytest.raises(TypeError, match="delta"):
            await cache.incr("n", bad)
    with pytest.raises(ValueError, match="100 digits"):
        await cache.incr("n", 10**200)
    await cache.set("s", "text")
    with pytest.raises(ResponseError, match="not an integer"):
        await cache.incr("s")
    assert await cache.get("n") == 1
    assert await cache.get("s") == "text"


async def test_unreadable_values_and_bad_tags_are_refused_before_writing(cache: Twin) -> None:
    with pytest.raises(TypeError, match="single string"):
        await cache.set("k", 1, tags="users")
    with pytest.raises(ValueError, match="non-empty"):
        await cache.set("k", 1, tags=[""])
    with pytest.raises(TypeError, match="single key"):
        await cache.get_many("abc")
    assert await cache.get("k", "none") == "none"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"NOPE": 1}, "'NOPE' is not an option"),
        ({"SERIALIZER": "yaml"}, "SERIALIZER"),
        ({"SERIALIZER": "myapp.serializers.Custom"}, "SERIALIZER"),
        ({"COMPRESSOR": "django_redis.compressors.lzma.LzmaCompressor"}, "COMPRESSOR"),
        ({"CONNECTION_POOL_KWARGS": {"retry_on_timeout": True}}, "retry_on_timeout"),
        ({"db": 3}, "LOCATION"),
        ({"COMPRESS_MIN_SIZE": -1}, "COMPRESS_MIN_SIZE"),
        ({"FOREVER_TTL": "long"}, "FOREVER_TTL"),
        ({"SOCKET_TIMEOUT": "soon"}, "socket_timeout"),
    ],
)
def test_wrong_options_are_improperly_configured(
    caches_on: Any, options: dict[str, Any], match: str
) -> None:
    configured = caches_on(default=backend(**options))
    with pytest.raises(ImproperlyConfigured, match=match):
        configured["default"].get("k")


def test_a_wrong_location_is_improperly_configured(caches_on: Any) -> None:
    for location, match in [
        (["redis://a:6379", "redis://b:6379"], "one URL"),
        (6379, "URL string"),
        ("http://127.0.0.1:6379", "scheme|url"),
    ]:
        configured = caches_on(default=backend(location))
        with pytest.raises(ImproperlyConfigured, match=match):
            configured["default"].get("k")


def test_a_wrong_timeout_setting_is_improperly_configured(caches_on: Any) -> None:
    configured = caches_on(default=backend(TIMEOUT="300"))
    with pytest.raises(ImproperlyConfigured, match="TIMEOUT"):
        configured["default"].get("k")


_HOSTILE_VALUES = [[], {}, {"a": 1}, object(), -1, float("nan"), float("inf"), "x" * 300, b"\xff"]
_OPTION_NAMES = [
    "SERIALIZER",
    "COMPRESSOR",
    "COMPRESS_MIN_SIZE",
    "FOREVER_TTL",
    "REVERSE_KEY_FUNCTION",
    "IGNORE_EXCEPTIONS",
    "SOCKET_TIMEOUT",
    "SOCKET_CONNECT_TIMEOUT",
    "PASSWORD",
    "CONNECTION_POOL_KWARGS",
    "CACHE_TTL",
]


@pytest.mark.parametrize("name", _OPTION_NAMES)
def test_any_value_of_an_option_is_used_or_improperly_configured(caches_on: Any, name: str) -> None:
    for value in _HOSTILE_VALUES:
        cache = caches_on(c0=backend(**{name: value}))["c0"]
        refused: list[str] = []
        try:
            assert cache.set("k", 1, 30) is True
            assert cache.set("forever", 2, None) is True  # FOREVER_TTL
            assert cache.get_many(["k", "forever"]) == {"k": 1, "forever": 2}  # it works
        except ImproperlyConfigured as exc:
            refused.append(str(exc))
        except AuthenticationError:
            assert name == "PASSWORD"  # taken, and sent: a server with passwords refuses it
        # taken, or refused with a message naming the option as it was written
        assert all(name in message for message in refused), refused


async def test_keys_follow_a_key_prefix_or_version_changed_at_runtime(cache: Twin) -> None:
    backend_ = cache.cache
    await cache.set("a", "v1")
    original = backend_.key_prefix, backend_.version
    try:
        backend_.key_prefix = f"{original[0]}-other"
        assert backend_.key("a") == backend_.make_key("a")
        assert await cache.get("a") is None  # another prefix: another key
        await cache.set("a", "v2")
        backend_.version = original[1] + 1
        assert backend_.key("a") == backend_.make_key("a")
        assert await cache.get("a") is None
    finally:
        backend_.key_prefix, backend_.version = original
    assert await cache.get("a") == "v1"
