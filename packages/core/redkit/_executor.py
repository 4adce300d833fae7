"""Executors run :mod:`redkit._ops` specs over a redis-py client: one sync, one async.

They hold the only I/O in redkit's core: pipelining a batch, ``EVALSHA`` with reload on
``NOSCRIPT``, wrapping redis-py errors in redkit's, feeding the circuit breaker and the outage log,
and driving flow generators. Everything they run is built by pure code shared by both.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.exceptions as rex

from ._failures import _CONNECTION_ERRORS, Health, RetryPolicy, wrap_error
from ._ops import Batch, Call, Flow, Load, Sleep, command
from .errors import (
    PoolExhaustedError,
    RedkitConnectionError,
    RedkitError,
)

__all__ = ["AsyncExecutor", "Health", "RetryPolicy", "SyncExecutor", "wrap_error"]

log = logging.getLogger("redkit")
T = TypeVar("T")
_DELETE_BATCH = 500


def _chunks(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_observability: Any
_providers: Any
try:  # redis-py's OpenTelemetry metrics
    from redis.observability import providers as _providers
    from redis.observability.providers import get_observability_instance as _observability
except ImportError:  # pragma: no cover - a redis-py without them
    _observability = _providers = None


def _observed() -> bool:
    """Whether redis-py records metrics of its commands (then every call goes through it)."""
    if _observability is None:
        return False
    # redis-py makes its instance on first use: none yet means nothing is recorded
    if getattr(_providers, "_observability_instance", True) is None:
        return False
    return bool(_observability().is_enabled())


def _direct_pool(client: Any, kind: type) -> Any:
    """The connection pool of ``client`` when calls may be sent on its connections directly:
    a plain ``redis.Redis`` (or asyncio ``Redis``) of a pool, without client-side caching;
    ``None`` for anything else (a cluster client, fakeredis, a single-connection client)."""
    if type(client) is not kind or getattr(client, "connection", None) is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return None
    return pool


def _wire(call: Call) -> tuple[Any, ...]:
    """The command ``call`` sends."""
    if call.script is None:
        return call.args
    return ("EVALSHA", call.script.sha, call.numkeys, *call.args)


def _plain(calls: Sequence[Call]) -> bool:
    """Whether every call's reply is parsed without options (so the direct path applies)."""
    for call in calls:  # noqa: SIM110 - a loop: no generator to build on the hot path
        if call.options is not None:
            return False
    return True


def _callbacks_of(client: Any) -> dict[str, Any]:
    """redis-py's reply callbacks of ``client``, by command name (redkit's are upper case)."""
    table = dict(client.response_callbacks.items())
    return {**{k.lower(): v for k, v in table.items()}, **{k.upper(): v for k, v in table.items()}}


def _noscripts(replies: Sequence[Any]) -> list[int]:
    """Where a pipeline's replies say NOSCRIPT (the script did not run)."""
    return [i for i, r in enumerate(replies) if isinstance(r, rex.NoScriptError)]


class _Base:
    def __init__(
        self, client: Any, health: Health, cluster: bool, retry: RetryPolicy | None = None
    ) -> None:
        self.client = client
        self.health = health
        self.cluster = cluster
        self.stats = health.stats
        self.retry = retry or RetryPolicy()

    _ready = True  # the async cluster client sets it once it knows the topology

    @property
    def client(self) -> Any:
        """The redis-py client (replaced by a stand-in that raises once its kit is closed)."""
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client
        # Calls on a plain client are sent on a pooled connection directly: what redis-py's
        # execute_command and pipeline do for them, without their per-command wrappers
        # (retries that are off, metrics that are off) that cost more than the round trip's
        # own Python work. Calls with reply options, and every call while redis-py's metrics
        # are on, go through redis-py.
        execute = getattr(type(client), "execute_command", None)
        kind = redis.asyncio.Redis if inspect.iscoroutinefunction(execute) else redis.Redis
        self._pool = _direct_pool(client, kind)
        self._callbacks = {} if self._pool is None else _callbacks_of(client)

    def _queued(self, calls: Sequence[Call]) -> Any:
        """A pipeline (no transaction) holding ``calls``, ready to execute."""
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            if call.script is None:
                pipe.execute_command(*call.args, **(call.options or {}))
            else:
                # EVALSHA as a raw command: cluster pipelines route it by its keys
                pipe.execute_command("EVALSHA", call.script.sha, call.numkeys, *call.args)
        return pipe

    def _loader(self, call: Call) -> tuple[Any, tuple[Any, ...]]:
        """The client method and arguments that load ``call``'s script (on every node of a
        cluster)."""
        assert call.script is not None
        if self.cluster:
            return self.client.script_load, (call.script.source,)
        return self.client.execute_command, ("SCRIPT", "LOAD", call.script.source)

    def _answered(self, exc: rex.RedisError) -> RedkitError:
        """Redis answered with an error: it is reachable; the error to raise."""
        self.health.ok()
        return wrap_error(exc)

    def _done(self, replies: list[Any]) -> list[Any]:
        """A round trip completed: its replies, raising the first error reply."""
        self.health.ok()
        for r in replies:
            if isinstance(r, Exception):
                raise wrap_error(r)
        return replies

    def _retry_delay(self, exc: BaseException, calls: Sequence[Call], attempt: int) -> float:
        """After a connection error: the delay before retry ``attempt + 1``, or raise the wrapped
        error (feeding the breaker) when the batch must not or may no longer be re-sent."""
        if self.retry.may_retry(exc, calls, attempt):
            self.stats.incr("retries")
            return self.retry.delay(attempt + 1)
        self.health.failed(exc)
        raise wrap_error(exc) from exc


