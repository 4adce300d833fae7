"""``redkit worker --processes N``: a supervisor runs N worker processes, restarts one that dies,
and forwards SIGTERM so that everything stops without losing a job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import (
    TARGET,
    Harness,
    Proc,
    alive,
    children_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

SLOW_SPAWN = str(Path(__file__).resolve().parent / "queue_apps" / "slow_spawn.py")


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, queue_lock_ttl=1)
    yield harness
    harness.cleanup()


def info(h: Harness) -> dict[str, Any]:
    """``redkit info <queue> --json`` for the harness' queue."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "redkit",
            "info",
            h.queue_name,
            "--json",
            "--url",
            REDIS_URL,
            "--prefix",
            h.prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=h.env(),
    )
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def two_serving(h: Harness, sup: Proc) -> set[int]:
    """Wait until the supervisor ``sup`` runs two worker processes that serve the queue."""
    found: set[int] = wait_for(
        lambda: s if len(s := h.serving_children(sup.pid)) == 2 else None,
        60,
        "two serving worker processes",
        log=sup.log,
    )
    return found


def test_two_processes_one_killed_and_restarted_then_a_clean_stop(h: Harness) -> None:
    jobs = 400
    sup = h.worker("-c", "4", "--processes", "2", "--shutdown-timeout", "10")
    first = two_serving(h, sup)
    report = info(h)
    assert {w["pid"] for w in report["workers"]} == first
    assert all(w["concurrency"] == 4 for w in report["workers"])

    h.add_records(range(jobs), sleep=0.05)
    wait_for(lambda: h.recorded("ends") >= 60, 60, "60 jobs done", log=sup.log)
    victim, survivor = sorted(first)
    victim_id = h.worker_pids()[victim]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.1)  # a round trip sent just before the kill lands; no lock runs out this soon
    victim_jobs = {i for i in h.active_ids() if (h.token(i) or "").startswith(victim_id + ":")}

    # the supervisor starts a new process in the dead one's place
    wait_for(
        lambda: len(h.serving_children(sup.pid) - first) == 1,
        60,
        "a replacement worker process",
        log=sup.log,
    )
    now = h.serving_children(sup.pid)
    assert survivor in now
    assert victim not in now
    assert len(now) == 2
    assert f"(pid {victim}) exited with -9" in sup.log()
    assert h.queue.counts()["waiting"] > 0, "the stop must land mid-run"

    children = children_of(sup.pid)
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    wait_for(lambda: not any(alive(p) for p in children), 30, "every worker process to exit")
    assert h.own_pids() == []

    counts = h.queue.counts()
    assert counts["failed"] == 0
    assert counts["waiting"] + counts["active"] + counts["completed"] == jobs
    # the stopped workers gave their jobs back; only the killed one's may still look active
    assert all((h.token(i) or "").startswith(victim_id + ":") for i in h.active_ids())

    # nothing was lost: a new worker finishes every job
    last = h.worker("-c", "8")
    wait_for(
        lambda: h.queue.counts()["completed"] == jobs, 60, "every job to complete", log=last.log
    )
    last.signal(signal.SIGTERM)
    assert last.wait(30) == 0
    runs = h.run_counts("ends")
    assert set(runs) == set(range(jobs))
    assert {f"job-{i}" for i, n in runs.items() if n > 1} <= victim_jobs
    assert h.queue.counts()["failed"] == 0


def test_a_stop_during_a_restart_pause_starts_nothing_and_exits_0(h: Harness) -> None:
    sup = h.worker("-c", "2", "--processes", "2")
    victim, survivor = sorted(two_serving(h, sup))
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: f"(pid {victim}) exited with -9; restarting in" in sup.log(),
        30,
        "the supervisor to see the dead process",
        log=sup.log,
    )
    sup.signal(signal.SIGTERM)  # within the 0.5 s pause before the restart
    rc = sup.wait(30)
    wait_for(lambda: not alive(survivor), 30, "the other worker process to exit")
    assert sup.log().count("started worker process") == 2, "nothing started after the stop"
    assert h.own_pids() == []
    # the stop was clean: the surviving process stopped as asked, the dead one was not restarted
    assert rc == 0, sup.log()


def test_a_stop_while_a_process_is_being_restarted_stops_everything(h: Harness) -> None:
    """SIGTERM reaching the supervisor while it is starting a replacement process."""
    sup = h.start(
        SLOW_SPAWN, "worker", TARGET, "--processes", "2", "-c", "2", "--log-level", "INFO"
    )
    victim, survivor = sorted(two_serving(h, sup))
    os.kill(victim, signal.SIGKILL)
    # the third start is the replacement: the supervisor is inside it for a second
    wait_for(lambda: sup.log().count("spawning") == 3, 30, "the restart to begin", log=sup.log)
    time.sleep(0.2)
    sup.signal(signal.SIGTERM)
    sup.wait(10)  # its exit code is the subject of the test above
    wait_for(lambda: h.own_pids() == [], 30, "every worker process to exit", log=sup.log)
    assert not alive(survivor)
