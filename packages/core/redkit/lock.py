"""Distributed locks: ``kit.lock(name)`` (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncLock", "Lock"]


class Lock:
    """A distributed lock (sync)."""

    def __init__(
        self,
        kit: Any,
        name: object,
        ttl: float = 30.0,
        blocking_timeout: float | None = None,
        *,
        auto_renew: bool = False,
    ) -> None:
        self._kit = kit


class AsyncLock:
    """A distributed lock (async)."""

    def __init__(
        self,
        kit: Any,
        name: object,
        ttl: float = 30.0,
        blocking_timeout: float | None = None,
        *,
        auto_renew: bool = False,
    ) -> None:
        self._kit = kit
