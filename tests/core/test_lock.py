"""kit.lock through the public API, on real Redis, memory:// and a cluster, sync and async."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import (
    InvalidKeyError,
    LockError,
    LockLost,
    LockNotAcquired,
    RedkitConnectionError,
    ResponseError,
)
from redkit._ops import Batch, script
from redkit.lock import AsyncLock, LockCore
from redkit.lock._core import ACQUIRE, EXTEND, RELEASE
from tests.conftest import Kits, call, new_prefix, proxied_url
from tests.servers import ReplyDroppingProxy

# -- helpers: one test body for the sync and the async client -----------------------------------


@contextlib.asynccontextmanager
async def holding(lock: Any) -> AsyncIterator[Any]:
    """``with lock`` or ``async with lock``, whichever the lock speaks."""
    if isinstance(lock, AsyncLock):
        async with lock as held:
            yield held
    else:
        with lock as held:
            yield held


def is_async(kit: Any) -> bool:
    return isinstance(kit, redkit.asyncio.Redkit)


async def pause(seconds: float) -> None:
    """Sleep without blocking the event loop: an async client's renewal task runs there (a sync
    client's renewal has its own thread)."""
    await asyncio.sleep(seconds)


async def scan(kit: Any, match: str = "*") -> list[str]:
    found = kit.scan(match)
    if is_async(kit):
        return [key async for key in found]
    return list(found)


async def wait_until(check: Any, seconds: float = 5.0) -> bool:
    """Poll ``check()`` until it is true; False if it never became true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await pause(0.02)
    return bool(check())


def tokens(lock: Any) -> tuple[Any, Any]:
    """The lock's token and fencing token (read afresh: their type changes with its state)."""
    return lock.token, lock.fencing_token


def relative(kit: Any, key: str) -> str:
    return key[len(kit.settings.prefix) + 1 :]


# -- basics -------------------------------------------------------------------------------------


async def test_acquire_and_release_with_a_context_manager(kit: Any) -> None:
    lock = kit.lock("report:42", ttl=10)
    assert (lock.name, lock.ttl, lock.timeout, lock.auto_renew) == (
        "report:42",
        10.0,
        None,
        False,
    )
    assert tokens(lock) == (None, None)
    assert await call(lock.locked()) is False
    assert await call(lock.owned()) is False
    async with holding(lock) as held:
        assert held is lock
        assert isinstance(lock.token, str)
        assert len(lock.token) == 32
        assert isinstance(lock.fencing_token, int)
        assert lock.fencing_token > 0
        assert await call(lock.owned()) is True
        assert await call(lock.locked()) is True
        assert await call(kit.lock("report:42").locked()) is True
        assert await call(kit.lock("report:42").owned()) is False  # another object: not ours
        assert lock.lost is False
        assert "held" in repr(lock)
        assert lock.token not in repr(lock)
    assert tokens(lock) == (None, None)
    assert await call(lock.locked()) is False
    assert kit.stats.get("lock_acquired") == 1
    assert kit.stats.get("lock_released") == 1


async def test_a_held_lock_excludes_others_and_frees_on_release(kit: Any) -> None:
    first, second = kit.lock("job"), kit.lock("job")
    assert await call(first.acquire()) is True
    assert await call(second.acquire(blocking=False)) is False
    assert await call(second.acquire(timeout=0)) is False
    assert await call(second.acquire(blocking=True, timeout=0.05)) is False
    await call(first.release())
    assert await call(second.acquire(blocking=False)) is True
    assert await call(first.acquire(blocking=False)) is False
    await call(second.release())


async def test_locks_are_not_reentrant_and_objects_are_reusable(kit: Any) -> None:
    lock = kit.lock("job")
    assert await call(lock.acquire()) is True
    token, fence = lock.token, lock.fencing_token
    with pytest.raises(LockError, match="not reentrant"):
        await call(lock.acquire())
    with pytest.raises(LockError, match="not reentrant"):
        async with holding(lock):
            pass
    assert await call(lock.owned()) is True  # the failed attempts did not disturb the hold
    await call(lock.release())
    assert await call(lock.acquire()) is True  # reused after release: a new acquisition
    assert lock.token != token
    assert lock.fencing_token > fence
    await call(lock.release())


