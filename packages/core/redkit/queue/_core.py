"""The job queue's pure part: options, keys, script calls and reply parsing (no I/O).

Every key of a queue shares the hash tag ``{<queue name>}``, so each transition is one script on one
Redis Cluster slot. Layout, under ``<prefix>:q:{<name>}``:

``:wait`` (list of ids), ``:prioritized`` and ``:delayed`` (sorted sets whose members are a 16-hex
order number followed by the id, so that jobs with the same score keep the order they were added
in), ``:active`` (sorted set: id -> lock expiry in ms), ``:completed`` / ``:failed`` (sorted sets:
id -> finish time), ``:events`` (capped stream), ``:meta`` (hash), ``:marker`` (sorted set that idle
workers block on), ``:limiter`` (rate-limit counter with a TTL), ``:workers`` (sorted set of
heartbeats), ``:w:<worker id>`` (worker description, with a TTL) and ``:j:<job id>`` (one hash per
job).
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .._ops import Batch, Flow, Script, Sleep, command, script
from ..errors import JobFailed, JobNotFound, JobTimeout, PayloadTooLarge, SerializationError
from ..serializers import JsonSerializer, find_unserializable

__all__ = [
    "STATES",
    "Backoff",
    "Event",
    "JobOptions",
    "JobRecord",
    "Keep",
    "QueueCore",
]

ADD = Script.load("queue_add")
STEP = Script.load("queue_step")
EXTEND = Script.load("queue_extend")
RELEASE = Script.load("queue_release")
PROGRESS = Script.load("queue_progress")
PAUSE = Script.load("queue_pause")
RETRY = Script.load("queue_retry")
REMOVE = Script.load("queue_remove")
DRAIN = Script.load("queue_drain")

STATES = ("waiting", "prioritized", "delayed", "active", "completed", "failed")
MAX_PRIORITY = 2**31 - 1
MAX_DELAY = 10 * 365 * 86400.0  # ten years
MAX_ATTEMPTS = 10_000
MAX_NAME = 200
BULK_CHUNK = 1000  # jobs per add script call
REGISTRY_TTL_MS = 30 * 86400 * 1000

_json = JsonSerializer()


# -- validation -------------------------------------------------------------------------------
def _seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or a timedelta, not {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} seconds, got {value!r}")
    return seconds


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check_name(what: str, value: object) -> str:
    """A job name, task name or job id: a str of 1 to 200 characters, none of them a control
    character (they end up in keys, logs and the dashboard)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"{what} must be at most {MAX_NAME} characters, got {len(value)}")
    if not value.isprintable():
        raise ValueError(f"{what} must not contain control characters: {value!r}")
    return value


def encode(value: Any, what: str, limit: int) -> bytes:
    """Strict JSON of ``value`` (see :class:`~redkit.serializers.JsonSerializer`), at most
    ``limit`` bytes. Errors name where in ``value`` the problem is (``data["user"] is a
    datetime``)."""
    try:
        raw = _json.dumps(value)
    except SerializationError:
        where = find_unserializable(value, what) or f"{what} could not be encoded"
        raise SerializationError(
            f"{where}: job data, results and progress must be JSON (dict with str keys, list, "
            "str, int, float, bool, None)"
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"{what} is {len(raw)} bytes encoded, more than queue_max_bytes ({limit}); store "
            "large payloads elsewhere and pass a reference"
        )
    return raw


def decode(raw: bytes | None) -> Any:
    return None if raw is None else _json.loads(raw)


