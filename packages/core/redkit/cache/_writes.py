"""Write-through and write-behind caching, beside cache-aside.

**Write-through** (:class:`WriteThrough`): ``set(key, value)`` runs the writer (the application's
function that stores the value where it belongs, a database), then stores the entry; a writer
that raises stores nothing. Two writes of one key are serialized by a lock (``serialize=True``),
so the entry always ends as the last writer's value, never an earlier one written after it.

**Write-behind** (:class:`WriteBehind`): ``set(key, value)`` writes the value and the job that
persists it in one script: the value as the key's *pending value* (a hash in the queue's slot),
beside the job, and the entry too where it is in the same slot (anything but a cluster; on a
cluster, and with tags, the entry is stored by the next call). Writes to one key within
``debounce`` seconds coalesce into one job (a dedup id per key in replace mode: the last value
wins), which runs no later than ``max_wait`` seconds after the first of them, so a key written
without pause is still persisted. The job runs the writer on a worker, with retries and dead
letters like any job, under a lock per key; it persists the *latest* pending value, not the one
it was added with, and deletes the pending value only when no later write replaced it
(``cache_settle.lua``), so a retry, a slow job overtaken by a later one, or a job added twice
never writes an older value over a newer one. Reads (:meth:`WriteBehind.get`, and a
``@cached`` function's miss) see the pending value until it is persisted, even when the entry
was evicted.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from .._durations import Duration, to_ms
from .._durations import seconds as to_seconds
from .._ops import Batch, Flow, Script, command, script
from ..errors import LockNotAcquired, RedkitConnectionError
from ..queue._options import Backoff, Dedup
from ._codec import MISSING, decode, encode
from ._inputs import tags as _tags

__all__ = ["AsyncWriteBehind", "AsyncWriteThrough", "WriteBehind", "WriteThrough"]

log = logging.getLogger("redkit.cache")

SETTLE = Script.load("cache_settle")
PENDING_TTL = 7 * 86400.0  # how long a pending value waits for its job (seconds)
V = TypeVar("V")


def _key(key: object) -> str | int:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise TypeError(f"a write's key is a str or an int (it goes into a job), not {key!r}")
    return key


class _Behind:
    """What both write-behind shells share: keys, the write's script call, the reads (no I/O)."""

    def __init__(
        self,
        cache: Any,
        queue: Any,
        debounce: Duration,
        pending_ttl: Duration,
        max_wait: Duration | None = None,
    ) -> None:
        self.cache = cache._core
        self.queue = queue._core
        self.debounce = to_seconds("debounce", debounce, zero=True)
        self.pending_ms = to_ms(to_seconds("pending_ttl", pending_ttl))
        self.max_wait = None if max_wait is None else to_seconds("max_wait", max_wait)
        if self.max_wait is not None:
            self.max_wait = max(self.max_wait, self.debounce)  # never sooner than the debounce

    def record(self, key: object) -> str:
        """The Redis key of ``key``'s pending value, in the queue's slot."""
        entry = self.cache.entry_key(key)
        digest = hashlib.blake2b(entry.encode("utf-8", "surrogateescape"), digest_size=16)
        return f"{self.queue.base}:wb:{digest.hexdigest()}"

    def dedup(self, record: str) -> Dedup:
        ident = "wb:" + record.rpartition(":")[2]
        if self.debounce > 0:
            return Dedup.debounce(ident, self.debounce, max_wait=self.max_wait)
        return Dedup(ident, ttl=3600, replace=True)  # coalesced while it waits, no delay

    def write(
        self, task: Any, key: object, value: Any, ttl: Duration | None, tags: Iterable[str] | None
    ) -> Flow[str]:
        """Flow of ``set``: the pending value and its job (and the entry) in one script call,
        then, on a cluster or with tags, the entry. Every argument is checked first."""
        _key(key)
        cache = self.cache
        payload = encode(cache.serializer, value)
        tag_list = _tags(tags)
        lifetime = cache.lifetime_ms(ttl)
        seconds = None if ttl is None else to_seconds("ttl", ttl)
        record = self.record(key)
        name, data, opts = task._job(
            (key, seconds, tag_list or None), {}, {"dedup": self.dedup(record)}
        )
        prepared = [self.queue.prepare(name, data, opts)]
        keys = [record]
        tail: list[Any] = [payload, secrets.token_hex(8), self.pending_ms]
        inline = not cache.cluster and not tag_list
        if inline:
            keys.append(cache.entry_key(key))
            tail += [payload, lifetime]
        ((job_id, _, _),) = yield self.queue.add(prepared, keys, tail)
        if not inline:
            yield from cache.set_many({key: value}, ttl, tag_list)
        return str(job_id)

    def read(self, record: str) -> Batch[tuple[bytes | None, bytes | None]]:
        """The pending value's bytes and token (None, None when there is none)."""
        return Batch.one(command("HMGET", record, "v", "t"), lambda r: (r[0], r[1]))

    def value(self, raw: bytes) -> Any:
        return decode(self.cache.serializer, raw).value

    def pending(self, key: object, default: Any) -> Batch[Any]:
        """Batch of ``pending``: the value waiting to be persisted, or ``default``."""
        record = self.record(key)
        return Batch.one(
            command("HGET", record, "v"),
            lambda raw: default if raw is None else self.value(raw),
        )

    @staticmethod
    def settle(record: str, token: bytes) -> Batch[bool]:
        return Batch.one(script(SETTLE, [record], [token]), lambda r: int(r) == 1)