async def test_release_or_extend_without_holding_is_an_error(kit: Any) -> None:
    lock = kit.lock("job")
    with pytest.raises(LockError, match="not held") as info:
        await call(lock.release())
    assert not isinstance(info.value, LockLost)  # misuse, not a lost lock
    with pytest.raises(LockError, match="not held"):
        await call(lock.extend())
    async with holding(lock):
        pass
    with pytest.raises(LockError, match="not held"):
        await call(lock.release())  # released twice


async def test_extend_sets_the_remaining_lifetime(kit: Any) -> None:
    lock = kit.lock("job", ttl=5)
    async with holding(lock):
        await call(lock.extend(60))
        assert 55_000 < await call(kit.client.pttl(lock.key)) <= 60_000
        await call(lock.extend())  # back to the lock's ttl
        assert 0 < await call(kit.client.pttl(lock.key)) <= 5_000
        await call(lock.extend(0.5))  # it may also shorten it
        assert 0 < await call(kit.client.pttl(lock.key)) <= 500
        assert lock.ttl == 5.0  # the next acquire still uses 5 s
        assert await call(lock.owned()) is True


# -- mutual exclusion ---------------------------------------------------------------------------

WORKERS, ROUNDS = 6, 5


async def test_mutual_exclusion_under_contention(make_kit: Kits) -> None:
    # separate clients, as separate processes would have: the exclusion comes from Redis only
    prefix = new_prefix()
    kits = [make_kit(prefix=prefix) for _ in range(2)]
    state = {"counter": 0, "inside": 0, "overlaps": 0}
    fences: list[int] = []

    def enter() -> int:
        state["inside"] += 1
        if state["inside"] > 1:
            state["overlaps"] += 1
        return state["counter"]

    def leave(value: int, fence: int) -> None:
        state["counter"] = value + 1  # a lost update if anyone else ran in between
        fences.append(fence)
        state["inside"] -= 1

    if make_kit.mode == "sync":
        guard = threading.Lock()  # only makes the bookkeeping itself atomic, not the section

        def worker(i: int) -> None:
            for _ in range(ROUNDS):
                with kits[i % 2].lock("counter", ttl=10, timeout=20) as lock:
                    with guard:
                        value = enter()
                    time.sleep(0.005)  # read, pause, write: another holder would lose an update
                    with guard:
                        leave(value, lock.fencing_token)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:

        async def task(i: int) -> None:
            for _ in range(ROUNDS):
                async with kits[i % 2].lock("counter", ttl=10, timeout=20) as lock:
                    value = enter()
                    await asyncio.sleep(0.005)
                    leave(value, lock.fencing_token)

        await asyncio.gather(*(task(i) for i in range(WORKERS)))

    assert state == {"counter": WORKERS * ROUNDS, "inside": 0, "overlaps": 0}
    # recorded inside the lock, in the order it was held: every holder's token beats the last
    assert all(a < b for a, b in itertools.pairwise(fences))


