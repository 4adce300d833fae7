"""What a job scheduler's run costs Redis, next to a delayed job doing the same work.

    python bench/queue/schedules.py [--url redis://127.0.0.1:6379/9] [--runs 300]

Two rows, one worker each, on an empty database (``FLUSHDB`` first; database 15, the tests', is
refused): ``delayed`` adds ``--runs`` jobs with a delay of 1 ms, one every 10 ms, and lets the
worker promote and run them; ``scheduler`` lets one scheduler with ``every=10 ms`` make as many
runs (each made by the round trip that makes the previous one due, with its slots refilled by
the worker every five runs). A job's body is empty. Per run: Redis' CPU time (``used_cpu_sys`` +
``used_cpu_user`` of ``INFO``, server-wide: other clients blur it), script calls and commands
Redis processed, and the ratio of the scheduler's figure over the delayed job's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import redis

import redkit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import redis_work  # bench/harness.py


def _run(url: str, runs: int, kind: str) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    kit = redkit.Redkit.from_url(url, prefix="bench-sched")
    q = kit.queue("sched")
    done = {"n": 0}

    @q.task(name="tick")
    def tick() -> None:
        done["n"] += 1

    worker = q.worker(concurrency=1).start()
    time.sleep(0.3)
    before = redis_work(client)
    start = time.monotonic()
    if kind == "scheduler":
        q.schedule("tick", tick, every=0.01, limit=runs)
    else:
        for _ in range(runs):
            tick.enqueue_in(0.001)
            time.sleep(0.01)
    deadline = time.monotonic() + runs * 0.05 + 30
    while done["n"] < runs and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    after = redis_work(client)
    worker.stop()
    kit.clear()
    kit.close()
    client.flushdb()
    client.close()
    n = max(1, done["n"])
    return {
        "runs": done["n"],
        "seconds": elapsed,
        "redis_us": (after[0] - before[0]) * 1e6 / n,
        "commands": (after[1] - before[1]) / n,
        "scripts": (after[2] - before[2]) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args(argv)
    if args.url.rstrip("/").endswith("/15"):
        parser.error("database 15 is the tests': pick another")
    rows: dict[str, dict[str, Any]] = {}
    for kind in ("delayed", "scheduler"):
        rows[kind] = _run(args.url, args.runs, kind)
    print(f"{'row':<10} {'runs':>5} {'redis µs/run':>13} {'cmds/run':>9} {'scripts/run':>12}")
    for kind, r in rows.items():
        print(
            f"{kind:<10} {r['runs']:>5} {r['redis_us']:>13.1f} {r['commands']:>9.2f} "
            f"{r['scripts']:>12.2f}"
        )
    d, s = rows["delayed"], rows["scheduler"]
    print(
        f"scheduler / delayed: redis µs {s['redis_us'] / d['redis_us']:.2f}, commands "
        f"{s['commands'] / d['commands']:.2f}, scripts {s['scripts'] / d['scripts']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
