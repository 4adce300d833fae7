"""Messaging: pub/sub (``kit.pubsub``) and streams with consumer groups (``kit.stream(name)``).

Pub/sub is fire-and-forget: a message reaches the subscribers connected at that moment, and nobody
else. Streams keep messages (up to a bounded length) until each consumer group has read and
acknowledged them, and let a live consumer take over the messages of a dead one.

Everything lives under the prefix: channel ``<prefix>:pubsub:<escaped channel>`` and stream key
``<prefix>:stream:{<escaped name>}``. Payloads are strict JSON. The logic (names, encoding,
parsing, the read and claim loops) is written once in :class:`PubSubCore`, :class:`_SubState` and
:class:`StreamCore`; the sync and async classes are thin shells over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis.exceptions as rex

from ._connection import make_client
from ._executor import AsyncExecutor, SyncExecutor, wrap_error
from ._keys import escape_part
from ._ops import Batch, Flow, Script, command, script
from .errors import InvalidKeyError, RedkitTimeoutError, ResponseError, SerializationError
from .serializers import JsonSerializer, find_unserializable

__all__ = [
    "AsyncPubSub",
    "AsyncStream",
    "AsyncSubscription",
    "Message",
    "PendingSummary",
    "PubSub",
    "Stream",
    "StreamMessage",
    "Subscription",
]

log = logging.getLogger("redkit.messaging")

Channel = str | bytes | int
"""A channel name or pattern as given by the caller."""

ADD = Script.load("stream_add")
GROUP = Script.load("stream_group")
CLAIM = Script.load("stream_claim")

FIELD = b"json"
"""The one stream field holding a message, as JSON."""

_JSON = JsonSerializer()
_POLL = 0.25  # longest single wait of a subscription read: how soon close() gets its turn
_NEVER_HASH = 1 << 30  # escape_part() length limit that never hashes (pattern pieces)
_ID = re.compile(r"[0-9]+-[0-9]+\Z")
_START = re.compile(r"(\$|0|[0-9]+(-[0-9]+)?)\Z")
_HEX = re.compile(rb"%([0-9A-F]{2})")
_IO_ERRORS = (rex.RedisError, OSError)


# -- values ---------------------------------------------------------------------------------------
def _encode(value: Any, what: str) -> bytes:
    """Strict JSON, with an error naming the offending part (``message['at'] is a datetime``)."""
    try:
        return _JSON.dumps(value)
    except SerializationError:
        where = find_unserializable(value, what) or f"{what} could not be encoded as JSON"
        raise SerializationError(
            f"cannot send the {what}: {where}. Messages are JSON: dicts with str keys, lists, "
            "str, int, float, bool and None"
        ) from None


def _decode(payload: bytes) -> tuple[Any, bool]:
    """``(value, False)``, or ``(payload, True)`` when the payload is not JSON."""
    try:
        return _JSON.loads(payload), False
    except SerializationError:
        return payload, True


def _seconds(name: str, value: object, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value < 0 or (value == math.inf and not allow_inf):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _name(value: object, what: str) -> str | bytes:
    """A consumer group or consumer name: a non-empty str or bytes (not a key: not escaped)."""
    if not isinstance(value, (str, bytes)):
        raise TypeError(f"the {what} name must be str or bytes, not {type(value).__name__}")
    if not value:
        raise ValueError(f"the {what} name must not be empty")
    return value


def _iterable(value: object, what: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a list of names, not a single {type(value).__name__}")
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of names, not {type(value).__name__}")
    return tuple(value)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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
    if isinstance(pattern, int):
        pattern = str(pattern)
    raw = pattern.encode("utf-8", "surrogatepass") if isinstance(pattern, str) else pattern
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
        return Batch.one(command("PUBLISH", name, payload, idempotent=False), int)

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


def _subscriber_client(kit: Any, asyncio_client: bool) -> Any:
    """The client whose pool subscriptions draw their connections from.

    A separate client (same settings, its own pool of ``max_connections``), so that long-lived
    subscriptions never take connections from the pool that commands use. On a cluster the
    main client's per-node pools are used.
    """
    if kit.settings.is_cluster:
        return kit.client
    return make_client(kit.settings, asyncio=asyncio_client)


class _Turn:
    """A lock that a thread releasing and re-taking it in a loop cannot keep from the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.waiting = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._count:
            self.waiting += 1
        self._lock.acquire()
        with self._count:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def let_others_in(self) -> None:
        while self.waiting:
            time.sleep(0.001)


