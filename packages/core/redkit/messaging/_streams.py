"""``kit.stream(name)``: streams with consumer groups (the core and its sync and async shells)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _durations as durations
from .._checks import entry_id as check_entry_id
from .._checks import int64, shown
from .._durations import NOT_GIVEN, Duration, to_ms
from .._executor import AsyncExecutor, SyncExecutor
from .._ops import Batch, Flow, Script, command, script
from ..errors import ResponseError
from ._common import _decode, _encode

ADD = Script.load("stream_add")
GROUP = Script.load("stream_group")
CLAIM = Script.load("stream_claim")

FIELD = b"json"
"""The one stream field holding a message, as JSON."""

_ID = re.compile(r"[0-9]+-[0-9]+\Z")
_START = re.compile(r"(\$|0|[0-9]+(-[0-9]+)?)\Z")


def _positive_int(name: str, value: object) -> int:
    return int64(name, value, 1)  # Redis counts in signed 64 bits


def _name(value: object, what: str) -> str | bytes:
    """A consumer group or consumer name: a non-empty str (valid UTF-8 text) or bytes (not a
    key: not escaped)."""
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"the {what} name must be str or bytes, not {type(value).__name__}")
    if not value:
        raise ValueError(f"the {what} name must not be empty")
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(
                f"the {what} name must be valid text (it holds a lone surrogate)"
            ) from None
    return value


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One stream entry read through a consumer group.

    ``id`` is the entry id (``"1700000000000-0"``), to pass to ``ack``. ``data`` is the mapping
    given to ``add``. ``deliveries`` counts how often the group handed this entry out (1 on a
    first read; more after ``claim_stale``). An entry added by another program without redkit's
    ``json`` field, or with a value that is not JSON, has ``malformed`` set and ``data`` holding
    its raw fields (``dict[bytes, bytes]``).
    """

    id: str
    data: Any
    deliveries: int = 1
    fields: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    malformed: bool = False


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """What a consumer group has read but not acknowledged: ``count`` entries, from ``first_id``
    to ``last_id``, per consumer in ``consumers`` (name to count)."""

    count: int
    first_id: str | None
    last_id: str | None
    consumers: dict[str, int]


def _block_slice(socket_timeout: float) -> float:
    """Longest ``BLOCK`` of one call: safely below ``socket_timeout`` (Redis may answer a
    timed-out BLOCK up to a tick of its event loop late, 100 ms by default), so that a long wait
    is several calls instead of a read timeout."""
    return socket_timeout - 0.5 if socket_timeout >= 1.5 else socket_timeout / 3


def _entry_id(value: object) -> str:
    if isinstance(value, StreamMessage):
        return value.id
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(
            f"ids must be stream entry ids (like '1700000000000-0'), got {shown(value)}"
        )
    return check_entry_id("ids", value)  # each part within 64 bits


def _pairs(fields: Any) -> dict[bytes, bytes]:
    if isinstance(fields, dict):
        return {_as_bytes(k): _as_bytes(v) for k, v in fields.items()}
    if isinstance(fields, (list, tuple)):
        it = iter(fields)
        return {_as_bytes(k): _as_bytes(v) for k, v in zip(it, it)}
    return {}


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _is_missing_group(exc: ResponseError) -> bool:
    """NOGROUP: no such stream or group; UNBLOCKED: the stream was deleted during a BLOCK; the
    last one is how the embedded ``memory://`` server says there is no such stream."""
    text = str(exc)
    return any(s in text for s in ("NOGROUP", "UNBLOCKED", "requires the key to exist"))


def _timeout(timeout: Duration | None, block: Any) -> Duration | None:
    """``read``'s wait from ``timeout``, or from its deprecated name ``block`` (where None meant
    "do not wait" and ``math.inf`` "for ever")."""
    if block is NOT_GIVEN:
        return timeout
    old = durations.renamed("Stream.read()", "timeout", timeout, "block", block, default=0.0)
    return 0.0 if old is None else None if old == math.inf else old


