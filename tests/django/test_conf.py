"""``settings.REDKIT`` is read once, again on ``override_settings``, and validated."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import redkit
import redkit.asyncio
import redkit_django
from redkit_django import conf
from tests.django.conftest import redkit_settings


def test_the_kit_is_built_from_settings_and_rebuilt_when_they_change(redis_url: str) -> None:
    first = redkit_settings(redis_url, CACHE_TTL=42)
    with override_settings(REDKIT=first):
        kit = redkit_django.get_kit()
        assert isinstance(kit, redkit.Redkit)
        assert kit is redkit_django.get_kit()
        assert kit.settings.prefix == first["PREFIX"]
        assert kit.settings.cache_ttl == 42
        kit.cache.set("k", 1)
        assert kit.cache.get("k") == 1
        second = redkit_settings(redis_url, cache_ttl=7)  # lower-case names work too
        with override_settings(REDKIT=second):
            other = redkit_django.get_kit()
            assert other is not kit
            assert other.settings.cache_ttl == 7
            assert other.cache.get("k") is None  # another prefix
        with pytest.raises(redkit.errors.ClientClosedError):
            kit.cache.get("k")  # the replaced client was closed
        assert redkit_django.get_kit().cache.get("k") == 1
        redkit_django.get_kit().clear()


def test_one_async_kit_per_event_loop(redis_url: str) -> None:
    with override_settings(REDKIT=redkit_settings(redis_url)):

        async def use() -> redkit.asyncio.Redkit:
            kit = redkit_django.get_async_kit()
            assert kit is redkit_django.get_async_kit()
            await kit.cache.set("a", 1)
            assert await kit.cache.get("a") == 1
            await kit.clear()
            return kit

        first, second = asyncio.run(use()), asyncio.run(use())
        assert isinstance(first, redkit.asyncio.Redkit)
        assert first is not second
        with pytest.raises(RuntimeError):
            redkit_django.get_async_kit()  # no running loop


def test_the_serializer_key_is_derived_from_secret_key(redis_url: str) -> None:
    values = redkit_settings(redis_url, SERIALIZER="pickle")
    with override_settings(REDKIT=values, SECRET_KEY="one-secret"):
        first = redkit_django.get_settings().secret_key
        assert first
        assert "one-secret" not in first
    with override_settings(REDKIT=values, SECRET_KEY="another-secret"):
        assert redkit_django.get_settings().secret_key not in (None, first)
    with override_settings(REDKIT={**values, "SECRET_KEY": "mine-0123456789abcdef"}):
        assert redkit_django.get_settings().secret_key == "mine-0123456789abcdef"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("redis://x", "must be a dict"),
        ({1: "x"}, "keys must be strings"),
        ({"url": "redis://a", "URL": "redis://b"}, "twice"),
        ({"NO_SUCH_SETTING": 1}, "NO_SUCH_SETTING"),
        ({"URL": "redis://127.0.0.1:6379/0", "CACHE_TTL": -1}, "cache_ttl"),
    ],
)
def test_a_wrong_setting_is_improperly_configured(value: object, words: str) -> None:
    with override_settings(REDKIT=value), pytest.raises(ImproperlyConfigured, match=words):
        redkit_django.get_settings()


def test_a_secret_setting_is_never_echoed() -> None:
    with override_settings(REDKIT={"URL": "redis://127.0.0.1:6379/0", "PASSWORD": 123456789}):
        with pytest.raises(ImproperlyConfigured) as caught:
            redkit_django.get_settings()
        assert "123456789" not in str(caught.value)


def test_without_a_url_the_environment_then_memory_is_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REDKIT_URL", "redis://127.0.0.1:6379/3")
    with override_settings(REDKIT={}):
        assert redkit_django.get_settings().url == "redis://127.0.0.1:6379/3"
    monkeypatch.delenv("REDKIT_URL")
    with override_settings(REDKIT={}), caplog.at_level(logging.WARNING, "redkit.django"):
        assert redkit_django.get_settings().url.startswith("memory://")
    assert "memory://" in caplog.text


def test_adapter_keys_are_not_core_settings(redis_url: str) -> None:
    with override_settings(REDKIT=redkit_settings(redis_url, INVALIDATE={})):
        assert conf.adapter_option("INVALIDATE") == {}
        redkit_django.get_settings()  # not refused as an unknown setting
    with pytest.raises(KeyError):
        conf.adapter_option("URL")
