"""The worker's part that sends dead letters on: a job that fails for good on a queue with a
``dead_letter`` queue leaves its letter in the queue's own ``:letters`` stream, written by the
same script call that failed it (``queue_step.lua``); this part adds each letter to the
dead-letter queue under an id made from the queue, the job and the letter's entry, then deletes
the entry. A letter whose add is re-sent (a lost reply, a crash before the delete, two workers
sending the same one) is added once: the dead-letter queue already holds that id."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from .._ops import Batch, command
from ..errors import (
    PayloadTooLarge,
    RedkitConnectionError,
    RedkitError,
    SerializationError,
)
from ._core import QueueCore
from ._options import MAX_NAME, JobOptions, decode
from ._state import _text, _WorkerState

log = logging.getLogger("redkit.worker")
_PER_CALL = 100  # letters read and sent per round trip
_MAX_PAUSE = 30.0  # longest pause between two attempts to send letters Redis refused


def letter_id(queue: str, job_id: str, entry: str) -> str:
    """The dead-letter job's id of the letter ``entry`` of ``job_id`` in ``queue``."""
    ident = f"{queue}/{job_id}@{entry}"
    if len(ident) <= MAX_NAME:
        return ident
    digest = hashlib.sha256(f"{queue}/{job_id}".encode()).hexdigest()[:40]
    return f"{digest}@{entry}"


def letter_data(queue: str, fields: dict[bytes, bytes], limit: int) -> tuple[str, dict[str, Any]]:
    """The name and data of the dead-letter job for one letter entry's fields."""
    job_id = _text(fields.get(b"id", b""))
    raw = fields.get(b"d")
    data: dict[str, Any] = {
        "queue": queue,
        "job_id": job_id,
        "name": _text(fields.get(b"n", b"")),
        "data": None,
        "failed_reason": _text(fields.get(b"err", b"")),
        "attempts_made": int(fields.get(b"atm") or 0),
    }
    try:
        data["data"] = decode(raw)
    except SerializationError as exc:
        data["data"] = _text(raw or b"")
        data["data_error"] = f"the job's data is no JSON ({exc}): here as text"
    if raw is not None and len(raw) + 1024 > limit:
        data["data"] = None
        data["data_error"] = (
            f"the job's data ({len(raw)} bytes) does not fit the dead-letter queue's "
            f"queue_max_bytes ({limit}): left out"
        )
    return data["name"] or "unnamed", data


class _DeadLetters(_WorkerState):
    """Sending dead letters (a part of the worker)."""

    _letters_after: float = 0.0
    _letters_pause: float = 0.5
    _letters_failing: bool = False

    async def _send_letters(self) -> None:
        """Send the letters waiting in the queue's stream; a refusal is logged and retried
        later (the letters stay where they are)."""
        dlq = self._dlq_core
        if dlq is None or time.monotonic() < self._letters_after:
            return
        core = self._core
        try:
            while True:
                entries = await self._exec.run(
                    Batch.one(command("XRANGE", core.letters, "-", "+", "COUNT", _PER_CALL), list)
                )
                if not entries:
                    break
                await self._send_batch(core, dlq, entries)
                if len(entries) < _PER_CALL:
                    break
        except RedkitError as exc:
            self._letters_after = time.monotonic() + self._letters_pause
            self._letters_pause = min(_MAX_PAUSE, self._letters_pause * 2)
            if not self._letters_failing:
                self._letters_failing = True
                log.log(
                    logging.WARNING if isinstance(exc, RedkitConnectionError) else logging.ERROR,
                    "redkit worker %s: could not send dead letters to queue %r (%s); they are "
                    "kept and sent when it works again",
                    self.id,
                    dlq.name,
                    exc,
                )
            return
        if self._letters_failing:
            log.warning("redkit worker %s: dead letters sent again to %r", self.id, dlq.name)
        self._letters_failing = False
        self._letters_pause = 0.5
        self._letters_after = 0.0

    async def _send_batch(self, core: QueueCore, dlq: QueueCore, entries: list[Any]) -> None:
        prepared = []
        for entry, raw_fields in entries:
            entry_id = _text(entry)
            fields = _fields(raw_fields)
            name, data = letter_data(core.name, fields, dlq.max_bytes)
            ident = letter_id(core.name, data["job_id"], entry_id)
            try:
                prepared.append(dlq.prepare(name, data, JobOptions(job_id=ident)))
            except (SerializationError, PayloadTooLarge, ValueError, TypeError) as exc:
                # cannot happen with the data made above; a letter never blocks the others
                log.error("redkit: the dead letter %s could not be made: %s", ident, exc)
                data["data"] = None
                data["data_error"] = str(exc)
                prepared.append(dlq.prepare("unnamed", data, JobOptions(job_id=ident)))
        await self._exec.run(dlq.add(prepared))
        ids = [_text(entry) for entry, _ in entries]
        await self._exec.run(Batch.one(command("XDEL", core.letters, *ids)))


def _fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in raw.items()}
    items = list(raw)
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}
