"""Worker processes that fail jobs for good: every such job yields exactly one dead letter, whether
it failed by raising or by stalling, and whatever dies or refuses in between (the worker killed
before the letter went on, the dead-letter queue's keys refusing the write); a worker survives a
Redis error on a letter, and ``Worker.run()`` ends its process after the shutdown timeout even while
a sync task still runs."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

LONG = 60.0


@pytest.fixture
def h(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    keep = getattr(request, "param", None)
    env = {"RKQ_DEAD": "jobs-dead"}
    if keep is not None:
        env["RKQ_KEEP_FAILED"] = str(keep)
    harness = Harness(tmp_path, env=env, queue_lock_ttl=1, queue_max_stalled=0)
    yield harness
    harness.cleanup()


def letters(h: Harness) -> dict[str, Any]:
    """The dead-letter queue's jobs: letter id -> its data."""
    dead = h.kit.queue("jobs-dead")
    out = {}
    for state in ("waiting", "active", "completed", "failed"):
        for letter_id in dead.jobs(state, 0, -1):
            job = dead.get_job(letter_id)
            assert job is not None
            out[letter_id] = job.data
    return out


def letters_per_job(h: Harness) -> Counter[str]:
    return Counter(data["job_id"] for data in letters(h).values())


@pytest.mark.parametrize("h", [0, None], indirect=True, ids=["keep-no-failed", "keep-failed"])
def test_jobs_that_fail_by_stalling_yield_one_letter_each_even_when_deleted_as_they_fail(
    h: Harness,
) -> None:
    ids = h.add_records(range(3), sleep=LONG)
    first = h.worker("-c", "3")
    wait_for(lambda: h.recorded("starts") == 3, 30, "three jobs to start", log=first.log)
    first.kill()  # its jobs' locks run out: stalled once, more than max_stalled=0
    second = h.worker("-c", "3")
    wait_for(lambda: len(letters(h)) == 3, 30, "three dead letters", log=second.log)
    time.sleep(1.5)  # a second letter of one job, if any, would come now
    assert letters_per_job(h) == Counter(ids)
    for data in letters(h).values():
        assert data["failed_reason"].startswith("stalled 1 times (max_stalled is 0)")
        assert data["queue"] == "jobs"
        assert data["name"] == "record"
        assert data["data"]["args"][1] == LONG
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    for job_id in ids:
        assert h.state(job_id) == (None if h.extra_env.get("RKQ_KEEP_FAILED") == "0" else "failed")
    assert h.recorded("starts") == 3, "a stalled job failed for good does not run again"


def test_a_letter_refused_by_redis_waits_through_a_crash_and_arrives_once(h: Harness) -> None:
    dead_wait = h.kit.queue("jobs-dead")._core.wait
    h.client.set(dead_wait, "not a list")  # every add to the dead-letter queue: WRONGTYPE
    refused = h.add_records([0], task="refuse")
    worker = h.worker("-c", "2")
    wait_for(lambda: h.state(refused[0]) == "failed", 30, "the job to fail", log=worker.log)
    # the worker survives the refusal and goes on with later jobs
    later = h.add_records(range(1, 6))
    wait_for(lambda: h.recorded("ends") == 5, 30, "the later jobs to run", log=worker.log)
    wait_for(lambda: "WRONGTYPE" in worker.log(), 10, "the refusal logged", log=worker.log)
    assert "could not send dead letters" in worker.log()
    assert all(h.state(j) == "completed" for j in later)
    assert h.client.xlen(h.queue._core.letters) == 1  # kept in the queue's own slot
    worker.kill()  # the letter is neither sent nor lost
    h.client.delete(dead_wait)
    again = h.worker("-c", "2")
    wait_for(lambda: len(letters(h)) == 1, 30, "the letter sent by the next worker", log=again.log)
    time.sleep(1.0)
    (data,) = letters(h).values()
    assert data == {
        "queue": "jobs",
        "job_id": refused[0],
        "name": "refuse",
        "data": {"args": [0, 0.0], "kwargs": {}},
        "failed_reason": "Unrecoverable: job 0 is refused",
        "attempts_made": 1,
    }
    assert h.client.xlen(h.queue._core.letters) == 0
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0


def test_worker_run_exits_after_the_shutdown_timeout_while_a_sync_task_still_runs(
    h: Harness,
) -> None:
    ids = h.add_records(range(2), sleep=LONG)
    proc = h.start("-m", "queue_apps.run_worker", "0.5")
    wait_for(lambda: h.recorded("starts") == 2, 30, "both jobs to start", log=proc.log)
    began = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - began < 10
    assert "run returned" in proc.log()
    assert sorted(h.queue.jobs("waiting", 0, -1)) == sorted(ids), "given back to the queue"
