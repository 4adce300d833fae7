"""A command runs but its reply is lost: redkit re-sends only what is safe to send twice."""

from __future__ import annotations

from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import RedkitConnectionError
from tests.conftest import call, new_prefix, proxied_url
from tests.servers import ReplyDroppingProxy


def _kit(mode: str, proxy: ReplyDroppingProxy, **options: Any) -> Any:
    url = proxied_url(proxy.port)
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), max_connections=4, **options)


async def _close(kit: Any) -> None:
    await call(kit.clear())
    await call(kit.aclose() if hasattr(kit, "aclose") else kit.close())


async def test_a_resent_lock_fetch_still_holds_its_lock(
    proxy: ReplyDroppingProxy, mode: str
) -> None:
    kit = _kit(mode, proxy, cache_lock_timeout=2)
    try:
        await call(kit.ping())
        proxy.drop_next_reply()
        assert await call(kit.cache.get_or_set("k", lambda: "v")) == "v"
        assert proxy.dropped == 1
        assert kit.stats.get("retries") == 1
        assert kit.stats.get("cache_lock_timeouts") == 0  # it did not wait for itself
        assert kit.stats.get("cache_loads") == 1  # and its value was stored
        assert await call(kit.cache.get("k")) == "v"
        lock = kit.cache._core.lock_key("k")
        assert await call(kit.client.pttl(lock)) == -2  # no lock left behind
    finally:
        await _close(kit)


async def test_incr_is_never_applied_twice(proxy: ReplyDroppingProxy, mode: str) -> None:
    kit = _kit(mode, proxy)
    try:
        await call(kit.ping())
        proxy.drop_next_reply()
        with pytest.raises(RedkitConnectionError):
            await call(kit.cache.incr("counter"))
        assert await call(kit.cache.get("counter")) == 1  # ran once, not re-sent
        assert kit.stats.get("retries") == 0
    finally:
        await _close(kit)


async def test_idempotent_reads_are_retried(proxy: ReplyDroppingProxy, mode: str) -> None:
    kit = _kit(mode, proxy)
    try:
        await call(kit.cache.set("k", {"v": 1}))
        proxy.drop_next_reply()
        assert await call(kit.cache.get("k")) == {"v": 1}
        assert kit.stats.get("retries") == 1
        assert kit.stats.get("cache_fail_open", 0) == 0
    finally:
        await _close(kit)


async def test_a_rate_limit_hit_is_never_counted_twice(
    proxy: ReplyDroppingProxy, mode: str
) -> None:
    kit = _kit(mode, proxy)
    try:
        # loads the script (another test may have flushed Redis' script cache): the reply
        # dropped below must be the one of the hit itself, not of a NOSCRIPT error
        assert (await call(kit.limiter.test("k", "3/minute"))).remaining == 3
        proxy.drop_next_reply()
        # the hit ran in Redis, its reply was lost: it is not re-sent, and fails open
        decision = await call(kit.limiter.hit("k", "3/minute"))
        assert decision.degraded
        assert kit.stats.get("retries") == 0
        assert (await call(kit.limiter.test("k", "3/minute"))).remaining == 2
        strict = kit.limiter.configure(fail_open=False)
        proxy.drop_next_reply()
        with pytest.raises(RedkitConnectionError):
            await call(strict.hit("k", "3/minute"))
        assert (await call(kit.limiter.test("k", "3/minute"))).remaining == 1
    finally:
        await _close(kit)
