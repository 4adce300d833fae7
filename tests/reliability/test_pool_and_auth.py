"""A busy pool and bad credentials are not outages: they never open the circuit breaker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import AuthenticationError
from tests.conftest import REDIS_URL, backend_url, call, new_prefix


def _hold_the_only_connection(kit: Any, seconds: float) -> threading.Thread:
    """A thread holding the client's one connection in a BLPOP for ``seconds`` (join it)."""
    started = threading.Event()

    def hold() -> None:
        started.set()
        kit.client.blpop([f"{kit.settings.prefix}:never"], timeout=seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait()
    threading.Event().wait(0.05)  # the BLPOP is sent: the connection is taken
    return holder


def test_exhausted_pool_waits_then_fails_open_without_opening_the_breaker() -> None:
    url = backend_url("redis")
    kit = redkit.Redkit.from_url(url, prefix=new_prefix(), max_connections=1, pool_timeout=0.2)
    holder = _hold_the_only_connection(kit, 1)
    try:
        assert kit.cache.get_or_set("k", lambda: "from loader") == "from loader"
        assert kit.stats.get("pool_exhausted") == 1
        assert kit.stats.get("cache_fail_open") == 1
        assert kit.stats.get("connection_errors") == 0
        assert kit.breaker.state == "closed"
    finally:
        holder.join()
        kit.clear()
        kit.close()
    # once the connection is free again everything works
    kit2 = redkit.Redkit.from_url(url, prefix=new_prefix(), max_connections=1)
    assert kit2.cache.get_or_set("k", lambda: 1) == 1
    kit2.clear()
    kit2.close()


async def test_async_pool_waits_for_a_free_connection() -> None:
    url = backend_url("redis")
    kit = redkit.asyncio.Redkit.from_url(url, prefix=new_prefix(), max_connections=2)
    try:
        values = await asyncio.gather(
            *(kit.cache.get_or_set(f"k{i}", lambda: 1) for i in range(40))
        )
        assert values == [1] * 40
        assert kit.stats.get("pool_exhausted") == 0
    finally:
        await kit.clear()
        await kit.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_wrong_credentials_raise_and_do_not_fail_open(mode: str) -> None:
    backend_url("redis")
    cls: Any = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit = cls.from_url(
        REDIS_URL, prefix=new_prefix(), username="no-such-user", password="wrong", retry_attempts=0
    )
    try:
        for _ in range(5):
            with pytest.raises(AuthenticationError) as info:
                await call(kit.cache.get_or_set("k", lambda: 1))
            assert "wrong" not in str(info.value)
        assert kit.breaker.state == "closed"
        assert kit.stats.get("cache_fail_open") == 0
    finally:
        await call(kit.aclose() if mode == "async" else kit.close())


async def test_async_callers_beyond_the_pool_wait_then_fail_open() -> None:
    url = backend_url("redis")
    kit = redkit.asyncio.Redkit.from_url(
        url, prefix=new_prefix(), max_connections=1, pool_timeout=0.2
    )
    slots = kit._executor._slots
    assert slots is not None
    try:
        await slots.acquire()  # the one connection is busy for longer than pool_timeout
        assert await kit.cache.get_or_set("k", lambda: "from loader") == "from loader"
        assert kit.stats.get("pool_exhausted") == 1
        assert kit.stats.get("cache_fail_open") == 1
        assert kit.breaker.state == "closed"
        slots.release()
        assert await kit.cache.get_or_set("k", lambda: "stored") == "stored"
        assert await kit.cache.get("k") == "stored"
    finally:
        await kit.clear()
        await kit.aclose()


def test_a_caller_waits_for_a_busy_pool_connection_to_come_back() -> None:
    kit = redkit.Redkit.from_url(
        backend_url("redis"), prefix=new_prefix(), max_connections=1, pool_timeout=10
    )
    holder = _hold_the_only_connection(kit, 0.3)
    try:
        # the one connection is busy in BLPOP: this waits for it instead of failing
        assert kit.cache.set("k", "v") is True
        assert kit.cache.get("k") == "v"
        assert kit.stats.get("pool_exhausted") == 0
    finally:
        holder.join()
        kit.clear()
        kit.close()
