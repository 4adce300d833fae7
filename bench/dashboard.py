"""The dashboard on a large queue: each page's time, round trips and commands with 1,000,000
waiting jobs and 100,000 failed ones, beside the same pages on a queue of 100 of each (ratio:
large over small; bounded pages stay near 1).

    python bench/dashboard.py --url redis://127.0.0.1:6379/9 [--waiting N] [--failed N]

The jobs are added with ``add_bulk`` and failed by a worker whose task raises; the pages are
asked through the WSGI application (werkzeug's test client, no network between it and the
dashboard), ``--rounds`` times each, alternating the two queues; the figure is the median. The
database's keys under the two prefixes are deleted at the end.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

from werkzeug.test import Client

import redkit
from redkit.dashboard import Dashboard, make_wsgi_app
from redkit.queue import Keep, Unrecoverable

TOKEN = "bench-dashboard-token-0123456789"
NAMES = ("send-email", "build-report", "resize-image", "sync-crm")


def fill(kit: redkit.Redkit, waiting: int, failed: int) -> None:
    logging.getLogger("redkit.worker").setLevel(logging.CRITICAL)  # a line per failed job
    q = kit.queue("big")

    @q.task(name="explode")
    def explode() -> None:
        raise Unrecoverable("the bench fails every job of this task")

    keep = {"keep": Keep(failed=failed + 1)}  # more than the default retention of 10,000
    for start in range(0, failed, 10_000):
        q.add_bulk([("explode", {"args": []}, keep)] * min(10_000, failed - start))
    worker = q.worker(concurrency=500, name="bench").start()
    began = time.monotonic()
    while q.counts()["failed"] < failed:
        time.sleep(0.2)
        if time.monotonic() - began > 600:
            raise SystemExit("the failed jobs took more than 10 minutes")
    worker.stop(30)
    for start in range(0, waiting, 10_000):
        n = min(10_000, waiting - start)
        q.add_bulk([(NAMES[(start + i) % 4], {"i": start + i}) for i in range(n)])


class Counted:
    def __init__(self, kit: redkit.Redkit) -> None:
        self.trips = self.commands = 0
        original = kit._executor._execute

        def execute(calls: Any) -> Any:
            self.trips += 1
            self.commands += len(calls)
            return original(calls)

        kit._executor._execute = execute  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    kits = {
        "large": redkit.Redkit.from_url(args.url, prefix="bench-dashboard-large"),
        "small": redkit.Redkit.from_url(args.url, prefix="bench-dashboard-small"),
    }
    try:
        for kit in kits.values():
            kit.clear()
        began = time.monotonic()
        fill(kits["large"], args.waiting, args.failed)
        fill(kits["small"], 100, 100)
        filled = time.monotonic() - began
        pages = {
            "overview": "/",
            "waiting, page 1": "/queue?name=big",
            "waiting, page 10,000": "/queue?name=big&page=10000",
            "failed, page 1": "/queue?name=big&state=failed",
            "search by name (5,000 looked at)": "/queue?name=big&q=sync-crm",
            "job": "/job?queue=big&id={id}",
        }
        results: dict[str, dict[str, tuple[float, int, int]]] = {}
        clients = {}
        counters = {}
        ids = {}
        for label, kit in kits.items():
            counters[label] = Counted(kit)
            clients[label] = Client(make_wsgi_app(kit, Dashboard(token=TOKEN)))
            ids[label] = kit.queue("big").jobs("waiting", 0, 0)[0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for name, path in pages.items():
            times: dict[str, list[float]] = {"large": [], "small": []}
            cost: dict[str, tuple[int, int]] = {}
            for _ in range(args.rounds):
                for label in ("large", "small"):
                    counted = counters[label]
                    counted.trips = counted.commands = 0
                    t0 = time.perf_counter()
                    r = clients[label].get(path.format(id=ids[label]), headers=auth)
                    times[label].append(time.perf_counter() - t0)
                    assert r.status_code == 200, (name, r.status_code)
                    cost[label] = (counted.trips, counted.commands)
            results[name] = {
                label: (statistics.median(times[label]) * 1000, *cost[label]) for label in times
            }
        info = kits["large"].client.info("memory")
        print(
            f"redkit dashboard benchmark: {args.waiting:,} waiting and {args.failed:,} failed jobs "
            f"(filled in {filled:.0f} s; Redis used_memory {info['used_memory_human']}), "
            f"against 100 of each; {args.rounds} rounds, medians"
        )
        print(f"{'page':36} {'large ms':>9} {'small ms':>9} {'ratio':>6} {'trips':>6} {'cmds':>6}")
        for name, row in results.items():
            (ms_l, trips, cmds), (ms_s, _, _) = row["large"], row["small"]
            print(f"{name:36} {ms_l:9.2f} {ms_s:9.2f} {ms_l / ms_s:6.2f} {trips:6d} {cmds:6d}")
    finally:
        for kit in kits.values():
            kit.clear()
            kit.close()


if __name__ == "__main__":
    main()
