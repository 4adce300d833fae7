"""What the sync and the async ``Redkit`` share: settings, keyspace, serializer, breaker, stats."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ._breaker import CircuitBreaker
from ._clientip import ClientIP
from ._executor import Health, RetryPolicy
from ._keys import Keyspace
from ._stats import Stats
from .cache._core import CacheCore
from .errors import ClientClosedError
from .serializers import Serializer, make_serializer
from .settings import Settings, redact_url

__all__ = ["Closed", "KitBase", "check_open"]

log = logging.getLogger("redkit")


class Closed:
    """Stands in for the redis-py clients of a closed kit, in the kit and in its executor: any
    use raises :class:`~redkit.errors.ClientClosedError`, so the send path needs no check of its
    own and nothing connects again."""

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __getattr__(self, name: str) -> NoReturn:
        raise self._error()

    def _error(self) -> ClientClosedError:
        return ClientClosedError(
            f"this redkit client ({self._where}) is closed: make a new one to talk to Redis"
        )

    def __repr__(self) -> str:
        return f"<closed redis client of {self._where}>"


def check_open(client: object) -> None:
    """Raise :class:`~redkit.errors.ClientClosedError` when ``client`` (an executor's) is the
    stand-in of a closed kit: for what would start a thread or a task before its first call."""
    if isinstance(client, Closed):
        raise client._error()


class KitBase:
    """State shared by :class:`redkit.Redkit` and :class:`redkit.asyncio.Redkit`."""

    settings: Settings
    keyspace: Keyspace
    serializer: Serializer
    stats: Stats
    breaker: CircuitBreaker
    client: Any
    """The underlying redis-py client (sync or asyncio)."""
    pubsub: Any
    _executor: Any
    _closed = False
    _public_name = "redkit.Redkit"
    """What ``repr`` calls the class: its public name, not the module that defines it."""

    def _setup(self, settings: Settings | None, options: Mapping[str, Any]) -> Health:
        if settings is None:
            settings = Settings.from_mapping(options) if options else Settings()
        elif options:
            settings = settings.replace(**options)
        self.settings = settings
        self.keyspace = Keyspace(settings.prefix, settings.max_key_length)
        self.serializer = make_serializer(settings.serializer, settings.secret_key)
        self.stats = Stats()
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)
        self.client_ip = ClientIP(settings.trusted_proxies)
        """Client address resolver over ``trusted_proxies`` (rate-limit keys, idempotency
        scopes): :class:`redkit.web.ClientIP`."""
        self._cache_core = CacheCore(
            settings, self.keyspace, self.serializer, self.stats, settings.is_cluster
        )
        self._retry = RetryPolicy(
            settings.retry_attempts, settings.retry_backoff_base, settings.retry_backoff_cap
        )
        return Health(self.breaker, self.stats, redact_url(settings.url))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` (``aclose`` in asyncio) has been called."""
        return self._closed

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` (stopping a thread of an adapter, say) when the client closes, before
        its pools are released; an exception it raises is logged and the rest still closes."""
        self.__dict__.setdefault("_closers", []).append(callback)

    def _shut(self) -> list[Any]:
        """The first half of closing: the kit's threads are stopped, the subscriptions it
        handed out raise ``ClientClosedError`` and its clients are replaced by :class:`Closed`.
        Returns what is left to close, in order: the open subscriptions (one object with
        ``close``/``aclose``), then the redis-py clients (none when the kit was closed
        already)."""
        if self._closed:
            return []
        self._closed = True
        for callback in self.__dict__.pop("_closers", ()):
            try:
                callback()
            except Exception as exc:  # the rest still closes
                log.warning("redkit: closing %r: %s", self, exc)
        subscriptions = self.pubsub._orphan()
        client, subscriber = self.client, self.pubsub._client
        closed = Closed(redact_url(self.settings.url))
        self.client = self._executor.client = self.pubsub._client = closed
        clients = [client] if subscriber is None or subscriber is client else [subscriber, client]
        return [subscriptions, *clients]

    def _queue(self, cls: Any, name: object, options: dict[str, Any]) -> Any:
        """``kit.queue(name, ...)``: one queue object per name per client, so the tasks
        registered on it are what a worker of it runs whichever call made it. The first call
        fixes the queue's options; a later call gives the same object when the options it passes
        are the first call's (or none), and raises ``ValueError`` when one differs."""
        queues: dict[str, tuple[Any, dict[str, Any]]] = self.__dict__.setdefault("_queues", {})
        if not isinstance(name, str):  # checked by the queue, before a lookup could hash it
            return cls(self, name, **options)
        given = {k: v for k, v in options.items() if v is not None}
        found = queues.get(name)
        if found is None:
            q = cls(self, name, **options)
            queues[name] = (q, given)
            return q
        q, fixed = found
        if any(fixed.get(k) != v for k, v in given.items()):
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(fixed.items())) or "no options"
            asked = ", ".join(f"{k}={v!r}" for k, v in sorted(given.items()))
            raise ValueError(
                f"queue {name!r} was made on this client with {shown}; asking for it again with "
                f"{asked} would make a second queue object that knows none of its tasks. Pass "
                "the same options or none (one kit.queue(...) call per queue, imported where "
                "it is needed)"
            )
        return q

    def __repr__(self) -> str:
        return (
            f"<{self._public_name} "
            f"url={redact_url(self.settings.url)!r} prefix={self.settings.prefix!r}>"
        )


def _queue_names(keyspace: Keyspace) -> Any:
    """The batch of ``queue_names()``: the registry's members, decoded and sorted."""
    from ._ops import Batch, command

    def parse(raw: list[bytes]) -> list[str]:
        return sorted(n.decode("utf-8", "replace") for n in raw)

    return Batch.one(command("ZRANGE", keyspace.key("queues"), 0, -1), parse)
