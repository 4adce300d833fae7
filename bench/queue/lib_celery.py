"""Celery (Redis broker, no result backend): ``Task.delay`` (it has no bulk add: a ``group``
publishes one message per task); ``celery worker`` in this process. Its default pool is prefork
(child processes): the default row is prefork with one child; one-process pools are ``solo`` and
``threads``."""

from __future__ import annotations

from typing import Any

import probe
from celery import Celery

PACKAGE = "celery"
BULK = None
DEFAULT: dict[str, Any] = {
    "label": "prefork, 1 child",
    "pool": "prefork",
    "concurrency": 1,
    "processes": "1+1",
    "n": 10_000,  # several hundred jobs/s: fewer jobs
}
SWEEP: list[dict[str, Any]] = [
    {"label": "solo", "pool": "solo", "concurrency": 1},
    *({"label": f"threads={c}", "pool": "threads", "concurrency": c} for c in (10, 50, 200)),
]

app = Celery("rkbench", broker=probe.url())
app.conf.task_default_queue = "rkbench-celery"
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop(i: int) -> None:
    probe.body_sync()


class Producer:
    def single(self, n: int, start: int) -> None:
        delay = noop.delay
        for i in range(start, start + n):
            delay(i)


def work(config: dict[str, Any]) -> None:
    app.worker_main(
        [
            "worker",
            f"--pool={config['pool']}",
            f"--concurrency={config['concurrency']}",
            "--loglevel=WARNING",
        ]
    )
