"""Pub/sub and streams: ``kit.pubsub``, ``kit.stream(name)`` (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncPubSub", "AsyncStream", "PubSub", "Stream"]


class PubSub:
    """Pub/sub (sync)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit


class AsyncPubSub:
    """Pub/sub (async)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit


class Stream:
    """A Redis stream (sync)."""

    def __init__(self, kit: Any, name: object) -> None:
        self._kit = kit


class AsyncStream:
    """A Redis stream (async)."""

    def __init__(self, kit: Any, name: object) -> None:
        self._kit = kit
