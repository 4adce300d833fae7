"""What a job of a flow costs, next to a job added on its own.

    python bench/queue/flows.py [--url redis://127.0.0.1:6379/9] [--jobs 11000] [--rounds 3]

Rows, each on an empty database (``FLUSHDB`` first; database 15, the tests', is refused), one
worker (``concurrency=50``, two queues: parents on one, children on the other, so that every
notice crosses queues as it would across cluster slots), job bodies empty:

- ``plain``: ``--jobs`` jobs with ``add_bulk``;
- ``chord``: chords of 10 children and a parent (``--jobs`` jobs in all), one ``add_flow`` each;
- ``chain``: chains of 11 steps, alternating between the two queues;
- ``chord1`` and ``chain1``: the same on one queue, where a child tells its parent in the script
  call that ends it (no notice, no relay).

For each: adds per second (the producer's wall time), jobs run per second, Redis' CPU time per
job (``used_cpu_sys`` + ``used_cpu_user`` of ``INFO``, server-wide: other clients blur it),
commands (those scripts run included) and script calls per job (``INFO stats`` and
``commandstats``), each the median of ``--rounds``; then
each flow row's ratio over ``plain``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import redis

import redkit
from redkit.queue import chain, chord

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import redis_work  # bench/harness.py


def _run(url: str, jobs: int, kind: str) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    kit = redkit.Redkit.from_url(url, prefix="bench-flow")
    parents = kit.queue("parents")
    children = parents if kind.endswith("1") else kit.queue("children")
    done = {"n": 0}

    @parents.task(name="p")
    def p(*args: Any) -> None:
        done["n"] += 1

    def c(*args: Any) -> None:
        done["n"] += 1

    c = children.task(name="c")(c)

    before = redis_work(client)
    start = time.perf_counter()
    if kind == "plain":
        for i in range(0, jobs, 1000):
            children.add_bulk([("c", {"args": [], "kwargs": {}})] * min(1000, jobs - i))
    elif kind.startswith("chord"):
        for _ in range(jobs // 11):
            parents.add_flow(chord([c.s() for _ in range(10)], p.s()))
    else:
        for _ in range(jobs // 11):
            parents.add_flow(chain(*[(c if i % 2 else p).s() for i in range(11)]))
    added = time.perf_counter() - start
    total = jobs if kind == "plain" else (jobs // 11) * 11
    workers = [parents.worker(concurrency=50).start()]
    if children is not parents:
        workers.append(children.worker(concurrency=50).start())
    start = time.perf_counter()
    deadline = time.monotonic() + 300
    while done["n"] < total and time.monotonic() < deadline:
        time.sleep(0.002)
    ran = time.perf_counter() - start
    after = redis_work(client)
    for w in workers:
        w.stop()
    kit.clear()
    kit.close()
    client.flushdb()
    client.close()
    return {
        "adds_s": total / added,
        "runs_s": done["n"] / ran,
        "redis_us": (after[0] - before[0]) * 1e6 / total,
        "commands": (after[1] - before[1]) / total,
        "scripts": (after[2] - before[2]) / total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--jobs", type=int, default=11000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.url.rstrip("/").endswith("/15"):
        parser.error("database 15 is the tests': pick another")
    kinds = ("plain", "chord", "chain", "chord1", "chain1")
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:  # interleaved: a drift of the machine hits every row alike
            samples[kind].append(_run(args.url, args.jobs, kind))
    rows = {k: {f: statistics.median(s[f] for s in v) for f in v[0]} for k, v in samples.items()}
    print(
        f"{'row':<6} {'adds/s':>9} {'runs/s':>9} {'redis µs/job':>13} {'cmds/job':>9} "
        f"{'scripts/job':>12}"
    )
    for kind, r in rows.items():
        print(
            f"{kind:<6} {r['adds_s']:>9.0f} {r['runs_s']:>9.0f} {r['redis_us']:>13.1f} "
            f"{r['commands']:>9.2f} {r['scripts']:>12.2f}"
        )
    base = rows["plain"]
    for kind in kinds[1:]:
        r = rows[kind]
        print(
            f"{kind} / plain: adds/s {r['adds_s'] / base['adds_s']:.2f}, runs/s "
            f"{r['runs_s'] / base['runs_s']:.2f}, redis µs {r['redis_us'] / base['redis_us']:.2f}, "
            f"commands {r['commands'] / base['commands']:.2f}, scripts "
            f"{r['scripts'] / base['scripts']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
