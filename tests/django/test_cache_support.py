"""Fixtures of the cache backend's tests: a ``RedkitCache`` on real Redis or the cluster, used
through :class:`Twin` so that one test runs the sync methods and the native async ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from redkit_django.cache import RedkitCache

SYNC_ONLY = {"lock", "keys"}
TOP_LEVEL = {"TIMEOUT", "KEY_PREFIX", "KEY_FUNCTION", "VERSION"}


class Twin:
    """``await twin.get(...)`` calls ``cache.get`` (mode ``sync``) or ``await cache.aget``."""

    def __init__(self, cache: RedkitCache, mode: str) -> None:
        self.cache = cache
        self.mode = mode

    def __getattr__(self, name: str) -> Any:
        if self.mode == "sync" or name in SYNC_ONLY:
            method = getattr(self.cache, name)

            async def run(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                return list(result) if name == "iter_keys" else result

            return run
        if name == "iter_keys":

            async def collect(*args: Any, **kwargs: Any) -> Any:
                return [k async for k in self.cache.aiter_keys(*args, **kwargs)]

            return collect
        return getattr(self.cache, "a" + name)


def backend(url: str | None = None, **options: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"BACKEND": "redkit_django.cache.RedkitCache"}
    if url is not None:
        entry["LOCATION"] = url
    extra = {k: options.pop(k) for k in list(options) if k in TOP_LEVEL}
    entry.update(extra)
    if options:
        entry["OPTIONS"] = options
    return entry


@pytest.fixture
def caches_on(redkit_on: dict[str, Any]) -> Iterator[Any]:
    """``caches_on(default=backend(...), other=...)``: CACHES overridden for the test."""
    stack: list[Any] = []

    def configure(**aliases: dict[str, Any]) -> Any:
        ctx = override_settings(CACHES=aliases)
        ctx.enable()
        stack.append(ctx)
        return caches

    yield configure
    for ctx in reversed(stack):
        ctx.disable()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cache(caches_on: Any, mode: str) -> Twin:
    """The default ``RedkitCache`` (REDKIT's URL), sync or async."""
    return Twin(caches_on(default=backend())["default"], mode)
