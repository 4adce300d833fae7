"""Job schedulers across worker processes: with three workers (one of them killed with SIGKILL and
replaced while the schedule runs) every slot runs, and runs once unless the worker running it was
killed (at least once: the stalled run runs again). Counted in a ledger file outside Redis."""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

EVERY_MS = 100


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, env={"RKQ_LEDGER": str(tmp_path / "ledger")}, queue_lock_ttl=1)
    yield harness
    harness.cleanup()


def ledger(h: Harness) -> list[tuple[int, int]]:
    """(slot ms, pid) of each run recorded, in order."""
    path = h.tmp_path / "ledger"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        job_id, pid = line.split()
        out.append((int(job_id.rpartition(":")[2]), int(pid)))
    return out


def test_worker_processes_run_every_slot_once_through_a_kill(h: Harness) -> None:
    workers = [h.worker("-c", "2") for _ in range(3)]
    for proc in workers:
        h.wait_serving(proc)
    made = h.queue.schedule("tick", "slot", {"args": [], "kwargs": {}}, every=EVERY_MS / 1000)
    first = int(made.next_run.timestamp() * 1000)
    wait_for(lambda: len(ledger(h)) >= 15, 30, "15 runs", log=workers[0].log)
    workers[0].kill()
    replacement = h.worker("-c", "2")
    h.wait_serving(replacement)
    wait_for(lambda: len(ledger(h)) >= 40, 30, "40 runs", log=replacement.log)
    h.queue.unschedule("tick")
    for proc in (*workers[1:], replacement):
        proc.signal(signal.SIGTERM)
    for proc in (*workers[1:], replacement):
        assert proc.wait(30) == 0
    runs = ledger(h)
    counts = Counter(slot for slot, _ in runs)
    slots = sorted(counts)
    assert slots[0] == first
    # every slot from the first to the last ran, but for those a late run made up for: a run
    # that came due while no worker could take it (all busy, or starved of CPU) runs once for
    # every slot that went by meanwhile (missed="run_once")
    for before, after in itertools.pairwise(slots):
        if after - before > EVERY_MS:
            record = h.queue.get_job(f"sched:tick:{before}").record
            late = (record.processed_at - record.scheduled_for).total_seconds() * 1000
            assert late >= after - before - EVERY_MS - 5, (before, after, late)
    assert len(slots) >= (slots[-1] - first) // EVERY_MS // 2  # most slots ran on time
    twice = {s for s, n in counts.items() if n > 1}
    for s in twice:  # only a run whose worker was killed runs again (at least once)
        record = h.queue.get_job(f"sched:tick:{s}").record
        assert record.stalls >= 1, f"slot {s} ran {counts[s]} times without a stall"
    assert len(twice) <= 1  # at most the one run the killed worker had in hand
    assert len({pid for _, pid in runs}) >= 2  # the runs were shared out
    time.sleep(0.3)
    assert len(ledger(h)) == len(runs), "no run after unschedule"
