"""The job queue: ``q = kit.queue("emails")``, ``@q.task``, ``q.add``, ``q.worker()``.

See ``docs/queue.md`` for the model and its guarantees and ``docs/worker.md`` for running workers.
"""

from __future__ import annotations

from ..errors import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PayloadTooLarge,
    Unrecoverable,
)
from ._api import AsyncJob, AsyncTask, Job, Task, current_job
from ._flows import Group, Node, chain, chord, group
from ._metrics import Histogram, Metrics
from ._options import Backoff, Dedup, Keep
from ._queue import AsyncQueue, Queue
from ._records import STATES, AttemptError, ChildResult, Event, JobRecord, WorkerInfo
from ._schedules import Schedule
from ._worker import Worker

__all__ = [
    "STATES",
    "AsyncJob",
    "AsyncQueue",
    "AsyncTask",
    "AttemptError",
    "Backoff",
    "ChildResult",
    "Dedup",
    "Event",
    "Group",
    "Histogram",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobTimeout",
    "Keep",
    "Metrics",
    "Node",
    "PayloadTooLarge",
    "Queue",
    "Schedule",
    "Task",
    "Unrecoverable",
    "Worker",
    "WorkerInfo",
    "chain",
    "chord",
    "current_job",
    "group",
]
