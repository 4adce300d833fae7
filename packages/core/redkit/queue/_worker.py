"""The worker: takes jobs from a queue, runs their tasks, records the outcome.

One asyncio loop drives everything. Each round trip to Redis (one ``queue_step`` script call)
reports every job finished since the previous one and takes as many new jobs as there are free
slots, so a busy worker spends well under one round trip per job. Async tasks run on the loop,
sync tasks on a thread pool of ``concurrency`` threads. A separate thread renews the locks of the
running jobs (one script call for all of them), so neither a CPU-bound sync task nor an async
task that blocks the loop loses its jobs' locks. When no job is ready, the worker blocks on the
queue's marker key until a producer adds one (no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import random
import signal
import socket
import threading
import time
import traceback
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._ops import Batch, command, script
from ..errors import (
    ConfigurationError,
    JobTimeout,
    PayloadTooLarge,
    RedkitConnectionError,
    RedkitError,
    ResponseError,
    SerializationError,
    Unrecoverable,
)
from ._api import AsyncJob, Job, TaskSpec, _current
from ._core import (
    EXTEND,
    REGISTRY_TTL_MS,
    RELEASE,
    STEP,
    Backoff,
    JobOptions,
    JobRecord,
    QueueCore,
    check_name,
    decode,
    encode,
)

__all__ = ["Worker"]

log = logging.getLogger("redkit.worker")
_FETCH_BATCH = 100  # most jobs taken by one round trip
_NO_KWARGS: dict[str, Any] = {}
_MAX_PAUSE = 5.0  # longest pause between attempts to reach Redis
SIGNAL_ECHO = 1.0
"""A second stop signal within this many seconds of the first is the same stop delivered twice
(``timeout``, a terminal's Ctrl-C or systemd signal the whole process group, and a supervisor
forwards it too), not a request to stop at once."""


class _Active:
    """A job this worker runs; also what ``current_job()`` reads in its task's context."""

    __slots__ = (
        "atm",
        "ats",
        "data",
        "decoded",
        "handle",
        "id",
        "is_async",
        "lost",
        "name",
        "opts",
        "started",
        "task",
        "token",
        "worker",
    )

    def __init__(
        self, job_id: str, ats: int, token: str, name: str, data: bytes, opts: bytes, atm: int
    ):
        self.id = job_id
        self.ats = ats
        self.token = token
        self.name = name
        self.data = data
        self.opts = opts
        self.atm = atm
        self.lost = False
        self.started = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.handle: Job | AsyncJob | None = None
        self.worker: Worker | None = None
        self.decoded: Any = None
        self.is_async = False

    def get(self) -> Job | AsyncJob:
        """The job handle the running task sees (built on first use)."""
        if self.handle is None:
            assert self.worker is not None
            self.handle = self.worker._handle(self, self.decoded, self.is_async)
        return self.handle


class _Reply:
    __slots__ = ("codes", "jobs", "limit_wait", "next_due", "stalled_failed", "status")

    def __init__(self, raw: list[Any]) -> None:
        self.status = int(raw[0])
        self.limit_wait = int(raw[1])
        self.next_due = int(raw[2])
        self.codes = [int(c) for c in raw[3]]
        self.jobs = raw[4]
        self.stalled_failed = [i.decode() if isinstance(i, bytes) else str(i) for i in raw[5]]


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _limiter(value: object) -> tuple[int, int]:
    if value is None:
        return 0, 0
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError("limiter must be a (max_jobs, per_seconds) tuple")
    count, per = value
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"limiter max_jobs must be an int >= 1, got {count!r}")
    if isinstance(per, bool) or not isinstance(per, (int, float)) or not 0 < per < 10**9:
        raise ValueError(f"limiter per_seconds must be a number > 0, got {per!r}")
    return count, max(1, int(per * 1000))


