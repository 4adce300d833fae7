"""The worker's part that sends dead letters and flow notices on: a job that fails for good on
a queue with a ``dead_letter`` queue leaves its letter in the queue's own ``:letters`` stream,
written by the same script call that failed it (``queue_step.lua``); this part adds each letter
to the dead-letter queue under an id made from the queue, the job and the letter's entry, then
deletes the entry. A letter whose add is re-sent (a lost reply, a crash before the delete, two
workers sending the same one) is added once: the dead-letter queue already holds that id.

The same stream carries the notices that the jobs of a flow leave for their parents as they end
(``queue_notify.lua``); this part records each in its parent (``queue_child.lua``, on the
parent's queue), then deletes it: a notice recorded twice is recorded once."""

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
from ._flows import parse_parent
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
    """Sending dead letters and the notices of flows' children on (a part of the worker)."""

    _letters_after: float = 0.0
    _letters_pause: float = 0.5
    _letters_failing: bool = False
    _parents: dict[str, QueueCore] | None = None

    async def _send_letters(self) -> None:
        """Send the letters and notices waiting in the queue's stream; a refusal is logged and
        retried later (the entries stay where they are)."""
        if time.monotonic() < self._letters_after:
            return
        core = self._core
        dlq = self._dlq_core
        kept = 0  # letters left for want of a dead-letter queue
        after = "-"
        try:
            while True:
                entries = await self._exec.run(
                    Batch.one(command("XRANGE", core.letters, after, "+", "COUNT", _PER_CALL), list)
                )
                if not entries:
                    break
                letters: list[tuple[str, dict[bytes, bytes]]] = []
                notices: list[tuple[str, dict[bytes, bytes]]] = []
                for entry, raw_fields in entries:
                    fields = _fields(raw_fields)
                    (notices if b"par" in fields else letters).append((_text(entry), fields))
                done = [entry for entry, _ in notices]
                if notices:
                    await self._send_notices(core, notices)
                if letters and dlq is not None:
                    await self._send_batch(core, dlq, letters)
                    done += [entry for entry, _ in letters]
                else:
                    kept += len(letters)
                if done:
                    await self._exec.run(Batch.one(command("XDEL", core.letters, *done)))
                if len(entries) < _PER_CALL:
                    break
                after = "(" + _text(entries[-1][0])
        except RedkitError as exc:
            self._letters_after = time.monotonic() + self._letters_pause
            self._letters_pause = min(_MAX_PAUSE, self._letters_pause * 2)
            if not self._letters_failing:
                self._letters_failing = True
                log.log(
                    logging.WARNING if isinstance(exc, RedkitConnectionError) else logging.ERROR,
                    "redkit worker %s: could not send dead letters or flow notices of queue %r "
                    "on (%s); they are kept and sent when it works again",
                    self.id,
                    core.name,
                    exc,
                )
            return
        if self._letters_failing:
            log.warning("redkit worker %s: dead letters and flow notices sent again", self.id)
        self._letters_failing = False
        self._letters_pause = 0.5
        self._letters_after = 0.0
        if kept:  # letters of a dead-letter queue this worker is not told of: look again later
            self._letters_after = time.monotonic() + _MAX_PAUSE
            log.warning(
                "redkit worker %s: %d dead letters wait in queue %r's stream but this worker "
                "has no dead_letter queue to send them to",
                self.id,
                kept,
                core.name,
            )

    async def _send_notices(
        self, core: QueueCore, notices: list[tuple[str, dict[bytes, bytes]]]
    ) -> None:
        """Record each child's outcome in its parent (``queue_child.lua``), one call per parent
        queue; a notice recorded before (re-sent) changes nothing there."""
        if self._parents is None:
            self._parents = {}
        by_queue: dict[str, list[list[Any]]] = {}
        for entry, fields in notices:
            parent = parse_parent(_text(fields.get(b"par", b"")))
            kind = _text(fields.get(b"o", b""))
            if parent is None or kind not in ("c", "f", "x"):
                log.error(
                    "redkit: flow notice %s of queue %r cannot be read: dropped", entry, core.name
                )
                continue
            queue, parent_id, index, policy = parent
            queue = queue or core.name
            child = _text(fields.get(b"id", b""))
            by_queue.setdefault(queue, []).append(
                [
                    parent_id,
                    index,
                    kind,
                    int(fields.get(b"ats") or 0),
                    fields.get(b"v", b""),
                    policy,
                    f"{core.name}/{child}",
                ]
            )
        for queue, rows in by_queue.items():
            target = self._parents.get(queue)
            if target is None:
                target = core if queue == core.name else QueueCore(self._kit, queue)
                self._parents[queue] = target
            await self._exec.run(target.record_children(rows))

    async def _send_batch(
        self, core: QueueCore, dlq: QueueCore, entries: list[tuple[str, dict[bytes, bytes]]]
    ) -> None:
        prepared = []
        for entry_id, fields in entries:
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


def _fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in raw.items()}
    items = list(raw)
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}
