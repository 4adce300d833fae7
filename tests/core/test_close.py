"""Close means closed: after ``close()`` (sync) or ``aclose()`` (asyncio) every public call of
the client, and of every object it handed out before, raises ``ClientClosedError`` instead of
connecting again; closing is idempotent and stops the client's threads and pools."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import redis

import redkit
import redkit.asyncio
from redkit import ClientClosedError, RedkitError
from tests.conftest import backend_url, call, new_prefix

# Each entry: a call made through the closed client ``k`` or through ``h``, the objects it
# handed out before it was closed.
CALLS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "ping": lambda k, h: k.ping(),
    "clear": lambda k, h: k.clear(),
    "raw client": lambda k, h: k.client.get("x"),
    "cache.get": lambda k, h: k.cache.get("a"),
    "cache.set": lambda k, h: k.cache.set("a", 1),
    "cache.get_or_set": lambda k, h: k.cache.get_or_set("a", lambda: 1),
    "cache.invalidate": lambda k, h: k.cache.invalidate(["t"]),
    "cached function": lambda k, h: h["cached"](),
    "queue.add (handed out)": lambda k, h: h["queue"].add("job"),
    "queue.counts (new)": lambda k, h: k.queue("other").counts(),
    "task.enqueue": lambda k, h: h["task"].enqueue(),
    "lock.acquire (handed out)": lambda k, h: h["lock"].acquire(),
    "lock.locked (new)": lambda k, h: k.lock("other").locked(),
    "limiter.hit": lambda k, h: k.limiter.hit("who", "5/minute"),
    "pubsub.publish": lambda k, h: k.pubsub.publish("c", "m"),
    "pubsub.subscribe": lambda k, h: k.pubsub.subscribe("c"),
    "stream.add (handed out)": lambda k, h: h["stream"].add({"a": 1}),
    "stream.length (new)": lambda k, h: k.stream("other").length(),
    "sessions.create": lambda k, h: k.sessions.create({"a": 1}),
    "sessions.load": lambda k, h: k.sessions.load(h["sid"]),
    "idempotency.begin": lambda k, h: k.idempotency.begin("key-1", "fp"),
    "job.refresh (handed out)": lambda k, h: h["job"].refresh(),
    "job.wait (handed out)": lambda k, h: h["job"].wait(timeout=5),
    "job.remove (handed out)": lambda k, h: h["job"].remove(),
    "task.options().enqueue": lambda k, h: h["task"].options(priority=1).enqueue(),
    "queue.events": lambda k, h: _first(lambda: h["queue"].events(since="0", timeout=5)),
    "stream.read (handed out)": lambda k, h: h["stream"].read("g", "c", timeout=0),
    "stream.create_group (handed out)": lambda k, h: h["stream"].create_group("g"),
    "stream.ack (handed out)": lambda k, h: h["stream"].ack("g", "0-1"),
    "stream.pending (handed out)": lambda k, h: h["stream"].pending("g"),
    "stream.claim_stale (handed out)": lambda k, h: h["stream"].claim_stale("g", "c", 1),
    "limiter.configure().hit": lambda k, h: h["limiter"].hit("who", "5/minute"),
    "limiter.refund": lambda k, h: k.limiter.refund("who", "5/minute"),
    "lock.extend (held at close)": lambda k, h: h["held"].extend(),
    "lock.release (held at close)": lambda k, h: h["held"].release(),
}


async def _first(events: Callable[[], Any]) -> Any:
    """The first event of ``queue.events(...)``, sync or async."""
    reader = await call(events())
    if hasattr(reader, "__anext__"):
        return await reader.__anext__()
    return next(iter(reader))


async def _handed_out(kit: Any) -> dict[str, Any]:
    queue = kit.queue("jobs")
    if isinstance(kit, redkit.Redkit):

        @kit.cache.cached(ttl=60)
        def cached() -> int:
            return 1

    else:

        @kit.cache.cached(ttl=60)
        async def cached() -> int:
            return 1

    task = queue.task(name="noop")(lambda: None)
    held = kit.lock("held", ttl=30)
    assert await call(held.acquire())
    return {
        "sid": await call(kit.sessions.create({"a": 1})),
        "queue": queue,
        "task": task,
        "job": await call(task.enqueue()),
        "lock": kit.lock("resource"),
        "held": held,
        "stream": kit.stream("events"),
        "cached": cached,
        "limiter": kit.limiter.configure(algorithm="gcra"),
    }


@pytest.fixture(params=["redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    return backend_url(str(request.param))


async def _close(kit: Any) -> None:
    if isinstance(kit, redkit.Redkit):
        kit.close()
    else:
        await kit.aclose()


async def _make(url: str, mode: str) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit = cls.from_url(url, prefix=new_prefix())
    assert await call(kit.ping())  # connected once: closing has something to close
    return kit


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", list(CALLS))
async def test_every_call_after_close_raises_client_closed(url: str, mode: str, name: str) -> None:
    kit = await _make(url, mode)
    handed = await _handed_out(kit)
    await _close(kit)
    with pytest.raises(ClientClosedError, match="closed"):
        await call(CALLS[name](kit, handed))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_close_is_idempotent_and_the_error_is_a_redkit_error(url: str, mode: str) -> None:
    kit = await _make(url, mode)
    await _close(kit)
    await _close(kit)
    with pytest.raises(RedkitError):
        await call(kit.ping())
    assert issubclass(ClientClosedError, RedkitError)
    assert not issubclass(ClientClosedError, redkit.RedkitConnectionError)  # never fails open


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_context_manager_closes(url: str, mode: str) -> None:
    if mode == "sync":
        with redkit.Redkit.from_url(url, prefix=new_prefix()) as kit:
            assert kit.ping()
        with pytest.raises(ClientClosedError):
            kit.ping()
    else:
        async with redkit.asyncio.Redkit.from_url(url, prefix=new_prefix()) as akit:
            assert await akit.ping()
        with pytest.raises(ClientClosedError):
            await akit.ping()


def test_a_closed_client_is_garbage_collectable_and_leaves_no_thread(url: str) -> None:
    before = set(threading.enumerate())
    refs = []
    for _ in range(5):
        kit = redkit.Redkit.from_url(url, prefix=new_prefix())
        kit.ping()
        sub = kit.pubsub.subscribe("news")
        sub.close()
        kit.close()
        refs.append(weakref.ref(kit))
        del kit, sub
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert set(threading.enumerate()) - before == set()


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def test_closing_ends_lock_renewal_at_once_without_calling_the_lock_lost(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = redkit.Redkit.from_url(url, prefix=new_prefix())
    lock = kit.lock("renewed", ttl=0.3, auto_renew=True)
    assert lock.acquire()
    assert _threads("redkit-lock-renewal")
    kit.close()
    for _ in range(100):  # the thread wakes every ttl / 3 and sees the client closed
        if not _threads("redkit-lock-renewal"):
            break
        threading.Event().wait(0.02)
    assert _threads("redkit-lock-renewal") == []
    assert "lost while held" not in caplog.text


async def test_closing_ends_async_lock_renewal(url: str, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    kit = redkit.asyncio.Redkit.from_url(url, prefix=new_prefix())
    lock = kit.lock("renewed", ttl=0.3, auto_renew=True)
    assert await lock.acquire()
    await kit.aclose()
    await asyncio.sleep(0.5)  # past the ttl: a renewal still trying would call the lock lost
    assert "lost while held" not in caplog.text
    renewals = [t for t in asyncio.all_tasks() if "_renew_in_task" in repr(t.get_coro())]
    assert renewals == []


def test_closing_a_client_stops_the_workers_started_from_it() -> None:
    kit = redkit.Redkit.from_url(backend_url("redis"), prefix=new_prefix())
    queue = kit.queue("jobs")
    worker = queue.worker(shutdown_timeout=5).start()
    assert worker._thread is not None
    assert worker._thread.is_alive()
    kit.close()  # returns once the worker has stopped (running jobs get shutdown_timeout)
    assert not worker._thread.is_alive()


async def test_closing_an_async_client_stops_the_worker_it_serves() -> None:
    import asyncio

    kit = redkit.asyncio.Redkit.from_url(backend_url("redis"), prefix=new_prefix())
    worker = kit.queue("jobs").worker(shutdown_timeout=5)
    serving = asyncio.create_task(worker.serve())
    for _ in range(200):
        if worker._started.is_set():
            break
        await asyncio.sleep(0.01)
    await kit.aclose()
    await asyncio.wait_for(serving, 10)  # serve() returns: the worker stopped with its client


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_worker_of_a_closed_client_does_not_start(mode: str) -> None:
    kit = await _make(backend_url("redis"), mode)
    worker = kit.queue("jobs").worker()
    await _close(kit)
    start = worker.start if mode == "sync" else worker.serve
    with pytest.raises(ClientClosedError, match="cannot start"):
        await call(start())


# -- handed out before close, started after: raises and starts nothing ---------------------------
async def _enter(manager: Any) -> None:
    """Enter and leave ``manager``, a sync or an async context manager."""
    if hasattr(manager, "__aenter__"):
        async with manager:
            pass
    else:
        with manager:
            pass


def _renewal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("redkit-") and t.is_alive()]


def _renewal_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_keep_alive" in repr(t.get_coro())]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_guard_begun_before_close_cannot_be_entered_after(url: str, mode: str) -> None:
    kit = await _make(url, mode)
    guard = kit.idempotency.guard("begun-before", "fp")
    if mode == "async":
        guard = await guard  # begun now, entered below
    assert guard.started
    before = set(_renewal_threads())
    await _close(kit)
    with pytest.raises(ClientClosedError, match="closed"):
        await _enter(guard)
    assert set(_renewal_threads()) - before == set()
    assert guard._thread is None if mode == "sync" else guard._task is None
    assert _renewal_tasks() == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_auto_renewed_lock_handed_out_before_close_starts_no_renewal(
    url: str, mode: str
) -> None:
    kit = await _make(url, mode)
    lock = kit.lock("renewed-later", ttl=5, auto_renew=True)
    before = set(_renewal_threads())
    await _close(kit)
    with pytest.raises(ClientClosedError, match="closed"):
        await _enter(lock)
    assert set(_renewal_threads()) - before == set()
    assert lock.token is None
    assert [t for t in asyncio.all_tasks() if "_renew_in_task" in repr(t.get_coro())] == []


def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.01)


def test_closing_ends_the_renewal_of_a_guard_active_at_close(url: str) -> None:
    kit = redkit.Redkit.from_url(url, prefix=new_prefix(), idempotency_lease=0.6)
    guard = kit.idempotency.guard("active", "fp")

    def run() -> None:
        with guard:
            renewer = guard._thread
            assert renewer is not None
            assert renewer.is_alive()
            kit.close()
            _wait_until(lambda: not renewer.is_alive(), "the end of the renewal")  # lease / 3

    with pytest.raises(ClientClosedError):  # leaving the block releases: the client is gone
        run()
    assert not guard.lost  # a renewal that found the client closed did not call the lease lost


async def test_closing_ends_the_renewal_of_an_async_guard_active_at_close(url: str) -> None:
    kit = redkit.asyncio.Redkit.from_url(url, prefix=new_prefix(), idempotency_lease=0.6)
    guard = await kit.idempotency.guard("active", "fp")

    async def run() -> None:
        async with guard:
            renewal = guard._task
            assert renewal is not None
            await kit.aclose()
            await asyncio.wait_for(asyncio.shield(renewal), 5)  # it returns at its next turn

    with pytest.raises(ClientClosedError):  # leaving the block releases: the client is gone
        await run()
    assert not guard.lost
    assert _renewal_tasks() == []


# -- subscriptions open at close -----------------------------------------------------------------
@pytest.fixture(params=["redis", "cluster", "memory"])
def sub_url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster"))
    return backend_url(str(request.param))


async def _subscribed(url: str, mode: str, prefix: str) -> tuple[Any, Any]:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit = cls.from_url(url, prefix=prefix)
    return kit, await call(kit.pubsub.subscribe("news"))


async def _next(sub: Any) -> Any:
    """The next message of ``for message in sub`` or ``async for message in sub``."""
    if hasattr(sub, "__anext__"):
        return await sub.__anext__()
    return next(iter(sub))


def _subscribers(url: str, prefix: str) -> int:
    """How many connections Redis counts on the channel of ``news`` (real Redis only)."""
    with redis.Redis.from_url(url) as raw:
        reply = raw.pubsub_numsub(f"{prefix}:pubsub:news")
    return int(reply[0][1])


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_call_of_a_subscription_open_at_close_raises(sub_url: str, mode: str) -> None:
    prefix = new_prefix()
    kit, sub = await _subscribed(sub_url, mode, prefix)
    await call(kit.pubsub.publish("news", "sent before close"))
    await _close(kit)
    assert sub.closed
    calls: list[Callable[[], Any]] = [
        lambda: sub.get(),
        lambda: sub.get(timeout=0),
        lambda: sub.subscribe("more"),
        lambda: sub.unsubscribe("news"),
    ]
    for make_call in calls:
        with pytest.raises(ClientClosedError, match="closed"):
            await asyncio.wait_for(call(make_call()), 5)
    with pytest.raises(ClientClosedError, match="closed"):
        await asyncio.wait_for(_next(sub), 5)
    await call(sub.close() if mode == "sync" else sub.aclose())  # closing again is harmless
    if sub_url.startswith("redis://"):
        assert _subscribers(sub_url, prefix) == 0  # its connection is gone, not reconnected


async def test_an_async_subscription_not_yet_started_at_close_raises(sub_url: str) -> None:
    kit = redkit.asyncio.Redkit.from_url(sub_url, prefix=new_prefix())
    sub = kit.pubsub.subscribe("news")  # subscribes when first read
    await kit.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await asyncio.wait_for(sub.get(), 5)


def test_a_thread_waiting_in_a_subscription_wakes_and_raises_when_the_client_closes(
    sub_url: str,
) -> None:
    prefix = new_prefix()
    kit = redkit.Redkit.from_url(sub_url, prefix=prefix)
    sub = kit.pubsub.subscribe("news")
    received: list[Any] = []
    raised: list[BaseException] = []

    def read() -> None:
        try:
            for message in sub:  # waits for ever between messages
                received.append(message.data)
        except BaseException as exc:
            raised.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    kit.pubsub.publish("news", "first")
    _wait_until(lambda: received == ["first"], "the first message")  # now waiting for the next
    kit.close()
    reader.join(10)  # wakes within one poll of the connection
    assert not reader.is_alive()
    assert [type(exc) for exc in raised] == [ClientClosedError]
    if sub_url.startswith("redis://"):
        assert _subscribers(sub_url, prefix) == 0


async def test_a_task_waiting_in_an_async_subscription_wakes_and_raises_when_the_client_closes(
    sub_url: str,
) -> None:
    prefix = new_prefix()
    kit = redkit.asyncio.Redkit.from_url(sub_url, prefix=prefix)
    sub = await kit.pubsub.subscribe("news")
    received: list[Any] = []

    async def read() -> None:
        async for message in sub:
            received.append(message.data)

    reader = asyncio.create_task(read())
    await kit.pubsub.publish("news", "first")
    deadline = time.monotonic() + 5
    while received != ["first"]:
        assert time.monotonic() < deadline, "the first message did not arrive"
        await asyncio.sleep(0.01)
    await kit.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await asyncio.wait_for(reader, 10)
    if sub_url.startswith("redis://"):
        assert _subscribers(sub_url, prefix) == 0
    with contextlib.suppress(ClientClosedError):
        await sub.aclose()
