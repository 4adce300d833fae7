"""The ``redkit`` command: ``worker``, ``info``, ``retry-failed`` and ``drain``.

``redkit worker myapp.jobs:queue`` imports ``myapp.jobs`` and serves its ``queue`` (several
``module:attribute`` arguments serve several queues in one process); ``--processes N`` runs N such
processes under a supervisor that forwards signals and restarts a child that dies. The other
commands take queue names and reach Redis through ``--url`` (default: ``REDKIT_URL``, then
``REDIS_URL``) and ``--prefix``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

__all__ = ["main"]

log = logging.getLogger("redkit.cli")


class UsageError(Exception):
    """A command-line mistake, printed without a traceback."""


def load_queue(target: str) -> Any:
    """``module:attribute`` -> the Queue (or Worker) it names; a callable is called first."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:attribute (like myapp.jobs:queue), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    from .queue import AsyncQueue, Queue, Worker

    if callable(obj) and not isinstance(obj, (Queue, AsyncQueue, Worker)):
        obj = obj()
    if not isinstance(obj, (Queue, AsyncQueue, Worker)):
        raise UsageError(f"{target} is a {type(obj).__name__}, not a redkit queue or worker")
    return obj


def _limiter(text: str | None) -> tuple[int, float] | None:
    if text is None:
        return None
    count, sep, per = text.partition("/")
    try:
        return int(count), float(per) if sep else 1.0
    except ValueError:
        raise UsageError(f"--limiter is MAX/SECONDS (like 100/1), got {text!r}") from None


def _workers(args: argparse.Namespace) -> list[Any]:
    from .queue import Worker

    out = []
    for target in args.queues:
        obj = load_queue(target)
        if isinstance(obj, Worker):
            out.append(obj)
            continue
        options: dict[str, Any] = {"concurrency": args.concurrency}
        if args.limiter:
            options["limiter"] = _limiter(args.limiter)
        if args.shutdown_grace is not None:
            options["shutdown_grace"] = args.shutdown_grace
        out.append(obj.worker(**options))
    return out


