"""The ``redkit`` command: ``worker``, ``info``, ``retry-failed``, ``drain`` and ``demo``.

``redkit worker myapp.jobs:queue`` imports ``myapp.jobs`` and serves its ``queue`` (several
``module:attribute`` arguments serve several queues in one process); ``--processes N`` runs N such
processes under a supervisor that forwards signals and restarts a child that dies. The other
commands take queue names and reach Redis through ``--url`` (default: ``REDKIT_URL``, then
``REDIS_URL``) and ``--prefix``.

A mistake on the command line, or a module that does not import, is one line on stderr and exit
status 2. The checks of the options and their messages, the supervisor and the reports of the
operator commands are shared with the framework adapters' commands (``flask redkit``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "DEFAULT_CONCURRENCY",
    "LOOPS",
    "UsageError",
    "WorkerOptions",
    "check_limit",
    "configure_logging",
    "drain",
    "info",
    "load_queue",
    "main",
    "make_worker",
    "queue_named",
    "refuse_memory",
    "retry_failed",
    "run_workers",
    "supervise",
    "version",
]

log = logging.getLogger("redkit.cli")

DEFAULT_CONCURRENCY = 10
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXAMPLE_URL = "redis://127.0.0.1:6379/0"


class UsageError(Exception):
    """A command-line mistake, printed as one line without a traceback (exit status 2)."""


def version() -> str:
    """The installed redkit's version (package metadata, else ``redkit.__version__``)."""
    from importlib import metadata

    try:
        return metadata.version("redkit")
    except metadata.PackageNotFoundError:
        package = sys.modules.get(__package__ or "redkit")
        return str(getattr(package, "__version__", "unknown"))


# -- the options of a worker ----------------------------------------------------------------------
def _whole(option: str, value: object, least: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = least - 1
    if isinstance(value, bool) or number < least:
        raise UsageError(f"{option} must be a whole number >= {least}, got {str(value)!r}")
    return number


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _limiter(text: str | None) -> tuple[int, float] | None:
    if text is None:
        return None
    count, sep, per = str(text).partition("/")
    seconds = _number(per)
    if not sep or not count.strip().isdigit() or int(count) < 1 or seconds is None:
        seconds = 0.0
    if not 0 < seconds < 1e9:
        raise UsageError(
            "--limiter is MAX/SECONDS, a whole number of jobs >= 1 per a number of seconds > 0 "
            f"(like 100/1 or 600/60), got {text!r}"
        )
    return int(count), seconds


def _grace(value: object) -> float | None:
    if value is None:
        return None
    seconds = _number(str(value))
    if seconds is None or seconds < 0:
        raise UsageError(f"--shutdown-grace is a number of seconds >= 0, got {str(value)!r}")
    return seconds


def _log_level(name: object) -> str:
    level = str(name).upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"--log-level is one of {', '.join(LOG_LEVELS)}, got {str(name)!r}")
    return level


def check_limit(value: object) -> int | None:
    """``--limit N`` of ``retry-failed`` (``None``: no limit)."""
    return None if value is None else _whole("--limit", value, 1)


@dataclass(frozen=True)
class WorkerOptions:
    """The options of a worker command, checked (:meth:`parse` takes what the command line
    gave, strings or numbers)."""

    concurrency: int = DEFAULT_CONCURRENCY
    processes: int = 1
    limiter: tuple[int, float] | None = None
    shutdown_grace: float | None = None
    loop: str = "auto"
    log_level: str = "INFO"

    @classmethod
    def parse(
        cls,
        *,
        concurrency: object = DEFAULT_CONCURRENCY,
        processes: object = 1,
        limiter: str | None = None,
        shutdown_grace: object = None,
        loop: str = "auto",
        log_level: str = "INFO",
    ) -> WorkerOptions:
        """Raises :class:`UsageError` with the message both commands print."""
        if loop not in LOOPS:
            raise UsageError(f"--loop is one of {', '.join(LOOPS)}, got {loop!r}")
        _uvloop(loop)  # a missing uvloop is a usage error before anything starts
        return cls(
            concurrency=_whole("--concurrency", concurrency, 1),
            processes=_whole("--processes", processes, 1),
            limiter=_limiter(limiter),
            shutdown_grace=_grace(shutdown_grace),
            loop=loop,
            log_level=_log_level(log_level),
        )

    def worker_options(self) -> dict[str, Any]:
        """Keyword arguments of ``queue.worker()``."""
        options: dict[str, Any] = {"concurrency": self.concurrency}
        if self.limiter is not None:
            options["limiter"] = self.limiter
        if self.shutdown_grace is not None:
            options["shutdown_grace"] = self.shutdown_grace
        return options

    def child_argv(self) -> list[str]:
        """The same options for one worker process of a supervisor."""
        argv = ["--concurrency", str(self.concurrency), "--processes", "1"]
        if self.limiter is not None:
            argv += ["--limiter", f"{self.limiter[0]}/{self.limiter[1]!r}"]
        if self.shutdown_grace is not None:
            argv += ["--shutdown-grace", repr(self.shutdown_grace)]
        return [*argv, "--loop", self.loop, "--log-level", self.log_level]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


