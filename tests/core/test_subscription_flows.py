"""Subscriptions run one set of flows under two drivers (blocking calls with a thread lock, awaited
calls with an asyncio lock): what those drivers must get right, through the public API on real
Redis and memory://, sync and async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from redkit.messaging import AsyncSubscription, Message
from tests.conftest import Kits, backend_url, call


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    return backend_url(str(request.param))


async def _subscribers(kit: Any, channel: str) -> int:
    name = kit.keyspace.key("pubsub", channel)
    return int(dict(await call(kit.client.pubsub_numsub(name))).get(name.encode(), 0))


async def test_a_cancelled_read_gives_the_subscription_back(url: str) -> None:
    kits = Kits(url, "async")
    kit = kits()
    try:
        sub = await kit.pubsub.subscribe("news")
        reader = asyncio.create_task(sub.get())
        await asyncio.sleep(0.1)  # waiting for a message, holding the subscription's lock
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await kit.pubsub.publish("news", {"n": 1})
        got = await asyncio.wait_for(sub.get(5), 10)
        assert got is not None
        assert got.data == {"n": 1}
        await asyncio.wait_for(sub.aclose(), 5)
        assert sub.closed
        assert await _subscribers(kit, "news") == 0
    finally:
        await kits.close()


async def test_a_refused_timeout_leaves_the_subscription_usable(make_kit: Kits) -> None:
    kit = make_kit()
    sub = await call(kit.pubsub.subscribe("news"))
    with pytest.raises(ValueError, match="timeout"):
        await call(sub.get(-1))
    with pytest.raises(TypeError, match="timeout"):
        await call(sub.get("soon"))
    await call(kit.pubsub.publish("news", 2))
    got = await call(sub.get(5))
    assert got is not None
    assert got.data == 2
    if isinstance(sub, AsyncSubscription):
        await asyncio.wait_for(sub.aclose(), 5)
    else:
        sub.close()
    assert await _subscribers(kit, "news") == 0


async def test_two_readers_take_turns_on_one_subscription(make_kit: Kits) -> None:
    kit = make_kit()
    sub = await call(kit.pubsub.subscribe("work"))
    got: list[Message | None] = []
    if isinstance(sub, AsyncSubscription):
        readers = [asyncio.create_task(sub.get(5)) for _ in range(2)]
        await asyncio.sleep(0.1)
        for n in range(2):
            await kit.pubsub.publish("work", n)
        got = list(await asyncio.gather(*readers))
        await sub.aclose()
    else:
        threads = [threading.Thread(target=lambda: got.append(sub.get(5))) for _ in range(2)]
        for t in threads:
            t.start()
        for n in range(2):
            kit.pubsub.publish("work", n)
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
        sub.close()
    assert sorted(m.data for m in got if m is not None) == [0, 1]
    assert repr(sub).startswith(f"<{type(sub).__name__} closed channels=('work',)")
