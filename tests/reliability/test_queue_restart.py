"""Redis restarts under a running queue: with AOF (``appendfsync always``) no acknowledged job is
lost, and the worker process reconnects by itself.

A private redis-server is killed with SIGKILL mid-run and started again on the same port and
directory, while a producer thread adds jobs one by one and a ``redkit worker`` process runs them.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkit.errors import RedkitError
from tests.reliability.queue_apps.harness import Harness, wait_for
from tests.servers import RedisProcess


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess(None, "--appendonly", "yes", "--appendfsync", "always").start()
    yield proc
    proc.cleanup()


class Producer(threading.Thread):
    """Adds jobs ``job-0`` ... one at a time; an add that raised is sent again (same job id)
    until it returns. ``acked`` holds every id whose ``add()`` returned."""

    def __init__(self, h: Harness, count: int) -> None:
        super().__init__(daemon=True)
        self.h = h
        self.count = count
        self.acked: list[str] = []
        self.errors = 0
        self.stop = threading.Event()
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.count):
                job_id = f"job-{i}"
                while not self.stop.is_set():
                    try:
                        self.h.queue.add(
                            "record", {"args": [i, 0.005], "kwargs": {}}, job_id=job_id
                        )
                    except RedkitError:
                        self.errors += 1
                        time.sleep(0.05)
                        continue
                    self.acked.append(job_id)
                    break
                time.sleep(0.005)
        except BaseException as exc:
            self.crashed = exc


def test_no_acknowledged_job_is_lost_across_a_redis_restart(
    server: RedisProcess, tmp_path: Path
) -> None:
    h = Harness(
        tmp_path,
        base_url=server.url,
        queue_lock_ttl=1,
        queue_max_stalled=5,
        socket_timeout=1,
        socket_connect_timeout=0.5,
        breaker_cooldown=0.5,
    )
    producer = Producer(h, 400)
    try:
        w = h.worker("-c", "5")
        h.wait_serving(w)
        producer.start()
        wait_for(lambda: h.recorded("ends") >= 100, 60, "100 jobs done", log=w.log)

        server.stop()
        time.sleep(1.0)  # longer than the lock TTL: the worker's locks run out meanwhile
        server.start()

        producer.join(120)
        assert not producer.is_alive()
        assert producer.crashed is None, producer.crashed
        assert len(producer.acked) == 400
        assert producer.errors > 0, "adds were refused during the outage"
        wait_for(
            lambda: h.queue.counts()["completed"] == 400,
            60,
            "every job to complete",
            every=0.1,
            log=w.log,
        )
        log = w.log()
        assert "Redis is unreachable" in log
        assert "reconnected to Redis" in log
        assert w.poll() is None, "the worker lived through the restart"

        runs = h.run_counts("ends")
        for job_id in producer.acked:
            index = int(job_id.split("-")[1])
            assert runs[index] >= 1, f"{job_id} never ran"
            job = h.queue.get_job(job_id)
            assert job is not None
            assert job.state == "completed", job_id
            assert job.result == {"index": index, "pid": w.pid}
        counts = h.queue.counts()
        assert counts["failed"] == 0
        assert counts["active"] == 0
        assert counts["waiting"] == 0

        w.signal(signal.SIGTERM)
        assert w.wait(30) == 0
    finally:
        producer.stop.set()
        producer.join(10)
        h.cleanup()