def _uvloop(choice: str) -> Any:
    """The uvloop module for ``--loop`` (``None``: run on asyncio's own loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                "--loop uvloop needs the uvloop package: pip install 'redkit[fast]'"
            ) from None
        return None
    return uvloop


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]], choice: str) -> None:
    uvloop = _uvloop(choice)
    log.info("redkit worker: event loop %s", "uvloop" if uvloop is not None else "asyncio")
    if uvloop is None:
        asyncio.run(main())
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:  # pragma: no cover - Python 3.10
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            asyncio.run(main())
        finally:
            asyncio.set_event_loop_policy(None)


def cmd_worker(args: argparse.Namespace) -> int:
    _uvloop(args.loop)  # a missing uvloop is a usage error before anything starts
    if args.processes > 1:
        return supervise(args)
    return run_workers(_workers(args), args.loop)


def run_workers(workers: list[Any], loop_choice: str = "auto") -> int:
    """Serve ``workers`` on one event loop until SIGTERM/SIGINT (a second signal more than a
    second later stops at once); the exit status. Used by ``redkit worker`` and the framework
    adapters' worker commands."""
    from .queue.worker import SIGNAL_ECHO

    _uvloop(loop_choice)

    async def serve_all() -> None:
        loop = asyncio.get_running_loop()
        signals = {"n": 0, "last": 0.0}

        def on_signal(sig: int) -> None:
            now = time.monotonic()
            if signals["n"] and now - signals["last"] < SIGNAL_ECHO:
                return  # the same stop delivered twice (process group and supervisor)
            signals["n"] += 1
            signals["last"] = now
            hard = signals["n"] > 1
            log.warning(
                "redkit: %s received, %s",
                signal.Signals(sig).name,
                "giving running jobs back now"
                if hard
                else "finishing running jobs (send it again to stop at once)",
            )
            for w in workers:
                w._begin_stop(hard=hard)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await asyncio.gather(*(w.serve() for w in workers))

    _run_loop(serve_all, loop_choice)
    if any(t.name.startswith("redkit-task") and t.is_alive() for t in threading.enumerate()):
        # a sync task that outlived the grace period still runs on its thread: its job went
        # back to the queue, so the process ends now instead of waiting for it
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def supervise(args: argparse.Namespace) -> int:
    """Run ``args.processes`` worker processes; forward SIGTERM/SIGINT; restart a child that
    exits while no stop was asked for (after a pause that grows when they keep dying)."""
    _workers(args)  # fail here, once, on a bad target
    argv = [
        sys.executable,
        "-m",
        "redkit",
        "worker",
        *args.queues,
        "--concurrency",
        str(args.concurrency),
        "--processes",
        "1",
        "--log-level",
        args.log_level,
    ]
    if args.limiter:
        argv += ["--limiter", args.limiter]
    if args.shutdown_grace is not None:
        argv += ["--shutdown-grace", str(args.shutdown_grace)]
    argv += ["--loop", args.loop]
    children: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    pending: list[int] = []  # signals received, not yet forwarded

    def spawn(slot: int) -> None:
        # a session of its own: a signal to the supervisor's process group reaches the
        # children once, forwarded
        children[slot] = subprocess.Popen(argv, start_new_session=True)
        started[slot] = time.monotonic()
        log.info("redkit supervisor: started worker process %d (pid %d)", slot, children[slot].pid)

    def on_signal(sig: int, _frame: Any) -> None:
        pending.append(sig)  # forwarded by the loop below: a handler must not take locks

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for slot in range(args.processes):
        spawn(slot)
    pauses = dict.fromkeys(range(args.processes), 0.5)
    restart_at: dict[int, float] = {}
    stopped_ones: list[subprocess.Popen[bytes]] | None = None  # children running at the stop
    while True:
        while pending:
            sig = pending.pop(0)
            if stopped_ones is None:
                stopped_ones = [c for c in children.values() if c.poll() is None]
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(sig)
        now = time.monotonic()
        alive = 0
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                alive += 1
                continue
            if stopped_ones is not None:
                continue
            if slot not in restart_at:
                if now - started[slot] > 60:
                    pauses[slot] = 0.5  # it ran well for a while: not a crash loop
                log.error(
                    "redkit supervisor: worker process %d (pid %d) exited with %s; "
                    "restarting in %.1fs",
                    slot,
                    child.pid,
                    code,
                    pauses[slot],
                )
                restart_at[slot] = now + pauses[slot]
                pauses[slot] = min(30.0, pauses[slot] * 2)
            elif now >= restart_at[slot]:
                del restart_at[slot]
                spawn(slot)
                alive += 1
        if stopped_ones is not None and alive == 0:
            break
        time.sleep(0.05)
    codes = [c.returncode for c in stopped_ones or ()]
    return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1


def _kit(args: argparse.Namespace) -> Any:
    from .client import Redkit

    options: dict[str, Any] = {}
    if args.prefix:
        options["prefix"] = args.prefix
    if args.url:
        return Redkit.from_url(args.url, **options)
    return Redkit.from_env(**options)


