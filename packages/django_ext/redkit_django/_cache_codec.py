"""How the cache backend turns values into bytes: a serializer, then optional compression.

Each payload starts with one byte: the serializer in the high four bits (1 signed pickle,
2 JSON, 3 msgpack) and the compression in the low four (0 none, 1 zlib, 2 zstd, 3 lz4). A
reader decompresses whatever the writer chose (when the library is installed), so changing
``COMPRESSOR`` needs no flush; a payload of another serializer is refused
(:class:`~redkit.errors.SerializationError`, which the cache treats as a miss): a backend set to
JSON never unpickles. Integers never reach the codec: the cache stores them as bare digits, so
``incr`` works on them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from redkit.errors import MissingDependencyError, SerializationError
from redkit.serializers import Serializer, make_serializer
from redkit.web import require

__all__ = ["COMPRESSORS", "SERIALIZERS", "Codec"]

SERIALIZERS = {"pickle": 1, "json": 2, "msgpack": 3}
"""Serializer names and their ids in the first byte of a payload."""
COMPRESSORS = {"zlib": 1, "zstd": 2, "lz4": 3}
"""Compressor names and their ids in the first byte of a payload (0: not compressed)."""
MAX_UNPACKED = 512 * 1024 * 1024
"""Largest decompressed payload accepted (Redis' own limit for a value): a planted
decompression bomb is refused, not unpacked into memory."""

_NAMES = {v: k for k, v in SERIALIZERS.items()}
_Pack = Callable[[bytes], bytes]


def _zlib() -> tuple[_Pack, _Pack]:
    def unpack(data: bytes) -> bytes:
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, MAX_UNPACKED)
        if inflater.unconsumed_tail:
            raise SerializationError("compressed cache payload is larger than allowed")
        return out

    return zlib.compress, unpack


def _zstd() -> tuple[_Pack, _Pack]:
    zstandard: Any = require("zstandard", "zstd")
    compressor, decompressor = zstandard.ZstdCompressor(), zstandard.ZstdDecompressor()

    def unpack(data: bytes) -> bytes:
        out: bytes = decompressor.decompress(data, max_output_size=MAX_UNPACKED)
        return out

    return compressor.compress, unpack


def _lz4() -> tuple[_Pack, _Pack]:
    frame: Any = require("lz4.frame", "lz4")
    return frame.compress, frame.decompress


_MAKERS: dict[int, Callable[[], tuple[_Pack, _Pack]]] = {1: _zlib, 2: _zstd, 3: _lz4}


class Codec:
    """A :class:`redkit.serializers.Serializer` for the cache backend: ``serializer`` (one of
    :data:`SERIALIZERS`; ``pickle`` is HMAC-signed with ``secret_key``), payloads of at least
    ``min_size`` bytes compressed with ``compressor`` when that makes them smaller."""

    def __init__(
        self,
        serializer: str,
        secret_key: str | None,
        compressor: str | None = None,
        min_size: int = 1024,
    ) -> None:
        self.name = serializer
        self._id = SERIALIZERS[serializer]
        self._inner: Serializer = make_serializer(serializer, secret_key)
        self._plain = bytes((self._id << 4,))
        self._method = COMPRESSORS[compressor] if compressor else 0
        self._pack: _Pack | None = _MAKERS[self._method]()[0] if self._method else None
        self._min_size = min_size
        self._unpackers: dict[int, _Pack] = {}

    def dumps(self, value: Any) -> bytes:
        data = self._inner.dumps(value)
        if self._pack is not None and len(data) >= self._min_size:
            packed = self._pack(data)
            if len(packed) < len(data):
                return bytes((self._id << 4 | self._method,)) + packed
        return self._plain + data

    def loads(self, data: bytes) -> Any:
        if not data:
            raise SerializationError("empty cache payload")
        head = data[0]
        if head == self._plain[0]:
            return self._inner.loads(data[1:])
        kind, method = head >> 4, head & 0x0F
        if kind != self._id:
            written = _NAMES.get(kind, "an unknown serializer")
            raise SerializationError(
                f"cache payload written by {written}, and this cache reads {self.name}"
            )
        return self._inner.loads(self._unpack(method, data[1:]))

    def _unpack(self, method: int, data: bytes) -> bytes:
        unpack = self._unpackers.get(method)
        if unpack is None:
            if method not in _MAKERS:
                raise SerializationError(f"cache payload with an unknown compression ({method})")
            try:
                unpack = self._unpackers[method] = _MAKERS[method]()[1]
            except MissingDependencyError as exc:  # written by a process that has it
                raise SerializationError(f"cannot read a compressed cache payload: {exc}") from None
        try:
            return unpack(data)
        except SerializationError:
            raise
        except Exception as exc:  # each library raises its own error for corrupt data
            raise SerializationError(f"corrupt compressed cache payload: {exc}") from None
