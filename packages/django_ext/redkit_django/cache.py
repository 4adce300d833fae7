"""``redkit_django.cache.RedkitCache``: Django's cache API (and django-redis') on redkit's cache.

::

    CACHES = {
        "default": {
            "BACKEND": "redkit_django.cache.RedkitCache",
            "LOCATION": "redis://127.0.0.1:6379/0",   # optional: REDKIT's URL by default
            "TIMEOUT": 300,
            "OPTIONS": {"SERIALIZER": "pickle", "COMPRESSOR": "zlib"},
        }
    }

Every method of ``BaseCache`` is here, sync and natively async (the ``a*`` methods run on the
running loop's asyncio client, see :func:`redkit_django.get_async_kit`), with the answers
Django documents; plus django-redis' ``ttl``, ``expire``, ``persist``, ``lock``,
``delete_pattern``, ``iter_keys``, ``set(nx=, xx=)`` and ``incr(ignore_key_check=)``; plus
redkit's tags (``set(..., tags=[...])``, :meth:`RedkitCache.invalidate_tags`) and stampede
protection in ``get_or_set``. Values are signed pickle by default; a value that cannot be read
(a bad signature, another serializer, corrupt bytes) is a miss, logged, never unpickled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

import redkit.asyncio
from redkit.lock import AsyncLock, Lock

from ._cache_base import BackendBase

__all__ = ["RedkitCache"]

_MISS: Any = object()


def _loader(default: Any) -> Callable[[], Any]:
    return default if callable(default) else lambda: default


class RedkitCache(BackendBase):
    """A Django cache backend on redkit (``BACKEND: "redkit_django.cache.RedkitCache"``); a
    drop-in for ``django_redis.cache.RedisCache`` and ``django.core.cache.backends.redis``.
    Thread-safe; the clients are the process's (one per distinct settings)."""

    # -- BaseCache ----------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._cache().get(self.key(key, version), default)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store ``value``; True when stored (``nx``: only if absent, ``xx``: only if present).
        A timeout of 0 or less deletes the entry, as Django says."""
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return self._drop(k, nx, xx)
        return self._cache().set(k, value, ttl, tags, nx=nx, xx=xx)

    def add(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> bool:
        return self.set(key, value, timeout, version, nx=True, tags=tags)

    def _drop(self, key: str, nx: bool, xx: bool) -> bool:
        existed = self._cache().delete(key)
        return not existed if nx else existed if xx else True

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return self._cache().delete(k)
        return self._cache().touch(k, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._cache().delete(self.key(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = self.keys_of(keys, version)
        found = self._cache().get_many(made)
        return {made[k]: v for k, v in found.items()}

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> list[Any]:
        """Store every entry in one round trip; returns the keys that were not stored (all
        of them when Redis is unreachable and fail-open is on)."""
        made = self.keys_of(data, version)
        ttl = self.lifetime(timeout)
        if ttl is None:
            self._cache().delete_many(made)
            return []
        stored = self._cache().set_many({k: data[made[k]] for k in made}, ttl, tags)
        return [] if stored else list(made.values())

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> int:
        return self._cache().delete_many(self.keys_of(keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.get(key, _MISS, version) is not _MISS

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """The entry's value; on a miss ``default()`` (or ``default`` itself) is stored, the
        callable running in one caller only while the others wait for its value."""
        k, ttl, load = self.key(key, version), self.lifetime(timeout), _loader(default)
        if ttl is None:
            value = self._cache().get(k, _MISS)
            return load() if value is _MISS else value
        return self._cache().get_or_set(k, load, ttl, tags)

    def incr(
        self, key: Any, delta: int = 1, version: int | None = None, ignore_key_check: bool = False
    ) -> int:
        """Add ``delta`` atomically, in any size; a missing key raises ``ValueError`` (unless
        ``ignore_key_check``: then it starts at 0 with the default timeout)."""
        k = self.key(key, version)
        try:
            return self._cache().incr(
                k, delta, self.lifetime(DEFAULT_TIMEOUT), create=ignore_key_check
            )
        except KeyError:
            raise ValueError(f"Key {key!r} not found") from None

    def decr(
        self, key: Any, delta: int = 1, version: int | None = None, ignore_key_check: bool = False
    ) -> int:
        return self.incr(key, -delta, version, ignore_key_check)

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Move the entry to version ``version + delta`` keeping its value and lifetime."""
        version = self.version if version is None else version
        old = self.key(key, version)
        value = self._cache().get(old, _MISS)
        if value is _MISS:
            raise ValueError(f"Key {key!r} not found")
        left = self._cache().ttl(old) or self.options.forever_ttl
        new = self.key(key, version + delta)
        self._cache().set(new, value, left)
        self._cache().expire(new, min(left, self.options.forever_ttl))  # no second jitter
        self._cache().delete(old)
        return version + delta

    def decr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr_version(key, -delta, version)

    def clear(self) -> int:
        """Delete this backend's entries (every version of its ``KEY_PREFIX``); with a custom
        ``KEY_FUNCTION``, every cache entry of redkit's prefix."""
        pattern = self.clear_pattern()
        if pattern is None:
            return self._cache().clear()
        return self._cache().delete_matching(pattern)

    def close(self, **kwargs: Any) -> None:
        """Nothing to do: the connection pools belong to the process and are kept."""

    # -- redkit and django-redis ----------------------------------------------------------------
    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Make every entry set with any of ``tags`` miss (one round trip)."""
        return self._cache().invalidate(tags)

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Seconds left (django-redis: 0 when there is no entry)."""
        return self.django_ttl(self._cache().ttl(self.key(key, version)), 1)

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        """Milliseconds left (0 when there is no entry)."""
        return self.django_ttl(self._cache().ttl(self.key(key, version)), 1000)

    def expire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        """Give the entry exactly ``timeout`` seconds (``None``: ``FOREVER_TTL``; 0: delete)."""
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return self._cache().delete(k)
        return self._cache().expire(k, ttl)

    def pexpire(self, key: Any, timeout: int, version: int | None = None) -> bool:
        return self.expire(key, timeout / 1000, version)

    def expire_at(self, key: Any, when: datetime | float, version: int | None = None) -> bool:
        return self.expire(key, self.until(when, 1), version)

    def pexpire_at(self, key: Any, when: datetime | int, version: int | None = None) -> bool:
        return self.expire(key, self.until(when, 1000), version)

    def persist(self, key: Any, version: int | None = None) -> bool:
        """Every entry has a lifetime: this gives it the longest, ``FOREVER_TTL``."""
        return self.expire(key, None, version)

    def lock(
        self,
        key: Any,
        timeout: float | None = None,
        sleep: float = 0.1,
        *,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        thread_local: bool = True,
        version: int | None = None,
    ) -> Lock:
        """A redkit lock (``with cache.lock("k"):``); ``timeout`` is its lifetime (None: 30
        seconds, renewed while held), ``blocking_timeout`` how long to wait for it."""
        ttl = 30.0 if timeout is None else timeout
        wait = blocking_timeout if blocking else 0
        return self.kit.lock(self.key(key, version), ttl, wait, auto_renew=timeout is None)

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[Any]:
        """The keys matching the glob ``search`` (SCAN, never KEYS)."""
        for stored in self._cache().keys(self.pattern(search, version)):
            yield self.original(stored)

    def keys(self, search: str, version: int | None = None) -> list[Any]:
        return list(self.iter_keys(search, version=version))

    def delete_pattern(
        self, pattern: str, version: int | None = None, itersize: int | None = None, **kw: Any
    ) -> int:
        """Delete the entries whose keys match the glob ``pattern`` (SCAN, never KEYS)."""
        return self._cache().delete_matching(self.pattern(pattern, version))

    # -- asyncio ----------------------------------------------------------------------------------
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await self._acache().get(self.key(key, version), default)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
        tags: Iterable[str] | None = None,
    ) -> bool:
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return await self._adrop(k, nx, xx)
        return await self._acache().set(k, value, ttl, tags, nx=nx, xx=xx)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> bool:
        return await self.aset(key, value, timeout, version, nx=True, tags=tags)

    async def _adrop(self, key: str, nx: bool, xx: bool) -> bool:
        existed = await self._acache().delete(key)
        return not existed if nx else existed if xx else True

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return await self._acache().delete(k)
        return await self._acache().touch(k, ttl)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return await self._acache().delete(self.key(key, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = self.keys_of(keys, version)
        found = await self._acache().get_many(made)
        return {made[k]: v for k, v in found.items()}

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> list[Any]:
        made = self.keys_of(data, version)
        ttl = self.lifetime(timeout)
        if ttl is None:
            await self._acache().delete_many(made)
            return []
        stored = await self._acache().set_many({k: data[made[k]] for k in made}, ttl, tags)
        return [] if stored else list(made.values())

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> int:
        return await self._acache().delete_many(self.keys_of(keys, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return await self.aget(key, _MISS, version) is not _MISS

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """Like :meth:`get_or_set`; ``default`` may be an async callable."""
        k, ttl, load = self.key(key, version), self.lifetime(timeout), _loader(default)
        if ttl is None:
            value = await self._acache().get(k, _MISS)
            if value is not _MISS:
                return value
            value = load()
            return await value if hasattr(value, "__await__") else value
        return await self._acache().get_or_set(k, load, ttl, tags)

    async def aincr(
        self, key: Any, delta: int = 1, version: int | None = None, ignore_key_check: bool = False
    ) -> int:
        k = self.key(key, version)
        try:
            return await self._acache().incr(
                k, delta, self.lifetime(DEFAULT_TIMEOUT), create=ignore_key_check
            )
        except KeyError:
            raise ValueError(f"Key {key!r} not found") from None

    async def adecr(
        self, key: Any, delta: int = 1, version: int | None = None, ignore_key_check: bool = False
    ) -> int:
        return await self.aincr(key, -delta, version, ignore_key_check)

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        version = self.version if version is None else version
        old = self.key(key, version)
        value = await self._acache().get(old, _MISS)
        if value is _MISS:
            raise ValueError(f"Key {key!r} not found")
        left = await self._acache().ttl(old) or self.options.forever_ttl
        new = self.key(key, version + delta)
        await self._acache().set(new, value, left)
        await self._acache().expire(new, min(left, self.options.forever_ttl))
        await self._acache().delete(old)
        return version + delta

    async def adecr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await self.aincr_version(key, -delta, version)

    async def aclear(self) -> int:
        pattern = self.clear_pattern()
        if pattern is None:
            return await self._acache().clear()
        return await self._acache().delete_matching(pattern)

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing to do: each loop's client closes with its loop."""

    async def ainvalidate_tags(self, tags: Iterable[str]) -> int:
        return await self._acache().invalidate(tags)

    async def attl(self, key: Any, version: int | None = None) -> int | None:
        return self.django_ttl(await self._acache().ttl(self.key(key, version)), 1)

    async def apttl(self, key: Any, version: int | None = None) -> int | None:
        return self.django_ttl(await self._acache().ttl(self.key(key, version)), 1000)

    async def aexpire(self, key: Any, timeout: Any, version: int | None = None) -> bool:
        k, ttl = self.key(key, version), self.lifetime(timeout)
        if ttl is None:
            return await self._acache().delete(k)
        return await self._acache().expire(k, ttl)

    async def apersist(self, key: Any, version: int | None = None) -> bool:
        return await self.aexpire(key, None, version)

    def alock(
        self,
        key: Any,
        timeout: float | None = None,
        sleep: float = 0.1,
        *,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        version: int | None = None,
    ) -> AsyncLock:
        """The asyncio twin of :meth:`lock` (``async with cache.alock("k"):``), on the
        running loop's client."""
        kit: redkit.asyncio.Redkit = self._async_kit()
        ttl = 30.0 if timeout is None else timeout
        wait = blocking_timeout if blocking else 0
        return kit.lock(self.key(key, version), ttl, wait, auto_renew=timeout is None)

    async def aiter_keys(self, search: str, version: int | None = None) -> AsyncIterator[Any]:
        async for stored in self._acache().keys(self.pattern(search, version)):
            yield self.original(stored)

    async def adelete_pattern(self, pattern: str, version: int | None = None) -> int:
        return await self._acache().delete_matching(self.pattern(pattern, version))
