"""``manage.py check`` never crashes, whatever ``REDKIT``, ``CACHES``, ``MIDDLEWARE`` or
``TASKS`` hold: redkit's checks report what is wrong or leave it to Django's own; bad
invalidation rules do not stop Django from starting, so ``check`` can report them."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from redkit_django import checks, conf, invalidation

CACHE = "redkit_django.cache.RedkitCache"
WRONG: dict[str, list[Any]] = {
    "REDKIT": [
        None,
        [],
        "redis://x",
        1,
        {"URL": 5},
        {"URL": "bogus://"},
        {1: 2},
        {"": 1},
        {"url": "redis://a", "URL": "redis://b"},
        {"CACHE_TTL": "x"},
        {"CACHE_TTL": -1},
        {"TRUSTED_PROXIES": ["zz"]},
        {"RATELIMIT_DEFAULT": "x/y"},
        {"PREFIX": "\ud800"},
        {"PREFIX": b"x"},
        {"SECRET_KEY": 3},
        {"SESSION_TTL": float("nan")},
        {"IDEMPOTENCY_METHODS": 7},
        {"NOPE": 1},
        {"INVALIDATE": "x"},
        {"INVALIDATE": {"auth.User": ["{nofield}"]}},
    ],
    "CACHES": [
        None,
        [],
        "x",
        {"default": None},
        {"default": []},
        {1: {"BACKEND": CACHE}},
        {"default": {"BACKEND": CACHE, "LOCATION": 3}},
        {"default": {"BACKEND": CACHE, "LOCATION": ["redis://a", 2]}},
        {"default": {"BACKEND": CACHE, "LOCATION": "bogus://"}},
        {"default": {"BACKEND": CACHE, "OPTIONS": "x"}},
        {"default": {"BACKEND": CACHE, "OPTIONS": {1: 2}}},
        {"default": {"BACKEND": CACHE, "OPTIONS": {"SERIALIZER": 5}}},
        {"default": {"BACKEND": CACHE, "OPTIONS": {"COMPRESSOR": []}}},
        {"default": {"BACKEND": CACHE, "TIMEOUT": "x"}},
        {"default": {"BACKEND": CACHE, "TIMEOUT": float("inf")}},
        {"default": {"BACKEND": ["x"]}},
    ],
    "MIDDLEWARE": [None, "redkit_django.middleware.CacheMiddleware", [1, None], 5],
    "TASKS": [None, [], "x", {"default": None}, {"default": {"BACKEND": 3}}],
    "SESSION_ENGINE": [None, 5],
    "SECRET_KEY": ["", None],
}
CASES = [(name, value) for name, values in WRONG.items() for value in values]


@pytest.fixture
def fresh() -> Iterator[None]:
    conf.reset()
    yield
    conf.reset()


@pytest.mark.parametrize(
    ("name", "value"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
def test_redkit_checks_never_raise(
    name: str, value: Any, monkeypatch: pytest.MonkeyPatch, fresh: None
) -> None:
    monkeypatch.setattr(
        settings, name, value, raising=False
    )  # no setting_changed: Django's caches kept
    found = [
        *checks.check_settings(),
        *checks.check_middleware(),
        *checks.check_eviction(databases=["default"]),
        *invalidation.check_rules(),
    ]
    assert all(m.id.startswith("redkit.") for m in found)
    if name == "REDKIT" and isinstance(value, dict) and "INVALIDATE" in value:
        assert "redkit.E301" in [m.id for m in found]


def test_bad_rules_at_startup_are_logged_and_reported_by_check(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings, "REDKIT", {"INVALIDATE": {"testapp.Tag": ["tag:{colour}"]}})
    try:
        invalidation.connect()  # what the app's ready() calls: Django starts
        assert "has no field 'colour'" in caplog.text
        with pytest.raises(SystemCheckError, match=r"redkit\.E301.*has no field 'colour'"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    finally:
        monkeypatch.undo()
        invalidation.connect()
    call_command("check", stdout=StringIO(), stderr=StringIO())


DOCUMENTED = [
    "redkit_django.middleware.RateLimitMiddleware",
    "redkit_django.middleware.CacheMiddleware",
    "redkit_django.middleware.IdempotencyMiddleware",
    "redkit_django.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    checks.AUTH,
    "django.contrib.messages.middleware.MessageMiddleware",
]


def test_the_documented_middleware_order_passes_and_cookie_setters_above_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "MIDDLEWARE", DOCUMENTED)
    assert checks.check_middleware() == []
    below = [*DOCUMENTED[3:], *DOCUMENTED[:3]]  # under sessions, CSRF, auth and messages
    monkeypatch.setattr(settings, "MIDDLEWARE", below)
    found = checks.check_middleware()
    assert [m.id for m in found] == ["redkit.W003"] * 6  # cache and idempotency, 3 each
    assert "CacheMiddleware comes after" in found[0].msg
    auth_first = [checks.AUTH, "redkit_django.middleware.SessionMiddleware"]
    monkeypatch.setattr(settings, "MIDDLEWARE", auth_first)
    assert [m.id for m in checks.check_middleware()] == ["redkit.W003"]
