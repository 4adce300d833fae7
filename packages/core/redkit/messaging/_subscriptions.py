"""Live subscriptions (``kit.pubsub.subscribe(...)``), each on its own connection.

What a subscription does (read, subscribe, unsubscribe, close) is written once, in
:class:`_SubscriptionBase`, as flows: generators that yield the steps to take (a :class:`_Call` of
a method of redis-py's ``PubSub`` object, or taking and giving back the subscription's lock) and
receive each step's result or exception. :class:`Subscription` runs them with blocking calls and a
thread lock, :class:`AsyncSubscription` awaits them under an ``asyncio.Lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import Any, TypeVar

from .. import _durations as durations
from .._durations import Duration
from .._executor import wrap_error
from ..errors import ClientClosedError, RedkitTimeoutError
from ._channels import Message, PubSubCore, _SubState
from ._common import _IO_ERRORS, Channel

T = TypeVar("T")

_POLL = 0.25  # longest single wait of a subscription read: how soon close() gets its turn
_ASYNC_NAMES = {"close": "aclose"}  # redis-py's asyncio PubSub names a method differently


class _Call:
    """A step of a subscription flow: call ``name`` on ``target`` (a redis-py ``PubSub``)."""

    __slots__ = ("args", "kwargs", "name", "target")

    def __init__(self, target: Any, name: str, *args: Any, **kwargs: Any) -> None:
        self.target = target
        self.name = name
        self.args = args
        self.kwargs = kwargs


_TAKE = object()
"""A step: take the subscription's lock (a flow holds it at most once; given back at its end)."""
_GIVE = object()
"""A step: give the lock back."""
_OTHERS = object()
"""A step: let the threads waiting for the lock take it first (nothing to do under asyncio)."""

SubFlow = Generator[Any, Any, T]


class _Run:
    """One flow being run by a shell: what goes into it next, and whether it holds the lock."""

    __slots__ = ("error", "flow", "held", "reply", "value")

    def __init__(self, flow: SubFlow[Any]) -> None:
        self.flow = flow
        self.reply: Any = None
        self.error: BaseException | None = None
        self.held = False
        self.value: Any = None

    def next(self) -> Any:
        """The flow's next step, or ``self`` once it returned (its result in :attr:`value`)."""
        try:
            error, self.error = self.error, None
            step = self.flow.send(self.reply) if error is None else self.flow.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return self
        self.reply = None
        return step


