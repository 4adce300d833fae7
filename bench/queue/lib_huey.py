"""Huey (``RedisHuey``): calling the task enqueues it (``Task.map`` enqueues one at a time: no
bulk add); its consumer in this process with ``workers`` threads (default 1)."""

from __future__ import annotations

from typing import Any

import probe
from huey import RedisHuey

PACKAGE = "huey"
BULK = None
DEFAULT: dict[str, Any] = {"label": "workers=1 (thread)", "concurrency": 1}
SWEEP: list[dict[str, Any]] = [
    {"label": f"workers={c} (thread)", "concurrency": c} for c in (1, 10, 50, 200)
]

huey = RedisHuey("rkbench-huey", url=probe.url())


@huey.task()
def noop(i: int) -> None:
    probe.body_sync()


class Producer:
    def single(self, n: int, start: int) -> None:
        task = noop
        for i in range(start, start + n):
            task(i)


def work(config: dict[str, Any]) -> None:
    huey.create_consumer(workers=config["concurrency"], worker_type="thread").run()
