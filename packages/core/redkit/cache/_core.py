"""The cache's logic, written once as pure spec builders and flow generators.

``Cache`` and ``AsyncCache`` only hand these to their executor. Nothing here does I/O: a flow yields
:class:`~redkit._ops.Batch` (one round trip), :class:`~redkit._ops.Sleep` or
:class:`~redkit._ops.Load` (call the user's loader) and receives the result.

Tag invalidation uses version keys: each tag has a key holding a random version; an entry records
the versions of its tags as they were *before* its loader ran, and is valid only while all of them
are unchanged. Invalidating a tag writes a new version: one command per tag, however many entries
carry it, and entries and tags may live in different cluster slots.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import _durations as durations
from .._durations import Duration, to_ms
from .._keys import SAFE_STR, Keyspace, _to_bytes
from .._ops import Batch, Call, Flow, Script, command
from .._ops import first as _first
from .._stats import Stats
from ..errors import RedkitConnectionError, ResponseError, SerializationError
from ..serializers import Serializer
from ..settings import Settings
from ._codec import DOWN, MISSING, PLAIN, Entry, decode, encode
from ._fill import get_or_set
from ._inputs import key_list as _key_list
from ._inputs import seconds as _seconds
from ._inputs import show as _show
from ._inputs import tags as _tags
from ._patterns import compile_pattern

__all__ = [
    "DOWN",
    "MISSING",
    "CacheCore",
    "Many",
    "Pending",
]

log = logging.getLogger("redkit.cache")

INCR = Script.load("cache_incr")


class Many:
    """The keys of one ``cache.get_many``: the caller's, their entry keys, and the MGET."""

    __slots__ = ("call", "rkeys", "wanted")

    def __init__(self, wanted: list[object], rkeys: list[str], call: Call | None) -> None:
        self.wanted, self.rkeys, self.call = wanted, rkeys, call


class Pending:
    """A read that needs another round trip: its shell drives ``flow`` for the value."""

    __slots__ = ("flow",)

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow


_MADE_KEYS = 4096  # entry keys remembered per cache, then forgotten all at once
_MAX_DELTA = 10**100  # incr's delta: at most 100 digits, like an int key part


