"""The sync and async shells of kit.pubsub and kit.stream(name) over their shared cores: the same
counters, names, keys and answers, through the public API (real Redis, memory://, a cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from redkit import SerializationError
from tests.conftest import call


async def test_publish_counts_what_it_sent_and_nothing_it_refused(kit: Any) -> None:
    assert await call(kit.pubsub.publish("c", 1)) == 0
    assert await call(kit.pubsub.publish("c", [1, 2])) == 0
    with pytest.raises(SerializationError):
        await call(kit.pubsub.publish("c", {1, 2}))
    assert kit.stats.get("pubsub_published") == 2


async def test_a_stream_shell_names_its_key_and_acks_nothing_without_ids(kit: Any) -> None:
    stream = kit.stream("orders")
    assert stream.name == "orders"
    assert stream.key == f"{kit.settings.prefix}:stream:{{orders}}"
    assert repr(stream) == f"<{type(stream).__name__} {stream.key!r}>"
    assert type(stream).__name__ == (
        "AsyncStream" if "asyncio" in type(kit).__module__ else "Stream"
    )
    assert await call(stream.ack("g")) == 0  # nothing sent: the stream does not even exist
    assert await call(kit.client.exists(stream.key)) == 0  # and nothing was written
    with pytest.raises(ValueError, match="entry id"):
        await call(stream.ack("g", "not-an-id"))
    with pytest.raises(TypeError, match="group"):
        await call(stream.ack(None, "1-0"))
