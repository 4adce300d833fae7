"""Cancellation across processes: a job running in a worker process is cancelled from another
(an async task stops there and then, a sync one is let go), and a job whose worker was killed
before the request reached it is cancelled when it is recovered, not run again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkit.errors import JobCancelled
from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, queue_lock_ttl=1)
    yield harness
    harness.cleanup()


@pytest.mark.parametrize("task", ["arecord", "record"])
def test_a_job_running_in_another_process_is_cancelled(h: Harness, task: str) -> None:
    (job_id,) = h.add_records([0], sleep=30, task=task)
    worker = h.worker("-c", "2")
    wait_for(lambda: h.recorded("starts") == 1, 30, "the job to start", log=worker.log)
    job = h.queue.get_job(job_id)
    asked = time.monotonic()
    assert job.cancel("from the operator") is True
    with pytest.raises(JobCancelled, match="from the operator"):
        job.wait(10)
    assert time.monotonic() - asked < 3
    (after,) = h.add_records([1], task=task)
    h.queue.get_job(after).wait(10)  # the worker goes on
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert h.recorded("ends") == 1  # the cancelled run never got to its end
    assert h.state(job_id) == "cancelled"


def test_a_job_whose_worker_died_is_cancelled_when_recovered_not_run_again(h: Harness) -> None:
    (job_id,) = h.add_records([0], sleep=30)
    first = h.worker("-c", "1")
    wait_for(lambda: h.recorded("starts") == 1, 30, "the job to start", log=first.log)
    first.kill()
    assert h.queue.get_job(job_id).cancel() is True  # asked of a worker that is gone
    second = h.worker("-c", "1")
    wait_for(lambda: h.state(job_id) == "cancelled", 30, "the cancel", log=second.log)
    time.sleep(0.5)
    assert h.recorded("starts") == 1
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
