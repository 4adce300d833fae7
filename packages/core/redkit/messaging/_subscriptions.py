"""Live subscriptions (``kit.pubsub.subscribe(...)``), each on its own connection."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any

from .._executor import wrap_error
from ..errors import RedkitTimeoutError
from ._channels import Message, PubSubCore, _SubState
from ._common import _IO_ERRORS, Channel, _seconds

_POLL = 0.25  # longest single wait of a subscription read: how soon close() gets its turn


class _Turn:
    """A lock that a thread releasing and re-taking it in a loop cannot keep from the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self.waiting = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._count:
            self.waiting += 1
        self._lock.acquire()
        with self._count:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def let_others_in(self) -> None:
        while self.waiting:
            time.sleep(0.001)


def _wait_seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else _seconds("timeout", timeout)


class Subscription:
    """A live subscription on its own connection (``kit.pubsub.subscribe(...)``).

    Iterate over it (``for msg in sub``) to receive :class:`Message` objects until it is closed,
    or call :meth:`get`. Use it as a context manager, or call :meth:`close`, to unsubscribe and
    give the connection back. Safe to close from another thread than the one iterating.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        self._state = _SubState(core)
        self._client = client
        self._ps: Any = None
        self._turn = _Turn()
        self._closing = False
        self._closed = False
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
        """True once :meth:`close` was called."""
        return self._closing

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``)."""
        deadline = time.monotonic() + _wait_seconds(timeout)
        while True:
            if self._closing:
                return None
            with self._turn.hold():
                buffer = self._state.buffer
                if buffer:
                    return buffer.popleft()
                if self._stopping():
                    return None
                left = max(0.0, min(deadline - time.monotonic(), _POLL))
                self._read(left)
                if buffer:
                    return buffer.popleft()
            if time.monotonic() >= deadline:
                return None
            self._turn.let_others_in()

    def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        chans, pats = self._state.names(channels, patterns)
        with self._turn.hold():
            self._check_open()
            self._subscribe(chans, pats)

    def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        chans, pats = self._state.names(channels, patterns)
        with self._turn.hold():
            self._check_open()
            self._state.remove(chans, pats)
            if chans:
                self._call(self._ps.unsubscribe, *[c.decode() for c in chans])
            if pats:
                self._call(self._ps.punsubscribe, *[p.decode() for p in pats])

    def close(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        self._closing = True
        with self._turn.hold():
            if self._closed:
                return
            self._closed = True
            ps, self._ps = self._ps, None
            state = self._state
            try:
                if ps is not None and ps.connection is not None and ps.subscribed:
                    state.count = None
                    if state.channels:
                        ps.unsubscribe()
                    if state.patterns:
                        ps.punsubscribe()
                    deadline = time.monotonic() + self._confirm_within
                    while state.count != 0 and time.monotonic() < deadline:
                        state.handle(ps.get_message(timeout=_POLL))
            except _IO_ERRORS:
                pass  # the connection is gone, and with it its subscriptions
            finally:
                state.buffer.clear()
                if ps is not None:
                    with contextlib.suppress(*_IO_ERRORS):
                        ps.close()

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

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<Subscription {state} channels={self.channels!r} patterns={self.patterns!r}>"

    # -- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this subscription is closed")

    def _stopping(self) -> bool:
        return self._closing  # re-read after waiting for the lock

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _IO_ERRORS as exc:
            raise wrap_error(exc) from exc

    def _read(self, timeout: float) -> None:
        self._state.handle(self._call(self._ps.get_message, timeout=timeout))

    def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        with self._turn.hold():
            self._ps = self._client.pubsub()
            self._subscribe(chans, pats)

    def _subscribe(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        state = self._state
        state.add(chans, pats)
        if chans:
            self._call(self._ps.subscribe, *[c.decode() for c in chans])
        if pats:
            self._call(self._ps.psubscribe, *[p.decode() for p in pats])
        deadline = time.monotonic() + self._confirm_within
        while state.awaiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedkitTimeoutError(
                    f"Redis did not confirm the subscription within {self._confirm_within}s"
                )
            self._read(min(left, _POLL))


class AsyncSubscription:
    """A subscription on its own connection (``async with kit.pubsub.subscribe(...) as sub``).

    Iterate over it (``async for msg in sub``) to receive :class:`Message` objects until it is
    closed, or await :meth:`get`. Use it as an async context manager, or await :meth:`aclose`,
    to unsubscribe and give the connection back. Another task may close it while one iterates.
    """

    def __init__(self, core: PubSubCore, client: Any) -> None:
        self._state = _SubState(core)
        self._client = client
        self._starter: Callable[[], Awaitable[None]] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._ps: Any = None
        self._lock = asyncio.Lock()
        self._closing = False
        self._closed = False
        self._confirm_within = max(1.0, core.settings.socket_timeout)

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
        """True once :meth:`aclose` was called."""
        return self._closing

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one arrives or
        the subscription is closed; ``0``: only what has already arrived). Returns ``None`` on
        timeout and once closed. Raises ``RedkitConnectionError`` when the connection drops
        (see ``docs/messaging.md``)."""
        await self._started()
        deadline = time.monotonic() + _wait_seconds(timeout)
        while True:
            if self._closing:
                return None
            async with self._lock:
                buffer = self._state.buffer
                if buffer:
                    return buffer.popleft()
                if self._stopping():
                    return None
                left = max(0.0, min(deadline - time.monotonic(), _POLL))
                await self._read(left)
                if buffer:
                    return buffer.popleft()
            if time.monotonic() >= deadline:
                return None

    async def subscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Add channels and patterns; returns once Redis confirmed them."""
        chans, pats = self._state.names(channels, patterns)
        await self._started()
        async with self._lock:
            self._check_open()
            await self._subscribe(chans, pats)

    async def unsubscribe(self, *channels: Channel, patterns: Iterable[Channel] = ()) -> None:
        """Stop receiving ``channels`` and ``patterns`` (messages already on their way may still
        arrive). The subscription stays open, even with nothing left subscribed."""
        chans, pats = self._state.names(channels, patterns)
        await self._started()
        async with self._lock:
            self._check_open()
            self._state.remove(chans, pats)
            if chans:
                await self._call(self._ps.unsubscribe(*[c.decode() for c in chans]))
            if pats:
                await self._call(self._ps.punsubscribe(*[p.decode() for p in pats]))

    async def aclose(self) -> None:
        """Unsubscribe from everything, wait for Redis to confirm (up to ``socket_timeout``),
        and close the connection. Messages not yet read are dropped; iteration ends.
        Idempotent."""
        self._closing = True
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            ps, self._ps = self._ps, None
            state = self._state
            try:
                if ps is not None and ps.connection is not None and ps.subscribed:
                    state.count = None
                    if state.channels:
                        await ps.unsubscribe()
                    if state.patterns:
                        await ps.punsubscribe()
                    deadline = time.monotonic() + self._confirm_within
                    while state.count != 0 and time.monotonic() < deadline:
                        state.handle(await ps.get_message(timeout=_POLL))
            except _IO_ERRORS:
                pass  # the connection is gone, and with it its subscriptions
            finally:
                state.buffer.clear()
                if ps is not None:
                    with contextlib.suppress(*_IO_ERRORS):
                        await ps.aclose()

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

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<AsyncSubscription {state} channels={self.channels!r} patterns={self.patterns!r}>"

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("this subscription is closed")

    def _stopping(self) -> bool:
        return self._closing  # re-read after waiting for the lock

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except _IO_ERRORS as exc:
            raise wrap_error(exc) from exc

    async def _read(self, timeout: float) -> None:
        self._state.handle(await self._call(self._ps.get_message(timeout=timeout)))

    async def _start(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        async with self._lock:
            self._ps = self._client.pubsub()
            await self._subscribe(chans, pats)

    async def _subscribe(self, chans: dict[bytes, Channel], pats: dict[bytes, Channel]) -> None:
        state = self._state
        state.add(chans, pats)
        if chans:
            await self._call(self._ps.subscribe(*[c.decode() for c in chans]))
        if pats:
            await self._call(self._ps.psubscribe(*[p.decode() for p in pats]))
        deadline = time.monotonic() + self._confirm_within
        while state.awaiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RedkitTimeoutError(
                    f"Redis did not confirm the subscription within {self._confirm_within}s"
                )
            await self._read(min(left, _POLL))
