"""The worker: takes jobs from a queue, runs their tasks, records the outcome.

One asyncio loop drives everything. Each round trip to Redis (one ``queue_step`` script call)
reports every job finished since the previous one and takes as many new jobs as there are free
slots, so a busy worker spends well under one round trip per job. Async tasks run on the loop,
sync tasks on a thread pool of ``concurrency`` threads. A separate thread renews the locks of the
running jobs (one script call for all of them), so neither a CPU-bound sync task nor an async
task that blocks the loop loses its jobs' locks. When no job is ready, the worker blocks on the
queue's marker key until a producer adds one (no polling).

This module holds the worker's life (options, start, signals, stop, shutdown); its parts are
``_loop`` (the loop), ``_running`` (one job's run and outcome), ``_dead`` (dead letters) and
``_lease`` (the lease renewer), which share the fields declared in ``_state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import weakref
from typing import Any

from .. import _durations as durations
from .._checks import int64
from .._durations import NOT_GIVEN, Duration, to_ms
from .._ops import Batch, command, script
from ..errors import (
    ClientClosedError,
    ConfigurationError,
    RedkitConnectionError,
    RedkitError,
    ResponseError,
)
from ._core import RELEASE, QueueCore
from ._lease import _Lease
from ._loop import _Loop
from ._options import check_name
from ._state import Finish, _Active, _text
from ._threads import TaskThreads

__all__ = ["Worker"]

log = logging.getLogger("redkit.worker")
_FETCH_BATCH = 100  # most jobs taken by one round trip
SIGNAL_ECHO = 1.0
"""A second stop signal within this many seconds of the first is the same stop delivered twice
(``timeout``, a terminal's Ctrl-C or systemd signal the whole process group, and a supervisor
forwards it too), not a request to stop at once."""


def _limiter(value: object) -> tuple[int, int]:
    if value is None:
        return 0, 0
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError("limiter must be a (max_jobs, per_seconds) tuple")
    count, per = value
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count < 2**63:
        raise ValueError("limiter max_jobs must be an int from 1 to 2**63 - 1")
    return count, to_ms(durations.seconds("limiter per_seconds", per, maximum=10**9))


class Worker(_Loop, _Lease):
    """Runs the jobs of one queue.

    ``concurrency`` caps the jobs in flight; ``limiter=(max_jobs, per_seconds)`` caps how many
    jobs the whole queue hands out per period, across every worker; ``processor(job)`` handles
    jobs whose name is no registered task; ``shutdown_timeout`` (seconds or a timedelta) is how
    long a stopping worker lets running jobs finish before it gives them back to the queue
    (``shutdown_grace=`` is its deprecated name). With ``burst=True`` the worker runs the jobs
    that are ready and stops once none is left (jobs delayed to later stay for another worker).

    Run it with :meth:`run` (blocking, handles SIGTERM/SIGINT), ``await`` :meth:`serve` inside an
    event loop, or :meth:`start` it on a background thread.
    """

    def __init__(
        self,
        queue: Any,
        *,
        concurrency: int = 10,
        limiter: tuple[int, float] | None = None,
        processor: Any = None,
        batch: int | None = None,
        lock_ttl: Duration | None = None,
        max_stalled: int | None = None,
        shutdown_timeout: Duration = 30.0,
        name: str | None = None,
        burst: bool = False,
        shutdown_grace: Any = NOT_GIVEN,
    ) -> None:
        if isinstance(concurrency, bool):  # an int to Python, a mistake here
            raise ValueError("concurrency must be an int >= 1, not a bool")
        concurrency = int64("concurrency", concurrency, 1)
        if processor is not None and not callable(processor):
            raise TypeError("processor must be a function taking the job")
        settings = queue._kit.settings
        self.queue = queue
        self.settings = settings
        self.concurrency = concurrency
        self.batch = min(concurrency, _FETCH_BATCH) if batch is None else int64("batch", batch, 1)
        self.limit_max, self.limit_ms = _limiter(limiter)
        self.processor = processor
        if not isinstance(burst, bool):
            raise TypeError(f"burst must be True or False, not {burst!r}")
        self.burst = burst
        """Whether the worker stops once no job is ready (instead of waiting for more)."""
        self.lock_ttl = durations.seconds(
            "lock_ttl", settings.queue_lock_ttl if lock_ttl is None else lock_ttl, maximum=86400
        )
        if self.lock_ttl < 0.05:
            raise ValueError("lock_ttl must be between 0.05 and 86400 seconds")
        self.lock_ms = to_ms(self.lock_ttl)
        self.max_stalled = (
            settings.queue_max_stalled
            if max_stalled is None
            else int64("max_stalled", max_stalled, 0)
        )
        shutdown_timeout = durations.renamed(
            "worker()",
            "shutdown_timeout",
            shutdown_timeout,
            "shutdown_grace",
            shutdown_grace,
            default=30.0,
        )
        self.shutdown_timeout = durations.seconds("shutdown_timeout", shutdown_timeout, zero=True)
        """How long a stopping worker lets running jobs finish (seconds)."""
        host = socket.gethostname()
        self.id = (
            check_name("worker name", name)
            if name
            else (f"{host}:{os.getpid()}:{os.urandom(3).hex()}")
        )
        self._host = host
        self._cancels = f"{queue._core.base}:w:{self.id}:cx"  # cancel requests of its jobs
        self.processed = 0
        """Jobs completed by this worker."""
        self.failed = 0
        """Jobs whose attempt failed in this worker (retried or not)."""
        self.lost = 0
        """Results rejected because the job's lock had been lost (it ran again elsewhere)."""
        self._running: dict[str, _Active] = {}
        # finished jobs not reported yet (and those of the step on its way): (job, the step's
        # arguments); their locks are renewed until the report lands
        self._done: list[Finish] = []
        self._reporting: list[Finish] = []
        self._stopping = False
        self._hard = False
        self._deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._threads: TaskThreads | None = None
        self._renewer: threading.Thread | None = None
        self._renew_stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._up = asyncio.Event()  # _started, for a coroutine in the loop of serve()
        self._finished = threading.Event()
        self._kit: Any = None
        self._sync_kit: Any = None
        self._core: QueueCore = queue._core
        self._dlq_core: QueueCore | None = None
        self._signals = 0
        self._error: BaseException | None = None
        self._loop_error: BaseException | None = None  # what ended the loop, once serving
        self._setup_failed = False
        self._last_signal = 0.0

    # -- running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM or SIGINT (on the main thread; elsewhere until :meth:`stop`).
        The first signal stops taking jobs and lets running ones finish within
        ``shutdown_timeout``; a second one gives them back at once and exits."""
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        installed = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
                    pass
        try:
            await self.serve()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        now = time.monotonic()
        if self._signals and now - self._last_signal < SIGNAL_ECHO:
            return  # the same stop reaching us twice (process group and supervisor)
        self._signals += 1
        self._last_signal = now
        name = signal.Signals(sig).name
        if self._signals == 1:
            log.warning(
                "redkit worker %s: %s received, finishing %d running job(s) within %.1fs "
                "(send it again to stop at once)",
                self.id,
                name,
                len(self._running),
                self.shutdown_timeout,
            )
            self._begin_stop(hard=False)
        else:
            log.warning("redkit worker %s: second %s, giving running jobs back now", self.id, name)
            self._begin_stop(hard=True)

    def start(self) -> Worker:
        """Run the worker on a background thread (returns once it is serving)."""
        if self._thread is not None:
            raise RuntimeError("this worker was started already")

        def target() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:
                self._error = exc
                self._started.set()

        self._thread = threading.Thread(
            target=target,
            name=f"redkit-worker-{self.queue.name}",
            daemon=True,
        )
        self._thread.start()
        self._started.wait(30)
        if self._setup_failed:
            self._thread.join()
            if self._error is not None:
                raise self._error
        return self

    def join(self, timeout: Duration | None = None) -> None:
        """Wait until the worker started by :meth:`start` has stopped (at most ``timeout``
        seconds); raises what ended its loop, if an error did (it was logged as it happened)."""
        wait = durations.optional_seconds("timeout", timeout, zero=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._loop_error is not None and self._finished.is_set():
            raise self._loop_error

    @property
    def shutdown_grace(self) -> float:
        """Deprecated name of :attr:`shutdown_timeout`."""
        durations.warn_deprecated(
            "Worker.shutdown_grace is deprecated, use Worker.shutdown_timeout (same meaning)"
        )
        return self.shutdown_timeout

    def stop(
        self, timeout: Duration | None = None, *, wait: bool = True, grace: Any = NOT_GIVEN
    ) -> None:
        """Stop (thread-safe): no new jobs; running ones get ``timeout`` (seconds or a
        timedelta; default ``shutdown_timeout``) to finish, then go back to the queue.
        ``grace=`` is the deprecated name of ``timeout``."""
        timeout = durations.renamed("stop()", "timeout", timeout, "grace", grace)
        if timeout is not None:
            self.shutdown_timeout = durations.seconds("timeout", timeout, zero=True)
        loop = self._loop
        if loop is None:
            self._begin_stop(False)  # not serving yet: serve() sees it and returns at once
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._begin_stop, False)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if wait:
            self._raise_error()

    def _begin_stop(self, hard: bool = False) -> None:
        now = time.monotonic()
        if not self._stopping:
            self._stopping = True
            self._deadline = now + self.shutdown_timeout
        if hard:
            self._hard = True
            self._deadline = now
        if self._wake is not None:
            self._wake.set()

    @property
    def running(self) -> int:
        """Jobs in flight right now."""
        return len(self._running)

    @property
    def serving(self) -> bool:
        """Whether the worker is set up and taking jobs: from the end of its start-up (where
        a failure makes :meth:`serve` raise instead) until it has stopped."""
        return self._started.is_set() and not self._setup_failed and not self._finished.is_set()

    async def started(self) -> bool:
        """Wait, in the event loop :meth:`serve` runs in, until the worker's start-up is over:
        ``True`` when it serves, ``False`` when the start-up failed (``serve()`` raises the
        error) or the worker stopped before."""
        await self._up.wait()
        return self.serving

    async def serve(self) -> None:
        """Run in the current event loop until :meth:`stop` (or a signal under :meth:`run`)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            try:
                await self._setup()
            except BaseException:
                self._setup_failed = True
                raise
            self._started.set()
            self._up.set()
            try:
                await self._main()
            except BaseException as exc:
                if not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    self._loop_error = exc
                    log.error(
                        "redkit worker %s: its loop ended by an error, the worker stops (jobs "
                        "it ran go back to the queue)",
                        self.id,
                        exc_info=exc,
                    )
                raise
        finally:
            self._started.set()
            self._up.set()
            try:
                await self._teardown()
            finally:
                self._finished.set()

    async def _setup(self) -> None:
        from .._client import Redkit
        from ..asyncio import Redkit as AsyncRedkit

        kit = self.queue._kit
        if kit._closed:
            raise ClientClosedError(
                f"the client of queue {self.queue.name!r} is closed: a worker of it cannot start"
            )
        me = weakref.ref(self)
        kit.on_close(lambda: _stop_with_client(me))  # closing the client stops its workers
        # no circuit breaker: the loop paces its own retries, and a breaker's cool-down would
        # hold up its first step and lock renewal after an outage, past the locks' expiry
        settings = self.settings.replace(breaker_threshold=0)
        self._kit = AsyncRedkit(settings)
        self._sync_kit = Redkit(settings)
        self._exec = self._kit._executor
        # room beyond `concurrency` for threads still inside a sync task that timed out: its job
        # is done with, so it no longer counts, and the next job must not wait for its thread
        self._threads = TaskThreads(self.concurrency * 2 + 32, thread_name_prefix="redkit-task")
        if self._core.dead_letter:
            self._dlq_core = QueueCore(self._kit, self._core.dead_letter)
        await self._check_eviction()
        await self._send_letters()  # those a worker that died left
        await self._sweep()  # job schedulers whose next run is missing
        self._renew_once()  # register before the first job
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"redkit-renew-{self.queue.name}", daemon=True
        )
        self._renewer.start()
        log.info(
            "redkit worker %s serving queue %r (concurrency %d, %d task(s))",
            self.id,
            self.queue.name,
            self.concurrency,
            len(self.queue.tasks),
        )

    async def _check_eviction(self) -> None:
        policy_setting = self.settings.queue_eviction_policy
        if policy_setting == "ignore" or self.settings.scheme == "memory":
            return
        try:
            if self.settings.is_cluster:
                reply = await self._cluster_policy()
            else:
                reply = await self._exec.run(
                    Batch.one(command("CONFIG", "GET", "maxmemory-policy"))
                )
        except (ResponseError, RedkitConnectionError) as exc:
            log.warning(
                "redkit worker: could not read Redis' maxmemory-policy (%s); make sure it is "
                "'noeviction', or Redis may delete queue state when memory runs out",
                exc,
            )
            return
        values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1::2]
        policy = _text(values[0]) if values else ""
        if policy.startswith("allkeys"):
            message = (
                f"Redis' maxmemory-policy is {policy!r}: when memory runs out Redis evicts any "
                "key, including waiting jobs and queue state, silently. Set it to 'noeviction' "
                "for job queues"
            )
            if policy_setting == "refuse":
                raise ConfigurationError(message)
            log.error("redkit worker: %s", message)

    async def _cluster_policy(self) -> Any:
        """CONFIG GET on the node that owns this queue's slot."""
        import redis.exceptions as rex

        from .._executor import wrap_error

        client = self._kit.client
        try:
            if not self._exec._ready:
                await self._exec._initialize()
            node = client.get_node_from_key(self._core.wait)
            return await client.execute_command(
                "CONFIG", "GET", "maxmemory-policy", target_nodes=node
            )
        except (rex.RedisError, OSError) as exc:
            raise wrap_error(exc) from exc

    # -- shutdown -----------------------------------------------------------------------------
    async def _teardown(self) -> None:
        running = list(self._running.values())
        for a in running:
            if a.task is not None and not a.task.done():
                a.task.cancel()
        if self._kit is not None:
            core = self._core
            pairs: list[Any] = []
            for a in running:
                pairs += (a.id, a.token)
            try:
                if self._done:
                    finishes, self._done = self._done, []
                    reply = await self._exec.run(self._step(finishes, 0))
                    self._finished_jobs(finishes, reply)
                    if reply.letters:
                        self._letters_after = 0.0
                        await self._send_letters()
                released = await self._exec.run(
                    Batch.one(
                        script(
                            RELEASE,
                            [
                                core.wait,
                                core.prioritized,
                                core.active,
                                core.events,
                                core.marker,
                                core.meta,
                                core.workers,
                                f"{core.base}:w:{self.id}",
                            ],
                            [core.job_prefix, core.maxlen, self.id, *pairs],
                        )
                    )
                )
                if released:
                    log.warning(
                        "redkit worker %s: gave %d unfinished job(s) back to the queue",
                        self.id,
                        released,
                    )
            except RedkitError as exc:
                log.warning(
                    "redkit worker %s: could not report its last jobs to Redis (%s); they "
                    "return to the queue when their locks expire",
                    self.id,
                    exc,
                )
            except Exception:  # a bug of redkit's: the rest of the shutdown still runs
                log.exception(
                    "redkit worker %s: reporting its last jobs failed; they return to the queue "
                    "when their locks expire",
                    self.id,
                )
        self._renew_stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._kit is not None:
            await self._kit.aclose()
        if self._sync_kit is not None:
            self._sync_kit.close()
        log.info(
            "redkit worker %s stopped (%d completed, %d failed)",
            self.id,
            self.processed,
            self.failed,
        )


def _stop_with_client(ref: weakref.ref[Worker]) -> None:
    """A worker's client is closing: stop the worker (running jobs get ``shutdown_timeout``)."""
    worker = ref()
    if worker is not None and not worker._finished.is_set():
        worker.stop()