async def test_a_waiter_gets_the_lock_when_the_holder_releases(kit: Any) -> None:
    holder = kit.lock("job")
    assert await call(holder.acquire()) is True
    waiter = kit.lock("job", timeout=10)
    if is_async(kit):
        waiting = asyncio.ensure_future(waiter.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await holder.release()
        assert await waiting is True
    else:
        got: list[bool] = []
        thread = threading.Thread(target=lambda: got.append(waiter.acquire()))
        thread.start()
        await asyncio.sleep(0.05)
        assert got == []
        holder.release()
        thread.join()
        assert got == [True]
    assert await call(waiter.owned()) is True
    assert waiter.fencing_token > 0
    await call(waiter.release())


async def test_a_waiter_takes_over_when_a_crashed_holders_lock_expires(kit: Any) -> None:
    crashed = kit.lock("job", ttl=0.15)
    assert await call(crashed.acquire()) is True  # and never released
    taker = kit.lock("job", ttl=10, timeout=10)
    async with holding(taker):
        assert await call(taker.owned()) is True
        assert taker.fencing_token > crashed.fencing_token


async def test_timeout_raises_lock_not_acquired(kit: Any) -> None:
    holder = kit.lock("job", ttl=10)
    assert await call(holder.acquire()) is True

    async def enter(timeout: float) -> None:
        async with holding(kit.lock("job", timeout=timeout)):
            pytest.fail("entered a lock held by someone else")

    with pytest.raises(LockNotAcquired, match=r"held by someone else for 0\.1s"):
        await enter(0.1)
    with pytest.raises(LockNotAcquired, match="held by someone else"):
        await enter(0)
    # acquire() reports the same outcome as False, like threading.Lock.acquire
    waiter = kit.lock("job", timeout=0.05)
    assert await call(waiter.acquire()) is False
    assert tokens(waiter) == (None, None)
    assert await call(holder.owned()) is True  # the holder was not disturbed
    assert kit.stats.get("lock_not_acquired") == 3
    await call(holder.release())
    assert await call(waiter.acquire()) is True  # the same object may try again
    await call(waiter.release())


# -- expiry and lost locks ----------------------------------------------------------------------


async def test_an_expired_holder_cannot_release_or_extend_the_next_holders_lock(
    kit: Any,
) -> None:
    slow = kit.lock("job", ttl=0.15)
    assert await call(slow.acquire()) is True
    forgotten = kit.lock("idle", ttl=0.15)  # expires too, but nobody takes it
    assert await call(forgotten.acquire()) is True
    fast = kit.lock("block", ttl=10)

    async def work_too_long() -> None:
        async with holding(kit.lock("block", ttl=0.15)):
            await pause(0.25)  # every lock above expires while the work goes on
            assert await call(fast.acquire(blocking=False)) is True

    with pytest.raises(LockLost):  # raised by the end of the with block
        await work_too_long()
    thief = kit.lock("job", ttl=10)
    assert await call(thief.acquire(blocking=False)) is True
    with pytest.raises(LockLost):
        await call(slow.extend(30))
    assert slow.lost is True
    with pytest.raises(LockLost):
        await call(slow.release())
    # the other holders still own their locks, with the lifetime they set
    for other in (thief, fast):
        assert await call(other.owned()) is True
        assert 9_000 < await call(kit.client.pttl(other.key)) <= 10_000
    # expired with nobody else around: still not ours, still reported
    assert await call(forgotten.owned()) is False
    assert forgotten.lost is True
    with pytest.raises(LockLost):
        await call(forgotten.release())
    assert kit.stats.get("lock_lost") == 3
    # after LockLost the object is free again
    assert slow.token is None
    await call(thief.release())
    assert await call(slow.acquire(blocking=False)) is True
    await call(slow.release())


# -- fencing tokens -----------------------------------------------------------------------------


async def test_fencing_tokens_strictly_increase_across_clients(make_kit: Kits) -> None:
    prefix = new_prefix()
    a, b = make_kit(prefix=prefix), make_kit(prefix=prefix)
    tokens: list[int] = []
    reused = a.lock("invoice:7")
    for i in range(6):
        lock = reused if i % 3 == 0 else (a, b)[i % 2].lock("invoice:7")
        async with holding(lock):
            tokens.append(lock.fencing_token)
    # the counter expired or was deleted: the next token still beats every earlier one
    await call(a.client.delete(reused.key + ":fence"))
    async with holding(b.lock("invoice:7")) as lock:
        tokens.append(lock.fencing_token)
    async with holding(a.lock("invoice:7")) as lock:
        tokens.append(lock.fencing_token)
    assert all(isinstance(t, int) for t in tokens)
    assert all(x < y for x, y in itertools.pairwise(tokens)), tokens
    # the counter lives on after release, with a TTL, so the order survives idle periods
    assert await call(a.client.pttl(reused.key + ":fence")) > 29 * 86_400_000


async def test_every_lock_key_has_a_ttl(kit: Any) -> None:
    lock = kit.lock("job", ttl=30, auto_renew=True)
    async with holding(lock):
        await call(lock.extend(120))
        keys = await scan(kit)
        assert sorted(keys) == sorted([relative(kit, lock.key), relative(kit, lock.key) + ":fence"])
        for key in keys:
            assert await call(kit.client.pttl(f"{kit.settings.prefix}:{key}")) > 0
    for key in await scan(kit):  # the fencing counter stays, with its TTL
        assert await call(kit.client.pttl(f"{kit.settings.prefix}:{key}")) > 0


# -- automatic renewal --------------------------------------------------------------------------


async def test_auto_renew_keeps_the_lock_past_its_ttl_and_stops_on_release(kit: Any) -> None:
    lock = kit.lock("job", ttl=0.3, auto_renew=True)
    assert lock.auto_renew is True
    async with holding(lock):
        await pause(0.7)  # more than two lifetimes
        assert await call(lock.owned()) is True
        assert await call(kit.lock("job").acquire(blocking=False)) is False
        assert lock.lost is False
        assert kit.stats.get("lock_renewals") >= 2
        # renewal lengthens only: a longer explicit extension is kept
        await call(lock.extend(60))
        renewals = kit.stats.get("lock_renewals")
        assert await wait_until(lambda: kit.stats.get("lock_renewals") > renewals)
        assert await call(kit.client.pttl(lock.key)) > 50_000
    assert kit.stats.get("lock_released") == 1
    renewals = kit.stats.get("lock_renewals")
    await pause(0.3)  # three renewal intervals after the release
    assert kit.stats.get("lock_renewals") == renewals
    assert await call(lock.locked()) is False


async def test_auto_renew_records_a_lock_found_lost(kit: Any) -> None:
    lock = kit.lock("job", ttl=0.3, auto_renew=True)
    assert await call(lock.acquire()) is True
    await call(kit.client.delete(lock.key))  # e.g. an operator, or a pause longer than the ttl
    thief = kit.lock("job", ttl=10)
    assert await call(thief.acquire(blocking=False)) is True
    assert await wait_until(lambda: lock.lost)
    renewals = kit.stats.get("lock_renewals")
    await pause(0.2)  # two renewal intervals
    assert kit.stats.get("lock_renewals") == renewals  # it stopped renewing
    with pytest.raises(LockLost):
        await call(lock.release())
    assert await call(thief.owned()) is True
    assert kit.stats.get("lock_lost") == 1
    await call(thief.release())


def is_lost(hold: Any) -> bool:
    return bool(hold.lost)


def test_renewal_retries_errors_until_the_ttl_has_run_out() -> None:
    # the renewal's decision, without I/O: a connection error is retried on the next tick while
    # the lock may still be ours; once a whole ttl passed without renewal, it counts as lost
    from redkit.lock._core import _Hold

    with redkit.Redkit.from_url("memory://renewal-logic") as kit:
        core = LockCore(kit, "job", 10, None)
        now = time.monotonic()
        hold = _Hold("token", 1, now, 10)
        down = RedkitConnectionError("Redis is unreachable")
        assert core.renewed(hold, now, down) is True
        assert not is_lost(hold)
        assert core.renewed(hold, time.monotonic(), 10_000) is True  # renewed: 10 s more
        hold.expires_by = time.monotonic() - 0.001  # ...which have now passed without renewal
        assert core.renewed(hold, time.monotonic(), down) is False
        assert is_lost(hold)
        assert kit.stats.get("lock_renewal_errors") == 2
        assert kit.stats.get("lock_lost") == 1
        other = _Hold("token", 2, time.monotonic(), 10)
        assert core.renewed(other, time.monotonic(), 0) is False  # Redis: not ours
        assert other.lost is True


# -- keys and validation ------------------------------------------------------------------------

HOSTILE_NAMES: list[object] = [
    "*",
    "a?b[c]",
    "{tag}",
    "new\nline\r\n",
    "x" * 10_000,
    b"\xff\xfe\x00 not utf-8",
    "ümlaut-日本-🙂",
    12345,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:20])
