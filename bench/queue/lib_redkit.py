"""redkit: ``q.add`` / ``q.add_bulk``; ``redkit worker lib_redkit:q -c N`` (the command line,
run in this process). The async task runs on the worker's event loop, the sync one on its
thread pool."""

from __future__ import annotations

from typing import Any

import probe

import redkit

PACKAGE = "redkit"
BULK = "q.add_bulk"
DEFAULT: dict[str, Any] = {"label": "-c 10", "concurrency": 10}
SWEEP: list[dict[str, Any]] = [{"label": f"-c {c}", "concurrency": c} for c in (1, 10, 50, 200)]
SYNC_DEFAULT: dict[str, Any] = {"label": "-c 10, sync task", "concurrency": 10, "task": "sync"}
SYNC_SWEEP: list[dict[str, Any]] = [
    {"label": f"-c {c}, sync task", "concurrency": c, "task": "sync"} for c in (1, 10, 50)
]

kit = redkit.Redkit.from_url(probe.url())
q = kit.queue("bench")


@q.task(name="noop")
async def noop(i: int) -> None:
    await probe.body_async()


@q.task(name="noop_sync")
def noop_sync(i: int) -> None:
    probe.body_sync()


class Producer:
    def __init__(self, task: str = "async") -> None:
        self.name = "noop_sync" if task == "sync" else "noop"

    def single(self, n: int, start: int) -> None:
        add, name = q.add, self.name
        for i in range(start, start + n):
            add(name, {"args": [i]})

    def prepare(self, n: int, start: int) -> list[Any]:
        return [(self.name, {"args": [i]}) for i in range(start, start + n)]

    def bulk(self, items: list[Any]) -> None:
        q.add_bulk(items)

    def round_trips(self) -> int:
        return int(kit.stats.snapshot().get("round_trips", 0))


def work(config: dict[str, Any]) -> None:
    from redkit import cli

    argv = ["worker", "lib_redkit:q", "-c", str(config["concurrency"]), "--log-level", "WARNING"]
    code = cli.main(argv)
    if code:
        raise SystemExit(code)
