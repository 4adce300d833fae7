"""The leases of an application's running idempotent requests, renewed from one asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from redkit.errors import ClientClosedError
from redkit.idempotency import Begin

__all__ = ["AsyncLeaseKeeper"]

log = logging.getLogger("redkit.starlette")


class AsyncLeaseKeeper:
    """What :class:`redkit.idempotency.LeaseKeeper` does with a thread, on the event loop:
    every third of ``lease`` each running request's lease is extended through
    ``idempotency`` (an :class:`~redkit.idempotency.AsyncIdempotency`), so a request shorter
    than that costs no renewal. The task starts with the first request and ends when none is
    left."""

    def __init__(self, idempotency: Any, lease: float) -> None:
        self._idem = idempotency
        self._every = lease / 3
        self._active: dict[int, list[Any]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    def add(self, begun: Begin) -> int:
        """Keep ``begun``'s lease alive until :meth:`remove`; returns the handle to remove."""
        handle = next(self._ids)
        self._active[handle] = [begun, time.monotonic() + self._every]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return handle

    def remove(self, handle: int) -> None:
        self._active.pop(handle, None)

    async def aclose(self) -> None:
        """Stop renewing."""
        self._active.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self._active:
            await asyncio.sleep(min(self._every / 4, 1.0))
            now = time.monotonic()
            for handle, entry in list(self._active.items()):
                if entry[1] > now or handle not in self._active:
                    continue
                entry[1] = now + self._every
                if not await self._renew(entry[0]):
                    log.warning(
                        "redkit: an idempotency lease was lost (key %r): a retry may run "
                        "the request too",
                        entry[0].key,
                    )
                    self.remove(handle)

    async def _renew(self, begun: Begin) -> bool:
        """Renew one lease; False when another request holds it now."""
        try:
            return bool(await self._idem.renew(begun.key, begun.token, begun.scope))
        except ClientClosedError:  # nothing is renewed any more
            self._active.clear()
            return True
        except Exception as exc:  # the others are still renewed; this one is tried again
            log.warning("redkit: renewing an idempotency lease failed: %s", exc)
            return True
