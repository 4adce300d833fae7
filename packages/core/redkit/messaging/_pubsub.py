"""``kit.pubsub``: publish and subscribe under the prefix (sync and async shells)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from .._connection import make_client
from .._executor import AsyncExecutor, SyncExecutor, wrap_error
from ._channels import PubSubCore, _subscription_names
from ._common import _IO_ERRORS, Channel
from ._subscriptions import AsyncSubscription, Subscription

log = logging.getLogger("redkit.messaging")


def _subscriber_client(kit: Any, asyncio_client: bool) -> Any:
    """The client whose pool subscriptions draw their connections from.

    A separate client (same settings, its own pool of ``max_connections``), so that long-lived
    subscriptions never take connections from the pool that commands use. On a cluster the
    main client's per-node pools are used.
    """
    if kit.settings.is_cluster:
        return kit.client
    return make_client(kit.settings, asyncio=asyncio_client)


class _Orphans:
    """The subscriptions still open when their client closes, closed with it: ``close()`` by
    the sync client, ``aclose()`` by the asyncio one, before their pools are released."""

    def __init__(self, subscriptions: list[Any]) -> None:
        self._subscriptions = subscriptions

    def close(self) -> None:
        for sub in self._subscriptions:
            try:
                sub.close()
            except Exception as exc:  # the client still closes
                log.warning("redkit: closing %r: %s", sub, exc)

    async def aclose(self) -> None:
        for sub in self._subscriptions:
            try:
                await sub.aclose()
            except Exception as exc:  # the client still closes
                log.warning("redkit: closing %r: %s", sub, exc)


class _PubSubBase:
    """What both shells hold: the core, the executor, the subscribers' client (made on first
    use) and the subscriptions handed out (weakly: one dropped unclosed is not kept alive)."""

    def __init__(self, kit: Any) -> None:
        self._kit = kit
        self._core = PubSubCore(kit)
        self._x = kit._executor
        self._client: Any = None
        self._subscriptions: weakref.WeakSet[Any] = weakref.WeakSet()

    def _orphan(self) -> _Orphans:
        """The client is closing: every subscription it handed out raises
        ``ClientClosedError`` from now on; returns them, to be closed before the pools are."""
        subs = [sub for sub in list(self._subscriptions) if not sub._closed]
        for sub in subs:
            sub._orphan()
        return _Orphans(subs)


class PubSub(_PubSubBase):
    """Publish/subscribe under the prefix, with JSON messages (``kit.pubsub``).

    Delivery is at most once: a message reaches the subscribers connected when it is published.
    For messages that must not be lost, use :class:`Stream`.
    """

    _x: SyncExecutor

    def __init__(self, kit: Any) -> None:
        super().__init__(kit)
        self._client_lock = threading.Lock()

    def publish(self, channel: Channel, message: Any) -> int:
        """Send ``message`` (any JSON value) to ``channel``; returns how many subscribers
        received it (on a cluster: those connected to the node that owns the channel's slot).
        Raises ``SerializationError`` before sending anything when it is not JSON."""
        return self._x.run(self._core.publish(channel, message))

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> Subscription:
        """Subscribe to ``channels`` and ``patterns`` on a new connection; returns once Redis
        confirmed, so every message published afterwards is received. Close the result (or use
        it as a context manager) to release the connection."""
        chans, pats = _subscription_names(self._core, channels, patterns)
        with self._client_lock:
            if self._client is None:
                self._client = _subscriber_client(self._kit, asyncio_client=False)
        sub = Subscription(self._core, self._client)
        self._subscriptions.add(sub)
        try:
            sub._start(chans, pats)
        except BaseException:
            sub.close()
            raise
        return sub


class AsyncPubSub(_PubSubBase):
    """Publish/subscribe under the prefix, with JSON messages (``kit.pubsub``, asyncio).

    Delivery is at most once: a message reaches the subscribers connected when it is published.
    For messages that must not be lost, use :class:`AsyncStream`.
    """

    _x: AsyncExecutor

    async def publish(self, channel: Channel, message: Any) -> int:
        """Send ``message`` (any JSON value) to ``channel``; returns how many subscribers
        received it (on a cluster: those connected to the node that owns the channel's slot).
        Raises ``SerializationError`` before sending anything when it is not JSON."""
        return await self._x.run(self._core.publish(channel, message))

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> AsyncSubscription:
        """A subscription to ``channels`` and ``patterns`` on a new connection. It subscribes
        when entered (``async with kit.pubsub.subscribe(...) as sub``), awaited (``sub = await
        kit.pubsub.subscribe(...)``) or first read, and then only returns once Redis confirmed,
        so every message published afterwards is received. Close it (or leave the ``async
        with`` block) to release the connection. Names are checked at once."""
        chans, pats = _subscription_names(self._core, channels, patterns)
        sub = AsyncSubscription(self._core, None)
        self._subscriptions.add(sub)

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
