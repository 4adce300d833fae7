"""Guards: a begun request whose lease is renewed while it runs, released unless completed.

What a guard does on leaving its block, on ``complete`` and ``release``, and at each renewal is
written once in :class:`_GuardBase` as flows over :class:`IdempotencyCore`; :class:`Guard` hands
them to the sync executor and renews from a thread, :class:`AsyncGuard` awaits them and renews
from a task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._base import check_open
from .._durations import Duration
from .._ops import Flow
from ..errors import ClientClosedError, RedkitConnectionError, RedkitError
from ._http import HeaderInput
from ._records import Begin, IdempotencyCore, Outcome

if TYPE_CHECKING:
    from .._executor import AsyncExecutor, SyncExecutor
    from ._api import AsyncIdempotency, Idempotency

log = logging.getLogger("redkit.idempotency")


class _GuardBase:
    """The begin's answer, the caller's view and the flows shared by both guards; no I/O."""

    _core: IdempotencyCore

    def __init__(self, result: Begin) -> None:
        self.result = result
        """The :class:`Begin` answer."""
        self.lost = False
        """True once a renewal found the lease gone: another request may be running."""
        self._finished = not result.started

    @property
    def outcome(self) -> Outcome:
        """The outcome of the begin."""
        return self.result.outcome

    @property
    def started(self) -> bool:
        """True when this request holds the lease and should run."""
        return self.result.started

    @property
    def replayed(self) -> bool:
        """True when ``result`` is a stored response to send again."""
        return self.result.replayed

    def _token(self) -> str:
        if not self.result.started or self.result.token is None:
            raise RuntimeError(f"this request did not start (outcome {self.outcome.name})")
        return self.result.token

    def _interval(self) -> float:
        return self._core.lease / 3

    # -- flows (the token is checked when one is made, before the renewals stop) ----------------
    def _leaving(self) -> Flow[None]:
        """Leaving the block: release a request that started and was not completed."""
        if self._finished:
            return
        self._finished = True
        begun = self.result
        try:
            yield self._core.release(begun.key, self._token(), begun.scope)
        except RedkitConnectionError as err:
            log.warning(
                "redkit: could not release an idempotency key (%s); its lease expires in %.1fs",
                err,
                self._core.lease,
            )

    def _completing(
        self,
        status: int,
        headers: HeaderInput,
        body: bytes,
        store_server_errors: bool | None,
        allow_headers: Iterable[str],
    ) -> Flow[bool]:
        begun, token = self.result, self._token()
        return self._finishing(
            self._core.complete(
                begun.key,
                token,
                status,
                headers,
                body,
                begun.scope,
                store_server_errors,
                allow_headers,
            )
        )

    def _finishing(self, flow: Flow[bool]) -> Flow[bool]:
        done = yield from flow
        self._finished = True  # not when complete raised: leaving the block still releases
        return done

    def _releasing(self) -> Flow[bool]:
        return self._release(self.result, self._token())

    def _release(self, begun: Begin, token: str) -> Flow[bool]:
        self._finished = True
        released: bool = yield self._core.release(begun.key, token, begun.scope)
        return released

    def _renewal(self, token: str) -> Flow[bool]:
        """One renewal; False when renewing should stop (the lease is lost)."""
        begun = self.result
        try:
            kept = yield self._core.renew(begun.key, token, begun.scope)
        except ClientClosedError:  # the client closed: renewing is over
            return False
        except RedkitError as err:  # keep trying: the lease may outlive a short outage
            log.warning("redkit: could not renew an idempotency lease: %s", err)
            return True
        if not kept:
            self.lost = True
        return bool(kept)


class Guard(_GuardBase):
    """A begun request (sync). ``with`` it: the lease is renewed every third of
    ``idempotency_lease`` from a daemon thread while the block runs; on leaving, a request that
    started and did not :meth:`complete` is released (also on an exception)."""

    def __init__(self, owner: Idempotency, result: Begin) -> None:
        super().__init__(result)
        self._core = owner._core
        self._x: SyncExecutor = owner._x
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Guard:
        check_open(self._x.client)  # begun before its client closed: nothing may start now
        if not self._finished and self._thread is None:
            self._thread = threading.Thread(
                target=self._keep_alive, name="redkit-idempotency-lease", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_renewing()
        self._x.drive(self._leaving())

    def complete(
        self,
        status: int,
        headers: HeaderInput,
        body: bytes,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """:meth:`Idempotency.complete` for this request (stops the renewals first)."""
        flow = self._completing(status, headers, body, store_server_errors, allow_headers)
        self._stop_renewing()
        return self._x.drive(flow)

    def release(self) -> bool:
        """:meth:`Idempotency.release` for this request (stops the renewals first)."""
        flow = self._releasing()
        self._stop_renewing()
        return self._x.drive(flow)

    def _stop_renewing(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _keep_alive(self) -> None:
        token, interval = self._token(), self._interval()
        while not self._stop.wait(interval):
            if not self._x.drive(self._renewal(token)):
                return


class AsyncGuard(_GuardBase):
    """A request guarded by an idempotency key (async). It begins when awaited or entered;
    ``async with`` it: the lease is renewed from a task while the block runs; on leaving, a
    request that started and did not :meth:`complete` is released."""

    def __init__(
        self,
        owner: AsyncIdempotency,
        begin: tuple[str | bytes, str, str | int | None, Duration | None, str | None],
    ) -> None:
        self._owner = owner
        self._core = owner._core
        self._x: AsyncExecutor = owner._x
        self._begin_args: (
            tuple[str | bytes, str, str | int | None, Duration | None, str | None] | None
        ) = begin
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> AsyncGuard:
        if self._begin_args is not None:
            key, fingerprint, scope, timeout, token = self._begin_args
            result = await self._owner.begin(key, fingerprint, scope, timeout=timeout, token=token)
            self._begin_args = None
            _GuardBase.__init__(self, result)
        return self

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes set by the begin: "result", "lost", ...
        if name.startswith("__") or self.__dict__.get("_begin_args") is None:
            raise AttributeError(name)
        raise RuntimeError("the guard has not begun: await it or enter it with 'async with'")

    def __await__(self) -> Generator[Any, None, AsyncGuard]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncGuard:
        await self._start()
        check_open(self._x.client)  # begun before its client closed: nothing may start now
        if not self._finished and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_alive())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_renewing()
        await self._x.drive(self._leaving())

    async def complete(
        self,
        status: int,
        headers: HeaderInput,
        body: bytes,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """:meth:`AsyncIdempotency.complete` for this request (stops the renewals first)."""
        flow = self._completing(status, headers, body, store_server_errors, allow_headers)
        await self._stop_renewing()
        return await self._x.drive(flow)

    async def release(self) -> bool:
        """:meth:`AsyncIdempotency.release` for this request (stops the renewals first)."""
        flow = self._releasing()
        await self._stop_renewing()
        return await self._x.drive(flow)

    async def _stop_renewing(self) -> None:
        # no cancel: a renewal in flight finishes its round trip, then sees the event
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _keep_alive(self) -> None:
        token, interval = self._token(), self._interval()
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), interval)
                return
            except asyncio.TimeoutError:
                pass
            if not await self._x.drive(self._renewal(token)):
                return
