"""Serving: ``redkit worker`` runs its workers on one event loop, or several worker processes
under a supervisor that forwards signals and restarts a child that dies."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ._options import WorkerOptions, _uvloop, configure_logging
from ._targets import _workers

log = logging.getLogger("redkit.cli")


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
    options = WorkerOptions.from_args(args)
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
    from ..queue._worker import SIGNAL_ECHO

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
        # a sync task that outlived its shutdown timeout still runs on its thread: its job went
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
