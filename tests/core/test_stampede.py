"""Stampede protection: 50 concurrent callers on a cold key run the loader exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redkit
import redkit.asyncio

CALLERS = 50


def test_50_threads_on_a_cold_key_load_once(url: str, prefix: str) -> None:
    # separate clients, as separate app processes would have: the lock is in Redis, not local
    kits = [redkit.Redkit.from_url(url, prefix=prefix) for _ in range(5)]
    runs: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CALLERS)

    def loader() -> dict[str, Any]:
        with lock:
            runs.append(1)
        time.sleep(0.3)  # slow enough that every caller arrives while it runs
        return {"report": 42}

    def caller(i: int) -> Any:
        barrier.wait()
        return kits[i % len(kits)].cache.get_or_set("cold", loader, ttl=60)

    try:
        with ThreadPoolExecutor(CALLERS) as pool:
            results = list(pool.map(caller, range(CALLERS)))
        assert runs == [1]
        assert results == [{"report": 42}] * CALLERS
        stats = [k.stats.snapshot() for k in kits]
        assert sum(s.get("cache_loads", 0) for s in stats) == 1
        assert sum(s.get("cache_lock_timeouts", 0) for s in stats) == 0
    finally:
        kits[0].clear()
        for k in kits:
            k.close()


async def test_50_tasks_on_a_cold_key_load_once(url: str, prefix: str) -> None:
    kits = [redkit.asyncio.Redkit.from_url(url, prefix=prefix) for _ in range(5)]
    runs: list[int] = []

    async def loader() -> dict[str, Any]:
        runs.append(1)
        await asyncio.sleep(0.3)
        return {"report": 42}

    try:
        results = await asyncio.gather(
            *(kits[i % 5].cache.get_or_set("cold", loader, ttl=60) for i in range(CALLERS))
        )
        assert runs == [1]
        assert results == [{"report": 42}] * CALLERS
    finally:
        await kits[0].clear()
        for k in kits:
            await k.aclose()


async def test_decorated_function_under_concurrency_loads_once(url: str, prefix: str) -> None:
    kit = redkit.asyncio.Redkit.from_url(url, prefix=prefix)
    runs: list[int] = []

    @kit.cache.cached(ttl=60, key="dash:{team}")
    async def dashboard(team: str) -> dict[str, str]:
        runs.append(1)
        await asyncio.sleep(0.2)
        return {"team": team}

    try:
        results = await asyncio.gather(*(dashboard("red") for _ in range(CALLERS)))
        assert results == [{"team": "red"}] * CALLERS
        assert runs == [1]
    finally:
        await kit.clear()
        await kit.aclose()


def test_waiters_fall_back_to_the_loader_after_lock_wait(url: str, prefix: str) -> None:
    # a lock holder that never finishes (a crashed process) delays others by cache_lock_timeout
    kit = redkit.Redkit.from_url(url, prefix=prefix, cache_lock_timeout=0.3, cache_lock_ttl=30)
    try:
        kit.client.set(kit.cache._core.lock_key("k"), "dead-process", px=30_000)
        started = time.monotonic()
        assert kit.cache.get_or_set("k", lambda: "loaded") == "loaded"
        assert time.monotonic() - started < 5
        assert kit.stats.get("cache_lock_timeouts") == 1
    finally:
        kit.clear()
        kit.close()


def test_an_expired_lock_of_a_dead_holder_is_taken_over(url: str, prefix: str) -> None:
    kit = redkit.Redkit.from_url(url, prefix=prefix, cache_lock_timeout=5)
    try:
        kit.client.set(kit.cache._core.lock_key("k"), "dead-process", px=150)
        assert kit.cache.get_or_set("k", lambda: "mine") == "mine"
        assert kit.stats.get("cache_lock_timeouts") == 0
        assert kit.stats.get("cache_loads") == 1
        assert kit.cache.get("k") == "mine"
    finally:
        kit.clear()
        kit.close()