class SyncExecutor(_Base):
    """Runs batches and flows with a blocking redis-py client."""

    def run(self, batch: Batch[T]) -> T:
        """Send one batch (one round trip) and return its parsed reply."""
        return batch.parse(self._execute(batch.calls))

    def call(self, call: Call, down: Callable[[RedkitConnectionError], Any]) -> Any:
        """Send one call (one round trip) and return its reply, or ``down(error)`` when Redis
        cannot be reached: the breaker and the retries of :meth:`run`, without a batch or a
        flow (the path of one-command operations such as a cache GET or SET)."""
        try:
            return self._execute((call,))[0]
        except RedkitConnectionError as exc:
            return down(exc)

    def drive(self, flow: Flow[T]) -> T:
        """Run a flow generator to completion, feeding each step's result back into it."""
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.send(send) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, error = None, None
            try:
                if isinstance(step, Batch):
                    send = step.parse(self._execute(step.calls))
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                elif isinstance(step, Load):
                    send = step.fn()
                    if inspect.isawaitable(send):
                        close = getattr(send, "close", None)
                        if close is not None:
                            close()
                        raise TypeError(
                            "the loader returned an awaitable: use redkit.asyncio.Redkit for "
                            "async loaders and functions"
                        )
            except Exception as exc:
                error = exc

    def scan(self, match: str, count: int = 1000) -> Iterator[bytes]:
        """Iterate over keys matching ``match`` with ``SCAN`` (every node of a cluster)."""
        self.health.breaker.before_call()
        try:
            yield from self.client.scan_iter(match=match, count=count)
        except _CONNECTION_ERRORS as exc:
            self.health.failed(exc)
            raise wrap_error(exc) from exc

    def delete_matching(self, match: str) -> int:
        """``UNLINK`` every key matching ``match``, in batches; returns how many were removed."""
        removed = 0
        for chunk in _chunks(self.scan(match), _DELETE_BATCH):
            removed += sum(self._execute([command("UNLINK", k) for k in chunk]))
        return removed

    def _execute(self, calls: Sequence[Call]) -> list[Any]:
        self.health.breaker.before_call()
        return self._send(calls)

    def _initialize(self) -> None:  # pragma: no cover - the sync cluster client needs none
        self._ready = True

    # The methods below have an asyncio twin of the same shape in AsyncExecutor (a test in
    # tests/core/test_executor_twins.py fails when one of them gains logic the other lacks).
    def _send(self, calls: Sequence[Call]) -> list[Any]:
        attempt = 0
        while True:
            self.stats.round_trip(len(calls))
            try:
                if self.cluster and not self._ready:
                    self._initialize()
                if self._pool is not None and _plain(calls) and not _observed():
                    replies = self._direct(calls)
                elif len(calls) == 1:
                    replies = [self._one(calls[0])]
                else:
                    replies = self._pipeline(calls)
                break
            except _CONNECTION_ERRORS as exc:
                time.sleep(self._retry_delay(exc, calls, attempt))
                attempt += 1
            except rex.RedisError as exc:
                raise self._answered(exc) from exc
        return self._done(replies)

    def _one(self, call: Call) -> Any:
        if call.script is None:
            return self.client.execute_command(*call.args, **(call.options or {}))
        try:
            return self.client.execute_command("EVALSHA", call.script.sha, call.numkeys, *call.args)
        except rex.NoScriptError:
            self._load(call)
            return self.client.execute_command("EVALSHA", call.script.sha, call.numkeys, *call.args)

    def _load(self, call: Call) -> None:
        load, args = self._loader(call)
        load(*args)
        self.stats.incr("script_loads")

    def _direct(self, calls: Sequence[Call]) -> list[Any]:
        replies, noscript = self._exchange(calls)
        if noscript:  # scripts that answered NOSCRIPT did not run: load them, run just those
            for call in {calls[i].script: calls[i] for i in noscript}.values():
                self._load(call)
            redone, _ = self._exchange([calls[i] for i in noscript])
            for i, reply in zip(noscript, redone, strict=True):
                replies[i] = reply
        return replies

    def _exchange(self, calls: Sequence[Call]) -> tuple[list[Any], list[int]]:
        """Send ``calls`` on one pooled connection and read their replies (error replies in
        place, as exceptions), with where NOSCRIPT was answered. The connection's own methods
        drop it on a connection error."""
        pool, callbacks = self._pool, self._callbacks
        conn = pool.get_connection()
        try:
            if len(calls) == 1:
                conn.send_command(*_wire(calls[0]))
            else:
                conn.send_packed_command(conn.pack_commands([_wire(c) for c in calls]))
            replies: list[Any] = []
            noscript: list[int] = []
            for call in calls:
                try:
                    reply = conn.read_response()
                except rex.ResponseError as exc:
                    if isinstance(exc, rex.NoScriptError):
                        noscript.append(len(replies))
                    reply = exc
                else:
                    callback = callbacks.get(call.args[0] if call.script is None else "EVALSHA")
                    if callback is not None:
                        reply = callback(reply)
                replies.append(reply)
            return replies, noscript
        finally:
            if conn.should_reconnect():  # the server asked for it (maintenance notifications)
                conn.disconnect()
            pool.release(conn)

    def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = self._queued(calls).execute(raise_on_error=False)
        # Scripts that answered NOSCRIPT did not run: load them and run just those again.
        for i in _noscripts(replies):
            try:
                replies[i] = self._one(calls[i])
            except rex.ResponseError as exc:
                replies[i] = exc
        return replies


