"""Bad input gets redkit's own error (or a ValueError / TypeError naming the argument) before
anything is written: regressions for the inputs that used to fail late or with Python's own
message."""

from __future__ import annotations

from typing import Any

import pytest

from redkit import (
    ConfigurationError,
    InvalidKeyError,
    InvalidRateLimit,
    Settings,
)
from tests.conftest import call


async def keys_of(kit: Any) -> list[str]:
    if kit.__class__.__module__ == "redkit.asyncio":
        return [k async for k in kit.scan()]
    return list(kit.scan())


# -- cache -----------------------------------------------------------------------------------


async def test_a_tag_with_a_lone_surrogate_is_refused_before_any_key_is_written(kit: Any) -> None:
    # it used to create the tag key, then fail encoding the entry (a raw UnicodeEncodeError)
    for tags in (["\ud800"], ["fine", "bad\udfff"]):
        with pytest.raises(InvalidKeyError, match="tags"):
            await call(kit.cache.set("k", 1, tags=tags))
        with pytest.raises(InvalidKeyError, match="tags"):
            await call(kit.cache.get_or_set("k", lambda: 1, tags=tags))
        with pytest.raises(InvalidKeyError, match="tags"):
            await call(kit.cache.set_many({"a": 1}, tags=tags))
        with pytest.raises(InvalidKeyError, match="tags"):
            await call(kit.cache.invalidate(tags))
    assert await keys_of(kit) == []


@pytest.mark.parametrize("key", [["a"], {"a": 1}, {"a"}, ("a",)], ids=repr)
async def test_a_list_or_dict_as_a_cache_key_is_an_invalid_key(kit: Any, key: Any) -> None:
    # it used to say "unhashable type"
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.set(key, 1))
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.delete(key))
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.get_many(["ok", key]))
    with pytest.raises(InvalidKeyError):
        await call(kit.cache.delete_many([key]))
    assert await keys_of(kit) == []


@pytest.mark.parametrize("tags", [True, False, 5, "users", b"users"], ids=repr)
async def test_tags_that_are_not_a_list_raise_type_error_naming_tags(kit: Any, tags: Any) -> None:
    # True used to say "'bool' object is not iterable"; a bare string is refused on purpose:
    # "users" would otherwise be read as the five tags u, s, e, r, s
    with pytest.raises(TypeError, match="tags"):
        await call(kit.cache.set("k", 1, tags=tags))
    with pytest.raises(TypeError, match="tags"):
        await call(kit.cache.invalidate(tags))
    with pytest.raises(TypeError, match="tags"):
        kit.cache.cached(tags=tags)
    assert await keys_of(kit) == []


async def test_empty_tag_lists_of_any_kind_mean_no_tags(kit: Any) -> None:
    for tags in ([], (), set(), None, iter([])):
        assert await call(kit.cache.set("k", 1, tags=tags)) is True
    assert await call(kit.cache.get("k")) == 1


# -- rate limits -----------------------------------------------------------------------------

HUGE_AMOUNT = "1" * 5000 + "/minute"


async def test_a_rate_limit_amount_of_thousands_of_digits_is_an_invalid_rate_limit(
    kit: Any,
) -> None:
    # int() of more than 4,300 digits used to raise a bare ValueError
    with pytest.raises(InvalidRateLimit, match="too large"):
        await call(kit.limiter.hit("k", HUGE_AMOUNT))
    with pytest.raises(InvalidRateLimit, match="cost"):
        await call(kit.limiter.hit("k", "1/second", 10**5000))
    assert await keys_of(kit) == []


@pytest.mark.parametrize("name", ["ratelimit_default", "ratelimit_application"])
def test_settings_refuse_a_huge_rate_limit_with_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings(**{name: HUGE_AMOUNT})
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({f"REDKIT_{name.upper()}": HUGE_AMOUNT})


def test_settings_refuse_thousands_of_digits_for_an_int() -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        Settings.from_mapping({"max_connections": "1" * 5000})


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"max_connections": "8"}, "max_connections"),
        ({"cache_fail_open": 1}, "cache_fail_open"),
        ({"prefix": b"app"}, "prefix"),
        ({"cache_jitter": "0.1"}, "cache_jitter"),
        ({"cache_jitter": float("nan")}, "cache_jitter"),
        ({"cache_early_refresh": float("inf")}, "cache_early_refresh"),
        ({"trusted_proxies": ["10.0.0.1"]}, "trusted_proxies"),
        ({"stream_maxlen": 2.0}, "stream_maxlen"),
    ],
)
def test_settings_built_directly_check_every_type(options: dict[str, Any], name: str) -> None:
    # from_mapping coerces strings; Settings(...) itself takes each field's own type only
    with pytest.raises(ConfigurationError, match=name):
        Settings(**options)


# -- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["\ud800", "ok\udfff"], ids=repr)
async def test_stream_group_and_consumer_names_with_surrogates_fail_before_sending(
    kit: Any, name: str
) -> None:
    # they used to fail inside the connection code, encoding the command
    stream = kit.stream("s")
    with pytest.raises(ValueError, match="group"):
        await call(stream.create_group(name))
    with pytest.raises(ValueError, match="group"):
        await call(stream.read(name, "c"))
    with pytest.raises(ValueError, match="consumer"):
        await call(stream.read("g", name))
    with pytest.raises(ValueError, match="consumer"):
        await call(stream.claim_stale("g", name, 1))
    with pytest.raises(ValueError, match="group"):
        await call(stream.pending(name))
    assert await keys_of(kit) == []
    # bytes are sent as they are: a binary group name is a valid one
    assert await call(stream.create_group(b"\xff\xfe")) is True