def to_delay(delay: object) -> float:
    """Seconds from now: a number, a ``timedelta`` or an aware ``datetime`` (run at)."""
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise ValueError(
                "a datetime to run at must be timezone-aware (naive times are ambiguous across "
                "hosts): use datetime.now(timezone.utc) + ..."
            )
        return max(0.0, (delay - datetime.now(timezone.utc)).total_seconds())
    seconds = _seconds("delay", delay)
    if seconds > MAX_DELAY:
        raise ValueError(f"delay must be at most ten years, got {seconds} seconds")
    return seconds


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retrying a failed job: ``Backoff.fixed(5)`` or
    ``Backoff.exponential(1, max=300)`` (1, 2, 4, 8 ... seconds). ``jitter`` is a fraction of the
    delay drawn at random and taken off it (0.2: between 80% and 100% of the delay)."""

    kind: str = "fixed"
    delay: float = 0.0
    max: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential"):
            raise ValueError(f"backoff kind must be 'fixed' or 'exponential', got {self.kind!r}")
        _seconds("backoff delay", self.delay)
        if self.max is not None:
            _seconds("backoff max", self.max)
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j <= 1:
            raise ValueError(f"backoff jitter must be a fraction between 0 and 1, got {j!r}")

    @classmethod
    def fixed(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        return cls("fixed", delay, None, jitter)

    @classmethod
    def exponential(cls, delay: float, *, max: float | None = None, jitter: float = 0.0) -> Backoff:
        return cls("exponential", delay, max, jitter)

    def seconds(self, attempt: int, rand: Callable[[], float]) -> float:
        """The delay after failed attempt number ``attempt`` (1 for the first failure)."""
        delay = self.delay if self.kind == "fixed" else self.delay * 2 ** min(attempt - 1, 60)
        if self.max is not None:
            delay = min(delay, self.max)
        if self.jitter:
            delay *= 1 - self.jitter * rand()
        return delay

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.kind, "d": self.delay}
        if self.max is not None:
            out["m"] = self.max
        if self.jitter:
            out["j"] = self.jitter
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Backoff:
        return cls(raw.get("k", "fixed"), raw.get("d", 0.0), raw.get("m"), raw.get("j", 0.0))


BackoffSpec = Backoff | float | int | Callable[[int, BaseException], float]


def check_backoff(
    backoff: object, *, allow_callable: bool
) -> Backoff | Callable[..., float] | None:
    if backoff is None or isinstance(backoff, Backoff):
        return backoff
    if isinstance(backoff, (int, float, timedelta)) and not isinstance(backoff, bool):
        return Backoff.fixed(_seconds("backoff", backoff))
    if callable(backoff):
        if not allow_callable:
            raise TypeError(
                "a custom backoff function cannot be stored with a job: give it to "
                "@queue.task(backoff=...) or kit.queue(name, backoff=...)"
            )
        return backoff
    raise TypeError(
        f"backoff must be seconds, a Backoff or a function(attempt, exc), not {backoff!r}"
    )


@dataclass(frozen=True)
class Keep:
    """How many finished jobs a queue keeps, and for how long (``None``: the queue's default).
    ``Keep(completed=0)`` deletes a job as soon as it completes."""

    completed: int | None = None
    completed_age: float | None = None
    failed: int | None = None
    failed_age: float | None = None

    def __post_init__(self) -> None:
        for name in ("completed", "failed"):
            value = getattr(self, name)
            if value is not None:
                _int(f"Keep.{name}", value, 0, 2**40)
        for name in ("completed_age", "failed_age"):
            value = getattr(self, name)
            if value is not None:
                _seconds(f"Keep.{name}", value)

    @classmethod
    def coerce(cls, keep: object) -> Keep | None:
        """``None``, a ``Keep``, ``False`` (keep no completed job), ``True`` (the defaults) or an
        int (that many completed jobs)."""
        if keep is None or isinstance(keep, Keep):
            return keep
        if keep is True:
            return None
        if keep is False:
            return cls(completed=0)
        if isinstance(keep, int):
            return cls(completed=keep)
        raise TypeError(f"keep must be a Keep, a bool or an int, not {keep!r}")

    def args(self) -> list[int]:
        """The four retention arguments of the add script (-1: the queue's default)."""

        def ms(value: float | None) -> int:
            return -1 if value is None else int(value * 1000)

        return [
            -1 if self.completed is None else self.completed,
            ms(self.completed_age),
            -1 if self.failed is None else self.failed,
            ms(self.failed_age),
        ]


_NO_KEEP = [-1, -1, -1, -1]


@dataclass(frozen=True)
class JobOptions:
    """Options of one job, validated; what the worker needs is stored with it as JSON."""

    job_id: str | None = None
    delay: float = 0.0
    priority: int = 0
    attempts: int = 1
    backoff: Backoff | None = None
    timeout: float | None = None
    keep: Keep | None = None

    @classmethod
    def build(
        cls,
        *,
        job_id: object = None,
        delay: object = None,
        priority: object = None,
        attempts: object = None,
        backoff: object = None,
        timeout: object = None,
        keep: object = None,
        defaults: JobOptions | None = None,
    ) -> JobOptions:
        base = defaults or _DEFAULTS
        b = check_backoff(backoff, allow_callable=False) if backoff is not None else base.backoff
        return cls(
            job_id=None if job_id is None else check_name("job_id", job_id),
            delay=base.delay if delay is None else to_delay(delay),
            priority=base.priority
            if priority is None
            else _int("priority", priority, 0, MAX_PRIORITY),
            attempts=base.attempts
            if attempts is None
            else _int("attempts", attempts, 1, MAX_ATTEMPTS),
            backoff=b if isinstance(b, Backoff) else None,
            timeout=base.timeout
            if timeout is None
            else _seconds("timeout", timeout, allow_zero=False),
            keep=base.keep if keep is None else Keep.coerce(keep),
        )

    def stored(self) -> bytes:
        """The options the worker reads, as JSON (empty when all are defaults)."""
        out: dict[str, Any] = {}
        if self.attempts != 1:
            out["a"] = self.attempts
        if self.backoff is not None:
            out["b"] = self.backoff.to_json()
        if self.timeout is not None:
            out["t"] = self.timeout
        return _json.dumps(out) if out else b""


_DEFAULTS = JobOptions()


# -- ids ----------------------------------------------------------------------------------------
class _Ids:
    """Job ids made by the client (so a re-sent add is recognised): a random process prefix and a
    counter. A forked child draws a new prefix."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._n = 0

    def next(self) -> str:
        with self._lock:
            self._n += 1
            return f"{self._prefix}{self._n:x}"

    def many(self, count: int) -> list[str]:
        with self._lock:
            start = self._n + 1
            self._n += count
            prefix = self._prefix
        return [f"{prefix}{i:x}" for i in range(start, start + count)]


new_ids = _Ids()


# -- records ------------------------------------------------------------------------------------
def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _ms_time(raw: bytes | None) -> datetime | None:
    if raw is None:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, timezone.utc)


@dataclass
class JobRecord:
    """What Redis holds about one job, decoded."""

    id: str
    name: str
    data: Any
    state: str
    options: dict[str, Any]
    priority: int
    attempts_made: int
    attempts_started: int
    stalls: int
    progress: Any
    result: Any
    failed_reason: str | None
    stacktrace: str | None
    created_at: datetime | None
    processed_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def parse(cls, job_id: str, raw: Mapping[bytes, bytes]) -> JobRecord:
        opts = raw.get(b"o")
        return cls(
            id=job_id,
            name=_text(raw.get(b"n")) or "",
            data=decode(raw.get(b"d")),
            state=_text(raw.get(b"st")) or "unknown",
            options=decode(opts) if opts else {},
            priority=int(raw.get(b"p", 0)),
            attempts_made=int(raw.get(b"atm", 0)),
            attempts_started=int(raw.get(b"ats", 0)),
            stalls=int(raw.get(b"stc", 0)),
            progress=decode(raw.get(b"prg")),
            result=decode(raw.get(b"rv")),
            failed_reason=_text(raw.get(b"err")),
            stacktrace=_text(raw.get(b"stk")) or None,
            created_at=_ms_time(raw.get(b"ts")),
            processed_at=_ms_time(raw.get(b"pon")),
            finished_at=_ms_time(raw.get(b"fon")),
        )


@dataclass(frozen=True)
class Event:
    """One entry of a queue's events stream: ``event`` is ``added``, ``active``, ``progress``,
    ``completed``, ``failed``, ``retried``, ``stalled``, ``released``, ``removed``, ``waiting``,
    ``paused``, ``resumed`` or ``drained``."""

    id: str
    event: str
    job_id: str | None
    fields: dict[str, str]

    @property
    def time(self) -> datetime:
        """When Redis recorded it (from the entry id)."""
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, timezone.utc)


def parse_events(reply: Any) -> list[Event]:
    if not reply:
        return []
    streams = list(reply.items()) if isinstance(reply, dict) else reply
    out = []
    for _, entries in streams:
        for entry_id, raw in entries or ():
            fields = {
                (k.decode() if isinstance(k, bytes) else str(k)): (
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                )
                for k, v in (raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2]))
            }
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append(Event(ident, fields.pop("event", ""), fields.pop("id", None), fields))
    return out


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
        # the KEYS of the two scripts called most (queue_add.lua, queue_step.lua)
        self.add_keys = [self.wait, self.prioritized, self.delayed, self.meta]
        self.add_keys += [self.events, self.marker]
        self.step_keys = [self.wait, self.prioritized, self.delayed, self.active, self.completed]
        self.step_keys += [self.failed, self.meta, self.events, self.marker, self.limiter]
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
        if opts is None:
            tail = self._default_tail
        else:
            job_id = opts.job_id
            tail = _tail(opts)
        job = [job_id or new_ids.next(), name, payload]
        if tail is not None:
            job += tail
        return job

    def add(self, prepared: Sequence[list[Any]]) -> Batch[list[tuple[str, str | None, list[Any]]]]:
        """Add prepared jobs (at most :data:`BULK_CHUNK`): one script call, safe to re-send
        (an id it has seen is not added again). Returns (id, state or None when it existed,
        the prepared arguments)."""
        argv: list[Any] = [self.job_prefix, self.maxlen, len(prepared)]
        for job in prepared:
            argv.append(len(job))
            argv += job
        calls = [
            script(
                ADD,
                self.add_keys,
                argv,
            )
        ]
        if not self.registered:
            calls.append(command("ZADD", self.registry, int(time.time() * 1000), self.name))
            calls.append(command("PEXPIRE", self.registry, REGISTRY_TTL_MS))

        def parse(replies: list[Any]) -> list[tuple[str, str | None, list[Any]]]:
            self.registered = True
            out = []
            for job, created in zip(prepared, replies[0]):
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
        self, job_id: str, timeout: float | None, seen: Callable[[JobRecord], None]
    ) -> Flow[Any]:
        """Flow of ``job.wait()``: read the job until it finished (``seen`` gets each read),
        pausing 5 ms doubling to 0.5 s; a job gone meanwhile is judged by its events."""
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
            lambda raw: JobRecord.parse(job_id, raw) if raw else None,
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
        )

        def parse(replies: list[Any]) -> dict[str, int]:
            return dict(zip(STATES, (int(r) for r in replies)))

        return Batch(calls, parse)

    def is_paused(self) -> Batch[bool]:
        return Batch.one(command("HEXISTS", self.meta, "paused"), lambda r: bool(int(r)))

    def ids(self, state: str, start: int, stop: int) -> Batch[list[str]]:
        """Job ids in ``state``, oldest first (by position, ``stop`` inclusive)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
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
        moved = 0
        while limit is None or moved < limit:
            step = 1000 if limit is None else min(1000, limit - moved)
            n, left = yield self.retry((), step)
            moved += int(n)
            if n == 0 or left == 0:
                break
        return moved

    def drain_all(self, delayed: bool) -> Flow[int]:
        """Delete waiting (and delayed) jobs, 1,000 per call, until none is left; the count."""
        removed = 0
        while True:
            n, left = yield self.drain(delayed)
            removed += int(n)
            if left == 0 or n == 0:
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
                ],
                [self.job_key(job_id), self.maxlen, job_id],
            ),
            int,
        )

    def drain(self, delayed: bool, limit: int = 1000) -> Batch[tuple[int, int]]:
        return Batch.one(
            script(
                DRAIN,
                [self.wait, self.prioritized, self.delayed, self.events],
                [self.job_prefix, self.maxlen, "1" if delayed else "0", limit],
            ),
            lambda r: (int(r[0]), int(r[1])),
        )

    def progress(self, job_id: str, token: str, value: Any) -> Batch[bool]:
        payload = encode(value, "progress", self.max_bytes)
        return Batch.one(
            script(
                PROGRESS, [self.events], [self.job_key(job_id), self.maxlen, job_id, token, payload]
            ),
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

    def workers_info(self) -> Batch[list[tuple[str, float]]]:
        return Batch.one(
            command("ZRANGE", self.workers, 0, -1, "WITHSCORES"),
            lambda r: [(m.decode("utf-8", "replace"), float(s)) for m, s in r],
        )

    def end_event(self, job_id: str) -> Batch[Event | None]:
        """The latest ``completed`` or ``failed`` event of a job among the stream's last
        :data:`END_SEARCH` entries: how a job deleted when it finished (``keep=False``) ended."""

        def parse(reply: Any) -> Event | None:
            for event in parse_events([(b"", reply)]):
                if event.job_id == job_id and event.event in ("completed", "failed"):
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
        if event.event == "failed":
            reason = event.fields.get("reason", "")
            raise JobFailed(f"job {job_id!r} of queue {self.name!r} failed: {reason}", reason)
        return None

    def wait_outcome(self, record: JobRecord | None, job_id: str) -> tuple[bool, Any]:
        """(done, result) for ``job.wait()``; raises when the job failed or is gone."""
        if record is None:
            raise JobNotFound(f"job {job_id!r} of queue {self.name!r} does not exist")
        if record.state == "completed":
            return True, record.result
        if record.state == "failed":
            raise JobFailed(
                f"job {job_id!r} of queue {self.name!r} failed: {record.failed_reason}",
                record.failed_reason,
            )
        return False, None


END_SEARCH = 2000
"""How many of the latest events ``job.wait()`` reads to learn how a deleted job ended."""


def _tail(opts: JobOptions) -> list[Any] | None:
    """What a job's add sends after id, name and data; ``None`` when every option is a default."""
    stored = opts.stored()
    if not stored and not opts.priority and not opts.delay and opts.keep is None:
        return None
    keep = opts.keep.args() if opts.keep is not None else _NO_KEEP
    return [stored, opts.priority, int(opts.delay * 1000), *keep]


def _added_state(job: list[Any]) -> str:
    if len(job) == 3:
        return "waiting"
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