def _wait_seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else _seconds("timeout", timeout)


class Subscription:
    """A live subscription on its own connection (``kit.pubsub.subscribe(...)``).

    Iterate over it (``for msg in sub``) to receive :class:`Message` objects until it is closed,
    or call :meth:`get`. Use it as a context manager, or call :meth:`close`, to unsubscribe and
    give the connection back. Safe to close from another thread than the one iterating.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        self._state = _SubState(core)
        self._client = client
        self._ps: Any = None
        self._turn = _Turn()
        self._closing = False
        self._closed = False
        self._confirm_within = max(1.0, core.settings.socket_timeout)

    # -- the caller's view --------------------------------------------------------------------
    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels subscribed to, as given."""
        return tuple(self._state.channels.values())

    @property
    def patterns(self) -> tuple[Channel, ...]:
        """The patterns subscribed to, as given."""
        return tuple(self._state.patterns.values())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``)."""
        deadline = time.monotonic() + _wait_seconds(timeout)
        while True:
            if self._closing:
                return None
            with self._turn.hold():
                buffer = self._state.buffer
                if buffer:
                    return buffer.popleft()
                if self._stopping():
                    return None
                left = max(0.0, min(deadline - time.monotonic(), _POLL))
                self._read(left)
                if buffer:
                    return buffer.popleft()
            if time.monotonic() >= deadline:
                return None
            self._turn.let_others_in()

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        chans, pats = self._state.names(channels, patterns)
        with self._turn.hold():
            self._check_open()
            self._subscribe(chans, pats)

    def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        chans, pats = self._state.names(channels, patterns)
        with self._turn.hold():
            self._check_open()
            self._state.remove(chans, pats)
            if chans:
                self._call(self._ps.unsubscribe, *[c.decode() for c in chans])
            if pats:
                self._call(self._ps.punsubscribe, *[p.decode() for p in pats])

    def close(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        self._closing = True
        with self._turn.hold():
            if self._closed:
                return
            self._closed = True
            ps, self._ps = self._ps, None
            state = self._state
            try:
                if ps is not None and ps.connection is not None and ps.subscribed:
                    state.count = None
                    if state.channels:
                        ps.unsubscribe()
                    if state.patterns:
                        ps.punsubscribe()
                    deadline = time.monotonic() + self._confirm_within
                    while state.count != 0 and time.monotonic() < deadline:
                        state.handle(ps.get_message(timeout=_POLL))
            except _IO_ERRORS:
                pass  # the connection is gone, and with it its subscriptions
            finally:
                state.buffer.clear()
                if ps is not None:
                    with contextlib.suppress(*_IO_ERRORS):
                        ps.close()

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Message:
        message = self.get()
        if message is None:
            raise StopIteration
        return message

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<Subscription {state} channels={self.channels!r} patterns={self.patterns!r}>"

    # -- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this subscription is closed")

    def _stopping(self) -> bool:
        return self._closing  # re-read after waiting for the lock

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _IO_ERRORS as exc:
            raise wrap_error(exc) from exc

    def _read(self, timeout: float) -> None:
        self._state.handle(self._call(self._ps.get_message, timeout=timeout))

    def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        with self._turn.hold():
            self._ps = self._client.pubsub()
            self._subscribe(chans, pats)

    def _subscribe(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        state = self._state
        state.add(chans, pats)
        if chans:
            self._call(self._ps.subscribe, *[c.decode() for c in chans])
        if pats:
            self._call(self._ps.psubscribe, *[p.decode() for p in pats])
        deadline = time.monotonic() + self._confirm_within
        while state.awaiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedkitTimeoutError(
                    f"Redis did not confirm the subscription within {self._confirm_within}s"
                )
            self._read(min(left, _POLL))


class AsyncSubscription:
    """A subscription on its own connection (``async with kit.pubsub.subscribe(...) as sub``).

    Iterate over it (``async for msg in sub``) to receive :class:`Message` objects until it is
    closed, or await :meth:`get`. Use it as an async context manager, or await :meth:`aclose`,
    to unsubscribe and give the connection back. Another task may close it while one iterates.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        self._state = _SubState(core)
        self._client = client
        self._starter: Callable[[], Awaitable[None]] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._ps: Any = None
        self._lock = asyncio.Lock()
        self._closing = False
        self._closed = False
        self._confirm_within = max(1.0, core.settings.socket_timeout)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels subscribed to, as given."""
        return tuple(self._state.channels.values())

    @property
    def patterns(self) -> tuple[Channel, ...]:
        """The patterns subscribed to, as given."""
        return tuple(self._state.patterns.values())

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closing

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``)."""
        await self._started()
        deadline = time.monotonic() + _wait_seconds(timeout)
        while True:
            if self._closing:
                return None
            async with self._lock:
                buffer = self._state.buffer
                if buffer:
                    return buffer.popleft()
                if self._stopping():
                    return None
                left = max(0.0, min(deadline - time.monotonic(), _POLL))
                await self._read(left)
                if buffer:
                    return buffer.popleft()
            if time.monotonic() >= deadline:
                return None

    async def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        chans, pats = self._state.names(channels, patterns)
        await self._started()
        async with self._lock:
            self._check_open()
            await self._subscribe(chans, pats)

    async def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        chans, pats = self._state.names(channels, patterns)
        await self._started()
        async with self._lock:
            self._check_open()
            self._state.remove(chans, pats)
            if chans:
                await self._call(self._ps.unsubscribe(*[c.decode() for c in chans]))
            if pats:
                await self._call(self._ps.punsubscribe(*[p.decode() for p in pats]))

    async def aclose(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        self._closing = True
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            ps, self._ps = self._ps, None
            state = self._state
            try:
                if ps is not None and ps.connection is not None and ps.subscribed:
                    state.count = None
                    if state.channels:
                        await ps.unsubscribe()
                    if state.patterns:
                        await ps.punsubscribe()
                    deadline = time.monotonic() + self._confirm_within
                    while state.count != 0 and time.monotonic() < deadline:
                        state.handle(await ps.get_message(timeout=_POLL))
            except _IO_ERRORS:
                pass  # the connection is gone, and with it its subscriptions
            finally:
                state.buffer.clear()
                if ps is not None:
                    with contextlib.suppress(*_IO_ERRORS):
                        await ps.aclose()

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Message:
        message = await self.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def _started(self) -> None:
        if self._starter is None and self._start_lock is None:
            return  # started (or never lazy)
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:  # concurrent first readers wait for the one start
            starter, self._starter = self._starter, None
            if starter is not None and not self._closing:
                try:
                    await starter()
                except BaseException:
                    await self.aclose()
                    raise
            self._start_lock = None  # started: later calls skip the lock

    async def _await(self) -> AsyncSubscription:
        await self._started()
        return self

    def __await__(self) -> Generator[Any, None, AsyncSubscription]:
        return self._await().__await__()

    async def __aenter__(self) -> AsyncSubscription:
        await self._started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<AsyncSubscription {state} channels={self.channels!r} patterns={self.patterns!r}>"

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this subscription is closed")

    def _stopping(self) -> bool:
        return self._closing  # re-read after waiting for the lock

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except _IO_ERRORS as exc:
            raise wrap_error(exc) from exc

    async def _read(self, timeout: float) -> None:
        self._state.handle(await self._call(self._ps.get_message(timeout=timeout)))

    async def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        async with self._lock:
            self._ps = self._client.pubsub()
            await self._subscribe(chans, pats)

    async def _subscribe(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        state = self._state
        state.add(chans, pats)
        if chans:
            await self._call(self._ps.subscribe(*[c.decode() for c in chans]))
        if pats:
            await self._call(self._ps.psubscribe(*[p.decode() for p in pats]))
        deadline = time.monotonic() + self._confirm_within
        while state.awaiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedkitTimeoutError(
                    f"Redis did not confirm the subscription within {self._confirm_within}s"
                )
            await self._read(min(left, _POLL))


def _subscription_names(
    core: PubSubCore, channels: tuple[Any, ...], patterns: object
) -> tuple[dict[bytes, Channel], dict[bytes, Channel]]:
    state = _SubState(core)
    chans, pats = state.names(channels, patterns)
    if not chans and not pats:
        raise ValueError("subscribe to at least one channel or pattern")
    return chans, pats


class PubSub:
    """Publish/subscribe under the prefix, with JSON messages (``kit.pubsub``).

    Delivery is at most once: a message reaches the subscribers connected when it is published.
    For messages that must not be lost, use :class:`Stream`.
    """

    def __init__(self, kit: Any) -> None:
        self._kit = kit
        self._core = PubSubCore(kit)
        self._x: SyncExecutor = kit._executor
        self._client: Any = None
        self._client_lock = threading.Lock()

    def publish(self, channel: Channel, message: Any) -> int:
        """Send ``message`` (any JSON value) to ``channel``; returns how many subscribers
        received it (on a cluster: those connected to the node that owns the channel's slot).
        Raises ``SerializationError`` before sending anything when it is not JSON."""
        received = self._x.run(self._core.publish(channel, message))
        self._core.stats.incr("pubsub_published")
        return received

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> Subscription:
        """Subscribe to ``channels`` and ``patterns`` on a new connection; returns once Redis
        confirmed, so every message published afterwards is received. Close the result (or use
        it as a context manager) to release the connection."""
        chans, pats = _subscription_names(self._core, channels, patterns)
        with self._client_lock:
            if self._client is None:
                self._client = _subscriber_client(self._kit, asyncio_client=False)
        sub = Subscription(self._core, self._client)
        try:
            sub._start(chans, pats)
        except BaseException:
            sub.close()
            raise
        return sub


class AsyncPubSub:
    """Publish/subscribe under the prefix, with JSON messages (``kit.pubsub``, asyncio).

    Delivery is at most once: a message reaches the subscribers connected when it is published.
    For messages that must not be lost, use :class:`AsyncStream`.
    """

    def __init__(self, kit: Any) -> None:
        self._kit = kit
        self._core = PubSubCore(kit)
        self._x: AsyncExecutor = kit._executor
        self._client: Any = None

    async def publish(self, channel: Channel, message: Any) -> int:
        """Send ``message`` (any JSON value) to ``channel``; returns how many subscribers
        received it (on a cluster: those connected to the node that owns the channel's slot).
        Raises ``SerializationError`` before sending anything when it is not JSON."""
        received = await self._x.run(self._core.publish(channel, message))
        self._core.stats.incr("pubsub_published")
        return received

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> AsyncSubscription:
        """A subscription to ``channels`` and ``patterns`` on a new connection. It subscribes
        when entered (``async with kit.pubsub.subscribe(...) as sub``), awaited (``sub = await
        kit.pubsub.subscribe(...)``) or first read, and then only returns once Redis confirmed,
        so every message published afterwards is received. Close it (or leave the ``async
        with`` block) to release the connection. Names are checked at once."""
        chans, pats = _subscription_names(self._core, channels, patterns)
        sub = AsyncSubscription(self._core, None)

        async def start() -> None:
            if self._client is None:
                self._client = _subscriber_client(self._kit, asyncio_client=True)
            if self._kit.settings.is_cluster and not getattr(self._x, "_ready", True):
                try:
                    await self._x._initialize()  # the cluster client must know its nodes first
                except _IO_ERRORS as exc:
                    raise wrap_error(exc) from exc
            sub._client = self._client
            await sub._start(chans, pats)

        sub._starter = start
        return sub


# -- streams --------------------------------------------------------------------------------------
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
        raise ValueError(f"not a stream entry id (like '1700000000000-0'): {value!r}")
    return value


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
    def add(self, message: Any, maxlen: int | None, ttl: float | None) -> Batch[str]:
        """XADD with approximate trimming and a refreshed lifetime, as one script (never re-sent:
        that could add the message twice)."""
        if not isinstance(message, Mapping):
            raise TypeError(f"a stream message must be a mapping, not {type(message).__name__}")
        limit = self.maxlen if maxlen is None else _positive_int("maxlen", maxlen)
        seconds = self.ttl if ttl is None else _seconds("ttl", ttl)
        if seconds <= 0:
            raise ValueError("ttl must be a finite number of seconds > 0")
        payload = _encode(dict(message), "message")
        ms = max(1, int(seconds * 1000))
        call = script(ADD, [self.key], [limit, ms, FIELD, payload], idempotent=False)
        return Batch.one(call, lambda reply: reply.decode() if isinstance(reply, bytes) else reply)

    def create_group(self, group: object, start: str) -> Batch[bool]:
        """The group-creation script (harmless to send twice)."""
        g = _name(group, "group")
        if not isinstance(start, str) or not _START.match(start):
            raise ValueError(f"start must be '0', '$' or an entry id, got {start!r}")
        ms = max(1, int(self.ttl * 1000))
        return Batch.one(script(GROUP, [self.key], [g, start, ms]), lambda r: int(r) == 1)

    def read(
        self, group: object, consumer: object, count: int, block: float | None
    ) -> Flow[list[StreamMessage]]:
        """XREADGROUP ``>`` in slices of at most :func:`_block_slice` until a message arrives or
        ``block`` seconds passed; a missing group (or stream) is created from the start."""
        g = _name(group, "group")
        c = _name(consumer, "consumer")
        n = _positive_int("count", count)
        wait = 0.0 if block is None else _seconds("block", block, allow_inf=True)
        deadline = time.monotonic() + wait
        recreated = False
        while True:
            left = deadline - time.monotonic()
            args: list[Any] = ["XREADGROUP", "GROUP", g, c, "COUNT", n]
            if left > 0:
                args += ["BLOCK", max(1, int(min(left, self.slice) * 1000))]
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

    def ack(self, group: object, ids: tuple[Any, ...]) -> Batch[int] | None:
        g = _name(group, "group")
        idents = [_entry_id(i) for i in ids]
        if not idents:
            return None
        return Batch.one(command("XACK", self.key, g, *idents), int)

    def claim_stale(
        self, group: object, consumer: object, min_idle: float, count: int
    ) -> Flow[list[StreamMessage]]:
        """XAUTOCLAIM (with delivery counts) from the start of the pending list until ``count``
        messages are claimed or the whole list was scanned."""
        g = _name(group, "group")
        c = _name(consumer, "consumer")
        idle_ms = int(_seconds("min_idle", min_idle) * 1000)
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


class Stream:
    """A Redis stream with consumer groups (``kit.stream(name)``): at-least-once delivery.

    Messages are mappings stored as JSON in one field. The stream is bounded (``maxlen``,
    approximate) and its key expires ``ttl`` after the last ``add``. A group hands each message to
    one consumer; a message stays pending until acknowledged, and a consumer that died with
    messages pending loses them to :meth:`claim_stale` of another.
    """

    def __init__(self, kit: Any, name: object) -> None:
        self._core = StreamCore(kit, name)
        self._x: SyncExecutor = kit._executor

    @property
    def name(self) -> object:
        """The stream's name, as given."""
        return self._core.name

    @property
    def key(self) -> str:
        """The Redis key: ``<prefix>:stream:{<escaped name>}``."""
        return str(self._core.key)

    def add(
        self, message: Mapping[str, Any], maxlen: int | None = None, ttl: float | None = None
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
        block: float | None = None,
    ) -> list[StreamMessage]:
        """Up to ``count`` messages no consumer of ``group`` has received yet, now handed to
        ``consumer``. With ``block`` (seconds, ``math.inf`` for ever) waits until at least one
        arrives; returns ``[]`` when none did. Acknowledge each with :meth:`ack`."""
        return self._x.drive(self._core.read(group, consumer, count, block))

    def ack(self, group: str | bytes, *ids: str | StreamMessage) -> int:
        """Acknowledge messages (ids or the messages themselves); returns how many were pending."""
        batch = self._core.ack(group, ids)
        return 0 if batch is None else self._x.run(batch)

    def claim_stale(
        self, group: str | bytes, consumer: str | bytes, min_idle: float, count: int = 10
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

    def __repr__(self) -> str:
        return f"<Stream {self.key!r}>"


class AsyncStream:
    """A Redis stream with consumer groups (``kit.stream(name)``, asyncio): at-least-once
    delivery. Same behaviour as :class:`Stream`, awaited."""

    def __init__(self, kit: Any, name: object) -> None:
        self._core = StreamCore(kit, name)
        self._x: AsyncExecutor = kit._executor

    @property
    def name(self) -> object:
        """The stream's name, as given."""
        return self._core.name

    @property
    def key(self) -> str:
        """The Redis key: ``<prefix>:stream:{<escaped name>}``."""
        return str(self._core.key)

    async def add(
        self, message: Mapping[str, Any], maxlen: int | None = None, ttl: float | None = None
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
        block: float | None = None,
    ) -> list[StreamMessage]:
        """Up to ``count`` messages no consumer of ``group`` has received yet, now handed to
        ``consumer``. With ``block`` (seconds, ``math.inf`` for ever) waits until at least one
        arrives; returns ``[]`` when none did. Acknowledge each with :meth:`ack`."""
        return await self._x.drive(self._core.read(group, consumer, count, block))

    async def ack(self, group: str | bytes, *ids: str | StreamMessage) -> int:
        """Acknowledge messages (ids or the messages themselves); returns how many were pending."""
        batch = self._core.ack(group, ids)
        return 0 if batch is None else await self._x.run(batch)

    async def claim_stale(
        self, group: str | bytes, consumer: str | bytes, min_idle: float, count: int = 10
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

    def __repr__(self) -> str:
        return f"<AsyncStream {self.key!r}>"
