"""The worker's loop: one ``queue_step`` script call reports every job finished since the
previous one and takes as many new jobs as there are free slots; when no job is ready, the loop
blocks on the queue's marker key until a producer adds one (no polling)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .._ops import Batch, command, script
from ..errors import RedkitConnectionError, RedkitError
from ._core import STEP
from ._dead import _DeadLetters
from ._running import _Jobs
from ._schedules import _Scheduling
from ._state import Finish, _text

log = logging.getLogger("redkit.worker")
_MAX_PAUSE = 5.0  # longest pause between attempts to reach Redis


class _Reply:
    __slots__ = (
        "codes",
        "jobs",
        "letters",
        "limit_wait",
        "next_due",
        "refill",
        "stalled_failed",
        "status",
    )

    def __init__(self, raw: list[Any]) -> None:
        self.status = int(raw[0])
        self.limit_wait = int(raw[1])
        self.next_due = int(raw[2])
        self.codes = [int(c) for c in raw[3]]
        self.jobs = raw[4]
        self.stalled_failed = [i.decode() if isinstance(i, bytes) else str(i) for i in raw[5]]
        self.letters = int(raw[6])
        self.refill = [_text(i) for i in raw[7]] if raw[7] else ()


class _Loop(_Jobs, _DeadLetters, _Scheduling):
    """The worker's loop (a part of the worker)."""

    async def _main(self) -> None:
        assert self._wake is not None
        wake = self._wake
        marker: asyncio.Task[Any] | None = None
        self._watching = True
        watcher = asyncio.ensure_future(self._watch_cancels())
        pause = 0.05
        down_since: float | None = None
        try:
            while True:
                if self._stopping:
                    if not self._running and not self._done:
                        break
                    if self._deadline is not None and time.monotonic() >= self._deadline:
                        break
                finishes, self._done = self._done, []
                self._reporting = finishes  # renewed while the step is on its way
                want = (
                    0 if self._stopping else min(self.concurrency - len(self._running), self.batch)
                )
                if not finishes and want <= 0:
                    wake.clear()
                    if self._done:
                        continue
                    if self._stopping:
                        left = (self._deadline or 0) - time.monotonic()
                        await _wait_event(wake, max(0.0, left))
                    else:
                        await wake.wait()
                    continue
                try:
                    reply = await self._exec.run(self._step(finishes, want))
                except RedkitError as exc:
                    self._reporting = []
                    # unreachable, or refusing (out of memory, a failover's READONLY, ...): keep
                    # what finished, wait, try again; the worker never gives up by itself
                    self._done = finishes + self._done
                    if down_since is None:
                        down_since = time.monotonic()
                        log.log(
                            logging.WARNING
                            if isinstance(exc, RedkitConnectionError)
                            else logging.ERROR,
                            "redkit worker %s: Redis is unreachable or refused the call (%s); "
                            "retrying",
                            self.id,
                            exc,
                        )
                    if self._hard:
                        break
                    await _wait_event(wake, pause)
                    wake.clear()
                    pause = min(_MAX_PAUSE, pause * 2)
                    continue
                if down_since is not None:
                    log.warning(
                        "redkit worker %s: reconnected to Redis after %.1fs, resuming",
                        self.id,
                        time.monotonic() - down_since,
                    )
                    down_since = None
                    pause = 0.05
                self._reporting = []
                jobs = reply.jobs
                try:
                    self._finished_jobs(finishes, reply)
                    for i in range(0, len(jobs), 7):
                        self._launch(jobs, i)
                    if reply.letters:
                        await self._send_letters()
                    if reply.refill:
                        await self._refill(reply.refill)
                    await self._sweep()
                except Exception:
                    # a bug of redkit's, never a job's: the worker logs it and goes on
                    log.exception("redkit worker %s: unexpected error, going on", self.id)
                    await asyncio.sleep(0.05)
                if jobs or want <= 0 or self._done:
                    continue
                if self.burst and not self._running and reply.status != 2:
                    self._begin_stop()  # nothing ready, nothing running (a rate limit waits)
                    continue
                # nothing to take: sleep until a job is added, one is due, or one of ours ends
                timeout = self._core.block_slice
                if reply.next_due >= 0:
                    timeout = min(timeout, reply.next_due / 1000)
                if reply.status == 2:
                    await _wait_event(wake, min(timeout, max(reply.limit_wait, 1) / 1000))
                    wake.clear()
                    continue
                if timeout <= 0:
                    continue
                if marker is None or marker.done():
                    # blocks for the whole slice: Redis ends a blocking call's timeout only at
                    # its next cron tick (up to 100 ms late), so a due job is waited for here
                    marker = asyncio.ensure_future(self._wait_marker(self._core.block_slice))
                waiter = asyncio.ensure_future(wake.wait())
                await asyncio.wait(
                    (marker, waiter), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not waiter.done():
                    waiter.cancel()
                wake.clear()
        finally:
            await self._stop_watching(watcher)
            if marker is not None and not marker.done():
                marker.cancel()
                # let the cancelled call give its connection back before the clients close; a
                # cancellation redis-py missed is ended from Redis, by waking the blocked call
                done, _ = await asyncio.wait({marker}, timeout=0.1)
                if not done:
                    with contextlib.suppress(RedkitError):
                        await self._exec.run(Batch.one(command("ZADD", self._core.marker, 0, "0")))
                    await asyncio.wait({marker}, timeout=self._core.block_slice + 1)
                if marker.done() and not marker.cancelled():
                    marker.exception()  # retrieved: no "never retrieved" warning

    async def _watch_cancels(self) -> None:
        """Carry out the cancel requests of this worker's jobs as they come (``job.cancel()``
        adds them to the worker's own sorted set, which this blocks on)."""
        key = self._cancels
        memory = self.settings.scheme == "memory"
        while self._watching:
            try:
                ids = []
                if memory:  # the embedded server cannot block inside an event loop
                    await asyncio.sleep(0.02)
                else:
                    first = await self._exec.run(
                        Batch.one(command("BZPOPMIN", key, self._core.block_slice))
                    )
                    if not first:
                        continue
                    ids.append(first[1])
                more = await self._exec.run(Batch.one(command("ZPOPMIN", key, 100)))
                ids += [member for member, _ in more]
            except RedkitError:
                if self._watching:
                    await asyncio.sleep(0.5)
                continue
            for raw in ids:
                if raw:  # an empty member only wakes the watcher
                    self._cancel_requested(_text(raw))

    async def _stop_watching(self, watcher: asyncio.Task[Any]) -> None:
        """End the watcher between two of its calls (a call cut by a cancellation can leave its
        connection unusable): its blocking call is woken from Redis by an empty member."""
        self._watching = False
        woken = self.settings.scheme == "memory"  # there, it only sleeps 20 ms at a time
        if not woken:
            try:
                await self._exec.run(Batch.one(command("ZADD", self._cancels, 0, "")))
                woken = True
            except RedkitError:
                pass  # Redis refused or is gone (why the loop may have ended): cut the call soon
        wait = self._core.block_slice + 1 if woken else 1.0
        done, _ = await asyncio.wait({watcher}, timeout=wait)
        if not done:
            watcher.cancel()
        with contextlib.suppress(RedkitError):
            await self._exec.run(Batch.one(command("DEL", self._cancels)))
        if watcher.done() and not watcher.cancelled():
            watcher.exception()

    async def _wait_marker(self, timeout: float) -> None:
        try:
            if self.settings.scheme == "memory":
                # the embedded server cannot block inside an event loop: look every 20 ms
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    if await self._exec.run(Batch.one(command("ZPOPMIN", self._core.marker))):
                        return
                    await asyncio.sleep(0.02)
                return
            await self._exec.run(
                Batch.one(command("BZPOPMIN", self._core.marker, max(0.01, round(timeout, 2))))
            )
        except RedkitError:
            await asyncio.sleep(0.05)

    def _step(self, finishes: list[Finish], want: int) -> Batch[_Reply]:
        core = self._core
        argv: list[Any] = [
            core.job_prefix,
            core.maxlen,
            self.id,
            self.lock_ms,
            want,
            self.max_stalled,
            self.limit_max,
            self.limit_ms,
            *core.keep_args,
            "1" if self._dlq_core is not None else "0",
            len(finishes),
            self.settings.queue_metrics_minutes,
        ]
        for f in finishes:
            argv += f[1]
        return Batch.one(script(STEP, core.step_keys, argv, idempotent=False), _Reply)

    def _finished_jobs(self, finishes: list[Finish], reply: _Reply) -> None:
        for finish, code in zip(finishes, reply.codes):
            if code == 0:
                self.lost += 1
                log.warning(
                    "redkit worker %s: job %s was taken over after its lock expired; this "
                    "worker's outcome was discarded",
                    self.id,
                    finish[0].id,
                )


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    if timeout <= 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
