"""Idempotency keys: ``kit.idempotency`` (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncIdempotency", "Idempotency"]


class Idempotency:
    """Idempotency-Key records (sync)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit


class AsyncIdempotency:
    """Idempotency-Key records (async)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit
