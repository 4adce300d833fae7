"""The worker's lease renewer: a thread of its own extends the locks of the running jobs (one
script call for all of them) and the worker's heartbeat, so neither a CPU-bound sync task nor an
async task that blocks the loop loses its jobs' locks."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from .._ops import Batch, command, script
from ..errors import RedkitError
from ._core import EXTEND, REGISTRY_TTL_MS
from ._state import _WorkerState

log = logging.getLogger("redkit.worker")


class _Lease(_WorkerState):
    """Lock renewal (a part of the worker), run on the renewer thread."""

    def _renew_loop(self) -> None:
        interval = max(0.02, self.lock_ttl / 6)
        wait = interval
        while not self._renew_stop.wait(wait):
            # after a failure, again soon: the locks must be renewed as soon as Redis answers
            wait = interval if self._renew_once() else min(interval, 0.5)

    def _renew_once(self) -> bool:
        """Renew the locks of the running jobs and of those finished but not reported yet (an
        outage holds their report back; their locks must not run out meanwhile). False when
        Redis could not be reached."""
        running = dict(self._running)
        pairs: list[Any] = []
        for a in running.values():
            pairs += (a.id, a.token)
        for a, _ in [*self._reporting, *self._done]:
            pairs += (a.id, a.token)
        core = self._core
        info = json.dumps(
            {
                "id": self.id,
                "queue": core.name,
                "host": self._host,
                "pid": os.getpid(),
                "concurrency": self.concurrency,
                "running": len(running),
                "processed": self.processed,
                "failed": self.failed,
            }
        )
        call = script(
            EXTEND,
            [core.active, core.workers, f"{core.base}:w:{self.id}"],
            [core.job_prefix, self.lock_ms, self.id, info, max(self.lock_ms * 2, 60_000), *pairs],
            # sent once per attempt: the loop above tries again sooner than a client's retries
            # (each waiting out a socket timeout) would
            idempotent=False,
        )
        try:
            reply = self._sync_kit._executor.run(Batch.one(call))
            self._sync_kit._executor.run(
                Batch(
                    (
                        command("ZADD", core.registry, int(time.time() * 1000), core.name),
                        command("PEXPIRE", core.registry, REGISTRY_TTL_MS),
                    )
                )
            )
        except RedkitError as exc:
            log.debug("redkit worker %s: lock renewal failed: %s", self.id, exc)
            return False
        for a, ok in zip(running.values(), reply):
            if not int(ok) and not a.lost:
                a.lost = True
                log.warning(
                    "redkit worker %s: lost the lock of job %s (it may run again elsewhere)",
                    self.id,
                    a.id,
                )
        return True
