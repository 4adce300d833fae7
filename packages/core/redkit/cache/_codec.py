"""How a cache entry is laid out in Redis (pure, no I/O).

* ``b"-12"`` / ``b"42"``: a bare integer, so ``incr`` works on values written by ``set``;
* ``b"\\x00" + payload``: a value with no metadata (the common case: one GET, one decode);
* ``b"\\x01" + len(meta) (4 bytes) + meta (JSON) + payload``: a value with tag versions (``t``),
  loader duration in ms for early refresh (``d``) and its stale-while-revalidate window in ms
  (``s``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SerializationError
from ..serializers import Serializer

__all__ = ["DOWN", "MISSING", "Entry", "decode", "encode"]

PLAIN = b"\x00"
WITH_META = b"\x01"
_DIGITS = frozenset(b"-0123456789")

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""No value (a miss, or an argument not given)."""
DOWN: Any = type("Down", (), {"__repr__": lambda self: "DOWN"})()
"""The reply of a one-call operation that failed open (see ``CacheCore.failed_open``)."""

_loads: Callable[[bytes], Any]
try:  # pragma: no cover - depends on the environment
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    _loads = json.loads


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded cache entry."""

    value: Any
    tags: dict[str, str] = field(default_factory=dict)
    duration_ms: int = 0
    stale_ms: int = 0


def encode(
    serializer: Serializer,
    value: Any,
    tags: dict[str, str] | None = None,
    duration_ms: int = 0,
    stale_ms: int = 0,
) -> bytes:
    """Bytes to store for ``value``; raises ``SerializationError`` for what cannot be stored."""
    if not tags and not duration_ms and not stale_ms:
        if type(value) is int:
            try:
                return str(value).encode()  # bare digits: a counter that incr adds to
            except ValueError:  # more than 4,300 digits: for the serializer to hold, or refuse
                pass
        return PLAIN + serializer.dumps(value)
    meta: dict[str, Any] = {}
    if tags:
        meta["t"] = tags
    if duration_ms:
        meta["d"] = duration_ms
    if stale_ms:
        meta["s"] = stale_ms
    head = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
    return WITH_META + len(head).to_bytes(4, "big") + head + serializer.dumps(value)


def decode(serializer: Serializer, raw: bytes) -> Entry:
    """The :class:`Entry` stored as ``raw``."""
    kind = raw[:1]
    if kind == PLAIN:
        return Entry(serializer.loads(raw[1:]))
    if kind == WITH_META:
        size = int.from_bytes(raw[1:5], "big")
        try:
            meta = _loads(raw[5 : 5 + size])
        except ValueError as exc:
            raise SerializationError(f"corrupt cache entry metadata: {exc}") from None
        return Entry(
            serializer.loads(raw[5 + size :]),
            meta.get("t", {}),
            int(meta.get("d", 0)),
            int(meta.get("s", 0)),
        )
    if raw and raw[0] in _DIGITS:
        try:
            return Entry(int(raw))
        except ValueError:
            pass
    raise SerializationError("not a redkit cache entry (written by something else?)")
