"""Cache-aside over Redis: ``kit.cache`` (see :class:`Cache` and :class:`AsyncCache`)."""

from __future__ import annotations

from .api import AsyncCache, AsyncCachedFunction, Cache, CachedFunction

__all__ = ["AsyncCache", "AsyncCachedFunction", "Cache", "CachedFunction"]