class StreamCore:
    """Keys, payloads, batches and flows of ``kit.stream(name)`` (no I/O)."""

    def __init__(self, kit: Any, name: object) -> None:
        self.key = kit.keyspace.tagged("stream", name)
        self.name = name
        self.stats = kit.stats
        settings = kit.settings
        self.maxlen = settings.stream_maxlen
        self.ttl = settings.stream_ttl
        self.slice = _block_slice(settings.socket_timeout)

    # -- parsing --------------------------------------------------------------------------------
    def message(self, entry_id: Any, fields: Any, deliveries: int) -> StreamMessage:
        raw = _pairs(fields)
        ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        payload = raw.get(FIELD)
        if payload is not None:
            data, malformed = _decode(payload)
            if not malformed:
                return StreamMessage(ident, data, deliveries, raw, False)
        self.stats.incr("stream_malformed")
        return StreamMessage(ident, raw, deliveries, raw, True)

    def parse_read(self, reply: Any) -> list[StreamMessage]:
        """XREADGROUP's reply, as redis-py parses it, into messages."""
        if not reply:
            return []
        streams = list(reply.items()) if isinstance(reply, dict) else reply
        out = []
        for _, entries in streams:
            for entry_id, fields in entries or ():
                if fields is not None:  # None: deleted while pending (only for ids, not '>')
                    out.append(self.message(entry_id, fields, 1))
        return out

    def parse_claim(self, reply: list[Any]) -> tuple[str, list[StreamMessage]]:
        cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        out = [
            self.message(reply[i], reply[i + 1], int(reply[i + 2]))
            for i in range(1, len(reply) - 2, 3)
        ]
        return cursor, out

    # -- operations -----------------------------------------------------------------------------
    def add(self, message: Any, maxlen: int | None, ttl: Duration | None) -> Batch[str]:
        """XADD with approximate trimming and a refreshed lifetime, as one script (never re-sent:
        that could add the message twice)."""
        if not isinstance(message, Mapping):
            raise TypeError(f"a stream message must be a mapping, not {type(message).__name__}")
        limit = self.maxlen if maxlen is None else _positive_int("maxlen", maxlen)
        seconds = self.ttl if ttl is None else durations.seconds("ttl", ttl)
        payload = _encode(dict(message), "message")
        ms = to_ms(seconds)
        call = script(ADD, [self.key], [limit, ms, FIELD, payload], idempotent=False)
        return Batch.one(call, lambda reply: reply.decode() if isinstance(reply, bytes) else reply)

    def create_group(self, group: object, start: str) -> Batch[bool]:
        """The group-creation script (harmless to send twice)."""
        g = _name(group, "group")
        if not isinstance(start, str) or not _START.match(start):
            raise ValueError(f"start must be '0', '$' or an entry id, got {shown(start)}")
        check_entry_id("start", start, special=("$",))  # each part within 64 bits
        ms = to_ms(self.ttl)
        return Batch.one(script(GROUP, [self.key], [g, start, ms]), lambda r: int(r) == 1)

    def read(
        self, group: object, consumer: object, count: int, timeout: Duration | None
    ) -> Flow[list[StreamMessage]]:
        """XREADGROUP ``>`` in slices of at most :func:`_block_slice` until a message arrives or
        ``timeout`` passed (None: until a message arrives); a missing group (or stream) is
        created from the start."""
        g = _name(group, "group")
        c = _name(consumer, "consumer")
        n = _positive_int("count", count)
        wait = durations.optional_seconds("timeout", timeout, zero=True)
        deadline = math.inf if wait is None else time.monotonic() + wait
        recreated = False
        while True:
            left = deadline - time.monotonic()
            args: list[Any] = ["XREADGROUP", "GROUP", g, c, "COUNT", n]
            if left > 0:
                args += ["BLOCK", to_ms(min(left, self.slice))]
            args += ["STREAMS", self.key, ">"]
            try:
                # never re-sent: entries handed out by a call whose reply was lost stay pending
                # for this consumer and are recovered by claim_stale()
                reply = yield Batch.one(command(*args, idempotent=False))
            except ResponseError as exc:
                if recreated or not _is_missing_group(exc):
                    raise
                recreated = True
                yield self.create_group(g, "0")
                continue
            messages = self.parse_read(reply)
            if messages or time.monotonic() >= deadline:
                if messages:
                    self.stats.incr("stream_read", len(messages))
                return messages

    def ack(self, group: object, ids: tuple[Any, ...]) -> Flow[int]:
        """XACK, nothing sent when there is nothing to acknowledge (arguments checked at once)."""
        g = _name(group, "group")
        idents = [_entry_id(i) for i in ids]
        return self._ack(g, idents)

    def _ack(self, group: str | bytes, idents: list[str]) -> Flow[int]:
        if not idents:
            return 0
        acked: int = yield Batch.one(command("XACK", self.key, group, *idents), int)
        return acked

    def claim_stale(
        self, group: object, consumer: object, min_idle: Duration, count: int
    ) -> Flow[list[StreamMessage]]:
        """XAUTOCLAIM (with delivery counts) from the start of the pending list until ``count``
        messages are claimed or the whole list was scanned."""
        g = _name(group, "group")
        c = _name(consumer, "consumer")
        idle_ms = to_ms(durations.seconds("min_idle", min_idle, zero=True))
        n = _positive_int("count", count)
        cursor = "0-0"
        out: list[StreamMessage] = []
        while len(out) < n:
            # never re-sent: after a lost reply the entries wait for the next claim_stale
            call = script(
                CLAIM, [self.key], [g, c, idle_ms, cursor, n - len(out)], idempotent=False
            )
            try:
                reply = yield Batch.one(call)
            except ResponseError as exc:
                if _is_missing_group(exc):
                    return out  # no group: nothing is pending
                raise
            cursor, claimed = self.parse_claim(reply)
            out.extend(claimed)
            if cursor == "0-0":
                break
        if out:
            self.stats.incr("stream_claimed", len(out))
        return out

    def pending(self, group: object) -> Flow[PendingSummary]:
        g = _name(group, "group")
        try:
            reply = yield Batch.one(command("XPENDING", self.key, g))
        except ResponseError as exc:
            if _is_missing_group(exc):
                return PendingSummary(0, None, None, {})
            raise
        if isinstance(reply, dict):
            consumers = {
                str(_text(c["name"])): int(c["pending"]) for c in reply.get("consumers") or ()
            }
            return PendingSummary(
                int(reply["pending"]), _text(reply.get("min")), _text(reply.get("max")), consumers
            )
        count, first, last, per = reply
        return PendingSummary(
            int(count), _text(first), _text(last), {str(_text(k)): int(v) for k, v in per or ()}
        )

    def length(self) -> Batch[int]:
        return Batch.one(command("XLEN", self.key), int)

    def trim(self, maxlen: int, approximate: bool) -> Batch[int]:
        limit = _positive_int("maxlen", maxlen)
        how = ("~",) if approximate else ()
        return Batch.one(command("XTRIM", self.key, "MAXLEN", *how, limit), int)

    def delete(self) -> Batch[bool]:
        return Batch.one(command("UNLINK", self.key), lambda r: int(r) > 0)


