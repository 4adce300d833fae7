"""Worker processes die or freeze under the job queue: nothing is lost, little runs twice.

Real ``redkit worker`` processes (``queue_apps/jobs.py``) run against the real Redis and are
killed with SIGKILL, frozen with SIGSTOP past their lock TTL, or crash on a poison job
(``os._exit``, a segfault). Each task records its runs in Redis, so the tests count how often
each job ran.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**settings: Any) -> Harness:
        h = Harness(tmp_path, **settings)
        made.append(h)
        return h

    yield make
    for h in made:
        h.cleanup()


def test_sigkill_mid_run_loses_nothing_and_reruns_only_jobs_in_flight(
    harness: Callable[..., Harness],
) -> None:
    jobs, concurrency = 1000, 10
    h = harness(queue_lock_ttl=1, queue_keep_completed=5000)
    ids = h.add_records(range(jobs), sleep=0.01)
    first = h.worker("-c", str(concurrency))
    wait_for(lambda: h.recorded("ends") >= 300, 60, "300 jobs done", log=first.log)
    first.kill()
    # a round trip the worker sent just before it died still runs in Redis: let it land
    # (nothing can recover the dead worker's jobs before its 1 s locks run out)
    time.sleep(0.1)

    # what the dead worker held: jobs active in Redis (running, or done but not yet reported)
    in_flight = set(h.active_ids())
    done_before_kill = h.run_counts("ends")
    assert 300 <= sum(done_before_kill.values()) < jobs, "the kill must land mid-run"
    assert 1 <= len(in_flight) <= concurrency
    assert all((h.token(i) or "").split(":")[1] == str(first.pid) for i in in_flight)

    second = h.worker("-c", str(concurrency))
    wait_for(
        lambda: h.queue.counts()["completed"] == jobs, 60, "every job to complete", log=second.log
    )
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0

    counts = h.queue.counts()
    assert counts == {
        "waiting": 0,
        "prioritized": 0,
        "delayed": 0,
        "active": 0,
        "completed": jobs,
        "failed": 0,
        "cancelled": 0,
        "waiting_children": 0,
    }
    runs = h.run_counts("ends")
    assert set(runs) == set(range(jobs)), "every job ran"
    twice = {i for i, n in runs.items() if n > 1}
    assert max(runs.values()) <= 2
    assert len(twice) <= concurrency
    # only a job the killed worker still held ran again; one it had reported never did
    assert {f"job-{i}" for i in twice} <= in_flight
    for job_id in ids:
        job = h.queue.get_job(job_id)
        assert job is not None
        assert job.state == "completed"
        assert job.result["index"] == int(job_id.split("-")[1])
        if job_id in in_flight:
            # recovered as stalled, then run by the second worker
            assert job.result["pid"] == second.pid
            assert job.record is not None
            assert job.record.stalls == 1
        else:
            assert job.result["pid"] in (first.pid, second.pid)
            assert job.record is not None
            assert job.record.stalls == 0
            if job.result["pid"] == first.pid:
                assert runs[int(job_id.split("-")[1])] == 1


def test_a_frozen_workers_late_result_is_rejected_after_another_took_the_job(
    harness: Callable[..., Harness],
) -> None:
    h = harness(queue_lock_ttl=0.5)
    a = h.worker("-c", "1")
    h.wait_serving(a)
    job = h.queue.add("record", {"args": [7, 1.0], "kwargs": {}}, job_id="slow")
    wait_for(lambda: (7, a.pid) in h.entries("starts"), 30, "worker A to start the job", log=a.log)
    a.signal(signal.SIGSTOP)
    # frozen: its renewer thread is frozen too, so the lock runs out
    wait_for(lambda: h.lock_expired("slow"), 30, "the frozen worker's lock to expire")

    b = h.worker("-c", "1")
    result = job.wait(timeout=30)
    assert result == {"index": 7, "pid": b.pid}

    a.signal(signal.SIGCONT)
    # A wakes up, its task returns, and its outcome is refused (the job is B's now)
    wait_for(lambda: (7, a.pid) in h.entries("ends"), 30, "worker A to finish its run", log=a.log)
    wait_for(
        lambda: "was taken over after its lock expired" in a.log(),
        30,
        "worker A to report its rejected result",
        log=a.log,
    )

    job.refresh()
    assert job.state == "completed"
    assert job.result == {"index": 7, "pid": b.pid}
    assert job.record is not None
    assert job.record.stalls == 1
    assert job.attempts_made == 1  # a stall is not an attempt; the completed run is
    assert [pid for i, pid in h.entries("starts") if i == 7] == [a.pid, b.pid]
    assert sorted(pid for i, pid in h.entries("ends") if i == 7) == sorted([a.pid, b.pid])
    assert h.queue.counts() == {
        "waiting": 0,
        "prioritized": 0,
        "delayed": 0,
        "active": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "waiting_children": 0,
    }
    assert h.queue.jobs("completed") == ["slow"]

    # both workers are healthy afterwards: A serves the next job too
    b.signal(signal.SIGTERM)
    assert b.wait(30) == 0
    after = h.queue.add("record", {"args": [8], "kwargs": {}})
    assert after.wait(timeout=30) == {"index": 8, "pid": a.pid}
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0


def test_poison_jobs_fail_as_stalled_while_the_supervised_workers_serve_the_rest(
    harness: Callable[..., Harness],
) -> None:
    max_stalled = 1
    # a short socket timeout: an idle worker looks for stalled jobs every second
    h = harness(queue_lock_ttl=0.5, queue_max_stalled=max_stalled, socket_timeout=1.5)
    # one job at a time per process: a crash takes no healthy job down with it
    sup = h.worker("-c", "1", "--processes", "2")
    h.add_records(range(0, 10))
    h.queue.add("exit", {"args": [100], "kwargs": {}}, job_id="poison-exit")
    h.add_records(range(10, 20))
    h.queue.add("segfault", {"args": [101], "kwargs": {}}, job_id="poison-segv")
    h.add_records(range(20, 30))

    wait_for(
        lambda: h.queue.counts()["failed"] == 2 and h.queue.counts()["completed"] == 30,
        90,
        "the poison jobs to fail and the others to complete",
        every=0.1,
        log=sup.log,
    )
    starts = h.run_counts("starts")
    for job_id, index, code in (("poison-exit", 100, 1), ("poison-segv", 101, -11)):
        job = h.queue.get_job(job_id)
        assert job is not None
        assert job.state == "failed"
        assert job.failed_reason is not None
        assert "stalled" in job.failed_reason
        assert f"max_stalled is {max_stalled}" in job.failed_reason
        assert starts[index] == max_stalled + 1
        assert f"exited with {code}" in sup.log()
    assert all(starts[i] >= 1 for i in range(30))
    assert all(h.state(f"job-{i}") == "completed" for i in range(30))

    # the restarted workers keep serving
    h.add_records(range(30, 40))
    wait_for(lambda: h.queue.counts()["completed"] == 40, 60, "later jobs to complete", log=sup.log)
    assert h.queue.counts()["failed"] == 2
    # both slots run a serving worker again (no restart pause or restart under way)
    wait_for(
        lambda: len(h.serving_children(sup.pid)) == 2,
        60,
        "the supervisor to run two serving workers",
        log=sup.log,
    )
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0


@pytest.mark.parametrize("poison", ["exit", "segfault"])
def test_a_poison_job_fails_as_stalled_across_worker_restarts(
    harness: Callable[..., Harness], poison: str
) -> None:
    """Without a supervisor: the test starts a new worker each time one dies."""
    h = harness(queue_lock_ttl=0.5, socket_timeout=1.5)
    h.queue.add(poison, {"args": [100], "kwargs": {}}, job_id="poison")
    h.add_records(range(3))
    codes = []
    for _ in range(2):  # max_stalled (1) + 1 runs, each killing its worker
        w = h.worker("-c", "1")
        codes.append(w.wait(60))
    assert codes == ([1, 1] if poison == "exit" else [-signal.SIGSEGV] * 2)
    survivor = h.worker("-c", "1")
    wait_for(
        lambda: h.queue.counts()["completed"] == 3 and h.queue.counts()["failed"] == 1,
        60,
        "the poison job to fail and the others to complete",
        log=survivor.log,
    )
    job = h.queue.get_job("poison")
    assert job is not None
    assert job.state == "failed"
    assert job.failed_reason is not None
    assert job.failed_reason.startswith("stalled 2 times")
    assert h.run_counts("starts")[100] == 2
    survivor.signal(signal.SIGTERM)
    assert survivor.wait(30) == 0
