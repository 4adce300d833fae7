"""Every page of the dashboard costs a bounded number of Redis round trips and commands,
whatever the size of a queue: counted at the client, for a small queue and a large one (the
benchmark in bench/dashboard.py measures the time on a million jobs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import redkit
from redkit.dashboard import _app
from redkit.queue import Unrecoverable
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.dashboard.conftest import TOKEN, Browser

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


class Counted:
    """The round trips and commands a kit's executor sends."""

    def __init__(self, kit: redkit.Redkit) -> None:
        self.trips = 0
        self.commands = 0
        original = kit._executor._execute

        def execute(calls: Any) -> Any:
            self.trips += 1
            self.commands += len(calls)
            return original(calls)

        kit._executor._execute = execute  # type: ignore[method-assign]

    def reset(self) -> None:
        self.trips = self.commands = 0


@pytest.fixture
def sized() -> Iterator[dict[int, Any]]:
    """Two clients whose queue ``bulk`` has a few jobs, or thousands, waiting and failed."""
    kits = {}
    for size in (120, 6_000):  # both fill two pages: the large one fills 120
        kit = redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())
        q = kit.queue("bulk")

        @q.task(name="fail")
        def fail() -> None:
            raise Unrecoverable("no")

        failing = min(size, 300)
        q.add_bulk([("fail", {"args": []})] * failing)
        worker = q.worker(concurrency=50, name=f"w{size}").start()
        try:
            deadline = time.monotonic() + 30
            while q.counts()["failed"] < failing and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop(10)
        q.add_bulk([("other" if i % 2 else "needle", None) for i in range(size)])
        for i in range(3):
            kit.queue(f"side-{i}").add_bulk([("x", None)] * size)
        kits[size] = kit
    yield kits
    for kit in kits.values():
        kit.clear()
        kit.close()


PAGES = {
    "overview": "/",
    "waiting, first page": "/queue?name=bulk",
    "waiting, page 2": "/queue?name=bulk&page=2",
    "failed": "/queue?name=bulk&state=failed",
    "schedulers": "/queue?name=bulk&state=schedules",
    "job": "/job?queue=bulk&id={id}",
}


async def test_pages_cost_the_same_on_a_small_and_a_large_queue(sized: dict[int, Any]) -> None:
    costs: dict[int, dict[str, tuple[int, int]]] = {}
    for size, kit in sized.items():
        counted = Counted(kit)
        browser = Browser(kit, _app.Dashboard(token=TOKEN))
        job_id = kit.queue("bulk").jobs("waiting", 0, 0)[0]
        costs[size] = {}
        for name, path in [*PAGES.items(), ("search", "/queue?name=bulk&q=needle")]:
            counted.reset()
            page = await browser.get(path.format(id=job_id), authorization=f"Bearer {TOKEN}")
            assert page.status == 200, (name, page.status)
            costs[size][name] = (counted.trips, counted.commands)
        await browser.aclose()
    small, large = costs[120], costs[6_000]
    for name in PAGES:
        assert small[name] == large[name], name  # round trips and commands: the same
        assert large[name][0] <= 3, name
    assert large["overview"][1] <= 4 * 14 + 5  # one pipeline of every queue, then the workers
    trips, commands = large["search"]
    window = _app.SEARCH_WINDOW // 1000
    assert trips <= 2 + 2 * window  # the counts, then per 1,000 jobs their ids and names
    assert commands <= 12 + 2 * window * 1000 + _app.PAGE_SIZE
