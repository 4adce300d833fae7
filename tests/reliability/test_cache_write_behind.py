"""Write-behind caching through a SIGKILL of the worker that persists: every value written is
persisted, and each key ends with the last value written to it, in the database and in the
cache; nothing is left pending. The "database" is a hash the writer fills (``queue_apps.jobs``)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL
from tests.reliability.queue_apps.harness import Harness, wait_for

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

KEYS = 12


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, queue_lock_ttl=1)
    yield harness
    harness.cleanup()


def test_a_killed_persisting_worker_loses_no_write_and_the_last_one_wins(h: Harness) -> None:
    # the same declaration as the worker's (its writer never runs here: no worker in this process)
    save = h.kit.cache.write_behind(h.queue, name="persist", debounce=0)(lambda key, value: None)
    for k in range(KEYS):
        save.set(k, {"v": 1, "sleep": 0.4})
    first = h.worker("-c", "4")
    wait_for(lambda: h.recorded("starts") >= 4, 30, "persists started", log=first.log)
    first.kill()  # SIGKILL with persists in hand, holding their keys' locks
    assert h.recorded("starts") > h.recorded("ends")  # some were cut in the middle
    for k in range(0, KEYS, 2):
        save.set(k, {"v": 2, "sleep": 0.05})  # written while no worker runs
    second = h.worker("-c", "4")
    db = h.kit.keyspace.key("db")

    def persisted() -> bool:
        rows = {int(k): json.loads(v) for k, v in h.client.hgetall(db).items()}
        want = {k: (2 if k % 2 == 0 else 1) for k in range(KEYS)}
        return {k: r["v"] for k, r in rows.items()} == want

    wait_for(persisted, 60, "every key persisted with its last value", log=second.log)
    wait_for(lambda: all(save.pending(k) is None for k in range(KEYS)), 30, "nothing left pending")
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    for k in range(KEYS):
        assert save.get(k)["v"] == (2 if k % 2 == 0 else 1)
    counts = h.queue.counts()
    assert counts["failed"] == 0
    assert counts["waiting"] + counts["delayed"] + counts["active"] == 0
    assert {int(i) for i, _ in h.entries("ends")} == set(range(KEYS))
