"""A worker process stopped by SIGTERM gives its unfinished jobs back and exits.

``redkit worker`` runs jobs far longer than its ``--shutdown-timeout``; on SIGTERM it must exit 0
soon after the grace, with every unfinished job back in ``waiting`` (not failed, not stuck in
``active``), and a second SIGTERM (more than a second after the first) must stop it at once.
Sync tasks (on the worker's threads) and async tasks (on its loop) are both covered.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

LONG = 60.0  # seconds a job would run: far past every wait of these tests


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.cleanup()


def assert_all_back_in_waiting(h: Harness, ids: list[str]) -> None:
    assert h.queue.counts() == {
        "waiting": len(ids),
        "prioritized": 0,
        "delayed": 0,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "waiting_children": 0,
    }
    assert sorted(h.queue.jobs("waiting", 0, -1)) == sorted(ids)
    for job_id in ids:
        job = h.queue.get_job(job_id)
        assert job is not None
        assert job.state == "waiting"
        assert job.failed_reason is None
        assert job.attempts_made == 0
        assert h.token(job_id) is None
    assert h.worker_pids() == {}, "the stopped worker unregistered itself"


@pytest.mark.parametrize("task", ["record", "arecord"])
def test_sigterm_gives_unfinished_jobs_back_after_the_grace_and_exits_0(
    h: Harness, task: str
) -> None:
    ids = h.add_records(range(5), sleep=LONG, task=task)
    w = h.worker("-c", "3", "--shutdown-timeout", "0.5")
    wait_for(lambda: h.recorded("starts") == 3, 30, "three jobs to start", log=w.log)

    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0
    assert "gave 3 unfinished job(s) back to the queue" in w.log()
    assert h.recorded("ends") == 0
    assert_all_back_in_waiting(h, ids)

    # the jobs given back run again on the next worker
    h.client.delete(h.kit.keyspace.key("starts"))
    nxt = h.worker("-c", "5", "--shutdown-timeout", "0.5")
    wait_for(lambda: h.recorded("starts") == 5, 30, "the next worker to take all five", log=nxt.log)
    nxt.signal(signal.SIGTERM)
    assert nxt.wait(10) == 0
    assert_all_back_in_waiting(h, ids)


@pytest.mark.parametrize("task", ["record", "arecord"])
def test_a_second_sigterm_stops_a_worker_in_its_grace_at_once(h: Harness, task: str) -> None:
    ids = h.add_records(range(2), sleep=LONG, task=task)
    w = h.worker("-c", "2", "--shutdown-timeout", "600")
    wait_for(lambda: h.recorded("starts") == 2, 30, "both jobs to start", log=w.log)

    w.signal(signal.SIGTERM)
    time.sleep(0.1)
    w.signal(signal.SIGTERM)  # the same stop delivered twice (process group and supervisor)
    time.sleep(1.5)
    assert w.poll() is None, "a repeated signal within a second is not a second stop"
    assert h.queue.counts()["active"] == 2

    w.signal(signal.SIGTERM)  # > 1 s after the first: give the jobs back now
    assert w.wait(10) == 0
    assert "gave 2 unfinished job(s) back to the queue" in w.log()
    assert_all_back_in_waiting(h, ids)


def test_sigterm_lets_short_jobs_finish_within_the_grace(h: Harness) -> None:
    ids = h.add_records(range(4), sleep=1.0)
    w = h.worker("-c", "4", "--shutdown-timeout", "30")
    wait_for(lambda: h.recorded("starts") == 4, 30, "four jobs to start", log=w.log)
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    assert h.queue.counts()["completed"] == 4
    assert all(h.state(i) == "completed" for i in ids)
    assert "gave" not in w.log()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_worker_runs_on_the_event_loop_asked_for(h: Harness, loop: str) -> None:
    ids = h.add_records(range(6), sleep=0.01, task="arecord")
    w = h.worker("-c", "3", "--loop", loop)
    wait_for(lambda: h.recorded("ends") == 6, 30, "the six jobs to run", log=w.log)
    assert f"event loop {loop}" in w.log()
    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0
    assert all(h.state(i) == "completed" for i in ids)


def test_asking_for_uvloop_without_it_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from redkit.cli import main

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(SystemExit) as stopped:
        main(["worker", "tests.reliability.queue_apps.jobs:queue", "--loop", "uvloop"])
    assert stopped.value.code == 2
    assert "uvloop package" in capsys.readouterr().err
