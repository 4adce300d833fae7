"""The keyspace helper: every key redkit writes is built here.

A key is ``<prefix>:<component>:<parts...>``. User-supplied parts (cache keys, tags, ids) are
escaped so they can never contain glob characters, braces, separators or whitespace, and parts
longer than ``max_key_length`` are shortened to a readable head plus a SHA-256 of the whole part.
Escaped and hashed forms cannot collide: ``%`` and ``~`` are always escaped, and only the hashed
form contains ``~``. A ``{hash tag}`` groups the keys one script touches into one Redis Cluster
slot.
"""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidKeyError

__all__ = ["Keyspace", "escape_part"]

SAFE_STR = re.compile(r"[A-Za-z0-9_.\-:/@=+,!|]+\Z")  # the same, for a str part as it is
_SAFE_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-:/@=+,!|"
)
_MAX_INT = 10**100
_HEAD = 40  # readable characters kept in front of the hash of a long part


def _to_bytes(part: object) -> bytes:
    if isinstance(part, bool):
        raise InvalidKeyError(f"key parts must be str, bytes or int, not bool ({part!r})")
    if isinstance(part, str):
        return part.encode("utf-8", "surrogatepass")
    if isinstance(part, bytes):
        return part
    if isinstance(part, int):
        if not -_MAX_INT < part < _MAX_INT:  # str() of more than 4,300 digits raises ValueError
            raise InvalidKeyError("int key parts must have at most 100 digits")
        return str(part).encode()
    raise InvalidKeyError(f"key parts must be str, bytes or int, not {type(part).__name__}")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-:/@=+,!|]")  # a byte outside _SAFE_BYTES, as latin-1
_PERCENT = {b: f"%{b:02X}" for b in range(256) if b not in _SAFE_BYTES}


def _percent(match: re.Match[str]) -> str:
    return _PERCENT[ord(match.group())]


def escape_part(part: object, max_length: int) -> str:
    """Escape one user-supplied key part (see the module docstring). Empty parts are rejected."""
    if type(part) is str and len(part) <= max_length and SAFE_STR.match(part):
        return part  # nothing to escape or shorten: the common case, without encoding
    raw = _to_bytes(part)
    if not raw:
        raise InvalidKeyError("key parts must not be empty")
    text = _UNSAFE.sub(_percent, raw.decode("latin-1"))  # latin-1: one character per byte
    if len(text) <= max_length:
        return text
    digest = hashlib.sha256(raw).hexdigest()
    return f"{text[:_HEAD]}~{digest}"


class Keyspace:
    """Builds keys under one prefix; ``component`` names are redkit's own (``cache``, ...)."""

    __slots__ = ("_base", "max_length", "prefix")

    def __init__(self, prefix: str, max_length: int = 200) -> None:
        self.prefix = prefix
        self.max_length = max_length
        self._base = f"{prefix}:"

    def part(self, part: object) -> str:
        """Escape a user-supplied part."""
        return escape_part(part, self.max_length)

    def key(self, component: str, *parts: object) -> str:
        """``<prefix>:<component>:<escaped parts joined by ':'>`` (no hash tag)."""
        escaped = ":".join(self.part(p) for p in parts)
        return f"{self._base}{component}:{escaped}" if parts else f"{self._base}{component}"

    def tag_head(self, component: str) -> str:
        """The start of every :meth:`tagged` key of ``component``, up to its hash tag's ``{``."""
        return f"{self._base}{component}:{{"

    def tagged(self, component: str, tag: object, *suffix: str) -> str:
        """``<prefix>:<component>:{<escaped tag>}[:suffix...]``: every key built from the same
        ``tag`` lands in one cluster slot. ``suffix`` parts are redkit's own, not escaped."""
        base = f"{self._base}{component}:{{{self.part(tag)}}}"
        return ":".join((base, *suffix)) if suffix else base

    def pattern(self, component: str | None = None) -> str:
        """A ``SCAN MATCH`` pattern for every key of ``component`` (or of the whole prefix)."""
        return f"{self._base}{component}:*" if component else f"{self._base}*"
