"""The asyncio entry point: ``from redkit.asyncio import Redkit``.

Same names and parameters as :class:`redkit.Redkit`; methods that talk to Redis are coroutines.
The asyncio twins of the other public classes are here too, under the names ``redkit`` gives
them (``AsyncCache``, ``AsyncQueue``, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

from ._base import KitBase, _queue_names
from ._connection import make_client
from ._durations import NOT_GIVEN, Duration, renamed
from ._executor import AsyncExecutor
from ._ops import Batch, command
from .cache import AsyncCache, AsyncCachedFunction
from .idempotency import AsyncIdempotency
from .lock import AsyncLock
from .messaging import AsyncPubSub, AsyncStream
from .queue import AsyncJob, AsyncQueue, AsyncTask
from .ratelimit import AsyncLimiter
from .sessions import AsyncSessions
from .settings import Settings

__all__ = [
    "AsyncCache",
    "AsyncCachedFunction",
    "AsyncIdempotency",
    "AsyncJob",
    "AsyncLimiter",
    "AsyncLock",
    "AsyncPubSub",
    "AsyncQueue",
    "AsyncSessions",
    "AsyncStream",
    "AsyncTask",
    "Redkit",
    "Settings",
]


class Redkit(KitBase):
    """redkit over an asyncio redis-py client. Create one per event loop and share it."""

    _public_name = "redkit.AsyncRedkit"

    _executor: AsyncExecutor

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        health = self._setup(settings, options)
        self.client: Any = make_client(self.settings, asyncio=True)
        """The underlying redis-py asyncio client."""
        queue_beyond = self.settings.scheme in ("redis", "rediss", "unix")
        self._executor = AsyncExecutor(
            self.client,
            health,
            self.settings.is_cluster,
            self._retry,
            self.settings.max_connections if queue_beyond else None,
            self.settings.pool_timeout,
        )
        self.cache = AsyncCache(self._cache_core, self._executor, self)
        """Cache-aside: :class:`redkit.cache.AsyncCache`."""
        self.sessions = AsyncSessions(self)
        """Server-side sessions: :class:`redkit.sessions.AsyncSessions`."""
        self.idempotency = AsyncIdempotency(self)
        """Idempotency-Key records: :class:`redkit.idempotency.AsyncIdempotency`."""
        self.limiter = AsyncLimiter(self)
        """Rate limits: :class:`redkit.ratelimit.AsyncLimiter`."""
        self.pubsub = AsyncPubSub(self)
        """Publish/subscribe: :class:`redkit.messaging.AsyncPubSub`."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Redkit:
        """A client for ``url``; ``options`` are settings."""
        return cls(Settings.from_url(url, **options))

    @classmethod
    def from_env(cls, **options: Any) -> Redkit:
        """A client configured from ``REDKIT_URL`` (then ``REDIS_URL``) and ``REDKIT_*``."""
        return cls(Settings.from_env(**options))

    @classmethod
    def from_settings(cls, mapping: Mapping[str, Any]) -> Redkit:
        """A client from a settings mapping with case-insensitive keys."""
        return cls(Settings.from_mapping(mapping))

    def lock(
        self,
        name: object,
        ttl: Duration = 30.0,
        timeout: Duration | None = None,
        *,
        auto_renew: bool = False,
        blocking_timeout: Any = NOT_GIVEN,
    ) -> AsyncLock:
        """A distributed lock on ``name`` (see :class:`redkit.lock.AsyncLock`); use it as an async
        context manager. Nothing is sent until it is acquired."""
        timeout = renamed("lock()", "timeout", timeout, "blocking_timeout", blocking_timeout)
        return AsyncLock(self, name, ttl, timeout, auto_renew=auto_renew)

    def queue(
        self,
        name: str,
        *,
        attempts: int | None = None,
        backoff: Any = None,
        timeout: float | None = None,
        priority: int | None = None,
        keep: Any = None,
        events: int | None = None,
        dead_letter: str | None = None,
    ) -> AsyncQueue:
        """The job queue ``name`` (see :class:`redkit.queue.AsyncQueue`); the options are defaults
        of its jobs. The same name gives a queue over the same Redis state."""
        options = {
            "attempts": attempts,
            "backoff": backoff,
            "timeout": timeout,
            "priority": priority,
            "keep": keep,
            "events": events,
            "dead_letter": dead_letter,
        }
        return self._queue(AsyncQueue, name, options)  # type: ignore[no-any-return]

    def stream(self, name: object) -> AsyncStream:
        """The Redis stream ``name`` (see :class:`redkit.messaging.AsyncStream`)."""
        return AsyncStream(self, name)

    async def ping(self) -> bool:
        """True when Redis answers."""
        return bool(await self._executor.run(Batch.one(command("PING"))))

    async def queue_names(self) -> list[str]:
        """The names of the queues this prefix knows, sorted."""
        return await self._executor.run(_queue_names(self.keyspace))

    async def scan(self, match: str = "*") -> AsyncIterator[str]:
        """Iterate over this prefix's keys matching ``match`` (relative to the prefix)."""
        prefix = f"{self.settings.prefix}:"
        async for key in self._executor.scan(prefix + match):
            yield key.decode("utf-8", "backslashreplace")[len(prefix) :]

    async def clear(self) -> int:
        """Delete every key under this client's prefix; returns the count."""
        return await self._executor.delete_matching(self.keyspace.pattern())

    async def aclose(self) -> None:
        """Stop the client's tasks and threads and close its connection pools. Idempotent;
        afterwards every call of the client, and of the objects it handed out, raises
        :class:`~redkit.errors.ClientClosedError`."""
        for client in self._shut():
            await client.aclose()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:  # memory:// clients leave their pool open on aclose()
                await pool.disconnect()

    async def __aenter__(self) -> Redkit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
