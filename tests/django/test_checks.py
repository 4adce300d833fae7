"""``manage.py check``: each of redkit's ids is reported when it should, and only then."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from redkit_django import checks

from .conftest import redkit_settings
from .test_cache_support import backend


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_a_wrong_redkit_url_is_e001() -> None:
    with override_settings(REDKIT={"URL": "http://127.0.0.1:6379"}):
        assert ids(checks.check_settings()) == ["redkit.E001"]


def test_a_wrong_cache_location_or_option_is_e002(redis_url: str) -> None:
    with override_settings(
        REDKIT=redkit_settings(redis_url),
        CACHES={
            "default": backend("ftp://nowhere"),
            "b": backend(NOPE=1),
            "c": backend(TIMEOUT="300"),
            "ok": backend(),
        },
    ):
        assert ids(checks.check_settings()) == ["redkit.E002"] * 3


def test_no_secret_key_for_pickle_is_e003(redis_url: str) -> None:
    with override_settings(
        SECRET_KEY="", REDKIT=redkit_settings(redis_url), CACHES={"default": backend()}
    ):
        assert ids(checks.check_settings()) == ["redkit.E003"]
    with override_settings(
        SECRET_KEY="",
        REDKIT=redkit_settings(redis_url),
        CACHES={"default": backend(SERIALIZER="json")},
    ):
        assert checks.check_settings() == []


def test_meaningless_options_are_w001_and_timeout_none_is_w002(redis_url: str) -> None:
    with override_settings(
        REDKIT=redkit_settings(redis_url),
        CACHES={
            "default": backend(CLIENT_CLASS="django_redis.client.DefaultClient", MAX_ENTRIES=9),
            "forever": backend(TIMEOUT=None),
            "said": backend(TIMEOUT=None, FOREVER_TTL=86400),
        },
    ):
        assert sorted(ids(checks.check_settings())) == ["redkit.W001"] * 2 + ["redkit.W002"]


def test_eviction_is_w004_only_with_database_and_never_crashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with override_settings(SESSION_ENGINE="redkit_django.sessions"):
        assert checks.check_eviction(databases=None) == []  # no --database: no connection
        with override_settings(REDKIT={"URL": "redis://127.0.0.1:1/0"}):
            assert checks.check_eviction(databases=["default"]) == []  # unreachable: silent

        import redis

        real = redis.Redis.config_get

        def evicting(self: Any, pattern: str = "*", *args: Any) -> dict[str, str]:
            return {"maxmemory-policy": "allkeys-lru"}

        monkeypatch.setattr(redis.Redis, "config_get", evicting)
        assert ids(checks.check_eviction(databases=["default"])) == ["redkit.W004"]

        def refused(self: Any, *args: Any) -> Any:
            raise redis.exceptions.NoPermissionError("NOPERM")

        monkeypatch.setattr(redis.Redis, "config_get", refused)
        assert checks.check_eviction(databases=["default"]) == []
        monkeypatch.setattr(redis.Redis, "config_get", real)
        assert checks.check_eviction(databases=["default"]) == []  # the test Redis does not evict


def test_manage_py_check_reports_and_does_not_crash(redis_url: str) -> None:
    broken = override_settings(
        REDKIT=redkit_settings(redis_url), CACHES={"default": backend(NOPE=1)}
    )
    with broken, pytest.raises(SystemCheckError, match=r"redkit\.E002"):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    with override_settings(REDKIT=redkit_settings(redis_url), CACHES={"default": backend()}):
        call_command("check", stdout=StringIO(), stderr=StringIO())
