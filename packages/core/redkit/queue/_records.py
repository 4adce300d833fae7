"""What Redis holds about jobs, decoded: :class:`JobRecord` and :class:`Event`, and the job ids
the client makes (no I/O)."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import SerializationError
from ._options import decode

__all__ = ["STATES", "AttemptError", "ChildResult", "Event", "JobRecord", "WorkerInfo"]

STATES = (
    "waiting",
    "prioritized",
    "delayed",
    "active",
    "completed",
    "failed",
    "cancelled",
    "waiting_children",
)


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


def _worker_id(token: bytes | None) -> str | None:
    """The worker id in a lock token (``<worker id>:<attempt>``)."""
    return None if not token else token.decode("utf-8", "replace").rpartition(":")[0] or None


def _ms_time(raw: bytes | int | None) -> datetime | None:
    if raw is None:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, timezone.utc)


def _logs(raw: Mapping[bytes, bytes]) -> list[str]:
    lines = []
    for name, line in raw.items():
        if name.startswith(b"lg:") and name[3:].isdigit():
            lines.append((int(name[3:]), line.decode("utf-8", "replace")))
    return [line for _, line in sorted(lines)]


def _lenient(raw: bytes | None) -> Any:
    """A stored JSON value; one that is no JSON (written by something else than redkit) reads
    as its text, so that the job can still be looked at, retried or removed."""
    try:
        return decode(raw)
    except SerializationError:
        return _text(raw)


@dataclass(frozen=True)
class ChildResult:
    """How one child of a flow's job ended, as its parent holds it."""

    queue: str
    id: str
    state: str | None
    """``completed``, ``failed``, ``cancelled`` (removed and drained children too), or ``None``
    while it has not ended."""
    result: Any = None
    """Its return value when completed."""
    error: str | None = None
    """Why it failed or was cancelled."""
    attempt: int = 0
    """The attempt it ended in (a retried child's later outcome replaces the earlier one)."""


_ENDED = {"c": "completed", "f": "failed", "x": "cancelled"}


def parse_children(raw: Mapping[bytes, bytes]) -> list[ChildResult]:
    """The children of a parent's hash fields (``kids`` and ``k:<index>``), in their order."""
    kids = raw.get(b"kids")
    if not kids:
        return []
    try:
        refs = decode(kids)
    except SerializationError:
        return []
    out = []
    for i, ref in enumerate(refs if isinstance(refs, list) else ()):
        queue, job_id = (
            (str(ref[0]), str(ref[1])) if isinstance(ref, list) and len(ref) == 2 else ("", "")
        )
        got = raw.get(f"k:{i}".encode())
        if not got:
            out.append(ChildResult(queue, job_id, None))
            continue
        head, _, payload = got.partition(b":")
        state = _ENDED.get(head[:1].decode("ascii", "replace"))
        attempt = int(head[1:]) if head[1:].isdigit() else 0
        if state == "completed":
            out.append(ChildResult(queue, job_id, state, _lenient(payload), None, attempt))
        else:
            out.append(ChildResult(queue, job_id, state, None, _text(payload), attempt))
    return out


def _parent(raw: bytes | None, queue: str) -> tuple[str, str] | None:
    """The (queue, id) of a child's parent from its ``par`` field (``queue``: the child's)."""
    if not raw:
        return None
    from ._flows import parse_parent

    got = parse_parent(raw.decode("utf-8", "replace"))
    return None if got is None else (got[0] or queue, got[1])


@dataclass(frozen=True)
class WorkerInfo:
    """A worker registered on a queue, as its last heartbeat told: ``id``, ``last_seen``
    (Redis' clock), and, when its heartbeat's details are still kept, ``host``, ``pid``,
    ``concurrency``, ``running`` (jobs in hand), ``processed`` and ``failed`` (since it
    started); ``None`` for a detail it did not send."""

    id: str
    last_seen: datetime
    host: str | None = None
    pid: int | None = None
    concurrency: int | None = None
    running: int | None = None
    processed: int | None = None
    failed: int | None = None

    @classmethod
    def parse(cls, worker_id: str, seen_ms: float, raw: bytes | None) -> WorkerInfo:
        details: Any = {}
        if raw:
            try:
                details = json.loads(raw)
            except ValueError:
                details = {}
        if not isinstance(details, dict):
            details = {}

        def whole(name: str) -> int | None:
            value = details.get(name)
            return value if type(value) is int else None

        host = details.get("host")
        return cls(
            worker_id,
            datetime.fromtimestamp(seen_ms / 1000, timezone.utc),
            host if isinstance(host, str) else None,
            whole("pid"),
            whole("concurrency"),
            whole("running"),
            whole("processed"),
            whole("failed"),
        )


