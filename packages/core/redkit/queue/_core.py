"""The job queue's pure part: keys, script calls and transitions, reply parsing (no I/O); a
job's options are checked in ``_options``, what Redis holds is decoded in ``_records``.

Every key of a queue shares the hash tag ``{<queue name>}``, so each transition is one script on one
Redis Cluster slot. Layout, under ``<prefix>:q:{<name>}``:

``:wait`` (list of ids), ``:prioritized`` and ``:delayed`` (sorted sets whose members are a 16-hex
order number followed by the id, so that jobs with the same score keep the order they were added
in), ``:active`` (sorted set: id -> lock expiry in ms), ``:completed`` / ``:failed`` (sorted sets:
id -> finish time), ``:events`` (capped stream), ``:meta`` (hash), ``:marker`` (sorted set that idle
workers block on), ``:limiter`` (rate-limit counter with a TTL), ``:workers`` (sorted set of
heartbeats), ``:w:<worker id>`` (worker description, with a TTL), ``:letters`` (stream of dead
letters not sent on yet), ``:metrics`` (hash: counts and histograms, see ``_metrics``),
``:schedulers`` (sorted set: job scheduler id -> its next run) with
``:schedulers:<id>`` (one hash per scheduler), ``:waiting-children`` (sorted set: id -> added ms,
the parents of flows whose children have not all ended) and ``:j:<job id>`` (one hash per job).
``:letters`` also carries the notices a flow's children leave for their parents (``_flows``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from .. import _durations as durations
from .._checks import entry_id, int64, shown
from .._durations import Duration, to_ms
from .._ops import Batch, Flow, Script, Sleep, command, script
from ..errors import JobCancelled, JobFailed, JobNotFound, JobTimeout
from . import _tracing as tracing
from ._metrics import Metrics, check_minutes, parse_metrics
from ._options import (
    _NO_KEEP,
    Backoff,
    JobOptions,
    Keep,
    _int,
    check_backoff,
    check_name,
    decode,
    encode,
)
from ._records import STATES, Event, JobRecord, WorkerInfo, new_ids, parse_events

__all__ = ["QueueCore", "check_since"]

T = TypeVar("T")
U = TypeVar("U")

ADD = Script.load("queue_add")
STEP = Script.load("queue_step")
EXTEND = Script.load("queue_extend")
RELEASE = Script.load("queue_release")
PROGRESS = Script.load("queue_progress")
PAUSE = Script.load("queue_pause")
RETRY = Script.load("queue_retry")
REMOVE = Script.load("queue_remove")
DRAIN = Script.load("queue_drain")
PROMOTE = Script.load("queue_promote")
CLEAN = Script.load("queue_clean")
LOG = Script.load("queue_log")
CANCEL = Script.load("queue_cancel")
CHILD = Script.load("queue_child")
MAX_LOG_LINE = 4000  # characters of one log line kept
BULK_CHUNK = 1000  # jobs per add script call
REGISTRY_TTL_MS = 30 * 86400 * 1000


# -- the queue's keys and calls ---------------------------------------------------------------
class QueueCore:
    """Keys, validated options and batches of one queue (no I/O; shared by sync and async)."""

    def __init__(
        self,
        kit: Any,
        name: object,
        *,
        attempts: int | None = None,
        backoff: object = None,
        timeout: float | None = None,
        priority: int | None = None,
        keep: object = None,
        events: int | None = None,
        dead_letter: str | None = None,
    ) -> None:
        self.name = check_name("queue name", name)
        settings = kit.settings
        self.settings = settings
        self.base = kit.keyspace.tagged("q", self.name)
        b = self.base
        self.wait, self.prioritized, self.delayed = f"{b}:wait", f"{b}:prioritized", f"{b}:delayed"
        self.active, self.completed, self.failed = f"{b}:active", f"{b}:completed", f"{b}:failed"
        self.meta, self.events, self.marker = f"{b}:meta", f"{b}:events", f"{b}:marker"
        self.limiter, self.workers = f"{b}:limiter", f"{b}:workers"
        self.letters, self.schedulers = f"{b}:letters", f"{b}:schedulers"
        self.cancelled, self.metrics = f"{b}:cancelled", f"{b}:metrics"
        self.waiting_children = f"{b}:waiting-children"
        # the KEYS of the two scripts called most (queue_add.lua, queue_step.lua)
        self.add_keys = [self.wait, self.prioritized, self.delayed, self.meta]
        self.add_keys += [self.events, self.marker, self.waiting_children]
        self.step_keys = [self.wait, self.prioritized, self.delayed, self.active, self.completed]
        self.step_keys += [self.failed, self.meta, self.events, self.marker, self.limiter]
        self.step_keys += [self.letters, self.schedulers, self.cancelled, self.metrics]
        self.step_keys.append(self.waiting_children)
        self.job_prefix = f"{b}:j:"
        self.registry = kit.keyspace.key("queues")
        self.max_bytes = settings.queue_max_bytes
        self.maxlen = (
            settings.queue_events_maxlen if events is None else _int("events", events, 0, 10**9)
        )
        self.block_slice = _block_slice(settings.socket_timeout)
        self.stats = kit.stats
        task_backoff = check_backoff(backoff, allow_callable=True)
        self.backoff_fn: Callable[..., float] | None = (
            task_backoff
            if task_backoff is not None and not isinstance(task_backoff, Backoff)
            else None
        )
        self.defaults = JobOptions.build(
            attempts=attempts,
            backoff=task_backoff if isinstance(task_backoff, Backoff) else None,
            timeout=timeout,
            priority=priority,
            keep=keep,
        )
        self.dead_letter = None if dead_letter is None else check_name("dead_letter", dead_letter)
        if self.dead_letter == self.name:
            raise ValueError("a queue cannot be its own dead-letter queue")
        k = self.defaults.keep or Keep()
        self.keep_args = [
            settings.queue_keep_completed if k.completed is None else k.completed,
            int(
                1000
                * (
                    settings.queue_keep_completed_age
                    if k.completed_age is None
                    else k.completed_age
                )
            ),
            settings.queue_keep_failed if k.failed is None else k.failed,
            int(1000 * (settings.queue_keep_failed_age if k.failed_age is None else k.failed_age)),
        ]
        self._default_tail = _tail(self.defaults)
        self.registered = False
        from ._schedules import Schedules

        self.sched = Schedules(self)

    def job_key(self, job_id: str) -> str:
        return self.job_prefix + job_id

    # -- producing ------------------------------------------------------------------------------
    def prepare(
        self, name: object, data: Any, opts: JobOptions | None = None, job_id: str | None = None
    ) -> list[Any]:
        """The add script's arguments for one job (validated, encoded): id, name and data, then,
        unless every option is a default, seven more (see ``queue_add.lua``). ``opts=None``: the
        queue's defaults."""
        check_name("job name", name)
        payload = encode(data, "data", self.max_bytes)
        carrier = tracing.carried()  # the trace the add is part of (with opentelemetry)
        if opts is None and carrier is None:
            tail = self._default_tail
        else:
            if opts is not None:
                job_id = opts.job_id
            tail = _tail(opts or self.defaults, carrier)
        job = [job_id or new_ids.next(), name, payload]
        if tail is not None:
            job += tail
        return job

    def prepare_node(
        self,
        name: object,
        data: Any,
        opts: JobOptions,
        job_id: str,
        par: str,
        kids: list[list[str]],
        extra: dict[str, Any],
    ) -> list[Any]:
        """The add script's twelve arguments for one job of a flow (see ``queue_add.lua``):
        ``par`` its parent ('' for none), ``kids`` its children ([queue, id]), ``extra`` what
        its worker reads besides the options (``kn`` children, ``pr`` results passed)."""
        check_name("job name", name)
        payload = encode(data, "data", self.max_bytes)
        stored = {**decode(opts.stored() or b"{}"), **extra}
        carrier = tracing.carried()
        if carrier is not None:
            stored["tc"] = carrier
        keep = opts.keep.args() if opts.keep is not None else _NO_KEEP
        return [
            job_id,
            name,
            payload,
            encode(stored, "options", 2**20) if stored else "",
            opts.priority,
            to_ms(opts.delay),
            *keep,
            par,
            encode(kids, "children", 2**24).decode() if kids else "",
        ]

    def add(
        self,
        prepared: Sequence[list[Any]],
        extra_keys: Sequence[str] = (),
        tail: Sequence[Any] = (),
    ) -> Batch[list[tuple[str, str | None, list[Any]]]]:
        """Add prepared jobs (at most :data:`BULK_CHUNK`): one script call, safe to re-send
        (an id it has seen is not added again). Returns (id, state or None when it existed,
        the prepared arguments). ``extra_keys`` and ``tail``: a write-behind write's pending
        value (and entry) written with the jobs (see ``queue_add.lua``)."""
        argv: list[Any] = [self.job_prefix, self.maxlen, len(prepared)]
        for job in prepared:
            argv.append(len(job))
            argv += job
        calls = [
            script(
                ADD,
                [*self.add_keys, *extra_keys] if extra_keys else self.add_keys,
                [*argv, *tail] if tail else argv,
            )
        ]
        if not self.registered:
            calls.append(command("ZADD", self.registry, int(time.time() * 1000), self.name))
            calls.append(command("PEXPIRE", self.registry, REGISTRY_TTL_MS))

        def parse(replies: list[Any]) -> list[tuple[str, str | None, list[Any]]]:
            self.registered = True
            out: list[tuple[str, str | None, list[Any]]] = []
            for job, created in zip(prepared, replies[0]):
                if isinstance(created, bytes):  # held by the job of its dedup id: that one
                    out.append((created.decode("utf-8", "replace"), None, job))
                else:
                    out.append((job[0], _added_state(job) if int(created) == 1 else None, job))
            return out

        return Batch(tuple(calls), parse)

    def add_jobs(
        self, prepared: Sequence[list[Any]]
    ) -> Flow[list[tuple[str, str, JobRecord | None, list[Any] | None]]]:
        """Flow of ``add`` and ``add_bulk``: one script call per :data:`BULK_CHUNK` jobs; an id
        that existed already is read back. Gives (id, state, record read or None, what was
        sent or None) per job."""
        out: list[tuple[str, str, JobRecord | None, list[Any] | None]] = []
        for i in range(0, len(prepared), BULK_CHUNK):
            for job_id, state, sent in (yield self.add(prepared[i : i + BULK_CHUNK])):
                if state is not None:
                    out.append((job_id, state, None, sent))
                    continue
                record = yield self.get(job_id)
                out.append((job_id, "unknown" if record is None else record.state, record, None))
        return out

    def wait_result(
        self, job_id: str, timeout: Duration | None, seen: Callable[[JobRecord], None]
    ) -> Flow[Any]:
        """Flow of ``job.wait()``: read the job until it finished (``seen`` gets each read),
        pausing 5 ms doubling to 0.5 s; a job gone meanwhile is judged by its events."""
        timeout = durations.optional_seconds("timeout", timeout, zero=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        for pause in poll_delays():
            record = yield self.get(job_id)
            if record is None:  # deleted as it finished (keep=False)? its events tell
                return self.ended((yield self.end_event(job_id)), job_id)
            seen(record)
            done, result = self.wait_outcome(record, job_id)
            if done:
                return result
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobTimeout(f"job {job_id!r} did not finish within {timeout}s")
                pause = min(pause, left)
            yield Sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reading --------------------------------------------------------------------------------
    def get(self, job_id: str) -> Batch[JobRecord | None]:
        check_name("job_id", job_id)
        return Batch.one(
            command("HGETALL", self.job_key(job_id)),
            lambda raw: JobRecord.parse(job_id, raw, self.name) if raw else None,
        )

    def fields(self, job_id: str, *names: str) -> Batch[list[bytes | None]]:
        return Batch.one(command("HMGET", self.job_key(job_id), *names), list)

    def counts(self) -> Batch[dict[str, int]]:
        calls = (
            command("LLEN", self.wait),
            command("ZCARD", self.prioritized),
            command("ZCARD", self.delayed),
            command("ZCARD", self.active),
            command("ZCARD", self.completed),
            command("ZCARD", self.failed),
            command("ZCARD", self.cancelled),
            command("ZCARD", self.waiting_children),
        )

        def parse(replies: list[Any]) -> dict[str, int]:
            return dict(zip(STATES, (int(r) for r in replies)))

        return Batch(calls, parse)

    def read_metrics(self, minutes: object) -> Batch[Metrics]:
        """The queue's metrics over its last ``minutes`` minutes (Redis' clock)."""
        kept = self.settings.queue_metrics_minutes
        count = check_minutes(minutes, kept)
        return Batch(
            (command("TIME"), command("HGETALL", self.metrics)),
            lambda r: parse_metrics(
                self.name, int(r[0][0]) * 1000 + int(r[0][1]) // 1000, r[1], count, kept
            ),
        )

    def is_paused(self) -> Batch[bool]:
        return Batch.one(command("HEXISTS", self.meta, "paused"), lambda r: bool(int(r)))

    def ids(self, state: str, start: int, stop: int) -> Batch[list[str]]:
        """Job ids in ``state``, oldest first (by position, ``stop`` inclusive)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {shown(state)}")
        start, stop = int64("start", start), int64("stop", stop)
        if state == "waiting":
            call = command("LRANGE", self.wait, start, stop)
        else:
            call = command("ZRANGE", getattr(self, state), start, stop)
        strip = state in ("prioritized", "delayed")

        def parse(reply: list[bytes]) -> list[str]:
            return [(r[16:] if strip else r).decode("utf-8", "replace") for r in reply]

        return Batch.one(call, parse)

    # -- administration -------------------------------------------------------------------------
    def pause(self, paused: bool) -> Batch[bool]:
        return Batch.one(
            script(
                PAUSE, [self.meta, self.events, self.marker], ["1" if paused else "0", self.maxlen]
            ),
            lambda r: int(r) == 1,
        )

    def retry(self, ids: Iterable[str] = (), limit: int = 1000) -> Batch[tuple[int, int]]:
        checked = [check_name("job_id", i) for i in ids]
        return Batch.one(
            script(
                RETRY,
                [self.wait, self.prioritized, self.failed, self.events, self.marker, self.meta],
                [self.job_prefix, self.maxlen, limit, *checked],
            ),
            lambda r: (int(r[0]), int(r[1])),
        )

    def retry_all(self, limit: int | None) -> Flow[int]:
        """Move failed jobs (all, or the oldest ``limit``) back, 1,000 per call; the count."""
        if limit is not None:
            int64("limit", limit, 0)
        moved = 0
        while limit is None or moved < limit:
            step = 1000 if limit is None else min(1000, limit - moved)
            n, left = yield self.retry((), step)
            moved += int(n)
            if n == 0 or left == 0:
                break
        return moved

    def drain_all(self, delayed: bool) -> Flow[int]:
        """Delete waiting (and delayed) jobs, 1,000 looked at per call, until none is left
        (schedulers' pending runs stay, and are passed over once); the count."""
        removed = skip = 0
        while True:
            n, left, passed = yield self.drain(delayed, skip=skip)
            removed += int(n)
            if left == 0 or (n == 0 and passed == skip):
                return removed
            skip = passed

    def promote(self, job_id: str) -> Batch[int]:
        check_name("job_id", job_id)
        return Batch.one(
            script(
                PROMOTE,
                [
                    self.wait,
                    self.prioritized,
                    self.delayed,
                    self.events,
                    self.schedulers,
                    self.meta,
                    self.marker,
                ],
                [self.job_key(job_id), self.maxlen, job_id],
            ),
            int,
        )

    def clean(self, state: str, age_ms: int, limit: int = 1000) -> Batch[tuple[int, int]]:
        return Batch.one(
            script(
                CLEAN,
                [self.ended_set(state), self.events],
                [self.job_prefix, self.maxlen, age_ms, limit],
            ),
            lambda r: (int(r[0]), int(r[1])),
        )

    def ended_set(self, state: str) -> str:
        """The sorted set of the ended jobs of ``state``; another state is a ``ValueError``."""
        sets = {"completed": self.completed, "failed": self.failed, "cancelled": self.cancelled}
        if state not in sets:
            raise ValueError(
                f"state must be 'completed', 'failed' or 'cancelled' (jobs that ended), "
                f"not {state!r}"
            )
        return sets[state]

    def clean_all(self, state: str, age_ms: int, limit: int | None) -> Flow[int]:
        """Delete ended jobs of ``state`` at least ``age_ms`` old (all, or the oldest
        ``limit``), 1,000 per call; the count."""
        removed = 0
        while limit is None or removed < limit:
            step = 1000 if limit is None else min(1000, limit - removed)
            n, left = yield self.clean(state, age_ms, step)
            removed += int(n)
            if n == 0 or left == 0:
                break
        return removed

    def remove(self, job_id: str) -> Batch[int]:
        check_name("job_id", job_id)
        return Batch.one(
            script(
                REMOVE,
                [
                    self.wait,
                    self.prioritized,
                    self.delayed,
                    self.completed,
                    self.failed,
                    self.events,
                    self.schedulers,
                    self.meta,
                    self.cancelled,
                    self.waiting_children,
                    self.letters,
                    self.marker,
                ],
                [self.job_key(job_id), self.maxlen, job_id],
            ),
            int,
        )

    def drain(self, delayed: bool, limit: int = 1000, skip: int = 0) -> Batch[tuple[int, int, int]]:
        return Batch.one(
            script(
                DRAIN,
                [
                    self.wait,
                    self.prioritized,
                    self.delayed,
                    self.events,
                    self.letters,
                    self.marker,
                    self.meta,
                    self.waiting_children,
                ],
                [self.job_prefix, self.maxlen, "1" if delayed else "0", limit, skip],
            ),
            lambda r: (int(r[0]), int(r[1]), int(r[2])),
        )

    def cancel(self, job_id: str, reason: object) -> Batch[int]:
        """Cancel a job (see ``queue_cancel.lua``): 1 cancelled, 2 requested of its worker, 0 it
        had finished, -1 no such job."""
        check_name("job_id", job_id)
        if not isinstance(reason, str):
            raise TypeError(f"a cancel's reason is a str, not {type(reason).__name__}")
        keys = [self.wait, self.prioritized, self.delayed, self.cancelled, self.events]
        keys += [self.schedulers, self.meta, self.metrics, self.waiting_children, self.letters]
        keys.append(self.marker)
        argv = [self.job_prefix, self.maxlen, job_id, reason[:4000], *self.keep_args[2:]]
        argv.append(self.settings.queue_metrics_minutes)
        return Batch.one(
            script(CANCEL, keys, argv),
            int,
        )

    def record_children(self, notices: Sequence[Sequence[Any]]) -> Batch[list[int]]:
        """Record how children ended in their parents of this queue (``queue_child.lua``): each
        notice is (parent id, child index, outcome, child attempt, payload, policy, child)."""
        argv: list[Any] = [self.job_prefix, self.maxlen, len(notices)]
        for notice in notices:
            argv += notice
        keys = [self.wait, self.prioritized, self.meta, self.events, self.marker]
        keys.append(self.waiting_children)
        return Batch.one(script(CHILD, keys, argv), lambda r: [int(x) for x in r])

    def progress(self, job_id: str, token: str, value: Any) -> Batch[bool]:
        payload = encode(value, "progress", self.max_bytes)
        return Batch.one(
            script(
                PROGRESS, [self.events], [self.job_key(job_id), self.maxlen, job_id, token, payload]
            ),
            lambda r: int(r) == 1,
        )

    def log(self, job_id: str, token: str, line: str) -> Batch[bool]:
        """Append ``line`` (checked by :func:`log_line`) to the job's log."""
        return Batch.one(
            script(LOG, [self.job_key(job_id)], [token, line, self.settings.queue_max_logs]),
            lambda r: int(r) == 1,
        )

    def read_events(self, since: str, block_ms: int | None, count: int = 100) -> Batch[list[Event]]:
        args: list[Any] = ["XREAD", "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", self.events, since]
        return Batch.one(command(*args), parse_events)

    def last_event_id(self) -> Batch[str]:
        def parse(reply: Any) -> str:
            if not reply:
                return "0-0"
            ident = reply[0][0]
            return ident.decode() if isinstance(ident, bytes) else str(ident)

        return Batch.one(command("XREVRANGE", self.events, "+", "-", "COUNT", 1), parse)

    def since_moment(self, called: float) -> Batch[str]:
        """The stream position of a moment passed (``called``, by ``time.monotonic()``) by
        Redis' clock: Redis' time now less the time since then, as the last possible entry id
        of the millisecond before."""

        def parse(reply: Any) -> str:
            micros = int(reply[0]) * 1_000_000 + int(reply[1])
            ms = (micros - int((time.monotonic() - called) * 1_000_000)) // 1000
            return f"{max(0, ms - 1)}-{2**64 - 1}"

        return Batch.one(command("TIME"), parse)

    def workers_info(self) -> Batch[list[tuple[str, float]]]:
        return Batch.one(
            command("ZRANGE", self.workers, 0, -1, "WITHSCORES"),
            lambda r: [(m.decode("utf-8", "replace"), float(s)) for m, s in r],
        )

    def worker_details(self) -> Flow[list[WorkerInfo]]:
        """Flow of ``worker_details()``: the registry, then the workers' heartbeat details (one
        ``MGET`` in the queue's slot)."""
        seen = yield self.workers_info()
        if not seen:
            return []
        raw = yield Batch.one(command("MGET", *(f"{self.base}:w:{wid}" for wid, _ in seen)))
        return [WorkerInfo.parse(wid, ms, r) for (wid, ms), r in zip(seen, raw)]

    def end_event(self, job_id: str) -> Batch[Event | None]:
        """The latest ``completed`` or ``failed`` event of a job among the stream's last
        :data:`END_SEARCH` entries: how a job deleted when it finished (``keep=False``) ended."""

        def parse(reply: Any) -> Event | None:
            for event in parse_events([(b"", reply)]):
                if event.job_id == job_id and event.event in ("completed", "failed", "cancelled"):
                    return event
            return None

        return Batch.one(command("XREVRANGE", self.events, "+", "-", "COUNT", END_SEARCH), parse)

    def ended(self, event: Event | None, job_id: str) -> Any:
        """``job.wait()`` on a job that no longer exists: its result (``None``: a job deleted
        when it completed keeps no result), ``JobFailed``, or ``JobNotFound``."""
        if event is None:
            raise JobNotFound(
                f"job {job_id!r} of queue {self.name!r} does not exist (never added, removed, "
                "or deleted by its retention too long ago to find its end in the events)"
            )
        reason = event.fields.get("reason", "")
        if event.event == "cancelled":
            raise JobCancelled(
                f"job {job_id!r} of queue {self.name!r} was cancelled: {reason}", reason
            )
        if event.event == "failed":
            raise JobFailed(f"job {job_id!r} of queue {self.name!r} failed: {reason}", reason)
        return None

    def wait_outcome(self, record: JobRecord | None, job_id: str) -> tuple[bool, Any]:
        """(done, result) for ``job.wait()``; raises when the job failed or is gone."""
        if record is None:
            raise JobNotFound(f"job {job_id!r} of queue {self.name!r} does not exist")
        if record.state == "completed":
            return True, record.result
        if record.state == "cancelled":
            raise JobCancelled(
                f"job {job_id!r} of queue {self.name!r} was cancelled: {record.failed_reason}",
                record.failed_reason,
            )
        if record.state == "failed":
            raise JobFailed(
                f"job {job_id!r} of queue {self.name!r} failed: {record.failed_reason}",
                record.failed_reason,
            )
        return False, None


def then(batch: Batch[T], fn: Callable[[T], U]) -> Batch[U]:
    """``batch`` with its parsed reply passed through ``fn`` (still one round trip)."""
    parse = batch.parse
    return Batch(batch.calls, lambda replies: fn(parse(replies)))


def log_line(line: object) -> str:
    """A job's log line: a str, cut to :data:`MAX_LOG_LINE` characters."""
    if not isinstance(line, str):
        raise TypeError(f"a job's log line is a str, not {type(line).__name__}")
    if len(line) > MAX_LOG_LINE:
        return line[: MAX_LOG_LINE - 1] + "\u2026"
    return line


def check_since(since: object) -> str:
    """``since`` of ``queue.events()``: ``"$"`` (from now), ``"0"`` or an entry id."""
    return entry_id("since", since, special=("$",))


class EventReader:
    """The reading of ``queue.events()``: :meth:`next` is the next read (``None``: ``timeout``
    seconds passed without an event), :meth:`seen` moves past the events it gave; ``last`` is
    the id read after (``"$"`` until the async iterator has asked Redis where it starts)."""

    __slots__ = ("_core", "_deadline", "_timeout", "last")

    def __init__(self, core: QueueCore, last: str, timeout: Duration | None) -> None:
        timeout = durations.optional_seconds("timeout", timeout, zero=True)
        self._core = core
        self.last = last
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def next(self) -> Batch[list[Event]] | None:
        wait = self._core.block_slice
        if self._deadline is not None:
            wait = min(wait, self._deadline - time.monotonic())
            if wait <= 0:
                return None
        return self._core.read_events(self.last, to_ms(wait))

    def seen(self, events: list[Event]) -> Iterable[Event]:
        """The events read, each passed before the next; the timeout restarts after the last."""
        for event in events:
            self.last = event.id
            yield event
        if events and self._deadline is not None:
            self._deadline = time.monotonic() + (self._timeout or 0)


END_SEARCH = 2000
"""How many of the latest events ``job.wait()`` reads to learn how a deleted job ended."""


def _tail(opts: JobOptions, carrier: dict[str, str] | None = None) -> list[Any] | None:
    """What a job's add sends after id, name and data; ``None`` when every option is a default.
    ``carrier``: a trace context to store with the options (``tc``)."""
    stored = opts.stored()
    if carrier is not None:
        stored = encode({**(decode(stored) if stored else {}), "tc": carrier}, "options", 2**20)
    if not (stored or opts.priority or opts.delay or opts.keep or opts.dedup):
        return None
    keep = opts.keep.args() if opts.keep is not None else _NO_KEEP
    tail = [stored, opts.priority, to_ms(opts.delay), *keep]
    if opts.dedup is not None:
        tail += opts.dedup.args()
    return tail


def _added_state(job: list[Any]) -> str:
    if len(job) == 3:
        return "waiting"
    if len(job) == 12 and job[11]:
        return "waiting_children"
    if job[5] > 0:
        return "delayed"
    if job[4] > 0:
        return "prioritized"
    return "waiting"


def _block_slice(socket_timeout: float) -> float:
    """Longest blocking call: below ``socket_timeout`` so a long wait is several calls."""
    return socket_timeout - 0.5 if socket_timeout >= 1.5 else socket_timeout / 3


def poll_delays() -> Iterable[float]:
    """Pauses between two looks at a job that is not finished yet: 5 ms doubling to 0.5 s."""
    delay = 0.005
    while True:
        yield delay
        delay = min(0.5, delay * 2)
