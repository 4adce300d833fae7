"""One contender's side of a measurement, in a process of its own:
``python agent.py LIBRARY ACTION [JSON]``, LIBRARY being a ``lib_<name>`` module beside this one.

Actions: ``info`` (versions), ``enqueue`` (time ``n`` adds, one at a time or in bulk, after a
warm-up, with the round trips, Redis commands and memory they took), ``worker`` (serve the
queue until SIGTERM; a report is written at exit to ``$RKBENCH_OUT``) and, for redkit,
``rtt`` (its single add against raw redis-py round trips, interleaved, with ``harness``).
A result is printed as the last line of stdout, after ``RKBENCH``.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.metadata
import inspect
import json
import logging
import os
import platform
import sys
import time
from typing import Any

import probe

probe.install()  # before any library makes a client


class _Caller:
    """Calls a producer's methods, sync ones directly and coroutine functions on one loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, fn: Any, *args: Any) -> Any:
        if not inspect.iscoroutinefunction(fn):
            return fn(*args)
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(fn(*args))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def info(mod: Any) -> dict[str, Any]:
    from redis.utils import HIREDIS_AVAILABLE

    return {
        "version": _version(mod.PACKAGE),
        "redis_py": _version("redis"),
        "hiredis": bool(HIREDIS_AVAILABLE),
        "python": platform.python_version(),
        "executable": sys.executable,
        "bulk": mod.BULK,
    }


def enqueue(mod: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Add ``warm`` jobs, then time ``n`` more (ids ``warm`` .. ``warm + n - 1``)."""
    n, warm, bulk = int(args["n"]), int(args.get("warm", 0)), args["mode"] == "bulk"
    server = probe.Server(probe.url())
    kwargs = {"task": args["task"]} if args.get("task") else {}
    producer = mod.Producer(**kwargs)
    _call = _Caller()
    if hasattr(producer, "open"):
        _call(producer.open)
    try:
        if warm:
            if bulk:
                _call(producer.bulk, producer.prepare(warm, 0))
            else:
                _call(producer.single, warm, 0)
        before = server.memory() if args.get("memory") else None
        items = producer.prepare(n, warm) if bulk else None
        gc.collect()
        profile = None
        if args.get("cprofile"):
            import cProfile

            profile = cProfile.Profile()
        counted = getattr(producer, "round_trips", None)
        s0, w0 = server.stats(), probe.writes()
        k0 = counted() if counted else None
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        if bulk:
            _call(producer.bulk, items)
        else:
            _call(producer.single, n, warm)
        if profile is not None:
            profile.disable()
        seconds = time.perf_counter() - t0
        w1 = probe.writes()
        k1 = counted() if counted else None
        s1 = server.stats()
        after = server.memory() if args.get("memory") else None
        if profile is not None:
            profile.dump_stats(args["cprofile"])
    finally:
        if hasattr(producer, "close"):
            _call(producer.close)
        _call.close()
    return {
        "n": n,
        "warm": warm,
        "queued": warm + n,
        "seconds": seconds,
        "rate": n / seconds,
        "round_trips": w1 - w0,
        "kit_round_trips": None if k0 is None or k1 is None else k1 - k0,
        "commands": s1["commands"] - s0["commands"] - 1,  # less the first INFO
        "scripts": s1["scripts"] - s0["scripts"],
        "calls": probe.command_delta(s0, s1, {"info": 1}),
        "redis_cpu": s1["cpu"] - s0["cpu"],
        "memory_before": before,
        "memory_after": after,
    }


def worker(mod: Any, config: dict[str, Any]) -> None:
    probe.report_at_exit(lambda: {"pid": os.getpid()})
    profile = None
    if config.get("cprofile"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    try:
        mod.work(config)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(config["cprofile"])


def rtt(args: dict[str, Any]) -> dict[str, Any]:
    """redkit's single add against raw redis-py round trips (PING, INCR), sync and async,
    interleaved by ``harness``."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import harness  # bench/harness.py
    import redis
    import redis.asyncio

    import redkit
    import redkit.asyncio

    url = probe.url()
    measure = (args["rounds"], args["ops"], args["chunk"], args["warmup"])
    key = "rkbench:rtt"

    def keys(label: str, n: int) -> list[str]:
        return [key] * n

    r = redis.Redis.from_url(url)
    kit = redkit.Redkit.from_url(url)
    q = kit.queue("rkbench-rtt")

    def ping(ks: Any) -> None:
        p = r.ping
        for _ in ks:
            p()

    def incr(ks: Any) -> None:
        i = r.incr
        for k in ks:
            i(k)

    def add(ks: Any) -> None:
        a = q.add
        for k in ks:
            a("noop", {"args": [k]})

    stats = kit.stats.snapshot
    sync = harness.Scenario(
        "round trip",
        "sync",
        [
            harness.Contender("raw PING", ping, keys, round_trips=1),
            harness.Contender("raw INCR", incr, keys, round_trips=1),
            harness.Contender("q.add", add, keys, stats),
        ],
    )
    results = harness.run_sync(sync, *measure)
    kit.close()
    r.close()

    async def run_async() -> list[Any]:
        ar = redis.asyncio.Redis.from_url(url)
        akit = redkit.asyncio.Redkit.from_url(url)
        aq = akit.queue("rkbench-rtt")

        async def aping(ks: Any) -> None:
            p = ar.ping
            for _ in ks:
                await p()

        async def aincr(ks: Any) -> None:
            i = ar.incr
            for k in ks:
                await i(k)

        async def aadd(ks: Any) -> None:
            a = aq.add
            for k in ks:
                await a("noop", {"args": [k]})

        scenario = harness.Scenario(
            "round trip",
            "async",
            [
                harness.Contender("raw PING", aping, keys, round_trips=1),
                harness.Contender("raw INCR", aincr, keys, round_trips=1),
                harness.Contender("q.add", aadd, keys, akit.stats.snapshot),
            ],
        )
        try:
            return await harness.run_async(scenario, *measure)
        finally:
            await akit.aclose()
            await ar.aclose()

    results += asyncio.run(run_async())
    return {"results": [x.as_dict() for x in results]}


def ceiling(args: dict[str, Any]) -> dict[str, Any]:
    """The job body alone, without any queue: ``n`` async bodies by ``concurrency`` coroutines
    (what one process can do at most when every job costs that body)."""
    n, c = int(args["n"]), int(args["concurrency"])

    async def go() -> dict[str, Any]:
        per = max(1, n // c)

        async def loop() -> None:
            for _ in range(per):
                await probe.body_async()

        await asyncio.gather(*(loop() for _ in range(c)))  # warm: connections opened
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(loop() for _ in range(c)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {"rate": per * c / seconds, "cpu_us": 1e6 * cpu / (per * c)}

    return asyncio.run(go())


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    lib, action = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if action == "rtt":
        probe.emit(rtt(args))
        return
    if action == "ceiling":
        probe.emit(ceiling(args))
        return
    mod = importlib.import_module(f"lib_{lib}")
    if action == "info":
        probe.emit(info(mod))
    elif action == "enqueue":
        probe.emit(enqueue(mod, args))
    elif action == "worker":
        worker(mod, args)
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main()
