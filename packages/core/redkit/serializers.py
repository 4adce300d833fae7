"""Serializers: JSON by default (orjson when installed), msgpack optional, signed pickle opt-in.

A value that cannot be serialized raises :class:`~redkit.errors.SerializationError` naming the
offending type and where it sits in the value (``value["user"]["born"] is a datetime``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import pickle
import uuid
from typing import Any, Protocol

from ._checks import shown
from ._optional import require
from .errors import SerializationError, SignatureError

__all__ = [
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "find_unserializable",
    "make_serializer",
]

_orjson: Any
try:  # pragma: no cover - depends on the environment
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

_JSON_SCALARS = (str, int, float, bool, type(None))


class Serializer(Protocol):
    """Turns values into bytes and back. ``name`` is stored nowhere; it is for messages."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def find_unserializable(value: Any, path: str = "value") -> str | None:
    """Describe the first part of ``value`` that plain JSON cannot hold, or ``None``.

    >>> find_unserializable({"a": [1, {2}]})
    'value["a"][1] is a set'
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    seen: set[int] = set()
    while stack:
        item, where, depth = stack.pop()
        if depth > 256:
            return f"{where} is nested more than 256 levels deep"
        if isinstance(item, bool) or item is None or type(item) is str:
            continue
        if isinstance(item, (uuid.UUID, enum.Enum)):
            # written as its string form / its value, with or without orjson
            if isinstance(item, enum.Enum):
                stack.append((item.value, f"{where}.value", depth + 1))
            continue
        if isinstance(item, str):
            return f"{where} is a {type(item).__name__} (a str subclass)"
        if isinstance(item, int):
            if type(item) is not int:
                return f"{where} is a {type(item).__name__} (an int subclass)"
            if not -(2**63) <= item < 2**64:
                return f"{where} is an int wider than 64 bits"
            continue
        if isinstance(item, float):
            if type(item) is not float:
                return f"{where} is a {type(item).__name__} (a float subclass)"
            if not math.isfinite(item):
                return f"{where} is {item!r}, which JSON cannot represent"
            continue
        if type(item) in (dict, list, tuple):
            if id(item) in seen:
                return f"{where} contains itself (circular reference)"
            seen.add(id(item))
            if type(item) is dict:
                for k, v in item.items():
                    if type(k) is not str:
                        return (
                            f"{where} has a key {shown(k)} of type {type(k).__name__} "
                            "(keys must be str)"
                        )
                    stack.append((v, f"{where}[{json.dumps(k, ensure_ascii=False)}]", depth + 1))
            else:
                for i, v in enumerate(item):
                    stack.append((v, f"{where}[{i}]", depth + 1))
            continue
        return f"{where} is a {type(item).__module__}.{type(item).__qualname__}".replace(
            "builtins.", ""
        )
    return None


def _unserializable(value: Any, serializer: str, exc: Exception | None) -> SerializationError:
    where = find_unserializable(value) or f"value could not be encoded ({exc})"
    return SerializationError(
        f"cannot serialize with {serializer}: {where}. Convert it to JSON types (dict with str "
        "keys, list, str, int, float, bool, None) or configure another serializer."
    )


class JsonSerializer:
    """Strict JSON: only JSON's own types (plus ``uuid.UUID``, written as a string, and enum
    members, written as their value), the same with or without orjson installed. Tuples come
    back as lists."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        if _orjson is not None:
            try:
                data: bytes = _orjson.dumps(value, option=_ORJSON_OPTS)
            except (TypeError, _orjson.JSONEncodeError) as exc:
                raise _unserializable(value, self.name, exc) from None
            # orjson writes NaN and infinities as null; plain json refuses them: so do we
            if b"null" in data and find_unserializable(value) is not None:
                raise _unserializable(value, self.name, None)
            return data
        # the standard library accepts more than orjson (int keys, str subclasses, huge ints):
        # check first, so that both backends accept exactly the same values
        problem = find_unserializable(value)
        if problem is not None:
            raise _unserializable(value, self.name, None)
        try:
            return json.dumps(
                value,
                ensure_ascii=False,
                allow_nan=False,
                separators=(",", ":"),
                default=_reject,
            ).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise _unserializable(value, self.name, exc) from None

    def loads(self, data: bytes) -> Any:
        try:
            if _orjson is not None:
                return _orjson.loads(data)
            return json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"stored payload is not valid JSON: {exc}") from None


def _reject(obj: Any) -> Any:
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(type(obj).__name__)


_ORJSON_OPTS = 0
if _orjson is not None:  # pragma: no branch
    _ORJSON_OPTS = (
        _orjson.OPT_PASSTHROUGH_DATETIME
        | _orjson.OPT_PASSTHROUGH_DATACLASS
        | _orjson.OPT_PASSTHROUGH_SUBCLASS
    )


class MsgpackSerializer:
    """msgpack (``pip install "redkit[msgpack]"``): compact, binary-safe, JSON-like types."""

    name = "msgpack"

    def __init__(self) -> None:
        self._msgpack: Any = require("msgpack", "msgpack")

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unserializable(value, self.name, exc) from None
        return data

    def loads(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (ValueError, TypeError, self._msgpack.ExtraData, self._msgpack.FormatError) as exc:
            raise SerializationError(f"stored payload is not valid msgpack: {exc}") from None


_BLOCK = 64  # SHA-256's block size, in bytes


class PickleSerializer:
    """Pickle, HMAC-SHA256 signed with ``secret_key``. Opt-in only: a payload whose signature does
    not verify is never unpickled (:class:`~redkit.errors.SignatureError`)."""

    name = "pickle"
    _DIGEST = 32

    def __init__(self, secret_key: str | bytes) -> None:
        if not secret_key:
            raise SerializationError("PickleSerializer needs a non-empty secret_key")
        key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once: signing
        # a small value then costs two hash copies instead of building an hmac object per call
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _sign(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def dumps(self, value: Any) -> bytes:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(
                f"cannot serialize with pickle: a {type(value).__name__} ({exc})"
            ) from None
        return self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        signature, payload = data[: self._DIGEST], data[self._DIGEST :]
        if len(signature) != self._DIGEST or not hmac.compare_digest(
            signature, self._sign(payload)
        ):
            raise SignatureError("pickled payload failed signature verification; not unpickled")
        return pickle.loads(payload)


def make_serializer(name: str, secret_key: str | None = None) -> Serializer:
    """The serializer named by the ``serializer`` setting."""
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    if name == "pickle":
        if not secret_key:
            raise SerializationError("serializer 'pickle' requires secret_key")
        return PickleSerializer(secret_key)
    raise SerializationError(f"unknown serializer {name!r}")
