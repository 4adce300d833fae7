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

__all__ = ["CHUNK", "decode_rows", "encode_job"]

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
