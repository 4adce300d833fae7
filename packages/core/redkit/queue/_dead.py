"""The worker's part that sends jobs failed for good to the queue's dead-letter queue."""

from __future__ import annotations

import logging

from ..errors import PayloadTooLarge, RedkitConnectionError, RedkitError, SerializationError
from ._options import JobOptions, decode
from ._state import _text, _WorkerState

log = logging.getLogger("redkit.worker")


class _DeadLetters(_WorkerState):
    """Dead letters (a part of the worker): what failed for good, sent on to ``dead_letter``."""

    async def _collect_dead(self, ids: list[str]) -> None:
        for job_id in ids:
            try:
                n, d, err, atm = await self._exec.run(
                    self._core.fields(job_id, "n", "d", "err", "atm")
                )
            except RedkitError:
                continue
            if n is not None:
                self._dead.append(
                    (
                        job_id,
                        {
                            "name": _text(n),
                            "data": d,
                            "reason": _text(err or b""),
                            "attempts": int(atm or 0),
                        },
                    )
                )

    async def _send_dead(self) -> None:
        core = self._dlq_core
        if core is None:
            self._dead.clear()
            return
        dead, self._dead = self._dead, []
        prepared = []
        for job_id, info in dead:
            raw = info.get("data")
            data = {
                "queue": self.queue.name,
                "job_id": job_id,
                "name": info["name"],
                "data": decode(raw) if isinstance(raw, bytes) else raw,
                "failed_reason": info["reason"],
                "attempts_made": info["attempts"],
            }
            try:
                prepared.append(core.prepare(info["name"], data, JobOptions()))
            except (SerializationError, PayloadTooLarge, ValueError, TypeError) as exc:
                log.error("redkit: job %s could not be dead-lettered: %s", job_id, exc)
        if not prepared:
            return
        try:
            await self._exec.run(core.add(prepared))
        except RedkitConnectionError:
            self._dead = dead + self._dead  # the same ids are re-sent: no duplicate
