"""The outbox of a Django project: with ``REDKIT["OUTBOX"] = True``, ``task.enqueue_on_commit``
writes its job to the table ``redkit_outbox`` (model :class:`~redkit_django.models.OutboxJob`)
in the transaction that asks for it, adds it to Redis once that transaction commits and deletes
the row. A process that dies between the COMMIT and the add leaves the row; :func:`relay` (run
by ``manage.py redkit_outbox``, and by ``manage.py redkit_worker`` on a thread) adds it later.
The row's id is the job's id and the job holds the dedup id ``outbox:<id>`` for ``DEDUP_TTL``
seconds, so a row added twice is one job. Rows and their encoding are those of
``redkit.sqlalchemy.Outbox`` (:mod:`redkit.queue.outbox`).

``REDKIT["OUTBOX"]``: ``True``, or ``{"DEDUP_TTL": seconds}`` (default one day).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction

from redkit.errors import RedkitError
from redkit.queue.outbox import CHUNK, add_job, add_rows, encode_job

from .conf import adapter_option, get_kit

__all__ = ["OutboxRelay", "dedup_ttl", "enabled", "relay", "start_relay"]

log = logging.getLogger("redkit.django")

_DEFAULT_TTL = 86400.0


def _setting() -> dict[str, Any] | None:
    value = adapter_option("OUTBOX", False)
    if value is False or value is None:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        unknown = set(value) - {"DEDUP_TTL"}
        if unknown:
            raise ImproperlyConfigured(
                f'REDKIT["OUTBOX"] has unknown key(s): {", ".join(sorted(map(str, unknown)))}'
            )
        return value
    raise ImproperlyConfigured(
        f'REDKIT["OUTBOX"] must be True, False or {{"DEDUP_TTL": seconds}}, '
        f"not a {type(value).__name__}"
    )


def enabled() -> bool:
    """Whether ``REDKIT["OUTBOX"]`` is on."""
    return _setting() is not None


def dedup_ttl() -> float:
    """How long a relayed row's dedup id holds, in seconds."""
    ttl = (_setting() or {}).get("DEDUP_TTL", _DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ImproperlyConfigured('REDKIT["OUTBOX"]["DEDUP_TTL"] must be a positive number')
    return float(ttl)


def write(
    task: Any, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], using: str
) -> None:
    """Write the row of ``task(*args, **kwargs)`` (a bound :class:`redkit.queue.Task`) in the
    current transaction of ``using``, and move it to Redis once that transaction commits."""
    from .models import OutboxJob

    queue, job, encoded = encode_job(task, job_id, args, kwargs, dedup_ttl())
    OutboxJob.objects.using(using).create(
        id=job_id, queue=queue, job=encoded, created_ms=int(time.time() * 1000)
    )
    transaction.on_commit(lambda: _move(task, job, using), using=using)


def _move(task: Any, job: list[Any], using: str) -> None:
    """After the commit: add the job, then delete its row. A failure leaves the row to the
    relay (logged): nothing is lost, and a row added twice is one job."""
    from .models import OutboxJob

    try:
        add_job(task, [job])
        OutboxJob.objects.using(using).filter(id=job[0]).delete()
    except (RedkitError, DatabaseError) as exc:
        log.error(
            "redkit: moving job %s of the outbox to Redis failed (the relay will): %s", job[0], exc
        )


def relay(using: str = DEFAULT_DB_ALIAS, limit: int = CHUNK) -> int:
    """Move every row of the database ``using`` to Redis (``limit`` rows per transaction: add
    their jobs, delete the rows, commit); returns how many. Safe to run in several processes at
    once (``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it)."""
    from .models import OutboxJob

    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    kit = get_kit()
    rows = OutboxJob.objects.using(using)
    moved = 0
    while True:
        with transaction.atomic(using=using):
            taken = list(
                rows.select_for_update(skip_locked=True)
                .order_by("created_ms", "id")
                .values_list("id", "queue", "job")[:limit]
            )
            add_rows(kit, taken)
            if taken:
                rows.filter(id__in=[t[0] for t in taken]).delete()
        moved += len(taken)
        if len(taken) < limit:
            return moved


class OutboxRelay:
    """:func:`relay` every ``interval`` seconds on a thread (:func:`start_relay`) until
    :meth:`stop`; a failed round is logged once and tried again."""

    def __init__(self, using: str, interval: float) -> None:
        self.using, self.interval = using, interval
        self.moved = 0
        """Jobs moved to Redis so far."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redkit-outbox", daemon=True)

    def _loop(self) -> None:
        from django.db import connections

        failing = False
        try:
            while not self._stop.is_set():
                try:
                    moved = relay(self.using)
                except (RedkitError, DatabaseError) as exc:  # the rows wait
                    if not failing:
                        log.warning("redkit: the outbox relay failed (%s); trying again", exc)
                    failing = True
                else:
                    self.moved += moved
                    if failing:
                        log.warning("redkit: the outbox relay works again (%d jobs moved)", moved)
                    failing = False
                self._stop.wait(self.interval)
        finally:
            connections.close_all()  # this thread's connections

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def start_relay(using: str = DEFAULT_DB_ALIAS, interval: float = 1.0) -> OutboxRelay:
    """Run :func:`relay` on a background thread every ``interval`` seconds."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    made = OutboxRelay(using, float(interval))
    made._thread.start()
    return made