def _task_options(options: dict[str, Any]) -> dict[str, Any]:
    options.setdefault("attempts", 5)
    options.setdefault("backoff", Backoff.exponential(1, max=300))
    return options


def _name(writer: Callable[..., Any], name: str | None) -> str:
    return name if name is not None else f"{writer.__module__}.{writer.__qualname__}"


class _BehindShell(Generic[V]):
    """The state both write-behind writers keep; made by ``kit.cache.write_behind``."""

    def __init__(
        self,
        cache: Any,
        queue: Any,
        writer: Callable[[Any, V], Any],
        *,
        name: str | None,
        debounce: Duration,
        max_wait: Duration | None,
        pending_ttl: Duration,
        lock_ttl: Duration,
        options: dict[str, Any],
    ) -> None:
        self.writer = writer
        self.queue = queue
        self._cache = cache
        self._core = _Behind(cache, queue, debounce, pending_ttl, max_wait)
        self._lock_ttl = to_seconds("lock_ttl", lock_ttl)
        persist = self._persist  # type: ignore[attr-defined]
        self.task = queue.task(name=_name(writer, name), **_task_options(options))(persist)
        """The queue's task whose jobs persist the values."""
        self.__wrapped__ = writer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task.name!r} on {self.queue.name!r}>"


class WriteBehind(_BehindShell[V]):
    """A write-behind writer, made by ``@kit.cache.write_behind(queue, ...)``: ``set`` caches a
    value at once and a worker of ``queue`` runs the writer with it later. Calling it runs the
    writer here and now."""

    def __call__(self, key: Any, value: V) -> Any:
        return self.writer(key, value)

    def set(
        self,
        key: str | int,
        value: V,
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
    ) -> str:
        """Cache ``value`` for ``key`` and add the job that persists it, in one script call;
        returns that job's id (a write within ``debounce`` of the last goes to the same job).
        Raises, writing nothing, when Redis is unreachable: the value would be lost."""
        job_id: str = self._cache._x.drive(self._core.write(self.task, key, value, ttl, tags))
        return job_id

    def pending(self, key: str | int, default: Any = None) -> Any:
        """The value written for ``key`` that its job has not persisted yet, or ``default``."""
        return self._cache._x.run(self._core.pending(key, default))

    def get(self, key: str | int, default: Any = None) -> Any:
        """The cached value of ``key``, else its pending value, else ``default``."""
        found = self._cache.get(key, MISSING)
        return self.pending(key, default) if found is MISSING else found

    def _persist(self, key: Any, ttl: float | None, tags: list[str] | None) -> bool:
        """The job: the writer with the latest pending value, under the key's lock; False when
        a later job persisted it already."""
        core, x = self._core, self._cache._x
        record = core.record(key)
        lock = self.queue._kit.lock(
            f"write-behind:{record}", ttl=self._lock_ttl, timeout=self._lock_ttl, auto_renew=True
        )
        with lock:
            raw, token = x.run(core.read(record))
            if raw is None:
                return False
            value = core.value(raw)
            self.writer(key, value)
            if x.run(core.settle(record, token)):
                self._cache.set(key, value, ttl, tags)  # the entry holds what was persisted
        return True