class AsyncExecutor(_Base):
    """Runs batches and flows with an asyncio redis-py client (same specs as the sync one)."""

    _ready = False
    _init_lock: asyncio.Lock | None = None

    def __init__(
        self,
        client: Any,
        health: Health,
        cluster: bool,
        retry: RetryPolicy | None = None,
        max_connections: int | None = None,
        pool_timeout: float = 5.0,
    ) -> None:
        super().__init__(client, health, cluster, retry)
        # Callers beyond max_connections wait for a free slot (up to pool_timeout) instead of
        # failing: what redis-py's BlockingConnectionPool does, without its per-command cost.
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._pool_timeout = pool_timeout

    async def _acquire_slot(self, slots: asyncio.Semaphore) -> None:
        if not slots.locked():
            await slots.acquire()
            return
        try:
            await asyncio.wait_for(slots.acquire(), self._pool_timeout)
        except asyncio.TimeoutError:
            self.health.stats.incr("pool_exhausted")
            raise PoolExhaustedError(
                f"no free Redis connection within {self._pool_timeout}s "
                "(all max_connections are busy)"
            ) from None

    async def _initialize(self) -> None:
        # redis-py's asyncio cluster client discovers the topology on first use; many tasks
        # doing that at once race each other and break connections, so one task does it first.
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    async def run(self, batch: Batch[T]) -> T:
        """Send one batch (one round trip) and return its parsed reply."""
        return batch.parse(await self._execute(batch.calls))

    async def call(self, call: Call, down: Callable[[RedkitConnectionError], Any]) -> Any:
        """Send one call (one round trip) and return its reply, or ``down(error)`` when Redis
        cannot be reached: the breaker and the retries of :meth:`run`, without a batch or a
        flow (the path of one-command operations such as a cache GET or SET)."""
        try:
            return (await self._execute((call,)))[0]
        except RedkitConnectionError as exc:
            return down(exc)

    async def drive(self, flow: Flow[T]) -> T:
        """Run a flow generator to completion, feeding each step's result back into it."""
        send: Any = None
        error: BaseException | None = None
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        pending = cancelling() if cancelling is not None else 0
        while True:
            try:
                step = flow.send(send) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, error = None, None
            if cancelling is not None and cancelling() > pending:
                # a cancellation swallowed on its way (asyncio.wait_for on 3.11 drops one that
                # races with a result, and redis-py awaits every reply through it): honour it
                # before the next step, or a waiting loop would ignore it
                raise asyncio.CancelledError
            try:
                if isinstance(step, Batch):
                    send = step.parse(await self._execute(step.calls))
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Load):
                    send = step.fn()
                    if inspect.isawaitable(send):
                        send = await send
            except Exception as exc:
                error = exc

    async def scan(self, match: str, count: int = 1000) -> AsyncIterator[bytes]:
        """Iterate over keys matching ``match`` with ``SCAN`` (every node of a cluster)."""
        self.health.breaker.before_call()
        try:
            if self.cluster and not self._ready:
                await self._initialize()
            async for key in self.client.scan_iter(match=match, count=count):
                yield key
        except _CONNECTION_ERRORS as exc:
            self.health.failed(exc)
            raise wrap_error(exc) from exc

    async def delete_matching(self, match: str) -> int:
        """``UNLINK`` every key matching ``match``, in batches; returns how many were removed."""
        removed = 0
        chunk: list[bytes] = []
        async for key in self.scan(match):
            chunk.append(key)
            if len(chunk) >= _DELETE_BATCH:
                removed += sum(await self._execute([command("UNLINK", k) for k in chunk]))
                chunk = []
        if chunk:
            removed += sum(await self._execute([command("UNLINK", k) for k in chunk]))
        return removed

    async def _execute(self, calls: Sequence[Call]) -> list[Any]:
        self.health.breaker.before_call()
        slots = self._slots
        if slots is None:
            return await self._send(calls)
        await self._acquire_slot(slots)
        try:
            return await self._send(calls)
        finally:
            slots.release()

    # The twins of SyncExecutor's methods of the same names.
    async def _send(self, calls: Sequence[Call]) -> list[Any]:
        attempt = 0
        while True:
            self.stats.round_trip(len(calls))
            try:
                if self.cluster and not self._ready:
                    await self._initialize()
                if self._pool is not None and _plain(calls) and not _observed():
                    replies = await self._direct(calls)
                elif len(calls) == 1:
                    replies = [await self._one(calls[0])]
                else:
                    replies = await self._pipeline(calls)
                break
            except _CONNECTION_ERRORS as exc:
                await asyncio.sleep(self._retry_delay(exc, calls, attempt))
                attempt += 1
            except rex.RedisError as exc:
                raise self._answered(exc) from exc
        return self._done(replies)

    async def _one(self, call: Call) -> Any:
        if call.script is None:
            return await self.client.execute_command(*call.args, **(call.options or {}))
        try:
            return await self.client.execute_command(
                "EVALSHA", call.script.sha, call.numkeys, *call.args
            )
        except rex.NoScriptError:
            await self._load(call)
            return await self.client.execute_command(
                "EVALSHA", call.script.sha, call.numkeys, *call.args
            )

    async def _load(self, call: Call) -> None:
        load, args = self._loader(call)
        await load(*args)
        self.stats.incr("script_loads")

    async def _direct(self, calls: Sequence[Call]) -> list[Any]:
        replies, noscript = await self._exchange(calls)
        if noscript:  # scripts that answered NOSCRIPT did not run: load them, run just those
            for call in {calls[i].script: calls[i] for i in noscript}.values():
                await self._load(call)
            redone, _ = await self._exchange([calls[i] for i in noscript])
            for i, reply in zip(noscript, redone, strict=True):
                replies[i] = reply
        return replies

    async def _exchange(self, calls: Sequence[Call]) -> tuple[list[Any], list[int]]:
        """Send ``calls`` on one pooled connection and read their replies (error replies in
        place, as exceptions), with where NOSCRIPT was answered. The connection's own methods
        drop it on a connection error, or when the task is cancelled while it waits."""
        pool, callbacks = self._pool, self._callbacks
        conn = await pool.get_connection()
        try:
            if len(calls) == 1:
                await conn.send_command(*_wire(calls[0]))
            else:
                await conn.send_packed_command(conn.pack_commands([_wire(c) for c in calls]))
            replies: list[Any] = []
            noscript: list[int] = []
            for call in calls:
                try:
                    reply = await conn.read_response()
                except rex.ResponseError as exc:
                    if isinstance(exc, rex.NoScriptError):
                        noscript.append(len(replies))
                    reply = exc
                else:
                    callback = callbacks.get(call.args[0] if call.script is None else "EVALSHA")
                    if callback is not None:
                        reply = callback(reply)
                replies.append(reply)
            return replies, noscript
        finally:
            if conn.should_reconnect():  # the server asked for it (maintenance notifications)
                await conn.disconnect()
            await pool.release(conn)

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = await self._queued(calls).execute(raise_on_error=False)
        # Scripts that answered NOSCRIPT did not run: load them and run just those again.
        for i in _noscripts(replies):
            try:
                replies[i] = await self._one(calls[i])
            except rex.ResponseError as exc:
                replies[i] = exc
        return replies
