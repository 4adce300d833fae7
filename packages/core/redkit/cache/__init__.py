"""Cache-aside over Redis: ``kit.cache`` (see :class:`Cache` and :class:`AsyncCache`)."""

from __future__ import annotations

from ._api import AsyncCache, AsyncCachedFunction, Cache, CachedFunction
from ._uncommitted import Uncommitted, uncommitted_scope, writes_pending
from ._writes import AsyncWriteBehind, AsyncWriteThrough, WriteBehind, WriteThrough

__all__ = [
    "AsyncCache",
    "AsyncCachedFunction",
    "AsyncWriteBehind",
    "AsyncWriteThrough",
    "Cache",
    "CachedFunction",
    "Uncommitted",
    "WriteBehind",
    "WriteThrough",
    "uncommitted_scope",
    "writes_pending",
]