class _Turn:
    """A lock that a thread releasing and re-taking it in a loop cannot keep from the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.waiting = 0

    def take(self) -> None:
        with self._count:
            self.waiting += 1
        self._lock.acquire()
        with self._count:
            self.waiting -= 1

    def give(self) -> None:
        self._lock.release()

    def let_others_in(self) -> None:
        while self.waiting:
            time.sleep(0.001)


def _wait_seconds(timeout: Duration | None) -> float:
    wait = durations.optional_seconds("timeout", timeout, zero=True)
    return math.inf if wait is None else wait


class _SubscriptionBase:
    """State, the caller's view and the flows shared by both shells; no I/O."""

    def __init__(self, core: PubSubCore, client: Any) -> None:
        self._state = _SubState(core)
        self._client = client
        self._ps: Any = None
        self._closing = False
        self._closed = False
        self._orphaned = False  # its client was closed: every call but close() raises
        self._confirm_within = max(1.0, core.settings.socket_timeout)

    # -- the caller's view --------------------------------------------------------------------
    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels subscribed to, as given."""
        return tuple(self._state.channels.values())

    @property
    def patterns(self) -> tuple[Channel, ...]:
        """The patterns subscribed to, as given."""
        return tuple(self._state.patterns.values())

    @property
    def closed(self) -> bool:
        """True once it was closed."""
        return self._closing

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        name = type(self).__name__
        return f"<{name} {state} channels={self.channels!r} patterns={self.patterns!r}>"

    # -- flows --------------------------------------------------------------------------------
    def _getting(self, timeout: Duration | None) -> SubFlow[Message | None]:
        deadline = time.monotonic() + _wait_seconds(timeout)
        buffer = self._state.buffer
        while True:
            self._check_client()
            if self._closing:
                return None
            yield _TAKE
            self._check_client()
            if buffer:
                return buffer.popleft()
            if self._stopping():
                return None
            left = max(0.0, min(deadline - time.monotonic(), _POLL))
            yield from self._read(left)
            if buffer:
                return buffer.popleft()
            yield _GIVE
            if time.monotonic() >= deadline:
                return None
            yield _OTHERS

    def _subscribing(self, channels: tuple[Any, ...], patterns: object) -> SubFlow[None]:
        chans, pats = self._state.names(channels, patterns)  # checked at once, not when run
        return self._locked(self._subscribe(chans, pats))

    def _unsubscribing(self, channels: tuple[Any, ...], patterns: object) -> SubFlow[None]:
        chans, pats = self._state.names(channels, patterns)
        return self._locked(self._unsubscribe(chans, pats))

    def _locked(self, flow: SubFlow[None]) -> SubFlow[None]:
        yield _TAKE
        self._check_open()
        yield from flow

    def _unsubscribe(
        self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]
    ) -> SubFlow[None]:
        self._state.remove(chans, pats)
        if chans:
            yield from self._call("unsubscribe", *[c.decode() for c in chans])
        if pats:
            yield from self._call("punsubscribe", *[p.decode() for p in pats])

    def _closing_flow(self) -> SubFlow[None]:
        self._closing = True
        yield _TAKE
        if self._closed:
            return
        self._closed = True
        ps, self._ps = self._ps, None
        state = self._state
        try:
            # a subscription of a closed client just drops its connection, which ends its
            # subscriptions: no round trip while its client is being closed
            live = ps is not None and ps.connection is not None and ps.subscribed
            if live and not self._orphaned:
                state.count = None
                if state.channels:
                    yield _Call(ps, "unsubscribe")
                if state.patterns:
                    yield _Call(ps, "punsubscribe")
                deadline = time.monotonic() + self._confirm_within
                while state.count != 0 and time.monotonic() < deadline:
                    state.handle((yield _Call(ps, "get_message", timeout=_POLL)))
        except _IO_ERRORS:
            pass  # the connection is gone, and with it its subscriptions
        finally:
            state.buffer.clear()
            if ps is not None:
                with contextlib.suppress(*_IO_ERRORS):
                    yield _Call(ps, "close")

    def _starting(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> SubFlow[None]:
        yield _TAKE
        self._ps = self._client.pubsub()
        yield from self._subscribe(chans, pats)

    def _subscribe(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> SubFlow[None]:
        state = self._state
        state.add(chans, pats)
        if chans:
            yield from self._call("subscribe", *[c.decode() for c in chans])
        if pats:
            yield from self._call("psubscribe", *[p.decode() for p in pats])
        deadline = time.monotonic() + self._confirm_within
        while state.awaiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedkitTimeoutError(
                    f"Redis did not confirm the subscription within {self._confirm_within}s"
                )
            yield from self._read(min(left, _POLL))

    def _read(self, timeout: float) -> SubFlow[None]:
        self._state.handle((yield from self._call("get_message", timeout=timeout)))

    def _call(self, name: str, *args: Any, **kwargs: Any) -> SubFlow[Any]:
        try:
            return (yield _Call(self._ps, name, *args, **kwargs))
        except _IO_ERRORS as exc:
            raise wrap_error(exc) from exc

    def _orphan(self) -> None:
        """Its client is closing: from now on every call but ``close`` raises
        :class:`~redkit.errors.ClientClosedError` (a blocked read too, within one poll)."""
        self._orphaned = True

    def _check_client(self) -> None:
        if self._orphaned:
            raise ClientClosedError(
                "the client of this subscription is closed: make a new client to subscribe"
            )

    def _check_open(self) -> None:
        self._check_client()
        if self._closing:
            raise RuntimeError("this subscription is closed")

    def _stopping(self) -> bool:
        return self._closing  # re-read after waiting for the lock


class Subscription(_SubscriptionBase):
    """A live subscription on its own connection (``kit.pubsub.subscribe(...)``).

    Iterate over it (``for msg in sub``) to receive :class:`Message` objects until it is closed,
    or call :meth:`get`. Use it as a context manager, or call :meth:`close`, to unsubscribe and
    give the connection back. Safe to close from another thread than the one iterating.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        super().__init__(core, client)
        self._turn = _Turn()

    def get(self, timeout: Duration | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``), and ``ClientClosedError`` once the client that made it is
        closed (a call waiting then wakes and raises)."""
        return self._drive(self._getting(timeout))

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        flow = self._subscribing(channels, patterns)  # names checked at once
        self._drive(flow)

    def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        flow = self._unsubscribing(channels, patterns)  # names checked at once
        self._drive(flow)

    def close(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        self._drive(self._closing_flow())

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Message:
        message = self.get()
        if message is None:
            raise StopIteration
        return message

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        self._drive(self._starting(chans, pats))

    def _drive(self, flow: SubFlow[T]) -> T:
        run = _Run(flow)
        try:
            while (step := run.next()) is not run:
                try:
                    run.reply = self._do(run, step)
                except BaseException as exc:  # into the flow: its cleanup runs, then it re-raises
                    run.error = exc
            return run.value  # type: ignore[no-any-return]
        finally:
            if run.held:
                self._turn.give()

    def _do(self, run: _Run, step: Any) -> Any:
        if step is _TAKE:
            self._turn.take()
            run.held = True
        elif step is _GIVE:
            run.held = False
            self._turn.give()
        elif step is _OTHERS:
            self._turn.let_others_in()
        else:
            return getattr(step.target, step.name)(*step.args, **step.kwargs)
        return None


class AsyncSubscription(_SubscriptionBase):
    """A subscription on its own connection (``async with kit.pubsub.subscribe(...) as sub``).

    Iterate over it (``async for msg in sub``) to receive :class:`Message` objects until it is
    closed, or await :meth:`get`. Use it as an async context manager, or await :meth:`aclose`,
    to unsubscribe and give the connection back. Another task may close it while one iterates.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        super().__init__(core, client)
        self._starter: Callable[[], Awaitable[None]] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout: Duration | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``), and ``ClientClosedError`` once the client that made it is
        closed (a call waiting then wakes and raises)."""
        await self._started()
        return await self._drive(self._getting(timeout))

    async def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        flow = self._subscribing(channels, patterns)  # names checked at once
        await self._started()
        await self._drive(flow)

    async def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        flow = self._unsubscribing(channels, patterns)  # names checked at once
        await self._started()
        await self._drive(flow)

    async def aclose(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        await self._drive(self._closing_flow())

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Message:
        message = await self.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def _started(self) -> None:
        if self._starter is None and self._start_lock is None:
            return  # started (or never lazy)
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:  # concurrent first readers wait for the one start
            starter, self._starter = self._starter, None
            if starter is not None and not self._closing:
                try:
                    await starter()
                except BaseException:
                    await self.aclose()
                    raise
            self._start_lock = None  # started: later calls skip the lock

    async def _await(self) -> AsyncSubscription:
        await self._started()
        return self

    def __await__(self) -> Generator[Any, None, AsyncSubscription]:
        return self._await().__await__()

    async def __aenter__(self) -> AsyncSubscription:
        await self._started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        await self._drive(self._starting(chans, pats))

    async def _drive(self, flow: SubFlow[T]) -> T:
        run = _Run(flow)
        try:
            while (step := run.next()) is not run:
                try:
                    run.reply = await self._do(run, step)
                except BaseException as exc:  # into the flow: its cleanup runs, then it re-raises
                    run.error = exc
            return run.value  # type: ignore[no-any-return]
        finally:
            if run.held:
                self._lock.release()

    async def _do(self, run: _Run, step: Any) -> Any:
        if step is _TAKE:
            await self._lock.acquire()
            run.held = True
        elif step is _GIVE:
            run.held = False
            self._lock.release()
        elif step is not _OTHERS:
            name = _ASYNC_NAMES.get(step.name, step.name)
            return await getattr(step.target, name)(*step.args, **step.kwargs)
        return None