async def test_hostile_names_stay_inside_the_lock_keyspace(kit: Any, name: object) -> None:
    bystander = kit.lock("user:1")
    lock = kit.lock(name, ttl=5)
    async with holding(lock):
        assert await call(lock.owned()) is True
        assert await call(bystander.locked()) is False  # a pattern-like name matches nothing else
        keys = await scan(kit)
        assert sorted(keys) == sorted([relative(kit, lock.key), relative(kit, lock.key) + ":fence"])
        for key in keys:
            assert key.startswith("lock:{")
            assert len(key) < 400
            tag = key[len("lock:{") : key.index("}")]
            assert not any(c in tag for c in "*?[]{} \n\r\t\x00")
    assert await call(kit.lock(name).locked()) is False


async def test_names_that_differ_are_different_locks(kit: Any) -> None:
    names: list[object] = ["a b", "a%20b", "a_b", "x" * 300, "x" * 301, "*"]
    locks = [kit.lock(n) for n in names]
    for lock in locks:
        assert await call(lock.acquire(blocking=False)) is True
    for lock in locks:
        await call(lock.release())


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, 400 * 86_400])
async def test_invalid_ttls_raise_value_error(kit: Any, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        kit.lock("job", ttl=ttl)
    lock = kit.lock("job")
    async with holding(lock):
        with pytest.raises(ValueError, match="ttl"):
            await call(lock.extend(ttl))
        assert await call(lock.owned()) is True
    assert await scan(kit) == [relative(kit, lock.key) + ":fence"]  # nothing else was written


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan, math.inf])
async def test_invalid_timeouts_raise_value_error(kit: Any, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        kit.lock("job", timeout=timeout)
    lock = kit.lock("job")
    with pytest.raises(ValueError, match="timeout"):
        await call(lock.acquire(timeout=timeout))
    assert lock.token is None
    assert await scan(kit) == []


async def test_invalid_arguments_raise_typed_errors(kit: Any) -> None:
    with pytest.raises(TypeError):
        kit.lock("job", ttl="30")
    with pytest.raises(ValueError, match="ttl"):
        kit.lock("job", ttl=True)
    with pytest.raises(TypeError):
        kit.lock("job", auto_renew="yes")
    for bad in ("", b"", None, 1.5, True):
        with pytest.raises(InvalidKeyError):
            kit.lock(bad)
    lock = kit.lock("job")
    with pytest.raises(ValueError, match="non-blocking"):
        await call(lock.acquire(blocking=False, timeout=1))
    with pytest.raises(TypeError):
        await call(lock.acquire(blocking="yes"))
    assert await call(lock.acquire()) is True  # none of that left the object in a bad state
    await call(lock.release())


async def test_scripts_reject_bad_arguments_before_writing(kit: Any) -> None:
    # arguments the Python side never sends: the scripts refuse them and write nothing
    core = kit.lock("job")._core
    keys = [core.key, core.fence_key]
    calls = [
        script(ACQUIRE, keys, ["", 1000, 1000]),
        script(ACQUIRE, keys, ["token", 0, 1000]),
        script(ACQUIRE, keys, ["token", 1.5, 1000]),
        script(ACQUIRE, keys, ["token", 1000, "soon"]),
        script(EXTEND, keys, ["token", 1000, 1000, "maybe"]),
        script(RELEASE, keys[:1], [""]),
    ]
    for bad in calls:
        with pytest.raises(ResponseError, match="invalid arguments"):
            await call(kit._executor.run(Batch.one(bad)))
    assert await scan(kit) == []


# -- re-sent calls (a reply lost on the way back) ------------------------------------------------


@pytest.fixture
async def proxied(proxy: ReplyDroppingProxy, mode: str) -> AsyncIterator[Any]:
    """A client (of the test's mode) that talks to the real Redis through ``proxy``."""
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit: Any = cls.from_url(proxied_url(proxy.port), prefix=new_prefix(), max_connections=4)
    # load the scripts first, so the dropped reply is the one of the call under test
    async with holding(kit.lock("warm-up")):
        pass
    yield kit
    await call(kit.clear())
    await call(kit.aclose() if is_async(kit) else kit.close())


async def test_a_resent_acquire_holds_the_lock_with_one_fencing_token(
    proxied: Any, proxy: ReplyDroppingProxy
) -> None:
    lock = proxied.lock("job", ttl=10)
    proxy.drop_next_reply()
    assert await call(lock.acquire(blocking=False)) is True  # ran twice, answered once
    assert proxy.dropped == 1
    assert proxied.stats.get("retries") == 1
    # the second send found its own token: the fencing token is the one the first send drew
    stored = await call(proxied.client.get(lock.key + ":fence"))
    assert lock.fencing_token == int(stored)
    assert await call(proxied.lock("job").acquire(blocking=False)) is False
    await call(lock.release())  # no LockLost: it was ours all along
    assert await call(lock.locked()) is False


async def test_a_release_is_never_resent(proxied: Any, proxy: ReplyDroppingProxy) -> None:
    lock = proxied.lock("job", ttl=10)
    assert await call(lock.acquire()) is True
    proxy.drop_next_reply()
    # a re-send would find the lock gone and wrongly report it lost: the caller hears the truth
    with pytest.raises(RedkitConnectionError):
        await call(lock.release())
    assert proxied.stats.get("retries") == 0
    assert await call(lock.locked()) is False  # the release did run
    assert await call(lock.acquire(blocking=False)) is True  # and the object is free again
    await call(lock.release())


async def test_a_resent_extend_is_harmless(proxied: Any, proxy: ReplyDroppingProxy) -> None:
    lock = proxied.lock("job", ttl=10)
    async with holding(lock):
        proxy.drop_next_reply()
        await call(lock.extend(60))
        assert proxied.stats.get("retries") == 1
        assert await call(proxied.client.pttl(lock.key)) > 55_000


async def test_renewal_rides_out_a_connection_error(
    proxy: ReplyDroppingProxy, proxied: Any
) -> None:
    # with no retries, a renewal whose reply is lost fails: it tries again on the next tick
    cls = type(proxied)
    kit: Any = cls.from_url(
        proxied_url(proxy.port), prefix=proxied.settings.prefix, retry_attempts=0
    )
    try:
        lock = kit.lock("job", ttl=0.6, auto_renew=True)
        async with holding(lock):
            proxy.drop_next_reply()
            assert await wait_until(lambda: kit.stats.get("lock_renewal_errors") == 1)
            assert await wait_until(lambda: kit.stats.get("lock_renewals") >= 2)
            assert lock.lost is False
            assert await call(lock.owned()) is True
    finally:
        await call(kit.aclose() if is_async(kit) else kit.close())


# -- failure policy and cancellation -----------------------------------------------------------


async def test_an_unreachable_redis_raises(mode: str) -> None:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit: Any = cls.from_url("redis://127.0.0.1:1/0", retry_attempts=0, socket_connect_timeout=0.5)
    try:
        lock = kit.lock("job")
        with pytest.raises(RedkitConnectionError):
            await call(lock.acquire())
        with pytest.raises(RedkitConnectionError):
            async with holding(lock):
                pytest.fail("entered without Redis")
        with pytest.raises(RedkitConnectionError):
            await call(lock.locked())
        assert lock.token is None  # not stuck "acquiring": a later attempt may be made
    finally:
        await call(kit.aclose() if is_async(kit) else kit.close())


async def test_a_cancelled_acquire_leaves_nothing_behind(async_kit: Any) -> None:
    holder = async_kit.lock("job")
    assert await holder.acquire()
    waiter = async_kit.lock("job")  # waits forever
    waiting = asyncio.ensure_future(waiter.acquire())
    await asyncio.sleep(0.05)
    # asyncio.wait_for before Python 3.12, which redis-py uses to send, can lose a cancellation
    # that arrives just as a send completes: ask until the task has ended
    while not waiting.done():
        waiting.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiter.token is None
    await holder.release()
    await asyncio.sleep(0.05)
    assert await holder.locked() is False
    assert await waiter.acquire(blocking=False) is True  # the object is usable again
    await waiter.release()