@dataclass(frozen=True)
class AttemptError:
    """How one attempt of a job failed: ``attempt`` (1 for the first run), ``reason``
    (``"ExceptionType: message"``), ``stacktrace`` (its last 8 KiB) and ``failed_at`` (Redis'
    clock)."""

    attempt: int
    reason: str
    stacktrace: str
    failed_at: datetime | None


def _attempt_errors(raw: bytes | None) -> list[AttemptError]:
    if not raw:
        return []
    try:
        items = json.loads(raw)
        return [
            AttemptError(int(n), str(reason), str(stack), _ms_time(int(at)))
            for n, reason, stack, at in items
        ]
    except (ValueError, TypeError):
        return []  # written by hand, or by another program: the job still reads


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
    worker_id: str | None = None
    """The id of the worker that holds the job's lock, or held it last (``None`` before the job
    first ran, and after a stall until a worker takes it again)."""
    logs: list[str] = field(default_factory=list)
    """The lines the task logged with ``current_job().log(...)``, oldest first (the latest
    ``queue_max_logs`` of them)."""
    schedule_id: str | None = None
    """The job scheduler that made this job (``None``: added by hand)."""
    scheduled_for: datetime | None = None
    """The slot of its scheduler this job is the run of."""
    parent: tuple[str, str] | None = None
    """The (queue, id) of the job of a flow that waits for this one."""
    children: list[ChildResult] = field(default_factory=list)
    """The jobs of a flow this one waits for (or waited for), in order, with their outcomes."""
    unresolved: int = 0
    """How many of its children it still waits for (``waiting_children``)."""
    errors: list[AttemptError] = field(default_factory=list)
    """How each of its last 10 failed attempts failed, oldest first (kept across a retry)."""

    @classmethod
    def parse(cls, job_id: str, raw: Mapping[bytes, bytes], queue: str = "") -> JobRecord:
        """The record of job ``job_id`` of ``queue`` from its hash."""
        opts = raw.get(b"o")
        return cls(
            id=job_id,
            name=_text(raw.get(b"n")) or "",
            data=_lenient(raw.get(b"d")),
            state=_text(raw.get(b"st")) or "unknown",
            options=_lenient(opts) if opts else {},
            priority=int(raw.get(b"p", 0)),
            attempts_made=int(raw.get(b"atm", 0)),
            attempts_started=int(raw.get(b"ats", 0)),
            stalls=int(raw.get(b"stc", 0)),
            progress=_lenient(raw.get(b"prg")),
            result=_lenient(raw.get(b"rv")),
            failed_reason=_text(raw.get(b"err")),
            stacktrace=_text(raw.get(b"stk")) or None,
            created_at=_ms_time(raw.get(b"ts")),
            processed_at=_ms_time(raw.get(b"pon")),
            finished_at=_ms_time(raw.get(b"fon")),
            worker_id=_worker_id(raw.get(b"tok")),
            logs=_logs(raw),
            schedule_id=_text(raw.get(b"sch")),
            scheduled_for=_ms_time(raw.get(b"slot")),
            parent=_parent(raw.get(b"par"), queue),
            children=parse_children(raw),
            unresolved=max(0, int(raw.get(b"dep", 0)))
            if raw.get(b"st") == b"waiting_children"
            else 0,
            errors=_attempt_errors(raw.get(b"eh")),
        )


@dataclass(frozen=True)
class Event:
    """One entry of a queue's events stream: ``event`` is ``added``, ``active``, ``progress``,
    ``completed``, ``failed``, ``retried``, ``stalled``, ``released``, ``removed``, ``waiting``,
    ``paused``, ``resumed``, ``drained``, ``cancelling`` (a cancel asked of a running job),
    ``cancelled``, ``deduplicated`` or ``skipped`` (a scheduler's run that came due too late
    under ``missed="skip"``)."""

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
