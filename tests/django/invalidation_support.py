"""Shared by the invalidation tests: cache entries that show which tags were invalidated, and
a count of the ``kit.cache.invalidate`` calls."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

import redkit
import redkit_django


class Watch:
    """One cache entry per tag: an entry gone means its tag was invalidated. ``calls`` lists
    the tags of each ``kit.cache.invalidate`` call since the last ``arm``, ``threads`` the thread
    that made each."""

    def __init__(self, kit: redkit.Redkit, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kit = kit
        self.tags: list[str] = []
        self.calls: list[list[str]] = []
        self.threads: list[threading.Thread] = []
        real = kit.cache.invalidate

        def spy(tags: Any) -> int:
            tags = list(tags)
            self.calls.append(tags)
            self.threads.append(threading.current_thread())
            return real(tags)

        monkeypatch.setattr(kit.cache, "invalidate", spy)

    def arm(self, *tags: str) -> None:
        """Watch ``tags`` (only those): store an entry for each."""
        self.tags = list(tags)
        for tag in tags:
            assert self.kit.cache.set(f"watch:{tag}", tag, ttl=300, tags=[tag])
        self.calls.clear()
        self.threads.clear()

    def gone(self) -> set[str]:
        """The armed tags invalidated since they were armed."""
        return {t for t in self.tags if self.kit.cache.get(f"watch:{t}") is None}


@pytest.fixture
def watch(redkit_on: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Watch:
    return Watch(redkit_django.get_kit(), monkeypatch)


@pytest.fixture(params=["default", "sqlite"])
def alias(request: pytest.FixtureRequest) -> str:
    """The database written to: PostgreSQL or SQLite."""
    return str(request.param)


class _Rollback(Exception):
    pass


@contextlib.contextmanager
def rolled_back(alias: str) -> Iterator[None]:
    """An atomic block on ``alias`` (a transaction, or a savepoint inside one) that ends by
    rolling back."""
    with contextlib.suppress(_Rollback), transaction.atomic(using=alias):
        yield
        raise _Rollback
