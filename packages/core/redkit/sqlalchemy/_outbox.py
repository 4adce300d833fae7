"""The outbox: jobs written to a table of the application's database in the same transaction as
the writes that asked for them, then moved to Redis.

``enqueue_after_commit`` on a session bound with ``outbox=`` checks and encodes the job at once
and adds its row to the session as an object (mapped on a registry of the outbox's own), so it is
inserted by the session's flush, in its transaction: a savepoint rolled back takes its rows with
it, and an ``AsyncSession`` needs no await. After the commit the binding adds the jobs to Redis
and deletes their rows. A process that dies between the commit and the add leaves the row, and
:meth:`Outbox.relay` (run by :meth:`Outbox.start` or :meth:`Outbox.serve`) adds it later. The row's
id is the job's id, and the job holds a dedup id (``outbox:<id>``) for ``dedup_ttl``, so a row
added twice (a relay that died before deleting it, two relays) is one job, even once the first
has run and retention deleted it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, select
from sqlalchemy.orm import registry

from .._durations import Duration
from .._durations import seconds as to_seconds
from ..queue.outbox import CHUNK as _CHUNK
from ..queue.outbox import add_rows, add_rows_async, encode_job

log = logging.getLogger("redkit.sqlalchemy")

__all__ = ["Outbox", "OutboxRelay"]


class Outbox:
    """The table jobs wait in until they are in Redis: ``Outbox(Base.metadata)`` declares it on
    the application's metadata (so ``create_all`` and migrations see it)."""

    def __init__(
        self, metadata: MetaData, name: str = "redkit_outbox", *, dedup_ttl: Duration = 86400
    ) -> None:
        if not isinstance(metadata, MetaData):
            raise TypeError(
                f"metadata must be a sqlalchemy MetaData, not {type(metadata).__name__}"
            )
        self.dedup_ttl = to_seconds("dedup_ttl", dedup_ttl)
        if self.dedup_ttl <= 0:
            raise ValueError("dedup_ttl must be positive")
        self.table = Table(
            name,
            metadata,
            Column("id", String(200), primary_key=True),
            Column("queue", String(200), nullable=False),
            Column("job", Text, nullable=False),
            Column("created_ms", BigInteger, nullable=False, index=True),
        )
        """The ``sqlalchemy.Table``: ``id`` (the job's id), ``queue``, ``job`` (the add's
        arguments, JSON), ``created_ms``."""
        self._row_class: type = type("OutboxRow", (), {"__module__": __name__})
        registry().map_imperatively(self._row_class, self.table)

    # -- writing rows (in the session's transaction) ---------------------------------------------
    def row(self, task: Any, job_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """The row of ``task(*args, **kwargs)`` as job ``job_id``, an object to add to a session:
        checked and encoded now, so a bad argument raises before anything is written."""
        queue, _, encoded = encode_job(task, job_id, args, kwargs, self.dedup_ttl)
        row = self._row_class()
        row.id = job_id
        row.queue = queue
        row.job = encoded
        row.created_ms = int(time.time() * 1000)
        return row

    @staticmethod
    def job_of(row: Any) -> tuple[str, list[Any]]:
        """The queue and the add script's arguments of a row made by :meth:`row`."""
        return row.queue, json.loads(row.job)

    def delete(self, ids: Iterable[str]) -> Any:
        return delete(self.table).where(self.table.c.id.in_(list(ids)))

    # -- moving rows to Redis --------------------------------------------------------------------
    def _select(self, limit: int) -> Any:
        t = self.table
        return (
            select(t.c.id, t.c.queue, t.c.job)
            .order_by(t.c.created_ms, t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # two relays share the rows (PostgreSQL, MySQL)
        )

    def relay(self, engine: Any, kit: Any, limit: int = _CHUNK) -> int:
        """Move every row to Redis (``limit`` per transaction: add the jobs, delete the rows,
        commit); returns how many. ``engine`` is the application's ``Engine``, ``kit`` a
        :class:`~redkit.Redkit`. Safe to run in several processes at once."""
        _check_limit(limit)
        moved = 0
        while True:
            with engine.begin() as conn:
                rows = conn.execute(self._select(limit)).all()
                add_rows(kit, rows)
                if rows:
                    conn.execute(self.delete(r[0] for r in rows))
            moved += len(rows)
            if len(rows) < limit:
                return moved

    async def relay_async(self, engine: Any, kit: Any, limit: int = _CHUNK) -> int:
        """:meth:`relay` with an ``AsyncEngine`` and a :class:`redkit.asyncio.Redkit`."""
        _check_limit(limit)
        moved = 0
        while True:
            async with engine.begin() as conn:
                rows = (await conn.execute(self._select(limit))).all()
                await add_rows_async(kit, rows)
                if rows:
                    await conn.execute(self.delete(r[0] for r in rows))
            moved += len(rows)
            if len(rows) < limit:
                return moved

    def start(self, engine: Any, kit: Any, interval: Duration = 1.0) -> OutboxRelay:
        """Run :meth:`relay` every ``interval`` seconds on a background thread until the
        returned relay's ``stop()``."""
        return OutboxRelay(self, engine, kit, to_seconds("interval", interval)).start()

    async def serve(self, engine: Any, kit: Any, interval: Duration = 1.0) -> None:
        """Run :meth:`relay_async` every ``interval`` seconds until cancelled (a task of the
        application's event loop); a failed round is logged and tried again."""
        pause = to_seconds("interval", interval)
        health = _Health()
        while True:
            try:
                health.worked(await self.relay_async(engine, kit))
            except Exception as exc:  # Redis or the database down: the rows wait
                health.failed(exc)
            await asyncio.sleep(pause)


class OutboxRelay:
    """An :class:`Outbox`'s relay on a thread (:meth:`Outbox.start`)."""

    def __init__(self, outbox: Outbox, engine: Any, kit: Any, interval: float) -> None:
        self.outbox, self.engine, self.kit, self.interval = outbox, engine, kit, interval
        self.moved = 0
        """Jobs moved to Redis so far."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redkit-outbox", daemon=True)

    def start(self) -> OutboxRelay:
        self._thread.start()
        return self

    def _loop(self) -> None:
        health = _Health()
        while not self._stop.is_set():
            try:
                moved = self.outbox.relay(self.engine, self.kit)
            except Exception as exc:  # Redis or the database down: the rows wait
                health.failed(exc)
            else:
                self.moved += moved
                health.worked(moved)
            self._stop.wait(self.interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class _Health:
    """A relay's log: one warning when its rounds start failing, one when they work again."""

    failing = False

    def failed(self, exc: Exception) -> None:
        if not self.failing:
            log.warning("redkit: the outbox relay failed (%s); trying again", exc)
        self.failing = True

    def worked(self, moved: int) -> None:
        if self.failing:
            log.warning("redkit: the outbox relay works again (%d jobs moved)", moved)
        self.failing = False


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
