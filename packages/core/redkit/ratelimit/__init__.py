"""Rate limiting: ``kit.limiter`` (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncLimiter", "Limiter"]


class Limiter:
    """Rate limits (sync)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit


class AsyncLimiter:
    """Rate limits (async)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit
