"""arq: ``ArqRedis.enqueue_job`` (it has no bulk add); its ``Worker`` with ``max_jobs`` jobs in
flight (default 10). arq pins redis-py < 6, so it runs from a virtual environment of its own."""

from __future__ import annotations

from typing import Any

import probe
from arq import Worker, create_pool
from arq.connections import RedisSettings

PACKAGE = "arq"
BULK = None
# arq polls for jobs (every 0.5 s by default): a few jobs per second with max_jobs=1, a few hundred
# with 10; such runs get fewer jobs ("n")
DEFAULT: dict[str, Any] = {"label": "max_jobs=10", "concurrency": 10, "n": 4000}
SWEEP: list[dict[str, Any]] = [
    {"label": "max_jobs=1", "concurrency": 1, "n": 40},
    {"label": "max_jobs=10", "concurrency": 10, "n": 4000},
    {"label": "max_jobs=50", "concurrency": 50},
    {"label": "max_jobs=200", "concurrency": 200},
]
QUEUE = "rkbench:arq"


async def noop(ctx: Any, i: int) -> None:
    await probe.body_async()


class Producer:
    async def open(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(probe.url()), default_queue_name=QUEUE)

    async def single(self, n: int, start: int) -> None:
        enqueue = self.pool.enqueue_job
        for i in range(start, start + n):
            await enqueue("noop", i)

    async def close(self) -> None:
        await self.pool.aclose()


def work(config: dict[str, Any]) -> None:
    Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(probe.url()),
        queue_name=QUEUE,
        max_jobs=config["concurrency"],
    ).run()
