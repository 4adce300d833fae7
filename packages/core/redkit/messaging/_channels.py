"""Pub/sub without I/O: channel names and patterns under the prefix, messages, and what a
subscription knows (shared by the sync and async shells)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._keys import _to_bytes, escape_part
from .._ops import Batch, command
from ..errors import InvalidKeyError
from ._common import Channel, _decode, _encode, log

_NEVER_HASH = 1 << 30  # escape_part() length limit that never hashes (pattern pieces)
_HEX = re.compile(rb"%([0-9A-F]{2})")


def _iterable(value: object, what: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a list of names, not a single {type(value).__name__}")
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of names, not {type(value).__name__}")
    return tuple(value)


# -- messages -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Message:
    """One pub/sub message.

    ``channel`` is the channel as the subscriber named it (the prefix removed). For a message
    received through a pattern it is the channel name unescaped: a ``str``, ``bytes`` when the
    name was not UTF-8, or the escaped-and-hashed form when the name was too long to keep.
    ``pattern`` is the pattern that matched, as given to ``subscribe``, or ``None``. ``data`` is
    the decoded JSON value; when another program published something that is not JSON,
    ``malformed`` is true and ``data`` holds the raw bytes (JSON never decodes to ``bytes``).
    """

    channel: Channel
    data: Any
    pattern: Channel | None = None
    raw: bytes = field(default=b"", repr=False)
    malformed: bool = False


# -- pub/sub --------------------------------------------------------------------------------------
def _literal_safe(byte: int) -> bool:
    """Whether ``byte`` is stored as itself in an escaped name (so may sit in a ``[...]``)."""
    return escape_part(bytes((byte,)), _NEVER_HASH) == chr(byte)


def confine_pattern(pattern: object) -> str:
    """Translate a user pattern into the escaped form used by channel names (no prefix).

    ``*``, ``?`` and ``[...]`` keep their glob meaning; ``\\x`` is a literal ``x``; every other
    character is escaped exactly as in a channel name, so ``"a b*"`` matches the channel
    ``"a b1"``. A ``[...]`` class may only hold characters that escaping keeps as they are
    (letters, digits, ``_.-:/@=+,!|``), optionally negated with a leading ``^``.
    """
    if isinstance(pattern, bool) or not isinstance(pattern, (str, bytes, int)):
        raise InvalidKeyError(f"patterns must be str or bytes, not {type(pattern).__name__}")
    raw = _to_bytes(pattern)  # an int of at most 100 digits, as a key part
    if not raw:
        raise InvalidKeyError("patterns must not be empty")
    out: list[str] = []
    literal = bytearray()

    def flush() -> None:
        if literal:
            out.append(escape_part(bytes(literal), _NEVER_HASH))
            literal.clear()

    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b in b"*?":
            flush()
            out.append(chr(b))
            i += 1
        elif b == 0x5C:  # backslash: the next character is literal
            if i + 1 >= n:
                raise InvalidKeyError(f"pattern {pattern!r} ends with a lone backslash")
            literal.append(raw[i + 1])
            i += 2
        elif b == 0x5B:  # '[': a character class
            end = raw.find(b"]", i + 1)
            if end < 0:
                raise InvalidKeyError(f"pattern {pattern!r} has an unclosed '['")
            body = raw[i + 1 : end]
            negated = body[:1] == b"^"
            chars = body[1:] if negated else body
            if not chars or not all(_literal_safe(c) for c in chars):
                raise InvalidKeyError(
                    f"pattern {pattern!r}: a [...] class may only hold letters, digits and "
                    "_.-:/@=+,!| (optionally after a leading ^)"
                )
            flush()
            out.append("[" + body.decode("ascii") + "]")
            i = end + 1
        else:
            literal.append(b)
            i += 1
    flush()
    return "".join(out)


class PubSubCore:
    """Channel names, payloads and message decoding of ``kit.pubsub`` (no I/O)."""

    def __init__(self, kit: Any) -> None:
        self.keys = kit.keyspace
        self.stats = kit.stats
        self.settings = kit.settings
        self.base = f"{kit.keyspace.prefix}:pubsub:"
        self._base_b = self.base.encode()

    def channel(self, channel: object) -> str:
        """The Redis channel of ``channel``: ``<prefix>:pubsub:<escaped channel>``."""
        return str(self.keys.key("pubsub", channel))

    def pattern(self, pattern: object) -> str:
        """The Redis pattern of ``pattern``, confined to this prefix's channels."""
        return self.base + confine_pattern(pattern)

    def publish(self, channel: object, message: Any) -> Batch[int]:
        """PUBLISH (never re-sent: subscribers would get the message twice)."""
        name = self.channel(channel)
        payload = _encode(message, "message")
        return Batch.one(command("PUBLISH", name, payload, idempotent=False), self._published)

    def _published(self, reply: Any) -> int:
        self.stats.incr("pubsub_published")
        return int(reply)

    def user_channel(self, name: bytes) -> Channel:
        """Undo the prefix and the escaping of a channel name received through a pattern."""
        if not name.startswith(self._base_b):
            return name
        escaped = name[len(self._base_b) :]
        if b"~" in escaped:  # hashed: the original name cannot be recovered
            return escaped.decode("ascii", "replace")
        raw = _HEX.sub(lambda m: bytes((int(m.group(1), 16),)), escaped)
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return raw