class Worker:
    """Runs the jobs of one queue.

    ``concurrency`` caps the jobs in flight; ``limiter=(max_jobs, per_seconds)`` caps how many
    jobs the whole queue hands out per period, across every worker; ``processor(job)`` handles
    jobs whose name is no registered task; ``shutdown_grace`` is how long a stopping worker lets
    running jobs finish before it gives them back to the queue.

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
        lock_ttl: float | None = None,
        max_stalled: int | None = None,
        shutdown_grace: float = 30.0,
        name: str | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if processor is not None and not callable(processor):
            raise TypeError("processor must be a function taking the job")
        settings = queue._kit.settings
        self.queue = queue
        self.settings = settings
        self.concurrency = concurrency
        self.batch = min(concurrency, _FETCH_BATCH) if batch is None else int(batch)
        if self.batch < 1:
            raise ValueError("batch must be >= 1")
        self.limit_max, self.limit_ms = _limiter(limiter)
        self.processor = processor
        self.lock_ttl = float(settings.queue_lock_ttl if lock_ttl is None else lock_ttl)
        if not 0.05 <= self.lock_ttl <= 86400:
            raise ValueError("lock_ttl must be between 0.05 and 86400 seconds")
        self.lock_ms = int(self.lock_ttl * 1000)
        self.max_stalled = settings.queue_max_stalled if max_stalled is None else int(max_stalled)
        if self.max_stalled < 0:
            raise ValueError("max_stalled must be >= 0")
        if (
            isinstance(shutdown_grace, bool)
            or not isinstance(shutdown_grace, (int, float))
            or (shutdown_grace < 0)
        ):
            raise ValueError("shutdown_grace must be a number of seconds >= 0")
        self.shutdown_grace = float(shutdown_grace)
        host = socket.gethostname()
        self.id = (
            check_name("worker name", name)
            if name
            else (f"{host}:{os.getpid()}:{os.urandom(3).hex()}")
        )
        self._host = host
        self.processed = 0
        """Jobs completed by this worker."""
        self.failed = 0
        """Jobs whose attempt failed in this worker (retried or not)."""
        self.lost = 0
        """Results rejected because the job's lock had been lost (it ran again elsewhere)."""
        self._running: dict[str, _Active] = {}
        # finished jobs not reported yet: (job id, the step's arguments, what a dead-letter
        # queue receives if the job failed for good)
        self._done: list[tuple[str, list[Any], dict[str, Any] | None]] = []
        self._dead: list[tuple[str, dict[str, Any]]] = []
        self._stopping = False
        self._hard = False
        self._deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._renewer: threading.Thread | None = None
        self._renew_stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self._kit: Any = None
        self._sync_kit: Any = None
        self._core: QueueCore = queue._core
        self._dlq_core: QueueCore | None = None
        self._signals = 0
        self._error: BaseException | None = None
        self._setup_failed = False
        self._last_signal = 0.0

    # -- running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM or SIGINT (on the main thread; elsewhere until :meth:`stop`).
        The first signal stops taking jobs and lets running ones finish within
        ``shutdown_grace``; a second one gives them back at once and exits."""
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
                self.shutdown_grace,
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

    def stop(self, grace: float | None = None, *, wait: bool = True) -> None:
        """Stop (thread-safe): no new jobs; running ones get ``grace`` seconds (default
        ``shutdown_grace``) to finish, then go back to the queue."""
        if grace is not None:
            self.shutdown_grace = float(grace)
        loop = self._loop
        if loop is None:
            self._begin_stop(False)  # not serving yet: serve() sees it and returns at once
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._begin_stop, False)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _begin_stop(self, hard: bool = False) -> None:
        now = time.monotonic()
        if not self._stopping:
            self._stopping = True
            self._deadline = now + self.shutdown_grace
        if hard:
            self._hard = True
            self._deadline = now
        if self._wake is not None:
            self._wake.set()

    @property
    def running(self) -> int:
        """Jobs in flight right now."""
        return len(self._running)

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
            await self._main()
        finally:
            self._started.set()
            await self._teardown()
            self._finished.set()

    async def _setup(self) -> None:
        from .._client import Redkit
        from ..asyncio import Redkit as AsyncRedkit

        self._kit = AsyncRedkit(self.settings)
        self._sync_kit = Redkit(self.settings)
        self._exec = self._kit._executor
        # room beyond `concurrency` for threads still inside a sync task that timed out: its job
        # is done with, so it no longer counts, and the next job must not wait for its thread
        self._threads = ThreadPoolExecutor(
            self.concurrency * 2 + 32, thread_name_prefix="redkit-task"
        )
        if self._core.dead_letter:
            self._dlq_core = QueueCore(self._kit, self._core.dead_letter)
        await self._check_eviction()
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

    # -- the loop -----------------------------------------------------------------------------
    async def _main(self) -> None:
        assert self._wake is not None
        wake = self._wake
        marker: asyncio.Task[Any] | None = None
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
                self._finished_jobs(finishes, reply)
                if reply.stalled_failed and self._dlq_core is not None:
                    await self._collect_dead(reply.stalled_failed)
                if self._dead:
                    await self._send_dead()
                jobs = reply.jobs
                for i in range(0, len(jobs), 7):
                    self._launch(jobs, i)
                if jobs or want <= 0 or self._done:
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
                    marker = asyncio.ensure_future(self._wait_marker(timeout))
                waiter = asyncio.ensure_future(wake.wait())
                await asyncio.wait((marker, waiter), return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                wake.clear()
        finally:
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

    def _step(
        self, finishes: list[tuple[str, list[Any], dict[str, Any] | None]], want: int
    ) -> Batch[_Reply]:
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
            len(finishes),
        ]
        for f in finishes:
            argv += f[1]
        return Batch.one(script(STEP, core.step_keys, argv, idempotent=False), _Reply)

    def _finished_jobs(
        self, finishes: list[tuple[str, list[Any], dict[str, Any] | None]], reply: _Reply
    ) -> None:
        for finish, code in zip(finishes, reply.codes):
            if code == 0:
                self.lost += 1
                log.warning(
                    "redkit worker %s: job %s was taken over after its lock expired; this "
                    "worker's outcome was discarded",
                    self.id,
                    finish[0],
                )
            elif code == 3 and self._dlq_core is not None and finish[2] is not None:
                self._dead.append((finish[0], finish[2]))

    # -- jobs ---------------------------------------------------------------------------------
    def _launch(self, jobs: list[Any], i: int) -> None:
        job_id = _text(jobs[i])
        ats = int(jobs[i + 1])
        active = _Active(
            job_id,
            ats,
            f"{self.id}:{ats}",
            _text(jobs[i + 2]),
            jobs[i + 3],
            jobs[i + 4],
            int(jobs[i + 5]),
        )
        self._running[job_id] = active
        active.task = asyncio.ensure_future(self._process(active))

    async def _process(self, a: _Active) -> None:
        spec = self.queue.tasks.get(a.name)
        opts: dict[str, Any] = {}
        try:
            opts = json.loads(a.opts) if a.opts else {}
            data = decode(a.data)
            timeout = opts.get("t")
            result = await self._call(a, spec, data, timeout)  # raises Unrecoverable at once
            if result is None:
                args: list[Any] = [f"n{a.ats}:{a.id}"]
            else:
                try:
                    args = [f"c{a.ats}:{a.id}", encode(result, "result", self._core.max_bytes)]
                except (SerializationError, PayloadTooLarge) as exc:
                    self._fail(a, opts, spec, exc, final=True)
                    return
            self.processed += 1
            self._finish(a, args)
        except asyncio.CancelledError:
            if self._hard or self._stopping:
                return  # given back to the queue by the shutdown
            raise
        except BaseException as exc:
            self._fail(a, opts, spec, exc, final=isinstance(exc, Unrecoverable))

    def _call(self, a: _Active, spec: TaskSpec | None, data: Any, timeout: Any) -> Awaitable[Any]:
        """Start the job's task: the awaitable of its outcome (a coroutine on this loop, or the
        future of a thread of the pool)."""
        args: Any
        kwargs: Any
        if spec is not None:
            args = data.get("args", ()) if type(data) is dict else None
            kwargs = data.get("kwargs", _NO_KWARGS) if args is not None else None
            if type(args) not in (list, tuple) or type(kwargs) is not dict:
                raise Unrecoverable(f"job data of task {a.name!r} is not {{args, kwargs}}")
            fn, is_async = spec.fn, spec.is_async
        elif self.processor is None:
            raise Unrecoverable(
                f"no task named {a.name!r} is registered on queue {self.queue.name!r} in this "
                "worker (retry it with `redkit retry-failed` once a worker knows it)"
            )
        else:
            fn, args, kwargs = self.processor, None, None
            is_async = asyncio.iscoroutinefunction(fn)
        a.worker, a.decoded, a.is_async = self, data, is_async
        if is_async:
            _current.set(a)  # current_job(): the task runs in this coroutine's context
            coro = fn(*args, **kwargs) if args is not None else fn(a.get())
            return self._bounded(coro, timeout, a.name, "") if timeout else coro
        ctx = contextvars.copy_context()
        ctx.run(_current.set, a)
        call = (lambda: fn(*args, **kwargs)) if args is not None else (lambda: fn(a.get()))
        assert self._loop is not None
        future = self._loop.run_in_executor(self._threads, ctx.run, call)
        if timeout:
            return self._bounded(future, timeout, a.name, " (its thread runs on until it returns)")
        return future

    @staticmethod
    async def _bounded(work: Awaitable[Any], timeout: float, name: str, more: str) -> Any:
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            raise JobTimeout(f"task {name!r} ran longer than {timeout}s{more}") from None

    def _handle(self, a: _Active, data: Any, is_async: bool) -> Job | AsyncJob:
        """The job handle a running task sees (``current_job()``), with the job's token."""
        record = JobRecord(
            a.id,
            a.name,
            data,
            "active",
            {},
            0,
            a.atm,
            0,
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        if is_async:
            return AsyncJob(self._core, self._exec, a.id, "active", record, a.token)
        return Job(
            self._core, _ThreadsafeExecutor(self._exec, self._loop), a.id, "active", record, a.token
        )

    def _fail(
        self,
        a: _Active,
        opts: dict[str, Any],
        spec: TaskSpec | None,
        exc: BaseException,
        *,
        final: bool,
    ) -> None:
        self.failed += 1
        attempts = int(opts.get("a", 1)) if isinstance(opts, dict) else 1
        made = a.atm + 1
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        reason = reason[:4000]
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        limit = self._core.max_bytes
        if len(stack) > limit:
            stack = "...\n" + stack[-(limit - 4) :]
        if final or made >= attempts:
            log.error(
                "redkit job %s (%s) failed for good after %d attempt(s): %s",
                a.id,
                a.name,
                made,
                reason,
            )
            dead = {"name": a.name, "data": a.data, "reason": reason, "attempts": made}
            self._finish(a, [f"f{a.ats}:{a.id}", reason, stack], dead)
            return
        delay = self._backoff(spec, opts, made, exc)
        log.warning(
            "redkit job %s (%s) failed (attempt %d of %d), retrying in %.3gs: %s",
            a.id,
            a.name,
            made,
            attempts,
            delay,
            reason,
        )
        self._finish(a, [f"r{a.ats}:{a.id}", reason, stack, int(delay * 1000)])

    def _backoff(
        self, spec: TaskSpec | None, opts: dict[str, Any], made: int, exc: BaseException
    ) -> float:
        fn = spec.backoff_fn if spec is not None else self._core.backoff_fn
        if fn is not None:
            try:
                value = float(fn(made, exc))
            except Exception:
                log.exception(
                    "redkit: the backoff function of %s raised; retrying at once",
                    spec.name if spec else self.queue.name,
                )
                return 0.0
            return value if value > 0 and value < 1e9 else 0.0
        raw = opts.get("b")
        if isinstance(raw, dict):
            try:
                return Backoff.from_json(raw).seconds(made, random.random)
            except (TypeError, ValueError):
                return 0.0
        return 0.0

    def _finish(self, a: _Active, args: list[Any], dead: dict[str, Any] | None = None) -> None:
        self._running.pop(a.id, None)
        self._done.append((a.id, args, dead))
        if self._wake is not None:
            self._wake.set()

    # -- dead letters -------------------------------------------------------------------------
    async def _collect_dead(self, ids: list[str]) -> None:
        for job_id in ids:
            try:
                n, d, err, atm = await self._exec.run(
                    self._core.fields(job_id, "n", "d", "err", "atm")
                )
            except RedkitError:
                continue
            if n is not None:
                self._dead.append(
                    (
                        job_id,
                        {
                            "name": _text(n),
                            "data": d,
                            "reason": _text(err or b""),
                            "attempts": int(atm or 0),
                        },
                    )
                )

    async def _send_dead(self) -> None:
        core = self._dlq_core
        if core is None:
            self._dead.clear()
            return
        dead, self._dead = self._dead, []
        prepared = []
        for job_id, info in dead:
            raw = info.get("data")
            data = {
                "queue": self.queue.name,
                "job_id": job_id,
                "name": info["name"],
                "data": decode(raw) if isinstance(raw, bytes) else raw,
                "failed_reason": info["reason"],
                "attempts_made": info["attempts"],
            }
            try:
                prepared.append(core.prepare(info["name"], data, JobOptions()))
            except (SerializationError, PayloadTooLarge, ValueError, TypeError) as exc:
                log.error("redkit: job %s could not be dead-lettered: %s", job_id, exc)
        if not prepared:
            return
        try:
            await self._exec.run(core.add(prepared))
        except RedkitConnectionError:
            self._dead = dead + self._dead  # the same ids are re-sent: no duplicate

    # -- locks --------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        interval = max(0.02, self.lock_ttl / 3)
        while not self._renew_stop.wait(interval):
            self._renew_once()

    def _renew_once(self) -> None:
        running = dict(self._running)
        pairs: list[Any] = []
        for a in running.values():
            pairs += (a.id, a.token)
        core = self._core
        info = json.dumps(
            {
                "id": self.id,
                "queue": core.name,
                "host": self._host,
                "pid": os.getpid(),
                "concurrency": self.concurrency,
                "running": len(running),
                "processed": self.processed,
                "failed": self.failed,
            }
        )
        call = script(
            EXTEND,
            [core.active, core.workers, f"{core.base}:w:{self.id}"],
            [core.job_prefix, self.lock_ms, self.id, info, max(self.lock_ms * 2, 60_000), *pairs],
        )
        try:
            reply = self._sync_kit._executor.run(Batch.one(call))
            self._sync_kit._executor.run(
                Batch(
                    (
                        command("ZADD", core.registry, int(time.time() * 1000), core.name),
                        command("PEXPIRE", core.registry, REGISTRY_TTL_MS),
                    )
                )
            )
        except RedkitError as exc:
            log.debug("redkit worker %s: lock renewal failed: %s", self.id, exc)
            return
        for a, ok in zip(running.values(), reply):
            if not int(ok) and not a.lost:
                a.lost = True
                log.warning(
                    "redkit worker %s: lost the lock of job %s (it may run again elsewhere)",
                    self.id,
                    a.id,
                )

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
                if self._dead:
                    await self._send_dead()
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


class _ThreadsafeExecutor:
    """The worker's asyncio executor, called from a sync task's thread (``current_job()``)."""

    def __init__(self, executor: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        assert loop is not None
        self._executor = executor
        self._loop = loop

    def run(self, batch: Batch[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(self._executor.run(batch), self._loop).result()

    def drive(self, flow: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(self._executor.drive(flow), self._loop).result()


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    if timeout <= 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