class _StreamBase:
    """What both shells hold: the core and the executor, and the stream's name and key."""

    def __init__(self, kit: Any, name: object) -> None:
        self._core = StreamCore(kit, name)
        self._x = kit._executor

    @property
    def name(self) -> object:
        """The stream's name, as given."""
        return self._core.name

    @property
    def key(self) -> str:
        """The Redis key: ``<prefix>:stream:{<escaped name>}``."""
        return str(self._core.key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r}>"


class Stream(_StreamBase):
    """A Redis stream with consumer groups (``kit.stream(name)``): at-least-once delivery.

    Messages are mappings stored as JSON in one field. The stream is bounded (``maxlen``,
    approximate) and its key expires ``ttl`` after the last ``add``. A group hands each message to
    one consumer; a message stays pending until acknowledged, and a consumer that died with
    messages pending loses them to :meth:`claim_stale` of another.
    """

    _x: SyncExecutor

    def add(
        self, message: Mapping[str, Any], maxlen: int | None = None, ttl: Duration | None = None
    ) -> str:
        """Append ``message`` (a mapping of JSON values); returns its entry id. The stream is
        trimmed to about ``maxlen`` entries (default 10,000) and expires ``ttl`` seconds
        (default 7 days) after the last ``add``."""
        return self._x.run(self._core.add(message, maxlen, ttl))

    def create_group(self, group: str | bytes, start: str = "0") -> bool:
        """Create consumer group ``group`` (and the stream) unless it exists; True when created.
        ``start="0"``: the group sees every message still in the stream; ``"$"``: only those
        added from now on. :meth:`read` creates missing groups with ``"0"`` by itself."""
        return self._x.run(self._core.create_group(group, start))

    def read(
        self,
        group: str | bytes,
        consumer: str | bytes,
        count: int = 10,
        *,
        timeout: Duration | None = 0.0,
        block: Any = NOT_GIVEN,
    ) -> list[StreamMessage]:
        """Up to ``count`` messages no consumer of ``group`` has received yet, now handed to
        ``consumer``. With ``timeout`` (seconds or a timedelta; None: for ever) waits until at
        least one arrives; returns ``[]`` when none did. Acknowledge each with :meth:`ack`.
        ``block=`` is the deprecated name of ``timeout`` (there None meant "do not wait"); both are
        keyword-only, so a call that passed ``block`` fourth fails loudly instead of waiting."""
        return self._x.drive(self._core.read(group, consumer, count, _timeout(timeout, block)))

    def ack(self, group: str | bytes, *ids: str | StreamMessage) -> int:
        """Acknowledge messages (ids or the messages themselves); returns how many were pending."""
        return self._x.drive(self._core.ack(group, ids))

    def claim_stale(
        self, group: str | bytes, consumer: str | bytes, min_idle: Duration, count: int = 10
    ) -> list[StreamMessage]:
        """Take over up to ``count`` messages of ``group`` delivered more than ``min_idle``
        seconds ago and still not acknowledged (their consumer probably died); they now belong
        to ``consumer`` and their ``deliveries`` went up by one."""
        return self._x.drive(self._core.claim_stale(group, consumer, min_idle, count))

    def pending(self, group: str | bytes) -> PendingSummary:
        """How many messages ``group`` handed out and were not acknowledged, per consumer."""
        return self._x.drive(self._core.pending(group))

    def length(self) -> int:
        """The number of entries in the stream (0 when it does not exist)."""
        return self._x.run(self._core.length())

    def trim(self, maxlen: int, approximate: bool = True) -> int:
        """Drop the oldest entries beyond ``maxlen`` (about ``maxlen`` when ``approximate``,
        which is cheaper); returns how many were removed. Dropped entries are gone even if
        pending."""
        return self._x.run(self._core.trim(maxlen, approximate))

    def delete(self) -> bool:
        """Delete the stream with its groups and pending lists; True if it existed."""
        return self._x.run(self._core.delete())