class AsyncWriteBehind(_BehindShell[V]):
    """:class:`WriteBehind` on ``redkit.asyncio.Redkit``: an async writer, awaited methods."""

    async def __call__(self, key: Any, value: V) -> Any:
        return await self.writer(key, value)

    async def set(
        self,
        key: str | int,
        value: V,
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
    ) -> str:
        """:meth:`WriteBehind.set`, awaited."""
        flow = self._core.write(self.task, key, value, ttl, tags)
        job_id: str = await self._cache._x.drive(flow)
        return job_id

    async def pending(self, key: str | int, default: Any = None) -> Any:
        """:meth:`WriteBehind.pending`, awaited."""
        return await self._cache._x.run(self._core.pending(key, default))

    async def get(self, key: str | int, default: Any = None) -> Any:
        """:meth:`WriteBehind.get`, awaited."""
        found = await self._cache.get(key, MISSING)
        return await self.pending(key, default) if found is MISSING else found

    async def _persist(self, key: Any, ttl: float | None, tags: list[str] | None) -> bool:
        core, x = self._core, self._cache._x
        record = core.record(key)
        lock = self.queue._kit.lock(
            f"write-behind:{record}", ttl=self._lock_ttl, timeout=self._lock_ttl, auto_renew=True
        )
        async with lock:
            raw, token = await x.run(core.read(record))
            if raw is None:
                return False
            value = core.value(raw)
            await self.writer(key, value)
            if await x.run(core.settle(record, token)):
                await self._cache.set(key, value, ttl, tags)
        return True


class _Through:
    """What both write-through shells share: checks before the writer runs (no I/O)."""

    def __init__(self, cache: Any, serialize: bool, lock_ttl: Duration) -> None:
        if not isinstance(serialize, bool):
            raise TypeError(f"serialize must be True or False, not {serialize!r}")
        self.cache = cache
        self.serialize = serialize
        self.lock_ttl = to_seconds("lock_ttl", lock_ttl)

    def check(self, key: object, value: Any, ttl: Duration | None, tags: Any) -> str:
        """The entry key, once the value, ttl and tags are known to be storable."""
        core = self.cache._core
        entry: str = core.entry_key(key)
        encode(core.serializer, value)
        core.lifetime_ms(ttl)
        _tags(tags)
        return entry

    def lock(self, entry: str) -> Any:
        kit = self.cache._kit
        return kit.lock(
            f"write-through:{entry}", ttl=self.lock_ttl, timeout=self.lock_ttl, auto_renew=True
        )

    def unlocked(self, entry: str, exc: RedkitConnectionError) -> None:
        """Redis is unreachable for the lock: raise, unless the cache fails open (then the
        writer runs alone, and storing the entry fails open too)."""
        self.cache._core.failed_open(exc)
        log.warning("redkit: write-through of %s without its lock (Redis unreachable)", entry)

    @staticmethod
    def refused(entry: str) -> LockNotAcquired:
        return LockNotAcquired(f"another write of {entry} held it for the whole wait")


