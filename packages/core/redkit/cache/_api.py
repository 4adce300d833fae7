"""``kit.cache``: the sync :class:`Cache` and the async :class:`AsyncCache`.

Both are thin shells: each method hands a spec or flow from
:class:`~redkit.cache._core.CacheCore` to its executor. Their public names and
signatures are the same (a test checks it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from .. import _durations as durations
from .._durations import Duration
from .._executor import AsyncExecutor, SyncExecutor
from .._ops import Call
from ..serializers import Serializer
from ._codec import MISSING
from ._core import CacheCore, Pending
from ._decorator import KeyBuilder, KeySpec, TagSpec
from ._inputs import strength
from ._writes import (
    PENDING_TTL,
    AsyncWriteBehind,
    AsyncWriteThrough,
    WriteBehind,
    WriteThrough,
    behind_decorator,
    check_writer,
)

__all__ = ["AsyncCache", "AsyncCachedFunction", "Cache", "CachedFunction"]

_DELETE_BATCH = 500  # keys per UNLINK round trip of delete_matching

P = ParamSpec("P")
R = TypeVar("R")


def _check_options(ttl: object, stale_ttl: object, tags: object, early_refresh: object) -> None:
    """A decorator's bad option fails where it is written, not at its first call."""
    durations.optional_seconds("ttl", ttl)
    durations.optional_seconds("stale_ttl", stale_ttl, zero=True)
    strength(early_refresh, 0.0)
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be a list of strings or a callable, not a single string")
    if tags is not None and not callable(tags) and not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings or a callable, not {type(tags).__name__}")


def _check_cache_writer(writer: object, kinds: tuple[type, ...], client: str) -> None:
    if writer is not None and not isinstance(writer, kinds):
        raise TypeError(
            f"writer must be made by write_through or write_behind of the cache of {client}, "
            f"not {writer!r}"
        )