class _SubState:
    """What one subscription knows, and how it reads redis-py's replies (shared by both shells)."""

    def __init__(self, core: PubSubCore) -> None:
        self.core = core
        self.channels: dict[bytes, Channel] = {}  # Redis channel -> the caller's name
        self.patterns: dict[bytes, Channel] = {}  # Redis pattern -> the caller's pattern
        self.awaiting: set[tuple[str, bytes]] = set()  # confirmations not yet received
        self.count: int | None = None  # subscriptions left, per the last (un)subscribe reply
        self.buffer: deque[Message] = deque()
        self.warned = False

    def names(
        self, channels: tuple[Any, ...], patterns: object
    ) -> tuple[dict[bytes, Channel], dict[bytes, Channel]]:
        """Validate and translate names; nothing is changed until every one is valid."""
        chans = {self.core.channel(c).encode(): c for c in channels}
        pats = {self.core.pattern(p).encode(): p for p in _iterable(patterns, "patterns")}
        return chans, pats

    def add(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        self.channels.update(chans)
        self.patterns.update(pats)
        self.awaiting.update(("subscribe", c) for c in chans)
        self.awaiting.update(("psubscribe", p) for p in pats)

    def remove(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        for c in chans:
            self.channels.pop(c, None)
            self.awaiting.discard(("subscribe", c))
        for p in pats:
            self.patterns.pop(p, None)
            self.awaiting.discard(("psubscribe", p))

    def handle(self, reply: dict[str, Any] | None) -> None:
        """Take one reply from redis-py's ``get_message``: buffer messages, note confirmations."""
        if not reply:
            return
        kind = reply.get("type")
        if kind in ("message", "pmessage"):
            self.buffer.append(self._message(reply))
        elif kind in ("subscribe", "psubscribe", "unsubscribe", "punsubscribe"):
            name = reply.get("channel")
            if isinstance(name, str):
                name = name.encode()
            if isinstance(name, bytes):
                self.awaiting.discard((str(kind), name))
            count = reply.get("data")
            if isinstance(count, int):
                self.count = count

    def _message(self, reply: dict[str, Any]) -> Message:
        name = reply.get("channel") or b""
        if isinstance(name, str):
            name = name.encode()
        payload = reply.get("data")
        if not isinstance(payload, bytes):
            payload = str(payload).encode()
        data, malformed = _decode(payload)
        if malformed:
            self.core.stats.incr("pubsub_malformed")
            if not self.warned:
                self.warned = True
                log.warning(
                    "redkit: a message on %r is not JSON; delivered with malformed=True and "
                    "the raw bytes as data",
                    name[:200],
                )
        pattern: Channel | None = None
        if reply.get("type") == "pmessage":
            raw_pattern = reply.get("pattern") or b""
            if isinstance(raw_pattern, str):
                raw_pattern = raw_pattern.encode()
            pattern = self.patterns.get(raw_pattern, raw_pattern)
            channel = self.core.user_channel(name)
        else:
            channel = self.channels[name] if name in self.channels else self.core.user_channel(name)
        self.core.stats.incr("pubsub_received")
        return Message(channel, data, pattern, payload, malformed)


def _subscription_names(
    core: PubSubCore, channels: tuple[Any, ...], patterns: object
) -> tuple[dict[bytes, Channel], dict[bytes, Channel]]:
    state = _SubState(core)
    chans, pats = state.names(channels, patterns)
    if not chans and not pats:
        raise ValueError("subscribe to at least one channel or pattern")
    return chans, pats
