"""bullmq (Python): ``Queue.add`` / ``Queue.addBulk``; its ``Worker`` with ``concurrency`` jobs
in flight (default 1)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import probe
from bullmq import Queue, Worker

PACKAGE = "bullmq"
BULK = "Queue.addBulk"
DEFAULT: dict[str, Any] = {"label": "concurrency=1", "concurrency": 1}
SWEEP: list[dict[str, Any]] = [
    {"label": f"concurrency={c}", "concurrency": c} for c in (1, 10, 50, 200)
]


async def process(job: Any, token: str) -> None:
    await probe.body_async()


class Producer:
    async def open(self) -> None:
        self.q = Queue("bench", {"connection": probe.url()})

    async def single(self, n: int, start: int) -> None:
        add = self.q.add
        for i in range(start, start + n):
            await add("noop", {"i": i})

    def prepare(self, n: int, start: int) -> list[Any]:
        return [{"name": "noop", "data": {"i": i}} for i in range(start, start + n)]

    async def bulk(self, items: list[Any]) -> None:
        await self.q.addBulk(items)

    async def close(self) -> None:
        await self.q.close()


def work(config: dict[str, Any]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = Worker(
            "bench", process, {"connection": probe.url(), "concurrency": config["concurrency"]}
        )
        await stop.wait()
        await worker.close()

    asyncio.run(main())
