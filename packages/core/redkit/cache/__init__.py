"""Cache-aside over Redis: ``kit.cache`` (see :class:`Cache` and :class:`AsyncCache`)."""

from __future__ import annotations

from ._api import AsyncCache, AsyncCachedFunction, Cache, CachedFunction
from ._uncommitted import Uncommitted, uncommitted_scope, writes_pending

__all__ = [
    "AsyncCache",
    "AsyncCachedFunction",
    "Cache",
    "CachedFunction",
    "Uncommitted",
    "uncommitted_scope",
    "writes_pending",
]
