"""What the worker's parts share: the job it runs (:class:`_Active`) and the worker's fields,
declared once for the loop, the job runner, the dead letters and the lease renewer."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from ._api import AsyncJob, Job
from ._core import QueueCore
from ._threads import TaskThreads

if TYPE_CHECKING:
    from ._running import _Jobs

Finish = tuple["_Active", list[Any]]
"""A finished job not reported yet: the job, and the step's arguments that report it."""


class _Active:
    """A job this worker runs; also what ``current_job()`` reads in its task's context."""

    __slots__ = (
        "atm",
        "ats",
        "cancelled",
        "children",
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
        self.cancelled = False  # a cancel request of this job reached the worker
        self.children: list[Any] = []  # a parent's children, read as it starts
        self.started = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.handle: Job | AsyncJob | None = None
        self.worker: _Jobs | None = None
        self.decoded: Any = None
        self.is_async = False

    def get(self) -> Job | AsyncJob:
        """The job handle the running task sees (built on first use)."""
        if self.handle is None:
            assert self.worker is not None
            self.handle = self.worker._handle(self, self.decoded, self.is_async)
        return self.handle


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class _WorkerState:
    """The fields of a :class:`~redkit.queue._worker.Worker` (set by its ``__init__`` and
    ``_setup``) that its parts read and write."""

    queue: Any
    settings: Any
    id: str
    concurrency: int
    batch: int
    limit_max: int
    limit_ms: int
    processor: Any
    burst: bool
    lock_ttl: float
    lock_ms: int
    max_stalled: int
    processed: int
    failed: int
    lost: int
    _host: str
    _cancels: str
    _watching: bool
    _running: dict[str, _Active]
    _done: list[Finish]
    _reporting: list[Finish]
    _stopping: bool
    _hard: bool
    _deadline: float | None
    _loop: asyncio.AbstractEventLoop | None
    _wake: asyncio.Event | None
    _threads: TaskThreads | None
    _renew_stop: threading.Event
    _kit: Any
    _sync_kit: Any
    _exec: Any
    _core: QueueCore
    _dlq_core: QueueCore | None

    def _begin_stop(self, hard: bool = False) -> None:
        """Stop taking jobs (defined by the worker)."""
        raise NotImplementedError