class WriteThrough(Generic[V]):
    """A write-through writer, made by ``@kit.cache.write_through``: ``set`` runs the writer,
    then caches the value (nothing when the writer raises). Calling it runs the writer alone."""

    def __init__(
        self, cache: Any, writer: Callable[[Any, V], Any], serialize: bool, lock_ttl: Duration
    ) -> None:
        self.writer = writer
        self._through = _Through(cache, serialize, lock_ttl)
        self.__wrapped__ = writer

    def __call__(self, key: Any, value: V) -> Any:
        return self.writer(key, value)

    def set(
        self, key: Any, value: V, ttl: Duration | None = None, tags: Iterable[str] | None = None
    ) -> Any:
        """Run the writer with ``key`` and ``value``, then cache ``value``; returns what the
        writer returned. A writer that raises stores nothing (and the error propagates). With
        ``serialize`` two writes of one key run one after the other, across processes."""
        through = self._through
        entry = through.check(key, value, ttl, tags)
        if not through.serialize:
            return self._write(key, value, ttl, tags)
        lock = through.lock(entry)
        try:
            held = lock.acquire()
        except RedkitConnectionError as exc:
            through.unlocked(entry, exc)
            return self._write(key, value, ttl, tags)
        if not held:
            raise through.refused(entry)
        try:
            return self._write(key, value, ttl, tags)
        finally:
            lock.release()

    def _write(self, key: Any, value: V, ttl: Any, tags: Any) -> Any:
        result = self.writer(key, value)
        self._through.cache.set(key, value, ttl, tags)
        return result


class AsyncWriteThrough(Generic[V]):
    """:class:`WriteThrough` on ``redkit.asyncio.Redkit``: an async writer, awaited methods."""

    def __init__(
        self,
        cache: Any,
        writer: Callable[[Any, V], Awaitable[Any]],
        serialize: bool,
        lock_ttl: Duration,
    ) -> None:
        self.writer = writer
        self._through = _Through(cache, serialize, lock_ttl)
        self.__wrapped__ = writer

    async def __call__(self, key: Any, value: V) -> Any:
        return await self.writer(key, value)

    async def set(
        self, key: Any, value: V, ttl: Duration | None = None, tags: Iterable[str] | None = None
    ) -> Any:
        """:meth:`WriteThrough.set`, awaited."""
        through = self._through
        entry = through.check(key, value, ttl, tags)
        if not through.serialize:
            return await self._write(key, value, ttl, tags)
        lock = through.lock(entry)
        try:
            held = await lock.acquire()
        except RedkitConnectionError as exc:
            through.unlocked(entry, exc)
            return await self._write(key, value, ttl, tags)
        if not held:
            raise through.refused(entry)
        try:
            return await self._write(key, value, ttl, tags)
        finally:
            await lock.release()

    async def _write(self, key: Any, value: V, ttl: Any, tags: Any) -> Any:
        result = await self.writer(key, value)
        await self._through.cache.set(key, value, ttl, tags)
        return result


def check_writer(writer: Callable[..., Any], want_async: bool, what: str) -> None:
    """A sync writer for the sync cache, an async one for the asyncio cache."""
    if not callable(writer):
        raise TypeError(f"{what} decorates a function, not {writer!r}")
    is_async = inspect.iscoroutinefunction(writer)
    if is_async and not want_async:
        raise TypeError(
            f"{writer.__qualname__} is async: decorate it with the cache of redkit.asyncio.Redkit"
        )
    if want_async and not is_async:
        raise TypeError(f"{writer.__qualname__} must be an async function (async def)")


def behind_decorator(
    cache: Any,
    queue: Any,
    cls: type[Any],
    options: dict[str, Any],
    name: str | None,
    debounce: Duration,
    max_wait: Duration | None,
    pending_ttl: Duration,
    lock_ttl: Duration,
) -> Callable[[Callable[..., Any]], Any]:
    """The decorator ``kit.cache.write_behind(queue, **options)`` returns: ``cls`` (one of the
    write-behind writers) of a writer of the cache's kind, on a queue of the cache's client."""
    want_async = cls is AsyncWriteBehind
    from ..queue import AsyncQueue, Queue

    kind = AsyncQueue if want_async else Queue
    if not isinstance(queue, kind) or (cache._kit is not None and queue._kit is not cache._kit):
        raise TypeError(f"queue must be a {kind.__name__} of this cache's client, not {queue!r}")
    own = {
        "name": name,
        "debounce": debounce,
        "max_wait": max_wait,
        "pending_ttl": pending_ttl,
        "lock_ttl": lock_ttl,
    }

    def decorate(writer: Callable[..., Any]) -> Any:
        check_writer(writer, want_async, "write_behind")
        return cls(cache, queue, writer, **own, options=dict(options))

    return decorate
