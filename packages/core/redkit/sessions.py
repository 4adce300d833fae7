"""Server-side sessions: ``kit.sessions`` (to be written)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncSessions", "Sessions"]


class Sessions:
    """Server-side sessions (sync)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit


class AsyncSessions:
    """Server-side sessions (async)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit
