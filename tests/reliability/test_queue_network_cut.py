"""A network cut between a worker and Redis, shorter than the time its locks have left, runs no job
twice: with every setting at its default, the worker's Redis traffic goes through a proxy that
swallows every byte for 12 s (nothing is closed: calls hang until their socket timeout) while
another worker, on the other side of no cut, recovers whatever stalls. Every run is counted in a
ledger outside Redis."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import redkit
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix, proxied_url
from tests.servers import BlackholeProxy

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

CUT = 12.0  # seconds; the defaults' bound is 5/6 x 30 s less the 5 s socket timeout


@pytest.fixture
def proxy() -> Iterator[BlackholeProxy]:
    parts = urlsplit(REDIS_URL)
    p = BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield p
    p.close()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def test_a_cut_shorter_than_the_locks_left_runs_every_job_once(
    proxy: BlackholeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = new_prefix()
    near = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    far = redkit.Redkit.from_url(
        proxied_url(proxy.port), prefix=prefix
    )  # every setting its default
    ledger: list[tuple[str, str]] = []  # (job id, worker) per run
    lock = threading.Lock()
    queues = {"far": far.queue("cut"), "near": near.queue("cut")}
    for side, q in queues.items():

        @q.task(name="work")
        def work(seconds: float, side: str = side) -> str:
            from redkit.queue import current_job

            with lock:
                ledger.append((current_job().id, side))
            time.sleep(seconds)
            return side

    producer = queues["near"]
    workers = []
    try:
        with caplog.at_level(logging.WARNING, logger="redkit.worker"):
            a = queues["far"].worker(concurrency=8).start()
            workers.append(a)
            # four jobs that run through the cut and past it, four that end during it
            long = [producer.add("work", {"args": [CUT + 21], "kwargs": {}}) for _ in range(4)]
            short = [producer.add("work", {"args": [CUT - 0.5], "kwargs": {}}) for _ in range(4)]
            _wait(lambda: len(ledger) == 8, 20, "the cut worker to start eight jobs")
            proxy.cut()
            cut_at = time.monotonic()
            b = queues["near"].worker(concurrency=4).start()
            workers.append(b)
            more = [producer.add("work", {"args": [0.2], "kwargs": {}}) for _ in range(10)]
            time.sleep(max(0.0, CUT - (time.monotonic() - cut_at)))
            proxy.heal()
            assert proxy.swallowed > 0, "the worker's traffic did meet the cut"
            jobs = long + short + more
            _wait(
                lambda: all(producer.get_job(j.id).state == "completed" for j in jobs),  # type: ignore[union-attr]
                60,
                "every job to complete",
            )
        runs = Counter(job_id for job_id, _ in ledger)
        assert runs == Counter({j.id: 1 for j in jobs}), "each job ran once"
        assert {side for job_id, side in ledger if job_id in {j.id for j in long + short}} == {
            "far"
        }
        for j in long + short:
            assert producer.get_job(j.id).result == "far"  # type: ignore[union-attr]
        assert a.lost == 0
        messages = [r.getMessage() for r in caplog.records]
        assert any("reconnected to Redis" in m for m in messages), messages
        assert not any("lost the lock" in m for m in messages), messages
    finally:
        for w in workers:
            w.stop(5)
        near.clear()
        near.close()
        far.close()


def test_a_run_reported_after_a_cut_is_measured_as_it_ran(proxy: BlackholeProxy) -> None:
    """The run time the metrics keep is the worker's own measure: a job of 50 ms whose outcome
    waits 2 s for Redis counts as a run of 50 ms, not 2 s."""
    prefix = new_prefix()
    near = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    far = redkit.Redkit.from_url(proxied_url(proxy.port), prefix=prefix, socket_timeout=0.5)
    started = threading.Event()
    q = far.queue("measured-cut")

    @q.task(name="work")
    def work() -> None:
        started.set()
        time.sleep(0.05)

    job = near.queue("measured-cut").add("work", {"args": [], "kwargs": {}})
    worker = q.worker().start()
    try:
        _wait(started.is_set, 20, "the job to start")
        proxy.cut()  # the job ends meanwhile; its outcome waits for the cut to heal
        time.sleep(2.0)
        proxy.heal()
        _wait(lambda: near.queue("measured-cut").get_job(job.id).state == "completed", 30, "done")  # type: ignore[union-attr]
        run = near.queue("measured-cut").metrics(2).run
        assert run.count == 1
        assert run.percentile(100) <= 0.1  # the 50 ms bucket, never the 2 s the report waited
    finally:
        worker.stop(5)
        near.clear()
        near.close()
        far.close()