class CacheCore:
    """Key building, entry encoding and the flows of ``kit.cache`` (shared by sync and async)."""

    def __init__(
        self,
        settings: Settings,
        keyspace: Keyspace,
        serializer: Serializer,
        stats: Stats,
        cluster: bool,
    ) -> None:
        self.settings = settings
        self.keys = keyspace
        self.serializer = serializer
        self.stats = stats
        self.cluster = cluster
        self._made: dict[str, str] = {}  # entry keys of recent escaped str keys (pure)
        self._entry_head = keyspace.tag_head("cache")
        self._max_part = keyspace.max_length

    # -- keys -----------------------------------------------------------------------------------
    def entry_key(self, key: object) -> str:
        """The Redis key of cache entry ``key``."""
        if type(key) is not str:  # not 1 for True: only exact str keys are remembered
            return self.keys.tagged("cache", key)
        if len(key) <= self._max_part and SAFE_STR.match(key):  # nothing to escape
            return f"{self._entry_head}{key}}}"
        made = self._made.get(key)
        if made is None:
            made = self.keys.tagged("cache", key)
            if len(self._made) >= _MADE_KEYS:
                self._made.clear()
            self._made[key] = made
        return made

    def scan_plan(self, pattern: str) -> tuple[str, Callable[[bytes], str | bytes | None]]:
        """``SCAN MATCH`` for the entries whose keys match the glob ``pattern``, and the function
        from a scanned Redis key to the entry's key (None when it is not one)."""
        return compile_pattern(self.keys.pattern("cache")[:-1], pattern)

    def lock_key(self, key: object) -> str:
        return self.keys.tagged("cache", key, "lock")

    def tag_key(self, tag: str) -> str:
        return self.keys.tagged("cache:tag", tag)

    # -- lifetimes ------------------------------------------------------------------------------
    def lifetime_ms(self, ttl: Duration | None) -> int:
        """Entry lifetime in ms: ``ttl`` (or the default) plus up to ``cache_jitter`` of it."""
        seconds = _seconds("ttl", ttl, self.settings.cache_ttl)
        jitter = self.settings.cache_jitter
        if jitter:
            seconds *= 1.0 + random.random() * jitter
        return to_ms(seconds)

    def _lifetimes(self, ttl: Duration | None, count: int) -> list[int]:
        """``count`` lifetimes in ms for entries written together, each with its own jitter."""
        seconds = _seconds("ttl", ttl, self.settings.cache_ttl)
        jitter = self.settings.cache_jitter
        if not jitter:
            return [to_ms(seconds)] * count
        draw = random.random
        return [to_ms(seconds * (1.0 + draw() * jitter)) for _ in range(count)]

    # -- failure policy -------------------------------------------------------------------------
    def failed_open(self, exc: RedkitConnectionError) -> Any:
        """Count a call answered without Redis and return :data:`DOWN` (the reply that
        :meth:`read` and :meth:`stored` take for it); raise instead when fail-open is off."""
        if not self.settings.cache_fail_open:
            raise exc
        self.stats.incr("cache_fail_open")
        return DOWN

    # -- reads ----------------------------------------------------------------------------------
    def using(self, serializer: Serializer) -> CacheCore:
        """The same cache (settings, keys, counters) with values written and read by
        ``serializer``."""
        other = CacheCore(self.settings, self.keys, serializer, self.stats, self.cluster)
        other._made = self._made  # same keyspace, same keys
        return other

    def _decode(self, key: str, raw: bytes) -> Entry | None:
        """The entry stored as ``raw``, or None when it cannot be read (a payload of another
        serializer, a pickle whose signature fails, corrupt bytes): a miss, logged and counted,
        never an exception that would let one planted value break every read of a page."""
        try:
            return decode(self.serializer, raw)
        except SerializationError as exc:
            self._unreadable(key, exc)
            return None

    def _unreadable(self, key: str, exc: SerializationError) -> None:
        self.stats.incr("cache_unreadable")
        log.warning("redkit: cache entry %s could not be read (%s); treated as a miss", key, exc)

    def _needs_check(self, entry: Entry) -> bool:
        return bool(entry.tags) or entry.stale_ms > 0

    def _check_calls(self, key: str, entry: Entry) -> list[Call]:
        calls = [command("GET", self.tag_key(t)) for t in entry.tags]
        if entry.stale_ms:
            calls.append(command("PTTL", key))
        return calls

    def _check_reply(self, entry: Entry, replies: Sequence[Any]) -> bool:
        """True when ``entry`` is valid now, given replies to :meth:`_check_calls`."""
        versions = replies[: len(entry.tags)]
        for (_, want), have in zip(entry.tags.items(), versions):
            if have is None or have.decode() != want:
                return False
        if entry.stale_ms:
            pttl = int(replies[len(entry.tags)])
            return pttl < 0 or pttl > entry.stale_ms
        return True

    def get(self, key: object, default: Any) -> Flow[Any]:
        """Flow of ``cache.get``: :meth:`get_call`, then :meth:`read` of its reply."""
        call = self.get_call(key)
        try:
            raw = yield Batch((call,), _first)
        except RedkitConnectionError as exc:
            raw = self.failed_open(exc)
        value = self.read(call, raw, default)
        if type(value) is Pending:
            value = yield from value.flow
        return value

    def get_call(self, key: object) -> Call:
        """The one GET of ``cache.get`` (sent by the executor's one-call path)."""
        return Call(("GET", self.entry_key(key)))

    def read(self, call: Call, raw: Any, default: Any) -> Any:
        """The value of ``call``'s GET reply ``raw`` (``default`` on a miss, an unreadable
        entry or :data:`DOWN`), or a :class:`Pending` whose flow checks a tagged entry's
        versions in a second round trip."""
        if raw is None:
            self.stats.incr("cache_misses")
            return default
        if raw is DOWN:
            return default
        if raw[:1] == PLAIN:  # the common case: no metadata, nothing to check
            try:
                value = self.serializer.loads(raw[1:])
            except SerializationError as exc:
                self._unreadable(call.args[1], exc)
                self.stats.incr("cache_misses")
                return default
            self.stats.incr("cache_hits")
            return value
        k = call.args[1]
        entry = self._decode(k, raw)
        if entry is None:
            self.stats.incr("cache_misses")
            return default
        if self._needs_check(entry):
            return Pending(self._checked(k, entry, default))
        self.stats.incr("cache_hits")
        return entry.value

    def _checked(self, key: str, entry: Entry, default: Any) -> Flow[Any]:
        try:
            ok = yield Batch(tuple(self._check_calls(key, entry)))
        except RedkitConnectionError as exc:
            self.failed_open(exc)
            return default
        if not self._check_reply(entry, ok):
            self.stats.incr("cache_misses")
            return default
        self.stats.incr("cache_hits")
        return entry.value

    def get_many(self, keys: Iterable[object]) -> Flow[dict[Any, Any]]:
        """Flow of ``cache.get_many``: one MGET (pipelined GETs on a cluster), then one round trip
        to check tag versions of the tagged entries, if any."""
        many = self.many(keys)
        if many is None:
            return {}
        return (yield from self.many_flow(many))

    def many_flow(self, many: Many) -> Flow[dict[Any, Any]]:
        """Flow of the reads of :meth:`many`'s keys."""
        try:
            if many.call is not None:
                raws = yield Batch.one(many.call)
            else:
                raws = yield Batch(tuple(command("GET", k, bounded=True) for k in many.rkeys), list)
        except RedkitConnectionError as exc:
            raws = self.failed_open(exc)
        found = self.read_many(many, raws)
        if isinstance(found, Pending):
            found = yield from found.flow
        return found

    def many(self, keys: Iterable[object]) -> Many | None:
        """The keys of ``cache.get_many`` and their one MGET (sent by the executor's one-call
        path; None on a cluster, where the entries' slots differ), or None for no keys."""
        wanted = _key_list(keys)
        if not wanted:
            return None
        rkeys = [self.entry_key(k) for k in wanted]
        return Many(wanted, rkeys, None if self.cluster else Call(("MGET", *rkeys)))

    def read_many(self, many: Many, raws: Any) -> dict[Any, Any] | Pending:
        """The entries found in ``raws`` (the MGET reply, or :data:`DOWN`: none), or a
        :class:`Pending` whose flow checks the tag versions of the tagged ones."""
        if raws is DOWN:
            return {}
        found: dict[Any, Any] = {}
        checks: list[tuple[Any, Entry, int, int]] = []
        calls: list[Call] = []
        loads = self.serializer.loads
        for user_key, rkey, raw in zip(many.wanted, many.rkeys, raws):
            if raw is None:
                continue
            if raw[:1] == PLAIN:  # no metadata: decoded here, without an Entry
                try:
                    found[user_key] = loads(raw[1:])
                except SerializationError as exc:
                    self._unreadable(rkey, exc)
                continue
            entry = self._decode(rkey, raw)
            if entry is None:
                continue
            if self._needs_check(entry):
                more = self._check_calls(rkey, entry)
                checks.append((user_key, entry, len(calls), len(calls) + len(more)))
                calls.extend(more)
            else:
                found[user_key] = entry.value
        if calls:
            return Pending(self._checked_many(many.wanted, found, checks, calls))
        self._count_many(len(many.wanted), len(found))
        return found

    def _checked_many(
        self,
        wanted: list[object],
        found: dict[Any, Any],
        checks: list[tuple[Any, Entry, int, int]],
        calls: list[Call],
    ) -> Flow[dict[Any, Any]]:
        try:
            replies = yield Batch(tuple(calls), list)
        except RedkitConnectionError as exc:
            self.failed_open(exc)
            return {}
        for user_key, entry, start, end in checks:
            if self._check_reply(entry, replies[start:end]):
                found[user_key] = entry.value
        self._count_many(len(wanted), len(found))
        # keep the caller's order (the checked entries were found last)
        return {k: found[k] for k in wanted if k in found}

    def _count_many(self, wanted: int, found: int) -> None:
        self.stats.incr("cache_hits", found)
        self.stats.incr("cache_misses", wanted - found)

    # -- writes ---------------------------------------------------------------------------------
    def _tag_versions(self, tags: Sequence[str], new: str) -> Batch[list[str]]:
        """One round trip that reads each tag's version, creating the ones that do not exist."""
        tag_ms = to_ms(self.settings.cache_tag_ttl)
        calls = tuple(
            command("SET", self.tag_key(t), new, "NX", "GET", "PX", tag_ms, get=True) for t in tags
        )
        return Batch(calls, lambda replies: [new if r is None else r.decode() for r in replies])

    def _extend_tags(self, tags: Sequence[str], lifetime_ms: int) -> list[Call]:
        # A tag key must outlive every entry carrying it (a missing tag key makes its entries
        # miss). Sent in the same round trip as the write; GT only ever lengthens.
        return [command("PEXPIRE", self.tag_key(t), lifetime_ms, "GT") for t in tags]

    def set(
        self,
        key: object,
        value: Any,
        ttl: Duration | None,
        tags: Iterable[str] | None,
        nx: bool = False,
        xx: bool = False,
    ) -> Call | Flow[bool]:
        """``cache.set``: one SET call (its reply read by :meth:`stored`), or with tags a flow
        (one more round trip for tag versions); ``nx``: only when there is no entry, ``xx``:
        only when there is one."""
        _to_bytes(key)  # an InvalidKeyError for a list, before it is made a dict key
        if nx and xx:
            raise ValueError(
                "nx and xx exclude each other: an entry cannot be both absent and present"
            )
        condition = ("NX",) if nx else ("XX",) if xx else ()
        if tags is None:  # the common case: one SET, built without set_many's lists
            return Call(
                (
                    "SET",
                    self.entry_key(key),
                    encode(self.serializer, value),
                    "PX",
                    self.lifetime_ms(ttl),
                    *condition,
                )
            )
        return self.set_many({key: value}, ttl, tags, condition)

    @staticmethod
    def stored(reply: Any) -> bool:
        """Whether a SET's reply says it wrote (not for NX/XX refused, nor :data:`DOWN`)."""
        return reply is not None and reply is not DOWN

    def set_many(
        self,
        mapping: Mapping[Any, Any],
        ttl: Duration | None,
        tags: Iterable[str] | None,
        condition: tuple[str, ...] = (),
    ) -> Flow[bool]:
        """Flow of ``cache.set_many``: one pipelined round trip (two when tagged). True when
        every entry was written."""
        tag_list = _tags(tags)
        if not isinstance(mapping, Mapping):
            raise TypeError(f"mapping must be a mapping of keys to values, not {_show(mapping)}")
        items = [(self.entry_key(k), v) for k, v in mapping.items()]
        lifetimes = self._lifetimes(ttl, len(items))  # checked even with nothing to store
        if not items:
            return True
        # serialize everything before touching Redis: a bad value writes nothing
        if not tag_list:
            payloads = [encode(self.serializer, v) for _, v in items]
        else:
            for _, v in items:
                self.serializer.dumps(v)
        try:
            if tag_list:
                versions = yield self._tag_versions(tag_list, secrets.token_hex(8))
                meta = dict(zip(tag_list, versions))
                payloads = [encode(self.serializer, v, meta) for _, v in items]
            # one SET per entry: a load in flight for a key sees that its entry changed and
            # does not overwrite it (cache_store.lua), so the stampede lock is left alone.
            # Built as Calls directly: the lifetimes are bounded milliseconds already.
            calls: list[Call] = [
                Call(("SET", k, p, "PX", ms, *condition))
                for (k, _), p, ms in zip(items, payloads, lifetimes)
            ]
            calls += self._extend_tags(tag_list, max(lifetimes))
            replies = yield Batch(tuple(calls), list)
        except RedkitConnectionError as exc:
            self.failed_open(exc)
            return False
        return all(r is not None for r in replies[: len(items)])

    def delete_many(self, keys: Iterable[object]) -> Batch[int]:
        """One round trip that deletes entries (UNLINK); returns how many existed. Invalidation is
        never silently skipped: it raises when Redis is unreachable."""
        calls: list[Call] = []
        for k in _key_list(keys):
            ek = self.entry_key(k)
            # the stampede lock goes too, so a load in flight cannot store what it read before
            calls.append(command("UNLINK", ek, idempotent=False))
            calls.append(command("UNLINK", ek + ":lock"))
        return Batch(tuple(calls), lambda replies: sum(int(r) for r in replies[::2]))

    def touch(self, key: object, ttl: Duration | None) -> Flow[bool]:
        """Flow of ``cache.touch``: give an existing entry a new lifetime."""
        try:
            done = yield Batch.one(command("PEXPIRE", self.entry_key(key), self.lifetime_ms(ttl)))
        except RedkitConnectionError as exc:
            self.failed_open(exc)
            return False
        return bool(done)

    def incr(self, key: object, delta: int, ttl: Duration | None, create: bool = True) -> Call:
        """One script call: add ``delta`` to an integer entry that keeps a TTL, of any size
        (64-bit values with ``INCRBY``, wider ones in decimal); its reply is read by
        :meth:`counted`. A missing entry starts at 0, or with ``create=False`` raises
        ``KeyError``."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, not {type(delta).__name__}")
        if not -_MAX_DELTA < delta < _MAX_DELTA:
            raise ValueError("delta must have at most 100 digits")
        ek = self.entry_key(key)
        # the delta as decimal text: the script adds deltas wider than Redis' 64-bit ints too
        return Call(
            (ek, str(delta), str(self.lifetime_ms(ttl)), "1" if create else "0"),
            INCR,
            1,
            idempotent=False,
        )

    @staticmethod
    def counted(key: object, call: Call, reply: int | list[Any]) -> int:
        """The new value from the reply to :meth:`incr`'s ``call`` for ``key``."""
        if type(reply) is int:
            return reply
        assert isinstance(reply, list)
        if reply[0] == 0:
            raise KeyError(key)
        if reply[0] == 2:
            raise ResponseError(
                f"cache entry {call.args[0]} is not an integer: cannot increment it"
            )
        return int(reply[1])

    @staticmethod
    def unavailable(exc: RedkitConnectionError) -> Any:
        """The ``down`` of a one-call operation that never fails open: raise."""
        raise exc

    def ttl(self, key: object) -> Batch[float | None]:
        """One PTTL: the entry's remaining lifetime in seconds (``math.inf`` for a key without
        one, which redkit never writes), or None when there is no entry."""

        def parse(ms: Any) -> float | None:
            ms = int(ms)
            if ms == -2:
                return None
            return math.inf if ms == -1 else ms / 1000

        return Batch.one(command("PTTL", self.entry_key(key)), parse)

    def expire(self, key: object, ttl: Duration) -> Batch[bool]:
        """One PEXPIRE with exactly ``ttl`` (no jitter); False when there is no entry."""
        ms = to_ms(durations.seconds("ttl", ttl))
        return Batch.one(command("PEXPIRE", self.entry_key(key), ms), bool)

    def invalidate(self, tags: Iterable[str]) -> Batch[int]:
        """One round trip: a new version for each tag; every entry carrying one of them misses."""
        tag_list = _tags(tags)
        tag_ms = to_ms(self.settings.cache_tag_ttl)
        new = secrets.token_hex(8)
        calls = tuple(command("SET", self.tag_key(t), new, "PX", tag_ms) for t in tag_list)
        return Batch(calls, len)

    get_or_set = get_or_set  # the flow of cache.get_or_set, in _fill.py
