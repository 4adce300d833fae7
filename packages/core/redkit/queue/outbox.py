"""What an outbox (``redkit.sqlalchemy.Outbox``, the Django adapter's ``OUTBOX``) stores per job
and how a relay adds it, whatever the database library: a row holds the job's id, its queue and
the add script's arguments as JSON, made when the job is asked for (so a bad argument raises
then, and the relay never needs the task's code). The job holds the dedup id ``outbox:<id>`` for
the outbox's ``dedup_ttl``, so a row added twice is one job, even once the first has run and
retention deleted it (a task's own dedup id takes its place)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ._options import Dedup

log = logging.getLogger("redkit.queue")

__all__ = [
    "CHUNK",
    "add_job",
    "add_job_async",
    "add_rows",
    "add_rows_async",
    "decode_rows",
    "encode_job",
]

CHUNK = 1000  # rows per relay transaction (and per add script call)


def encode_job(
    task: Any, job_id: str, args: Sequence[Any], kwargs: dict[str, Any], dedup_ttl: float
) -> tuple[str, list[Any], str]:
    """The queue, the add script's arguments and their JSON for ``task(*args, **kwargs)`` as job
    ``job_id`` (``task``: a :class:`~redkit.queue.Task` or :class:`~redkit.queue.AsyncTask`)."""
    extra: dict[str, Any] = {"job_id": job_id}
    if "dedup" not in task._bound:  # the task's own dedup id, if it has one, wins
        extra["dedup"] = Dedup(f"outbox:{job_id}", ttl=dedup_ttl)
    name, data, opts = task._job(tuple(args), dict(kwargs), extra)
    core = task.queue._core
    job = [x.decode("utf-8") if isinstance(x, bytes) else x for x in core.prepare(name, data, opts)]
    return core.name, job, json.dumps(job, separators=(",", ":"))


def decode_rows(
    kit: Any, rows: Iterable[tuple[str, str, str]]
) -> list[tuple[Any, list[list[Any]]]]:
    """The jobs of outbox rows ``(id, queue, job JSON)``, per queue core of ``kit``; a row that
    cannot be read (not written by redkit) is logged and left out."""
    groups: dict[str, list[list[Any]]] = {}
    for job_id, queue, raw in rows:
        try:
            job = json.loads(raw)
            if not isinstance(job, list) or len(job) < 3 or job[0] != job_id:
                raise ValueError("not a job of this row")
        except ValueError as exc:
            log.error("redkit: outbox row %r cannot be read (%s): dropped", job_id, exc)
            continue
        groups.setdefault(queue, []).append(job)
    return [(kit.queue(name)._core, jobs) for name, jobs in groups.items()]


def add_rows(kit: Any, rows: Sequence[tuple[str, str, str]]) -> None:
    """Add the jobs of outbox rows ``(id, queue, job JSON)`` on ``kit`` (a
    :class:`~redkit.Redkit`), one script call per queue and :data:`CHUNK` jobs."""
    for core, jobs in decode_rows(kit, rows):
        for i in range(0, len(jobs), CHUNK):
            kit._executor.run(core.add(jobs[i : i + CHUNK]))


async def add_rows_async(kit: Any, rows: Sequence[tuple[str, str, str]]) -> None:
    """:func:`add_rows` on a :class:`redkit.asyncio.Redkit`."""
    for core, jobs in decode_rows(kit, rows):
        for i in range(0, len(jobs), CHUNK):
            await kit._executor.run(core.add(jobs[i : i + CHUNK]))


def add_job(task: Any, jobs: Sequence[list[Any]]) -> None:
    """Add jobs encoded by :func:`encode_job` for ``task`` (or another task of its queue),
    as the commit that wrote their rows finishes (sync task)."""
    queue = task.queue
    queue._x.run(queue._core.add(list(jobs)))


async def add_job_async(task: Any, jobs: Sequence[list[Any]]) -> None:
    """:func:`add_job` for an :class:`~redkit.queue.AsyncTask`."""
    queue = task.queue
    await queue._x.run(queue._core.add(list(jobs)))
