"""The cache: cache-aside with ``@cached``, tag invalidation, stampede protection, TTL jitter and
the asyncio twin. ``python -m redkit demo --part cache`` runs it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redkit
import redkit.asyncio


class Database:
    """Stands in for a database whose query takes 200 ms; counts the queries it runs."""

    def __init__(self) -> None:
        self.queries = 0
        self._lock = threading.Lock()

    def load_user(self, user_id: int) -> dict[str, object]:
        with self._lock:
            self.queries += 1
        time.sleep(0.2)
        return {"id": user_id, "name": f"user-{user_id}", "plan": "pro"}


def timed(label: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    print(f"  {label:<44} {1000 * (time.perf_counter() - started):7.1f} ms  -> {result}")
    return result


def run(url: str) -> None:
    database = Database()
    with redkit.Redkit.from_url(url, prefix="demo") as kit:
        kit.cache.clear()

        @kit.cache.cached(ttl=60, key="user:{user_id}", tags=["users", "user:{user_id}"])
        def get_user(user_id: int) -> dict[str, object]:
            return database.load_user(user_id)

        print("1. cache-aside with @cached: the first call loads, the next ones hit")
        timed("get_user(7)  (miss: runs the query)", lambda: get_user(7))
        timed("get_user(7)  (hit)", lambda: get_user(7))

        print("\n2. tag invalidation: one round trip, however many entries carry the tag")
        for uid in range(1, 6):
            get_user(uid)
        timed("invalidate(['users'])", lambda: kit.cache.invalidate(["users"]))
        timed("get_user(3)  (miss again after invalidation)", lambda: get_user(3))

        print("\n3. stampede protection: 50 threads on a cold key, the query runs once")
        kit.cache.delete("user:42")
        database.queries = 0
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda _: get_user(42), range(50)))
        print(
            f"  50 callers got {len({str(r) for r in results})} distinct value(s); "
            f"the query ran {database.queries} time(s)"
        )

        print("\n4. TTL with jitter: entries written together do not expire together")
        kit.cache.set_many({f"page:{i}": i for i in range(5)}, ttl=100)
        ttls = [kit.client.pttl(kit.cache._core.entry_key(f"page:{i}")) / 1000 for i in range(5)]
        print("  TTLs (s):", ", ".join(f"{t:.1f}" for t in ttls))

        print("\n5. the async twin has the same API")
        asyncio.run(async_part(url))

        print("\n6. counters:", dict(sorted(kit.stats.snapshot().items())))
        kit.cache.clear()


async def async_part(url: str) -> None:
    async with redkit.asyncio.Redkit.from_url(url, prefix="demo") as akit:

        @akit.cache.cached(ttl=30)
        async def price(sku: str) -> float:
            await asyncio.sleep(0.1)
            return 9.99

        for label in ("miss", "hit "):
            started = time.perf_counter()
            value = await price("sku-1")
            print(
                f"  await price('sku-1')  ({label})"
                f"{1000 * (time.perf_counter() - started):24.1f} ms  -> {value}"
            )