class AsyncStream(_StreamBase):
    """A Redis stream with consumer groups (``kit.stream(name)``, asyncio): at-least-once
    delivery. Same behaviour as :class:`Stream`, awaited."""

    _x: AsyncExecutor

    async def add(
        self, message: Mapping[str, Any], maxlen: int | None = None, ttl: Duration | None = None
    ) -> str:
        """Append ``message`` (a mapping of JSON values); returns its entry id. The stream is
        trimmed to about ``maxlen`` entries (default 10,000) and expires ``ttl`` seconds
        (default 7 days) after the last ``add``."""
        return await self._x.run(self._core.add(message, maxlen, ttl))

    async def create_group(self, group: str | bytes, start: str = "0") -> bool:
        """Create consumer group ``group`` (and the stream) unless it exists; True when created.
        ``start="0"``: the group sees every message still in the stream; ``"$"``: only those
        added from now on. :meth:`read` creates missing groups with ``"0"`` by itself."""
        return await self._x.run(self._core.create_group(group, start))

    async def read(
        self,
        group: str | bytes,
        consumer: str | bytes,
        count: int = 10,
        *,
        timeout: Duration | None = 0.0,
        block: Any = NOT_GIVEN,
    ) -> list[StreamMessage]:
        """Up to ``count`` messages no consumer of ``group`` has received yet, now handed to
        ``consumer``. With ``timeout`` (seconds or a timedelta; None: for ever) waits until at
        least one arrives; returns ``[]`` when none did. Acknowledge each with :meth:`ack`.
        ``block=`` is the deprecated name of ``timeout`` (there None meant "do not wait"); both are
        keyword-only, so a call that passed ``block`` fourth fails loudly instead of waiting."""
        return await self._x.drive(
            self._core.read(group, consumer, count, _timeout(timeout, block))
        )

    async def ack(self, group: str | bytes, *ids: str | StreamMessage) -> int:
        """Acknowledge messages (ids or the messages themselves); returns how many were pending."""
        return await self._x.drive(self._core.ack(group, ids))

    async def claim_stale(
        self, group: str | bytes, consumer: str | bytes, min_idle: Duration, count: int = 10
    ) -> list[StreamMessage]:
        """Take over up to ``count`` messages of ``group`` delivered more than ``min_idle``
        seconds ago and still not acknowledged (their consumer probably died); they now belong
        to ``consumer`` and their ``deliveries`` went up by one."""
        return await self._x.drive(self._core.claim_stale(group, consumer, min_idle, count))

    async def pending(self, group: str | bytes) -> PendingSummary:
        """How many messages ``group`` handed out and were not acknowledged, per consumer."""
        return await self._x.drive(self._core.pending(group))

    async def length(self) -> int:
        """The number of entries in the stream (0 when it does not exist)."""
        return await self._x.run(self._core.length())

    async def trim(self, maxlen: int, approximate: bool = True) -> int:
        """Drop the oldest entries beyond ``maxlen`` (about ``maxlen`` when ``approximate``,
        which is cheaper); returns how many were removed. Dropped entries are gone even if
        pending."""
        return await self._x.run(self._core.trim(maxlen, approximate))

    async def delete(self) -> bool:
        """Delete the stream with its groups and pending lists; True if it existed."""
        return await self._x.run(self._core.delete())
