"""Flows across worker processes: chords whose children run on another queue's workers, one of
which is killed with SIGKILL mid-way. Every parent runs once, after all of its children, with
every child's result; a child runs twice only where its worker was killed under it. Counted in a
ledger file outside Redis (parents) and in Redis lists pushed by the tasks (children)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

FLOWS, WIDTH = 30, 4


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, env={"RKQ_LEDGER": str(tmp_path / "ledger")}, queue_lock_ttl=1)
    yield harness
    harness.cleanup()


def ledger(h: Harness) -> list[tuple[str, int, list[str]]]:
    path = h.tmp_path / "ledger"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        job_id, pid, seen = line.split()
        out.append((job_id, int(pid), seen.split(",")))
    return out


def test_chords_across_worker_processes_run_each_parent_once_through_a_kill(h: Harness) -> None:
    kids = h.kit.queue("kids")
    roots = []
    for f in range(FLOWS):
        children = [
            kids.node("record", {"args": [f * WIDTH + i, 0.05], "kwargs": {}}, job_id=f"c{f}-{i}")
            for i in range(WIDTH)
        ]
        parent = h.queue.node("gather", {"args": [], "kwargs": {}}, job_id=f"p{f}")
        roots.append(h.queue.add_flow(parent.after(*children)))
    assert h.queue.counts()["waiting_children"] == FLOWS
    parents = h.worker("-c", "4")
    children_workers = [h.worker("-c", "4", queue="kids") for _ in range(2)]
    h.wait_serving(parents)
    wait_for(lambda: len(kids.workers()) >= 2, 30, "the children's workers", log=parents.log)
    wait_for(lambda: h.recorded("starts") >= 20, 30, "20 children started", log=parents.log)
    children_workers[0].kill()
    replacement = h.worker("-c", "4", queue="kids")
    wait_for(lambda: len(ledger(h)) >= FLOWS, 60, "every parent ran", log=replacement.log)
    for proc in (parents, children_workers[1], replacement):
        proc.signal(signal.SIGTERM)
    for proc in (parents, children_workers[1], replacement):
        assert proc.wait(30) == 0
    runs = ledger(h)
    assert Counter(job_id for job_id, _, _ in runs) == Counter(f"p{f}" for f in range(FLOWS))
    for job_id, _, seen in runs:  # every child had completed, with its own result, in order
        f = int(job_id[1:])
        assert seen == [str(f * WIDTH + i) for i in range(WIDTH)], job_id
    ends = h.run_counts("ends")
    assert set(ends) == set(range(FLOWS * WIDTH))  # every child ran to its end
    for index, n in ends.items():
        if n > 1:  # a second run only for a child whose worker was killed under it
            record = kids.get_job(f"c{index // WIDTH}-{index % WIDTH}").record
            assert record.stalls >= 1, f"child {index} ran {n} times without a stall"
    for root in roots:
        assert root.refresh().state == "completed"
    assert kids.counts()["completed"] == FLOWS * WIDTH
    assert h.client.xlen(kids._core.letters) == 0  # every notice was sent on and deleted
