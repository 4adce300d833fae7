"""SAQ: ``Queue.enqueue`` (its ``map``/``apply`` wait for the results: no bulk add); its
``Worker`` with ``concurrency`` jobs in flight (default 10)."""

from __future__ import annotations

import asyncio
from typing import Any

import probe
from saq import Queue, Worker

PACKAGE = "saq"
BULK = None
DEFAULT: dict[str, Any] = {"label": "concurrency=10", "concurrency": 10}
SWEEP: list[dict[str, Any]] = [
    {"label": f"concurrency={c}", "concurrency": c} for c in (1, 10, 50, 200)
]


async def noop(ctx: Any, *, i: int) -> None:
    await probe.body_async()


class Producer:
    async def open(self) -> None:
        self.q = Queue.from_url(probe.url(), name="bench")
        await self.q.connect()

    async def single(self, n: int, start: int) -> None:
        enqueue = self.q.enqueue
        for i in range(start, start + n):
            await enqueue("noop", i=i)

    async def close(self) -> None:
        await self.q.disconnect()


def work(config: dict[str, Any]) -> None:
    async def main() -> None:
        q = Queue.from_url(probe.url(), name="bench")
        worker = Worker(q, functions=[noop], concurrency=config["concurrency"])
        await q.connect()
        try:
            await worker.start()  # until SIGTERM
        finally:
            await q.disconnect()

    asyncio.run(main())
