"""RQ: ``Queue.enqueue`` / ``Queue.enqueue_many``; its ``Worker`` (a fork per job, the default)
and ``SimpleWorker`` (jobs run in the worker process). RQ runs one job at a time per process."""

from __future__ import annotations

from typing import Any

import probe
import redis
from rq import Queue, SimpleWorker, Worker

PACKAGE = "rq"
BULK = "Queue.enqueue_many"
DEFAULT: dict[str, Any] = {
    "label": "Worker (fork per job)",
    "cls": "Worker",
    "processes": "1+1/job",
    "n": 1000,  # a fork per job: well under a thousand jobs/s, so fewer jobs
}
SWEEP: list[dict[str, Any]] = [
    # one job at a time, about twenty round trips each: at most 10,000 jobs
    {"label": "SimpleWorker", "cls": "SimpleWorker", "concurrency": 1, "n": 10_000}
]


def noop(i: int) -> None:
    probe.body_sync()


def _queue() -> Queue:
    return Queue("bench", connection=redis.Redis.from_url(probe.url()))


class Producer:
    def __init__(self) -> None:
        self.q = _queue()

    def single(self, n: int, start: int) -> None:
        enqueue = self.q.enqueue
        for i in range(start, start + n):
            enqueue(noop, i)

    def prepare(self, n: int, start: int) -> list[Any]:
        return [Queue.prepare_data(noop, (i,)) for i in range(start, start + n)]

    def bulk(self, items: list[Any]) -> None:
        self.q.enqueue_many(items)


def work(config: dict[str, Any]) -> None:
    cls = SimpleWorker if config["cls"] == "SimpleWorker" else Worker
    q = _queue()
    cls([q], connection=q.connection).work(logging_level="WARNING")
