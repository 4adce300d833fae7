"""Close means closed: after ``close()`` (sync) or ``aclose()`` (asyncio) every public call of
the client, and of every object it handed out before, raises ``ClientClosedError`` instead of
connecting again; closing is idempotent and stops the client's threads and pools."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

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
}


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

    return {
        "sid": await call(kit.sessions.create({"a": 1})),
        "queue": queue,
        "task": queue.task(name="noop")(lambda: None),
        "lock": kit.lock("resource"),
        "stream": kit.stream("events"),
        "cached": cached,
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
