"""Dramatiq (Redis broker): ``Actor.send`` (it has no bulk add: ``group`` sends one message at a
time); a ``Worker`` in this process with ``worker_threads`` threads (the ``dramatiq`` command's
default is 8 threads in each of one process per CPU)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import dramatiq
import probe
from dramatiq.brokers.redis import RedisBroker

PACKAGE = "dramatiq"
BULK = None
DEFAULT: dict[str, Any] = {"label": "threads=8", "concurrency": 8}
SWEEP: list[dict[str, Any]] = [
    {"label": "threads=1", "concurrency": 1, "n": 2000},  # a few hundred jobs/s: fewer jobs
    *({"label": f"threads={c}", "concurrency": c} for c in (8, 50, 200)),
]

broker = RedisBroker(url=probe.url(), namespace="rkbench-dramatiq")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop(i: int) -> None:
    probe.body_sync()


class Producer:
    def single(self, n: int, start: int) -> None:
        send = noop.send
        for i in range(start, start + n):
            send(i)


def work(config: dict[str, Any]) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, worker_threads=config["concurrency"])
    worker.start()
    stop.wait()
    worker.stop()
    broker.close()
