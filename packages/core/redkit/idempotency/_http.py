"""The HTTP side of idempotency keys: the ``Idempotency-Key`` header, request fingerprints and
which response headers are stored for replay."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from .._checks import shown
from ..errors import (
    IdempotencyKeyError,
)

REPLAYED_HEADER = ("Idempotent-Replayed", "true")
"""The header a replayed response carries, so that clients can tell it from a fresh one."""

SAFE_HEADERS = frozenset(
    {
        "allow",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-location",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "link",
        "location",
        "preference-applied",
        "vary",
    }
)
"""Response headers stored for replay (lower case). Every other header is dropped unless named in
``allow_headers``; :data:`NEVER_STORED` ones cannot be allowed at all."""

NEVER_STORED = frozenset(
    {
        # credentials and per-client state
        "authorization",
        "cookie",
        "proxy-authenticate",
        "proxy-authorization",
        "set-cookie",
        "set-cookie2",
        # hop-by-hop and framing: they describe one connection or one transfer, not the response
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Response headers that are never stored, whatever ``allow_headers`` says."""

_KEY = re.compile(r"[\x20-\x7e]{1,255}\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HEADER_VALUE_BAD = re.compile(r"[\r\n\x00]")


HeaderInput: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
"""Response headers: a mapping (one value per name) or ``(name, value)`` pairs (repeats kept)."""


def check_key(key: str | bytes) -> str:
    """``key`` as text when it is a valid idempotency key: 1 to 255 printable ASCII characters
    (space included); :class:`~redkit.errors.IdempotencyKeyError` otherwise."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise IdempotencyKeyError(
                "an idempotency key must be printable ASCII; got non-ASCII bytes"
            ) from None
    elif not isinstance(key, str):
        raise TypeError(f"an idempotency key must be str or bytes, not {type(key).__name__}")
    if not key:
        raise IdempotencyKeyError("an idempotency key must not be empty")
    if len(key) > 255:
        raise IdempotencyKeyError(
            f"an idempotency key must be at most 255 characters, got {len(key)}"
        )
    if not _KEY.match(key):
        raise IdempotencyKeyError(
            "an idempotency key must be printable ASCII (no control or non-ASCII characters)"
        )
    return key


def parse_key_header(value: str | bytes) -> str:
    """The key carried by an ``Idempotency-Key`` header value: a structured-field string
    (``"8e03978e-40d5"``, with ``\\"`` and ``\\\\`` escapes) or, as many clients send it, the bare
    key. Surrounding spaces and tabs are ignored. Raises
    :class:`~redkit.errors.IdempotencyKeyError` when the value is malformed (adapters answer 400).
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise IdempotencyKeyError("the Idempotency-Key header must be ASCII") from None
    elif not isinstance(value, str):
        raise TypeError(f"a header value must be str or bytes, not {type(value).__name__}")
    text = value.strip(" \t")
    if not text.startswith('"'):
        return check_key(text)
    out: list[str] = []
    i, end = 1, len(text)
    while i < end:
        c = text[i]
        if c == "\\":
            if i + 1 >= end or text[i + 1] not in '"\\':
                raise IdempotencyKeyError("bad escape in the Idempotency-Key header")
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            if i != end - 1:
                raise IdempotencyKeyError("unexpected text after the Idempotency-Key string")
            return check_key("".join(out))
        else:
            out.append(c)
            i += 1
    raise IdempotencyKeyError("unterminated string in the Idempotency-Key header")


def _fingerprint_part(part: object) -> bytes | None:
    if part is None:
        return None
    if isinstance(part, str):
        return part.encode("utf-8", "surrogatepass")
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    raise TypeError(f"fingerprint parts must be str, bytes or None, not {type(part).__name__}")


def fingerprint(
    method: str, path: str | bytes, body: bytes | str, *extra: str | bytes | None
) -> str:
    """A SHA-256 (hex) of a request, for :meth:`Idempotency.begin`: its method, path, body and
    any ``extra`` parts that make two requests different (query string, content type, API
    version, ...). Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    ``str`` parts are UTF-8 encoded (a str and its UTF-8 bytes are the same part); ``None`` is a
    part of its own."""
    digest = hashlib.sha256(b"redkit-idempotency-fingerprint-v1")
    for part in (method, path, body, *extra):
        data = _fingerprint_part(part)
        if data is None:
            digest.update(b"\xff" * 8)
        else:
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def _allowed(allow_headers: Iterable[str]) -> frozenset[str]:
    if isinstance(allow_headers, (str, bytes)):
        raise TypeError('allow_headers must be a list of names, e.g. ["X-Order-Id"]')
    extra = set()
    for name in allow_headers:
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"allow_headers: {shown(name)} is not a header name")
        low = name.lower()
        if low in NEVER_STORED:
            raise ValueError(f"allow_headers: {name} is never stored for replay")
        extra.add(low)
    return SAFE_HEADERS | extra if extra else SAFE_HEADERS


def _header_text(part: object, what: str) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, (bytes, bytearray)):
        return bytes(part).decode("latin-1")
    raise TypeError(f"headers: header {what}s must be str or bytes, not {type(part).__name__}")


def _headers(headers: Any, allowed: frozenset[str]) -> tuple[list[list[str]], bool]:
    """The headers to store, as ``[name, value]`` pairs, and whether a Set-Cookie was seen."""
    if isinstance(headers, (str, bytes)):
        raise TypeError("headers must be a mapping or (name, value) pairs")
    items = headers.items() if hasattr(headers, "items") else headers
    kept: list[list[str]] = []
    cookie = False
    for item in items:
        try:
            raw_name, raw_value = item
        except (TypeError, ValueError):
            raise TypeError("headers must be a mapping or (name, value) pairs") from None
        name = _header_text(raw_name, "name")
        low = name.lower()
        if low in ("set-cookie", "set-cookie2"):
            cookie = True
            continue
        if low not in allowed:
            continue
        value = _header_text(raw_value, "value")
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if _HEADER_VALUE_BAD.search(value):
            raise ValueError(f"the value of header {name} holds CR, LF or NUL")
        kept.append([name, value])
    return kept, cookie