def refuse_memory(settings: Any, subject: str) -> None:
    """Refuse a client on ``memory://``: nothing outside this process sees its store."""
    if settings.scheme == "memory":
        raise UsageError(
            f"{subject} is on memory://, which lives inside one process: set REDKIT_URL (for "
            f"example REDKIT_URL={EXAMPLE_URL}) so the worker and the app share a Redis"
        )


def make_worker(queue: Any, options: WorkerOptions, subject: str) -> Any:
    """``queue.worker()`` with the command's options; a queue on memory:// is refused."""
    try:
        worker = queue.worker(**options.worker_options())
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    refuse_memory(worker.settings, subject)
    return worker


# -- module:attribute targets ---------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(text.split())


def _where(filename: str | None, lineno: int | None) -> str:
    if not filename:
        return "unknown file"
    shown = filename
    if os.path.isabs(filename) and filename.startswith(os.getcwd() + os.sep):
        shown = os.path.relpath(filename)
    return f"{shown}, line {lineno}" if lineno else shown


def _location(exc: BaseException) -> str:
    """`` (file, line N)`` of the innermost frame of ``exc`` in a file (not importlib's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f" ({_where(frames[-1].filename, frames[-1].lineno)})" if frames else ""


def _describe(exc: BaseException) -> str:
    """``Type: message (file, line N)``, the line being where it was raised."""
    message = _one_line(str(exc))
    return f"{type(exc).__name__}{': ' + message if message else ''}{_location(exc)}"


def _import(module_name: str) -> Any:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise UsageError(
            f"cannot import {module_name!r}: syntax error in {_where(exc.filename, exc.lineno)}: "
            f"{exc.msg}"
        ) from None
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing!r} (run the command "
                "where the module is, or add its directory to PYTHONPATH)"
            ) from None
        raise UsageError(
            f"{module_name!r} was found but its own import failed: it imports {missing!r}, and "
            f"there is no module named {missing!r}{_location(exc)}; is it installed?"
        ) from None
    except Exception as exc:
        raise UsageError(f"importing {module_name!r} failed: {_describe(exc)}") from None


def _not_a_task(target: str, module: Any, obj: Any) -> None:
    """A task names its queue: refuse it, saying which one to name instead."""
    from .queue import AsyncTask, Task

    if isinstance(obj, (Task, AsyncTask)):
        queue = obj.queue
        holders = [name for name, value in vars(module).items() if value is queue]
        like = f"{module.__name__}:{holders[0]}" if holders else "module:attribute"
        raise UsageError(
            f"{target} is a task of queue {queue.name!r}, not a queue: name its queue, like {like}"
        )
    if isinstance(getattr(obj, "queue_name", None), str) and hasattr(obj, "enqueue"):
        raise UsageError(
            f"{target} is a task of a framework extension (queue {obj.queue_name!r}): run the "
            f"framework's worker command, like: flask --app APP redkit worker {obj.queue_name}"
        )


def load_queue(target: str) -> Any:
    """``module:attribute`` -> the Queue (or Worker) it names; a callable is called first.
    Raises :class:`UsageError` with one line saying what is wrong."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:attribute (like myapp.jobs:queue), got {target!r}")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    from .queue import AsyncQueue, Queue, Worker

    kinds = (Queue, AsyncQueue, Worker)
    _not_a_task(target, module, obj)
    if callable(obj) and not isinstance(obj, kinds):
        try:
            obj = obj()
        except Exception as exc:
            raise UsageError(f"calling {target}() failed: {_describe(exc)}") from None
        _not_a_task(target, module, obj)
    if not isinstance(obj, kinds):
        raise UsageError(
            f"{target} is not a redkit queue or worker (it is of type {type(obj).__name__}): "
            'name a queue, like myapp.jobs:queue where queue = kit.queue("emails")'
        )
    return obj


