"""Fixtures of the Django adapter's tests (pytest-django, settings in ``tests.django.settings``).

Each test gets a fresh redkit prefix through ``override_settings``, so it starts with empty
Redis keys and the adapter's clients are rebuilt from the new ``REDKIT``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

import django

django.setup()

from django.test import override_settings  # noqa: E402

import redkit_django  # noqa: E402
from redkit_django import conf  # noqa: E402
from tests.conftest import REDIS_URL, new_prefix  # noqa: E402


def redkit_settings(url: str, **extra: Any) -> dict[str, Any]:
    """A ``REDKIT`` dict for ``url`` with a new prefix, plus ``extra`` keys."""
    return {"URL": url, "PREFIX": new_prefix(), **extra}


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A real Redis or the test cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster"))
    return REDIS_URL


@pytest.fixture
def redkit_on(redis_url: str) -> Iterator[dict[str, Any]]:
    """``REDKIT`` overridden with a new prefix on ``redis_url``; the keys are deleted after."""
    values = redkit_settings(redis_url)
    with override_settings(REDKIT=values):
        yield values
        redkit_django.get_kit().clear()
    conf.reset()
