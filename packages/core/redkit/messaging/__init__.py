"""Messaging: pub/sub (``kit.pubsub``) and streams with consumer groups (``kit.stream(name)``).

Pub/sub is fire-and-forget: a message reaches the subscribers connected at that moment, and nobody
else. Streams keep messages (up to a bounded length) until each consumer group has read and
acknowledged them, and let a live consumer take over the messages of a dead one.

Everything lives under the prefix: channel ``<prefix>:pubsub:<escaped channel>`` and stream key
``<prefix>:stream:{<escaped name>}``. Payloads are strict JSON. The logic (names, encoding,
parsing, the read and claim loops, what a subscription does) is written once in
:class:`PubSubCore`, :class:`_SubState`, the subscriptions' flows and :class:`StreamCore`; the sync
and async classes are thin shells over them.
"""

from __future__ import annotations

from ._channels import Message
from ._pubsub import AsyncPubSub, PubSub
from ._streams import AsyncStream, PendingSummary, Stream, StreamMessage
from ._subscriptions import AsyncSubscription, Subscription

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