def _workers(targets: Sequence[str], options: WorkerOptions) -> list[Any]:
    from .queue import Worker

    out = []
    for target in targets:
        obj = load_queue(target)
        if isinstance(obj, Worker):
            refuse_memory(obj.settings, f"the worker {target}")
            out.append(obj)
        else:
            out.append(make_worker(obj, options, f"queue {obj.name!r} of {target}"))
    return out


# -- serving --------------------------------------------------------------------------------------
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
    options = WorkerOptions.parse(
        concurrency=args.concurrency,
        processes=args.processes,
        limiter=args.limiter,
        shutdown_grace=args.shutdown_grace,
        loop=args.loop,
        log_level=args.log_level,
    )
    configure_logging(options.log_level)
    workers = _workers(args.queues, options)  # fail here, once, on a bad target
    if options.processes > 1:
        argv = [sys.executable, "-m", "redkit", "worker", *args.queues, *options.child_argv()]
        return supervise(argv, options.processes)
    return run_workers(workers, options.loop)


def run_workers(workers: list[Any], loop_choice: str = "auto") -> int:
    """Serve ``workers`` on one event loop until SIGTERM/SIGINT (a second signal more than a
    second later stops at once); the exit status. Used by ``redkit worker`` and the framework
    adapters' worker commands."""
    from .queue._worker import SIGNAL_ECHO

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


def supervise(argv: list[str], processes: int) -> int:
    """Run ``processes`` worker processes, each the command ``argv``; forward SIGTERM/SIGINT;
    restart a child that exits while no stop was asked for (after a pause that grows when they
    keep dying). The exit status: 0 when every child stopped cleanly."""
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
    for slot in range(processes):
        spawn(slot)
    pauses = dict.fromkeys(range(processes), 0.5)
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


# -- the operator commands ------------------------------------------------------------------------
def queue_named(kit: Any, name: str) -> Any:
    """``kit.queue(name)``; a name that is no queue name is a usage error."""
    try:
        return kit.queue(name)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def info(kit: Any, names: Sequence[str] = (), *, as_json: bool = False) -> str:
    """The report of ``info``: each queue's counts, whether it is paused, and its workers
    (``names``: these queues; none: every queue of the registry), as text or JSON."""
    from ._ops import Batch, command

    run = kit._executor.run  # redkit's errors (RedkitConnectionError, ...), not redis-py's
    names = list(names)
    if not names:
        raw = run(Batch.one(command("ZRANGE", kit.keyspace.key("queues"), 0, -1)))
        names = [n.decode("utf-8", "replace") for n in raw]
    report = []
    now = time.time() * 1000
    for name in names:
        q = queue_named(kit, name)
        counts = q.counts()
        workers = []
        for wid, seen in q.workers():
            raw = run(Batch.one(command("GET", f"{q._core.base}:w:{wid}")))
            details = json.loads(raw) if raw else {}
            workers.append(
                {
                    "id": wid,
                    "seen_seconds_ago": round((now - seen) / 1000, 1),
                    **{
                        k: details[k]
                        for k in ("host", "pid", "concurrency", "running", "processed", "failed")
                        if k in details
                    },
                }
            )
        report.append({"queue": name, "paused": q.is_paused(), **counts, "workers": workers})
    if as_json:
        return json.dumps(report, indent=2)
    lines = [] if report else ["no queues"]
    for item in report:
        paused = " (paused)" if item["paused"] else ""
        lines.append(f"queue {item['queue']}{paused}")
        states = ("waiting", "prioritized", "delayed", "active", "completed", "failed")
        lines.append("  " + "  ".join(f"{s}={item[s]}" for s in states))
        lines.extend(
            f"  worker {w['id']}: running {w.get('running', '?')}, processed "
            f"{w.get('processed', '?')}, failed {w.get('failed', '?')}, seen "
            f"{w['seen_seconds_ago']}s ago"
            for w in item["workers"]
        )
    return "\n".join(lines)


def retry_failed(kit: Any, name: str, limit: int | None = None) -> str:
    """Move queue ``name``'s failed jobs (all, or the ``limit`` oldest) back; what to print."""
    moved = queue_named(kit, name).retry_failed(limit)
    return f"{moved} failed job(s) of {name!r} moved back to the queue"