def cmd_info(args: argparse.Namespace) -> int:
    from .ops import Batch, command

    with _kit(args) as kit:
        run = kit._executor.run  # redkit's errors (RedkitConnectionError, ...), not redis-py's
        names = list(args.names)
        if not names:
            raw = run(Batch.one(command("ZRANGE", kit.keyspace.key("queues"), 0, -1)))
            names = [n.decode("utf-8", "replace") for n in raw]
        report = []
        now = time.time() * 1000
        for name in names:
            q = kit.queue(name)
            counts = q.counts()
            workers = []
            for wid, seen in q.workers():
                raw = run(Batch.one(command("GET", f"{q._core.base}:w:{wid}")))
                info = json.loads(raw) if raw else {}
                workers.append(
                    {
                        "id": wid,
                        "seen_seconds_ago": round((now - seen) / 1000, 1),
                        **{
                            k: info[k]
                            for k in (
                                "host",
                                "pid",
                                "concurrency",
                                "running",
                                "processed",
                                "failed",
                            )
                            if k in info
                        },
                    }
                )
            report.append({"queue": name, "paused": q.is_paused(), **counts, "workers": workers})
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        if not report:
            print("no queues")
        for item in report:
            paused = " (paused)" if item["paused"] else ""
            print(f"queue {item['queue']}{paused}")
            print(
                "  "
                + "  ".join(
                    f"{s}={item[s]}"
                    for s in ("waiting", "prioritized", "delayed", "active", "completed", "failed")
                )
            )
            for w in item["workers"]:
                print(
                    f"  worker {w['id']}: running {w.get('running', '?')}, processed "
                    f"{w.get('processed', '?')}, failed {w.get('failed', '?')}, seen "
                    f"{w['seen_seconds_ago']}s ago"
                )
    return 0


def cmd_retry_failed(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        moved = kit.queue(args.name).retry_failed(args.limit)
    print(f"{moved} failed job(s) of {args.name!r} moved back to the queue")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        removed = kit.queue(args.name).drain(delayed=args.delayed)
    print(f"{removed} waiting job(s) of {args.name!r} deleted")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo([f"--{opt}={value}" for opt in ("part", "url") if (value := getattr(args, opt))])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redkit", description="redkit's job queue tools")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run a worker for one or more queues")
    w.add_argument(
        "queues",
        nargs="+",
        metavar="module:queue",
        help="where the queue (or Worker) is, like myapp.jobs:queue",
    )
    w.add_argument("-c", "--concurrency", type=int, default=10, help="jobs in flight per queue")
    w.add_argument("-p", "--processes", type=int, default=1, help="worker processes to run")
    w.add_argument("--limiter", help="queue-wide rate limit, MAX/SECONDS (like 100/1)")
    w.add_argument(
        "--shutdown-grace",
        type=float,
        default=None,
        help="seconds running jobs get to finish on SIGTERM (default 30)",
    )
    w.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when it is installed (auto, the default), or the one named",
    )
    w.add_argument("--log-level", default="INFO")
    w.set_defaults(func=cmd_worker)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="Redis URL (default: REDKIT_URL, then REDIS_URL)")
        p.add_argument("--prefix", help="key prefix (default: REDKIT_PREFIX or 'redkit')")

    i = sub.add_parser("info", help="queues, their job counts and workers")
    i.add_argument("names", nargs="*", metavar="queue", help="queues (default: every known one)")
    i.add_argument("--json", action="store_true", help="print JSON")
    connection(i)
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("retry-failed", help="move a queue's failed jobs back to the queue")
    r.add_argument("name", metavar="queue")
    r.add_argument("--limit", type=int, default=None, help="at most this many (oldest first)")
    connection(r)
    r.set_defaults(func=cmd_retry_failed)

    d = sub.add_parser("drain", help="delete a queue's waiting jobs")
    d.add_argument("name", metavar="queue")
    d.add_argument("--delayed", action="store_true", help="delete delayed jobs too")
    connection(d)
    d.set_defaults(func=cmd_drain)

    m = sub.add_parser("demo", help="a tour of redkit on the embedded memory:// backend")
    m.add_argument("--part", help="run one part only: cache, web, queue or shop")
    m.add_argument("--url", help="run on this Redis URL instead of memory://")
    m.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "WARNING")
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    if getattr(args, "processes", 1) < 1 or getattr(args, "concurrency", 1) < 1:
        parser.error("--processes and --concurrency must be >= 1")
    from .errors import RedkitError

    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except RedkitError as exc:
        print(f"redkit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
