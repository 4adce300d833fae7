"""The synchronous entry point, :class:`Redkit`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from ._base import KitBase, _queue_names
from ._connection import make_client
from ._durations import NOT_GIVEN, Duration, renamed
from ._executor import SyncExecutor
from ._ops import Batch, command
from .cache._api import Cache
from .idempotency import Idempotency
from .lock import Lock
from .messaging import PubSub, Stream
from .queue import Queue
from .ratelimit import Limiter
from .sessions import Sessions
from .settings import Settings

__all__ = ["Redkit"]


class Redkit(KitBase):
    """redkit over a blocking redis-py client. Thread-safe; create one per process and share it.

    ``Redkit()`` uses ``memory://``; most code calls :meth:`from_url`, :meth:`from_env` or
    :meth:`from_settings`. Keyword ``options`` are :class:`~redkit.settings.Settings` fields.
    ``redkit.asyncio.Redkit`` has the same methods, awaited.
    """

    _executor: SyncExecutor

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        health = self._setup(settings, options)
        self.client: Any = make_client(self.settings, asyncio=False)
        """The underlying redis-py client, for commands redkit does not wrap."""
        self._executor = SyncExecutor(self.client, health, self.settings.is_cluster, self._retry)
        self.cache = Cache(self._cache_core, self._executor, self)
        """Cache-aside: :class:`redkit.cache.Cache`."""
        self.sessions = Sessions(self)
        """Server-side sessions: :class:`redkit.sessions.Sessions`."""
        self.idempotency = Idempotency(self)
        """Idempotency-Key records: :class:`redkit.idempotency.Idempotency`."""
        self.limiter = Limiter(self)
        """Rate limits: :class:`redkit.ratelimit.Limiter`."""
        self.pubsub = PubSub(self)
        """Publish/subscribe: :class:`redkit.messaging.PubSub`."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Redkit:
        """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
        ``redis+cluster://``, ``memory://``); ``options`` are settings."""
        return cls(Settings.from_url(url, **options))

    @classmethod
    def from_env(cls, **options: Any) -> Redkit:
        """A client configured from ``REDKIT_URL`` (then ``REDIS_URL``) and ``REDKIT_*``."""
        return cls(Settings.from_env(**options))

    @classmethod
    def from_settings(cls, mapping: Mapping[str, Any]) -> Redkit:
        """A client from a settings mapping with case-insensitive keys (e.g. a framework's
        config section)."""
        return cls(Settings.from_mapping(mapping))

    def lock(
        self,
        name: object,
        ttl: Duration = 30.0,
        timeout: Duration | None = None,
        *,
        auto_renew: bool = False,
        blocking_timeout: Any = NOT_GIVEN,
    ) -> Lock:
        """A distributed lock on ``name`` (see :class:`redkit.lock.Lock`); use it as a
        context manager. Nothing is sent until it is acquired."""
        timeout = renamed("lock()", "timeout", timeout, "blocking_timeout", blocking_timeout)
        return Lock(self, name, ttl, timeout, auto_renew=auto_renew)

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
    ) -> Queue:
        """The job queue ``name`` (see :class:`redkit.queue.Queue`); the options are defaults
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
        return self._queue(Queue, name, options)  # type: ignore[no-any-return]

    def stream(self, name: object) -> Stream:
        """The Redis stream ``name`` (see :class:`redkit.messaging.Stream`)."""
        return Stream(self, name)

    def ping(self) -> bool:
        """True when Redis answers (raises ``RedkitConnectionError`` when it does not)."""
        return bool(self._executor.run(Batch.one(command("PING"))))

    def queue_names(self) -> list[str]:
        """The names of the queues this prefix knows (each queue is listed once a job is added
        to it; listed 30 days from the last add), sorted."""
        return self._executor.run(_queue_names(self.keyspace))

    def scan(self, match: str = "*") -> Iterator[str]:
        """Iterate over this prefix's keys matching ``match`` (relative to the prefix), by SCAN."""
        prefix = f"{self.settings.prefix}:"
        for key in self._executor.scan(prefix + match):
            yield key.decode("utf-8", "backslashreplace")[len(prefix) :]

    def clear(self) -> int:
        """Delete every key under this client's prefix (SCAN + UNLINK); returns the count."""
        return self._executor.delete_matching(self.keyspace.pattern())

    def close(self) -> None:
        """Stop the client's threads and close its connection pools. Idempotent; afterwards
        every call of the client, and of the objects it handed out, raises
        :class:`~redkit.errors.ClientClosedError`."""
        for client in self._shut():
            client.close()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:  # memory:// clients leave their pool open on close()
                pool.disconnect()

    def __enter__(self) -> Redkit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
