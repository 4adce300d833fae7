"""The worker's part that runs one job: calls its task (on the loop or a thread), bounds it by its
timeout, and turns the outcome into the step's arguments (completed, retried later, failed)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import time
import traceback
from collections.abc import Awaitable
from typing import Any

from .._durations import to_ms
from .._ops import Batch
from ..errors import JobTimeout, PayloadTooLarge, SerializationError, Unrecoverable
from ._api import AsyncJob, Job, TaskSpec, _current
from ._options import Backoff, decode, encode
from ._records import JobRecord, parse_children
from ._state import _Active, _text, _WorkerState
from ._tracing import job_span

log = logging.getLogger("redkit.worker")
_NO_KWARGS: dict[str, Any] = {}


class _Jobs(_WorkerState):
    """Starting jobs and recording how they ended (a part of the worker)."""

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
            try:
                opts = json.loads(a.opts) if a.opts else {}
                data = decode(a.data)
                if type(opts) is not dict:
                    raise TypeError(f"the options are a {type(opts).__name__}, not an object")
            except (ValueError, TypeError, SerializationError) as exc:
                opts = {}
                raise Unrecoverable(f"job {a.id!r} cannot be read: {exc}") from exc
            timeout = opts.get("t")
            if opts.get("kn"):  # a parent of a flow: its children's outcomes, read once
                a.children = await self._read_children(a.id, int(opts["kn"]))
                data = _with_results(data, opts.get("pr"), a.children, spec is not None)
            with job_span(a.name, self._core.name, a.id, a.ats, opts.get("tc")):
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
            if a.cancelled:  # by job.cancel(): reported as cancelled (a thread may run on)
                self._finish(a, [f"x{a.ats}:{a.id}"])
                return
            if self._hard or self._stopping:
                return  # given back to the queue by the shutdown
            raise
        except BaseException as exc:
            try:
                self._fail(a, opts, spec, exc, final=isinstance(exc, Unrecoverable))
            except Exception as error:  # options that break the retry policy: fail for good
                log.exception("redkit worker %s: could not judge job %s's failure", self.id, a.id)
                self._fail(a, {}, None, error, final=True)

    async def _read_children(self, job_id: str, count: int) -> list[Any]:
        fields = ["kids", *(f"k:{i}" for i in range(count))]
        raw = await self._exec.run(self._core.fields(job_id, *fields))
        return parse_children({f.encode(): v for f, v in zip(fields, raw) if v is not None})

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
            children=a.children,
        )
        job: Job | AsyncJob
        if is_async:
            job = AsyncJob(self._core, self._exec, a.id, "active", record, a.token)
        else:
            executor = _ThreadsafeExecutor(self._exec, self._loop)
            job = Job(self._core, executor, a.id, "active", record, a.token)
        job._run = a
        return job

    def _cancel_requested(self, job_id: str) -> None:
        """A cancel request of a job this worker runs: stop its task (a sync task's thread is
        not interrupted: it sees ``current_job().cancelled``)."""
        a = self._running.get(job_id)
        if a is None or a.cancelled or a.task is None or a.task.done():
            return
        a.cancelled = True
        log.info("redkit job %s (%s) cancelled by request", a.id, a.name)
        a.task.cancel()

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
            self._finish(a, [f"f{a.ats}:{a.id}", reason, stack])
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
        self._finish(a, [f"r{a.ats}:{a.id}", reason, stack, to_ms(delay)])

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

    def _finish(self, a: _Active, args: list[Any]) -> None:
        # the run time measured here goes with the outcome ('<kind><attempt>.<ms>:<id>'), so
        # the metrics leave out the time the outcome waits for its report
        kind_attempt, _, job_id = args[0].partition(":")
        ran = max(0, int((time.monotonic() - a.started) * 1000))
        args[0] = f"{kind_attempt}.{ran}:{job_id}"
        self._running.pop(a.id, None)
        self._done.append((a, args))
        if self._wake is not None:
            self._wake.set()


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


def _with_results(data: Any, mode: Any, children: list[Any], is_task: bool) -> Any:
    """A task's data with its children's results put first in its arguments (``chain``: the
    only child's result; ``chord``: the list of them, ``None`` for one that did not complete)."""
    if not is_task or mode not in ("one", "all") or type(data) is not dict:
        return data
    args: Any = data.get("args")
    if type(args) not in (list, tuple):
        return data
    results = [c.result if c.state == "completed" else None for c in children]
    first = results[0] if mode == "one" and results else results
    return {**data, "args": [first, *args]}