def drain(kit: Any, name: str, delayed: bool = False) -> str:
    """Delete queue ``name``'s waiting (and with ``delayed``, delayed) jobs; what to print."""
    removed = queue_named(kit, name).drain(delayed=delayed)
    return f"{removed} waiting job(s) of {name!r} deleted"


def _kit(args: argparse.Namespace) -> Any:
    from ._client import Redkit
    from .errors import ConfigurationError

    options: dict[str, Any] = {}
    if args.prefix:
        options["prefix"] = args.prefix
    try:
        kit = Redkit.from_url(args.url, **options) if args.url else Redkit.from_env(**options)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    try:
        refuse_memory(kit.settings, "the URL (--url, else REDKIT_URL, else REDIS_URL)")
    except UsageError:
        kit.close()
        raise
    return kit


def cmd_info(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        print(info(kit, args.names, as_json=args.json))
    return 0


def cmd_retry_failed(args: argparse.Namespace) -> int:
    limit = check_limit(args.limit)
    with _kit(args) as kit:
        print(retry_failed(kit, args.name, limit))
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        print(drain(kit, args.name, args.delayed))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo([f"--{opt}={value}" for opt in ("part", "url") if (value := getattr(args, opt))])


# -- the parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors in one line: ``redkit worker: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="redkit", description="redkit's job queue tools")
    parser.add_argument("--version", action="version", version=f"redkit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    w = sub.add_parser("worker", help="run a worker for one or more queues")
    w.add_argument(
        "queues",
        nargs="+",
        metavar="module:queue",
        help="where the queue (or Worker) is, like myapp.jobs:queue",
    )
    w.add_argument(
        "-c",
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"jobs in flight per queue (default {DEFAULT_CONCURRENCY})",
    )
    w.add_argument(
        "-p",
        "--processes",
        default=1,
        metavar="N",
        help="worker processes, under a supervisor when more than 1 (default 1)",
    )
    w.add_argument(
        "--limiter", metavar="MAX/SECONDS", help="queue-wide rate limit, like 100/1 or 600/60"
    )
    w.add_argument(
        "--shutdown-grace",
        metavar="SECONDS",
        help="seconds running jobs get to finish on SIGTERM (default 30)",
    )
    w.add_argument(
        "--loop",
        default="auto",
        metavar="{auto,asyncio,uvloop}",
        help="event loop: uvloop when it is installed (auto, the default), or the one named",
    )
    w.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default INFO)",
    )
    w.set_defaults(func=cmd_worker, parser=w)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="Redis URL (default: REDKIT_URL, then REDIS_URL)")
        p.add_argument("--prefix", help="key prefix (default: REDKIT_PREFIX or 'redkit')")

    i = sub.add_parser("info", help="queues, their job counts and workers")
    i.add_argument("names", nargs="*", metavar="queue", help="queues (default: every known one)")
    i.add_argument("--json", action="store_true", help="print JSON")
    connection(i)
    i.set_defaults(func=cmd_info, parser=i)

    r = sub.add_parser("retry-failed", help="move a queue's failed jobs back to the queue")
    r.add_argument("name", metavar="queue")
    r.add_argument("--limit", metavar="N", help="at most this many (oldest first)")
    connection(r)
    r.set_defaults(func=cmd_retry_failed, parser=r)

    d = sub.add_parser("drain", help="delete a queue's waiting jobs")
    d.add_argument("name", metavar="queue")
    d.add_argument("--delayed", action="store_true", help="delete delayed jobs too")
    connection(d)
    d.set_defaults(func=cmd_drain, parser=d)

    m = sub.add_parser("demo", help="a tour of redkit on the embedded memory:// backend")
    m.add_argument("--part", help="run one part only: cache, web, queue or shop")
    m.add_argument("--url", help="run on this Redis URL instead of memory://")
    m.set_defaults(func=cmd_demo, parser=m)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("info", "retry-failed", "drain"):
        configure_logging("ERROR")  # what goes wrong is the one line printed below
    elif args.command != "worker":
        configure_logging("WARNING")
    from .errors import RedkitError

    try:
        return int(args.func(args))
    except UsageError as exc:
        args.parser.error(str(exc))
        return 2  # not reached: error() exits
    except RedkitError as exc:
        print(f"redkit: {_one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