class Cache:
    """Cache-aside over Redis with TTLs, jitter, tags, stampede protection and fail-open.

    Reached as ``kit.cache``. Keys are any str, bytes or int (escaped, and hashed when long).
    Values are anything the configured serializer accepts (JSON types by default).
    """

    def __init__(self, core: CacheCore, executor: SyncExecutor, kit: Any = None) -> None:
        self._core = core
        self._x = executor
        self._kit = kit  # the client (for write_through's lock)

    def get(self, key: object, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss (or when Redis is unreachable
        and fail-open is on)."""
        core = self._core
        call = core.get_call(key)
        value = core.read(call, self._x.call(call, core.failed_open), default)
        if type(value) is Pending:
            return self._x.drive(value.flow)
        return value

    def set(
        self,
        key: object,
        value: Any,
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds (default ``cache_ttl``, plus jitter). Returns False
        when Redis was unreachable and fail-open is on. ``nx``: only if there is no
        entry, ``xx``: only if there is one; False when nothing was written."""
        plan = self._core.set(key, value, ttl, tags, nx, xx)
        if isinstance(plan, Call):
            return self._core.stored(self._x.call(plan, self._core.failed_open))
        return self._x.drive(plan)

    def delete(self, key: object) -> bool:
        """Remove ``key``; True if it existed. Raises when Redis is unreachable."""
        return self._x.run(self._core.delete_many([key])) > 0

    def delete_many(self, keys: Iterable[object]) -> int:
        """Remove several keys in one round trip; returns how many existed."""
        return self._x.run(self._core.delete_many(keys))

    def get_many(self, keys: Iterable[object]) -> dict[Any, Any]:
        """The cached values of ``keys`` that are present, as a dict (misses are left out)."""
        core = self._core
        many = core.many(keys)
        if many is None:
            return {}
        if many.call is None:  # a cluster: one GET per entry
            return self._x.drive(core.many_flow(many))
        found = core.read_many(many, self._x.call(many.call, core.failed_open))
        if isinstance(found, Pending):
            return self._x.drive(found.flow)
        return found

    def set_many(
        self,
        mapping: Mapping[Any, Any],
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store several entries in one round trip (two when tagged)."""
        return self._x.drive(self._core.set_many(mapping, ttl, tags))

    def get_or_set(
        self,
        key: object,
        loader: Callable[[], Any],
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
        *,
        stale_ttl: Duration | None = None,
        early_refresh: float | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss ``loader()`` runs in exactly one caller across
        all processes and its value is stored, the others wait for it (see ``docs/cache.md``)."""
        return self._x.drive(
            self._core.get_or_set(key, loader, ttl, tags, stale_ttl, early_refresh)
        )

    def touch(self, key: object, ttl: Duration | None = None) -> bool:
        """Give an existing entry a new lifetime; False when it does not exist."""
        return self._x.drive(self._core.touch(key, ttl))

    def incr(
        self, key: object, delta: int = 1, ttl: Duration | None = None, *, create: bool = True
    ) -> int:
        """Atomically add ``delta`` to an integer entry (created at 0 with ``ttl``), of any
        size; with ``create=False`` a missing entry raises ``KeyError``."""
        call = self._core.incr(key, delta, ttl, create)
        return self._core.counted(key, call, self._x.call(call, self._core.unavailable))

    def ttl(self, key: object) -> float | None:
        """The entry's remaining lifetime in seconds, or None when there is no entry."""
        return self._x.run(self._core.ttl(key))

    def expire(self, key: object, ttl: Duration) -> bool:
        """Give an existing entry exactly ``ttl`` seconds more (no jitter); False when it does
        not exist."""
        return self._x.run(self._core.expire(key, ttl))

    def keys(self, pattern: str = "*") -> Iterator[str | bytes]:
        """Iterate (by SCAN) over the keys of the entries matching the glob ``pattern``
        (``*``, ``?``, ``[abc]``, ``\\`` to escape), as str (bytes when not UTF-8). Keys longer
        than ``max_key_length`` are stored hashed and never listed."""
        match, pick = self._core.scan_plan(pattern)
        for raw in self._x.scan(match):
            key = pick(raw)
            if key is not None:
                yield key

    def delete_matching(self, pattern: str) -> int:
        """Delete the entries whose keys match the glob ``pattern`` (see :meth:`keys`), in
        batches; returns how many were removed. Not atomic: entries written meanwhile may stay."""
        removed, chunk = 0, []
        for key in self.keys(pattern):
            chunk.append(key)
            if len(chunk) >= _DELETE_BATCH:
                removed += self._x.run(self._core.delete_many(chunk))
                chunk = []
        if chunk:
            removed += self._x.run(self._core.delete_many(chunk))
        return removed

    def using(self, serializer: Serializer) -> Cache:
        """This cache (same client, keys, settings and counters) with its values written and
        read by ``serializer`` (any :class:`redkit.serializers.Serializer`)."""
        return Cache(self._core.using(serializer), self._x, self._kit)

    def invalidate(self, tags: Iterable[str]) -> int:
        """Make every entry carrying any of ``tags`` miss, in one round trip whatever their
        number. Returns the number of tags. Raises when Redis is unreachable."""
        return self._x.run(self._core.invalidate(tags))

    def clear(self) -> int:
        """Delete every cache entry and tag of this prefix (SCAN + UNLINK); returns the count."""
        return self._x.delete_matching(self._core.keys.pattern("cache"))

    def cached(
        self,
        ttl: Duration | None = None,
        key: KeySpec = None,
        tags: TagSpec = None,
        *,
        stale_ttl: Duration | None = None,
        early_refresh: float | None = None,
        writer: WriteThrough[Any] | WriteBehind[Any] | None = None,
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorate a sync function so its result is cached (``get_or_set`` per call).

        ``key``: a template over the parameters (``"user:{user_id}"``) or a callable; by default
        the function's name and a hash of its arguments. ``tags``: templates or a callable.
        The wrapper gains ``.invalidate(*args, **kwargs)`` and ``.key_for(*args, **kwargs)``;
        with a ``writer`` (:meth:`write_through` or :meth:`write_behind`), also
        ``.write(value, *args, **kwargs)``, and a miss sees a write-behind's pending value.
        """

        _check_options(ttl, stale_ttl, tags, early_refresh)
        _check_cache_writer(writer, (WriteThrough, WriteBehind), "redkit.Redkit")

        def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
            if inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{func.__qualname__} is async: decorate it with the cache of "
                    "redkit.asyncio.Redkit"
                )
            return CachedFunction(
                self, func, KeyBuilder(func, key, tags), ttl, stale_ttl, early_refresh, writer
            )

        return decorate

    def write_through(
        self,
        fn: Callable[[Any, Any], Any] | None = None,
        /,
        *,
        serialize: bool = True,
        lock_ttl: Duration = 30.0,
    ) -> Any:
        """Decorate ``writer(key, value)`` (it stores the value where it belongs) as a
        :class:`~redkit.cache.WriteThrough`: ``.set(key, value, ttl, tags)`` runs it, then caches
        the value; a writer that raises caches nothing. ``serialize``: two writes of one key
        run one after the other (a lock of ``lock_ttl`` seconds, renewed while the writer runs),
        so the entry ends as the last write; without it, concurrent writers may leave an
        earlier value cached."""

        def decorate(writer: Callable[[Any, Any], Any]) -> WriteThrough[Any]:
            check_writer(writer, False, "write_through")
            return WriteThrough(self, writer, serialize, lock_ttl)

        return decorate(fn) if fn is not None else decorate

    def write_behind(
        self,
        queue: Any,
        *,
        debounce: Duration = 1.0,
        max_wait: Duration | None = 60.0,
        name: str | None = None,
        pending_ttl: Duration = PENDING_TTL,
        lock_ttl: Duration = 60.0,
        **options: Any,
    ) -> Callable[[Callable[[Any, Any], Any]], WriteBehind[Any]]:
        """Decorate ``writer(key, value)`` as a :class:`~redkit.cache.WriteBehind` whose jobs
        run on ``queue`` (a :class:`~redkit.queue.Queue` of this client): ``.set(key, value)``
        caches the value and adds the job that runs the writer, in one script call. Writes to
        a key within ``debounce`` seconds make one job, with the last value, which runs no later
        than ``max_wait`` seconds (at least ``debounce``; ``None``: no bound) after the first
        of them. A value waits
        ``pending_ttl`` seconds at most for its job (a week). ``options``: the task's
        (``attempts`` default 5, ``backoff`` default exponential from 1 s, ``timeout``, ...)."""
        return behind_decorator(
            self, queue, WriteBehind, options, name, debounce, max_wait, pending_ttl, lock_ttl
        )


class _Wrapper(Generic[P, R]):
    def __init__(
        self,
        cache: Any,
        func: Callable[P, Any],
        keys: KeyBuilder,
        ttl: Duration | None,
        stale_ttl: Duration | None,
        early_refresh: float | None,
        writer: Any = None,
    ) -> None:
        self._cache = cache
        self._keys = keys
        self._ttl = ttl
        self._stale_ttl = stale_ttl
        self._early = early_refresh
        self.writer = writer
        """The :class:`~redkit.cache.WriteThrough` or :class:`~redkit.cache.WriteBehind` of
        :meth:`write`, or None."""
        self.__wrapped__ = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key a call with these arguments uses."""
        return self._keys.key_for(self._keys.bind(args, kwargs))

    def _plan(self, args: Any, kwargs: Any) -> tuple[str, list[str]]:
        arguments = self._keys.bind(args, kwargs)
        return self._keys.key_for(arguments), self._keys.tags_for(arguments)

    def _writer(self) -> Any:
        if self.writer is None:
            raise TypeError(
                f"{self.__wrapped__.__qualname__} has no writer: give cached(..., writer=...)"
            )
        return self.writer

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # behave like a function when used as a method, keeping .invalidate and .key_for
        if instance is None:
            return self
        return _BoundCached(self, instance)


class _BoundCached:
    """A cached function reached through an instance: ``obj.method(...)``,
    ``obj.method.invalidate(...)`` and ``obj.method.key_for(...)`` pass ``obj`` first."""

    def __init__(self, wrapper: Any, instance: Any) -> None:
        self._wrapper = wrapper
        self._instance = instance
        self.__wrapped__ = wrapper.__wrapped__
        self.__doc__ = wrapper.__doc__
        self.__name__ = wrapper.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self._instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Delete the entry of a call with these arguments."""
        return self._wrapper.invalidate(self._instance, *args, **kwargs)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """The cache key a call with these arguments uses."""
        key: str = self._wrapper.key_for(self._instance, *args, **kwargs)
        return key

    def write(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        """Write ``value`` as the result of a call with these arguments (see the writer)."""
        return self._wrapper.write(value, self._instance, *args, **kwargs)


class CachedFunction(_Wrapper[P, R]):
    """A sync function whose results are cached; call it as the function itself."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key, tags = self._plan(args, kwargs)
        func = self.__wrapped__
        behind = self.writer if isinstance(self.writer, WriteBehind) else None

        def load() -> Any:
            if behind is not None:  # a value written and not persisted yet is the latest
                found = behind.pending(key, MISSING)
                if found is not MISSING:
                    return found
            return func(*args, **kwargs)

        result: R = self._cache.get_or_set(
            key,
            load,
            self._ttl,
            tags,
            stale_ttl=self._stale_ttl,
            early_refresh=self._early,
        )
        return result

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the entry of a call with these arguments."""
        deleted: bool = self._cache.delete(self.key_for(*args, **kwargs))
        return deleted

    def write(self, value: Any, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Write ``value`` as the result of a call with these arguments, through the writer
        (``writer.set(key_for(...), value)`` with this function's ttl and tags): the writer's
        result for a write-through, the persist job's id for a write-behind."""
        key, tags = self._plan(args, kwargs)
        return self._writer().set(key, value, self._ttl, tags or None)


class AsyncCachedFunction(_Wrapper[P, R]):
    """An async function whose results are cached; await it as the function itself."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key, tags = self._plan(args, kwargs)
        func = self.__wrapped__
        behind = self.writer if isinstance(self.writer, AsyncWriteBehind) else None

        async def load() -> Any:
            if behind is not None:  # a value written and not persisted yet is the latest
                found = await behind.pending(key, MISSING)
                if found is not MISSING:
                    return found
            return await func(*args, **kwargs)

        result: R = await self._cache.get_or_set(
            key,
            load,
            self._ttl,
            tags,
            stale_ttl=self._stale_ttl,
            early_refresh=self._early,
        )
        return result

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the entry of a call with these arguments."""
        deleted: bool = await self._cache.delete(self.key_for(*args, **kwargs))
        return deleted

    async def write(self, value: Any, *args: P.args, **kwargs: P.kwargs) -> Any:
        """:meth:`CachedFunction.write`, awaited."""
        key, tags = self._plan(args, kwargs)
        return await self._writer().set(key, value, self._ttl, tags or None)


class AsyncCache:
    """The asyncio twin of :class:`Cache` (``redkit.asyncio.Redkit().cache``); same methods,
    awaited."""

    def __init__(self, core: CacheCore, executor: AsyncExecutor, kit: Any = None) -> None:
        self._core = core
        self._x = executor
        self._kit = kit  # the client (for write_through's lock)

    async def get(self, key: object, default: Any = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss."""
        core = self._core
        call = core.get_call(key)
        value = core.read(call, await self._x.call(call, core.failed_open), default)
        if type(value) is Pending:
            return await self._x.drive(value.flow)
        return value

    async def set(
        self,
        key: object,
        value: Any,
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds (default ``cache_ttl``, plus jitter); ``nx``:
        only if there is no entry, ``xx``: only if there is one. False when nothing was
        written."""
        plan = self._core.set(key, value, ttl, tags, nx, xx)
        if isinstance(plan, Call):
            return self._core.stored(await self._x.call(plan, self._core.failed_open))
        return await self._x.drive(plan)

    async def delete(self, key: object) -> bool:
        """Remove ``key``; True if it existed."""
        return await self._x.run(self._core.delete_many([key])) > 0

    async def delete_many(self, keys: Iterable[object]) -> int:
        """Remove several keys in one round trip; returns how many existed."""
        return await self._x.run(self._core.delete_many(keys))

    async def get_many(self, keys: Iterable[object]) -> dict[Any, Any]:
        """The cached values of ``keys`` that are present."""
        core = self._core
        many = core.many(keys)
        if many is None:
            return {}
        if many.call is None:  # a cluster: one GET per entry
            return await self._x.drive(core.many_flow(many))
        found = core.read_many(many, await self._x.call(many.call, core.failed_open))
        if isinstance(found, Pending):
            return await self._x.drive(found.flow)
        return found

    async def set_many(
        self,
        mapping: Mapping[Any, Any],
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store several entries in one round trip (two when tagged)."""
        return await self._x.drive(self._core.set_many(mapping, ttl, tags))

    async def get_or_set(
        self,
        key: object,
        loader: Callable[[], Any],
        ttl: Duration | None = None,
        tags: Iterable[str] | None = None,
        *,
        stale_ttl: Duration | None = None,
        early_refresh: float | None = None,
    ) -> Any:
        """Like :meth:`Cache.get_or_set`; ``loader`` may be sync or async."""
        return await self._x.drive(
            self._core.get_or_set(key, loader, ttl, tags, stale_ttl, early_refresh)
        )

    async def touch(self, key: object, ttl: Duration | None = None) -> bool:
        """Give an existing entry a new lifetime."""
        return await self._x.drive(self._core.touch(key, ttl))

    async def incr(
        self, key: object, delta: int = 1, ttl: Duration | None = None, *, create: bool = True
    ) -> int:
        """Atomically add ``delta`` to an integer entry. Any size of integer;
        with ``create=False`` a missing entry raises ``KeyError``."""
        call = self._core.incr(key, delta, ttl, create)
        return self._core.counted(key, call, await self._x.call(call, self._core.unavailable))

    async def ttl(self, key: object) -> float | None:
        """The entry's remaining lifetime in seconds, or None when there is no entry."""
        return await self._x.run(self._core.ttl(key))

    async def expire(self, key: object, ttl: Duration) -> bool:
        """Give an existing entry exactly ``ttl`` seconds more (no jitter); False when it does
        not exist."""
        return await self._x.run(self._core.expire(key, ttl))

    async def keys(self, pattern: str = "*") -> AsyncIterator[str | bytes]:
        """Iterate (by SCAN) over the keys of the entries matching the glob ``pattern``
        (``*``, ``?``, ``[abc]``, ``\\`` to escape), as str (bytes when not UTF-8). Keys longer
        than ``max_key_length`` are stored hashed and never listed."""
        match, pick = self._core.scan_plan(pattern)
        async for raw in self._x.scan(match):
            key = pick(raw)
            if key is not None:
                yield key

    async def delete_matching(self, pattern: str) -> int:
        """Delete the entries whose keys match the glob ``pattern`` (see :meth:`keys`), in
        batches; returns how many were removed. Not atomic: entries written meanwhile may stay."""
        removed, chunk = 0, []
        async for key in self.keys(pattern):
            chunk.append(key)
            if len(chunk) >= _DELETE_BATCH:
                removed += await self._x.run(self._core.delete_many(chunk))
                chunk = []
        if chunk:
            removed += await self._x.run(self._core.delete_many(chunk))
        return removed

    def using(self, serializer: Serializer) -> AsyncCache:
        """This cache (same client, keys, settings and counters) with its values written and
        read by ``serializer`` (any :class:`redkit.serializers.Serializer`)."""
        return AsyncCache(self._core.using(serializer), self._x, self._kit)

    async def invalidate(self, tags: Iterable[str]) -> int:
        """Make every entry carrying any of ``tags`` miss, in one round trip."""
        return await self._x.run(self._core.invalidate(tags))

    async def clear(self) -> int:
        """Delete every cache entry and tag of this prefix."""
        return await self._x.delete_matching(self._core.keys.pattern("cache"))

    def cached(
        self,
        ttl: Duration | None = None,
        key: KeySpec = None,
        tags: TagSpec = None,
        *,
        stale_ttl: Duration | None = None,
        early_refresh: float | None = None,
        writer: AsyncWriteThrough[Any] | AsyncWriteBehind[Any] | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], AsyncCachedFunction[P, R]]:
        """Decorate an async function so its result is cached (see :meth:`Cache.cached`)."""

        _check_options(ttl, stale_ttl, tags, early_refresh)
        _check_cache_writer(writer, (AsyncWriteThrough, AsyncWriteBehind), "redkit.asyncio.Redkit")

        def decorate(func: Callable[P, Awaitable[R]]) -> AsyncCachedFunction[P, R]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{func.__qualname__} is not async: decorate it with the cache of redkit.Redkit"
                )
            return AsyncCachedFunction(
                self, func, KeyBuilder(func, key, tags), ttl, stale_ttl, early_refresh, writer
            )

        return decorate

    def write_through(
        self,
        fn: Callable[[Any, Any], Awaitable[Any]] | None = None,
        /,
        *,
        serialize: bool = True,
        lock_ttl: Duration = 30.0,
    ) -> Any:
        """Decorate an async ``writer(key, value)`` (see :meth:`Cache.write_through`)."""

        def decorate(writer: Callable[[Any, Any], Awaitable[Any]]) -> AsyncWriteThrough[Any]:
            check_writer(writer, True, "write_through")
            return AsyncWriteThrough(self, writer, serialize, lock_ttl)

        return decorate(fn) if fn is not None else decorate

    def write_behind(
        self,
        queue: Any,
        *,
        debounce: Duration = 1.0,
        max_wait: Duration | None = 60.0,
        name: str | None = None,
        pending_ttl: Duration = PENDING_TTL,
        lock_ttl: Duration = 60.0,
        **options: Any,
    ) -> Callable[[Callable[[Any, Any], Awaitable[Any]]], AsyncWriteBehind[Any]]:
        """Decorate an async ``writer(key, value)`` whose jobs run on ``queue`` (an
        :class:`~redkit.queue.AsyncQueue` of this client; see :meth:`Cache.write_behind`)."""
        return behind_decorator(
            self, queue, AsyncWriteBehind, options, name, debounce, max_wait, pending_ttl, lock_ttl
        )
