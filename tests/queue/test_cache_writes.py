"""Write-through and write-behind caching: ``@kit.cache.write_through`` runs the writer, then
caches (nothing when it raises); ``@kit.cache.write_behind(queue)`` caches the value and adds the
job that persists it in one script, coalesces writes to a key, persists the latest value (never
an older one over a newer), retries like any job, and lets reads see the value until it is
persisted. Through the public API, on real Redis, the embedded server and the cluster, sync and
async."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.cache import AsyncWriteBehind, AsyncWriteThrough, WriteBehind, WriteThrough
from redkit.errors import RedkitConnectionError, RedkitError, SerializationError
from redkit.queue import Backoff
from tests.conftest import REAL_REDIS, REDIS_URL, call
from tests.queue.conftest import eventually, serving


def _async(kit: Any) -> bool:
    return isinstance(kit, redkit.asyncio.Redkit)


def behind(kit: Any, q: Any, body: Callable[[Any, Any], None], **options: Any) -> Any:
    """A write-behind writer on ``q`` that runs ``body(key, value)`` (sync, or in the event loop
    for the async client)."""
    if _async(kit):

        @kit.cache.write_behind(q, **options)
        async def save_async(key: Any, value: Any) -> None:
            await asyncio.sleep(0)
            body(key, value)

        return save_async

    @kit.cache.write_behind(q, **options)
    def save(key: Any, value: Any) -> None:
        body(key, value)

    return save


def through(kit: Any, body: Callable[[Any, Any], Any], **options: Any) -> Any:
    if _async(kit):

        @kit.cache.write_through(**options)
        async def store_async(key: Any, value: Any) -> Any:
            await asyncio.sleep(0)
            return body(key, value)

        return store_async

    @kit.cache.write_through(**options)
    def store(key: Any, value: Any) -> Any:
        return body(key, value)

    return store


async def _state(q: Any, job_id: str) -> str | None:
    job = await call(q.get_job(job_id))
    return None if job is None else job.state


def ended(q: Any, job_id: str, state: str = "completed") -> Callable[[], Any]:
    """A predicate for ``eventually``: job ``job_id`` is in ``state``."""

    async def check() -> bool:
        return await _state(q, job_id) == state

    return check


# -- write-behind -------------------------------------------------------------------------------
async def test_writes_are_cached_at_once_and_one_job_persists_the_last(kit: Any) -> None:
    q = kit.queue("persist")
    db: dict[Any, Any] = {}
    save = behind(kit, q, db.__setitem__, debounce=0.3)
    assert isinstance(save, AsyncWriteBehind if _async(kit) else WriteBehind)
    ids = [await call(save.set("user:1", {"n": n}, ttl=60)) for n in range(5)]
    assert len(set(ids)) == 1  # coalesced: one job, with the last value
    assert await call(kit.cache.get("user:1")) == {"n": 4}
    assert await call(save.pending("user:1")) == {"n": 4}
    assert await call(save.get("user:1")) == {"n": 4}
    assert db == {}
    assert (await call(q.counts()))["delayed"] == 1
    job = await call(q.get_job(ids[0]))
    assert job.data == {"args": ["user:1", 60.0, None], "kwargs": {}}
    async with serving(q):
        await eventually(lambda: db.get("user:1") == {"n": 4}, 10, "the value persisted")
        await eventually(ended(q, ids[0]), 10, "the job completed")
    assert db == {"user:1": {"n": 4}}
    assert await call(save.pending("user:1", "none")) == "none"
    assert await call(kit.cache.get("user:1")) == {"n": 4}
    assert 59 < await call(kit.cache.ttl("user:1")) <= 60 * (1 + kit.settings.cache_jitter)
    await call(save("direct", 1))  # calling the writer runs it here
    assert db["direct"] == 1


async def test_a_key_written_without_pause_persists_every_max_wait(kit: Any) -> None:
    q = kit.queue("persist-hot")
    written: list[Any] = []

    def record(key: Any, value: Any) -> None:
        written.append((key, value))

    capped = behind(kit, q, record, debounce=0.3, max_wait=0.5, name="capped")
    unbounded = behind(kit, q, record, debounce=0.3, max_wait=None, name="unbounded")
    async with serving(q):
        for n in range(24):  # a write every 0.05 s for 1.2 s, closer together than the debounce
            await call(capped.set("hot", n))
            await call(unbounded.set("cold", n))
            await asyncio.sleep(0.05)
        meanwhile = list(written)
        await eventually(lambda: ("hot", 23) in written and ("cold", 23) in written, 10)
    assert len([v for k, v in meanwhile if k == "hot"]) >= 1  # persisted while writes go on
    assert [v for k, v in meanwhile if k == "cold"] == []  # the debounce alone waits for a pause
    hot = [v for k, v in written if k == "hot"]
    assert hot == sorted(hot)  # never an older value after a newer one
    assert hot[-1] == 23
    with pytest.raises(TypeError, match="max_wait"):
        behind(kit, q, lambda k, v: None, max_wait="soon", name="bad-max-wait")


async def test_a_write_while_its_key_persists_gets_its_own_job_and_its_value_wins(
    kit: Any,
) -> None:
    q = kit.queue("persist-slow")
    started, release = threading.Event(), threading.Event()
    written: list[Any] = []

    if _async(kit):

        @kit.cache.write_behind(q, debounce=0)
        async def save(key: Any, value: Any) -> None:
            if value == 1:
                started.set()
                for _ in range(1000):  # the first persist holds on (without blocking the loop)
                    if release.is_set():
                        break
                    await asyncio.sleep(0.01)
            written.append(value)

    else:

        @kit.cache.write_behind(q, debounce=0)
        def save(key: Any, value: Any) -> None:
            if value == 1:
                started.set()
                release.wait(10)  # the first persist holds on
            written.append(value)

    first = await call(save.set(7, 1))
    async with serving(q, concurrency=4):
        await eventually(started.is_set, 10, "the first persist started")
        second = await call(save.set(7, 2))  # the first job has started: a job of its own
        assert second != first
        assert await call(save.pending(7)) == 2
        release.set()
        await eventually(lambda: len(written) == 2, 10, "both persists")
        await eventually(ended(q, second, "completed"), 10)
    assert written == [1, 2]  # the second waited for the first: the last write is the one kept
    assert await call(save.pending(7)) is None
    assert await call(kit.cache.get(7)) == 2


async def test_a_retry_persists_the_latest_value_never_an_older_one(kit: Any) -> None:
    q = kit.queue("persist-retry")
    written: list[Any] = []
    failures = {"left": 1}

    def flaky(key: Any, value: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("the database is away")
        written.append(value)

    save = behind(kit, q, flaky, debounce=0, attempts=3, backoff=Backoff.fixed(0.3))
    first = await call(save.set("k", "old"))
    async with serving(q):
        await eventually(lambda: failures["left"] == 0, 10, "the first attempt failed")
        # the first job's retry or the new value's own job, whichever runs first, persists
        # "new"; the other finds nothing pending: "old" is never persisted after "new"
        second = await call(save.set("k", "new"))
        await eventually(ended(q, first, "completed"), 10, "the retry")
        await eventually(ended(q, second, "completed"), 10)
    assert written == ["new"]  # "old" is never persisted: one job wrote "new", once
    results = [(await call(q.get_job(job))).result for job in dict.fromkeys((first, second))]
    assert results.count(True) == 1  # whichever ran first persisted it; any other found none
    assert await call(kit.cache.get("k")) == "new"


async def test_a_writer_that_keeps_failing_leaves_the_value_pending_until_a_retry(
    kit: Any,
) -> None:
    q = kit.queue("persist-fail")
    db: dict[Any, Any] = {}
    broken = {"on": True}

    def store(key: Any, value: Any) -> None:
        if broken["on"]:
            raise ValueError("constraint violated")
        db[key] = value

    save = behind(kit, q, store, debounce=0, attempts=2, backoff=Backoff.fixed(0.05))
    job_id = await call(save.set("order:9", {"total": 12}))
    async with serving(q):
        await eventually(ended(q, job_id, "failed"), 10, "failed for good")
        job = await call(q.get_job(job_id))
        assert job.attempts_made == 2
        assert "constraint violated" in job.failed_reason
        await call(kit.cache.delete("order:9"))  # evicted: the value is still there
        assert await call(kit.cache.get("order:9")) is None
        assert await call(save.get("order:9")) == {"total": 12}
        broken["on"] = False
        await call(job.retry())
        await eventually(lambda: db.get("order:9") == {"total": 12}, 10, "persisted on retry")
        await eventually(ended(q, job_id, "completed"), 10)
    assert await call(save.pending("order:9")) is None
    assert await call(kit.cache.get("order:9")) == {"total": 12}  # its job stored the entry


async def test_a_cached_function_writes_behind_and_a_miss_sees_the_pending_value(
    kit: Any,
) -> None:
    q = kit.queue("persist-fn")
    db: dict[Any, Any] = {"user:7": {"name": "old"}}
    save = behind(kit, q, db.__setitem__, debounce=0)

    if _async(kit):

        @kit.cache.cached(key="user:{uid}", ttl=30, writer=save)
        async def load(uid: int) -> Any:
            return db.get(f"user:{uid}")

    else:

        @kit.cache.cached(key="user:{uid}", ttl=30, writer=save)
        def load(uid: int) -> Any:
            return db.get(f"user:{uid}")

    assert await call(load(7)) == {"name": "old"}
    job_id = await call(load.write({"name": "Ada"}, 7))
    assert await call(load(7)) == {"name": "Ada"}
    await call(load.invalidate(7))  # the entry gone, the database not written yet
    assert await call(load(7)) == {"name": "Ada"}  # the pending value, not the database's
    assert db["user:7"] == {"name": "old"}
    async with serving(q):
        await eventually(ended(q, job_id, "completed"), 10)
    assert db["user:7"] == {"name": "Ada"}
    await call(load.invalidate(7))
    assert await call(load(7)) == {"name": "Ada"}  # from the database now


async def test_tag_invalidation_drops_the_entry_but_never_a_pending_value(kit: Any) -> None:
    q = kit.queue("persist-tags")
    db: dict[Any, Any] = {}
    save = behind(kit, q, db.__setitem__, debounce=0)
    job_id = await call(save.set("p:1", "draft", tags=["posts"]))
    assert await call(kit.cache.get("p:1")) == "draft"
    await call(kit.cache.invalidate(["posts"]))
    assert await call(kit.cache.get("p:1")) is None
    assert await call(save.get("p:1")) == "draft"
    async with serving(q):
        await eventually(lambda: db.get("p:1") == "draft", 10, "persisted")
        await eventually(ended(q, job_id, "completed"), 10)
    assert await call(kit.cache.get("p:1")) == "draft"  # stored again by its job, tagged
    await call(kit.cache.invalidate(["posts"]))
    assert await call(kit.cache.get("p:1")) is None


async def test_concurrent_writers_of_one_key_end_with_the_last_write_persisted(
    kit: Any,
) -> None:
    q = kit.queue("persist-many")
    db: dict[Any, Any] = {}
    save = behind(kit, q, db.__setitem__, debounce=0)
    writers, each = 4, 15
    async with serving(q, concurrency=8):
        if _async(kit):
            await asyncio.gather(
                *(save.set("hot", [w, n]) for w in range(writers) for n in range(each))
            )
        else:

            def write(w: int) -> None:
                for n in range(each):
                    save.set("hot", [w, n])

            threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        await call(save.set("hot", "final"))
        await eventually(lambda: db.get("hot") == "final", 15, "the last write persisted")
        await eventually(lambda: _pending_gone(save, "hot"), 15, "every pending value persisted")
        await asyncio.sleep(0.3)  # any job still running would write now
    assert db["hot"] == "final"
    assert await call(kit.cache.get("hot")) == "final"


async def _pending_gone(save: Any, key: str) -> bool:
    return await call(save.pending(key, None)) is None


# -- write-through ------------------------------------------------------------------------------
async def test_write_through_stores_after_the_writer_and_nothing_when_it_raises(
    kit: Any,
) -> None:
    db: dict[Any, Any] = {}

    def store(key: Any, value: Any) -> str:
        if value == "bad":
            raise ValueError("refused by the database")
        db[key] = value
        return f"saved {key}"

    wt = through(kit, store)
    assert isinstance(wt, AsyncWriteThrough if _async(kit) else WriteThrough)
    assert await call(wt.set("k", 1, ttl=30)) == "saved k"
    assert (db, await call(kit.cache.get("k"))) == ({"k": 1}, 1)
    with pytest.raises(ValueError, match="refused"):
        await call(wt.set("k", "bad"))
    assert (db, await call(kit.cache.get("k"))) == ({"k": 1}, 1)  # nothing stored
    loose = through(kit, store, serialize=False)
    assert await call(loose.set("j", 2)) == "saved j"
    assert await call(kit.cache.get("j")) == 2

    if _async(kit):

        @kit.cache.cached(key="item:{i}", writer=wt)
        async def item(i: int) -> Any:
            return db.get(f"item:{i}")

    else:

        @kit.cache.cached(key="item:{i}", writer=wt)
        def item(i: int) -> Any:
            return db.get(f"item:{i}")

    assert await call(item.write("box", 3)) == "saved item:3"
    assert db["item:3"] == "box"
    assert await call(kit.cache.get("item:3")) == "box"
    assert await call(item(3)) == "box"


async def test_concurrent_write_throughs_leave_the_cache_as_the_database(kit: Any) -> None:
    db: dict[str, Any] = {}
    gate = threading.Lock()

    def store(key: str, value: Any) -> None:
        time.sleep(0.002 * (value % 3))  # writers finish out of order
        with gate:
            db[key] = value

    if _async(kit):

        @kit.cache.write_through
        async def store_async(key: str, value: Any) -> None:
            await asyncio.sleep(0.002 * (value % 3))
            db[key] = value

        await asyncio.gather(*(store_async.set("shared", n) for n in range(12)))
    else:
        wt = kit.cache.write_through(store)
        threads = [threading.Thread(target=wt.set, args=("shared", n)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert await call(kit.cache.get("shared")) == db["shared"]


# -- refused before anything is written ---------------------------------------------------------
async def test_bad_writes_and_bad_declarations_are_refused_and_write_nothing(
    kit: Any, make_kit: Any
) -> None:
    q = kit.queue("persist-bad")
    db: dict[Any, Any] = {}
    save = behind(kit, q, db.__setitem__, debounce=0)
    wt = through(kit, db.__setitem__)
    with pytest.raises(TypeError, match="str or an int"):
        await call(save.set(b"bytes", 1))
    with pytest.raises(TypeError, match="str or an int"):
        await call(save.set(True, 1))
    with pytest.raises(SerializationError):
        await call(save.set("k", object()))
    with pytest.raises(SerializationError):
        await call(wt.set("k", object()))
    with pytest.raises(ValueError, match="ttl"):
        await call(save.set("k", 1, ttl=-1))
    with pytest.raises(ValueError, match="ttl"):
        await call(wt.set("k", 1, ttl=-1))
    with pytest.raises(TypeError):
        await call(save.set("k", 1, tags="one-string"))
    assert db == {}
    assert sum((await call(q.counts())).values()) == 0
    assert await call(kit.cache.get("k")) is None
    assert await call(save.pending("k")) is None

    with pytest.raises(ValueError, match="debounce"):
        behind(kit, q, db.__setitem__, debounce=-1)
    with pytest.raises(TypeError, match="queue must be"):
        behind(kit, make_kit().queue("other"), db.__setitem__)
    with pytest.raises(TypeError, match="serialize"):
        through(kit, db.__setitem__, serialize="yes")
    wrong = (lambda k, v: None) if _async(kit) else _coroutine_writer
    with pytest.raises(TypeError, match="async"):
        kit.cache.write_through(wrong)
    with pytest.raises(TypeError, match="async"):
        kit.cache.write_behind(q, name="wrong")(wrong)
    with pytest.raises(TypeError, match="writer must be made by"):
        kit.cache.cached(writer=db.__setitem__)
    plain = kit.cache.cached(key="x:{i}")(_loader(kit))
    with pytest.raises(TypeError, match="has no writer"):
        await call(plain.write(1, 2))


async def _coroutine_writer(key: Any, value: Any) -> None:
    return None


def _loader(kit: Any) -> Any:
    if _async(kit):

        async def load_async(i: int) -> int:
            return i

        return load_async

    def load(i: int) -> int:
        return i

    return load


@pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_with_redis_unreachable_write_behind_raises_and_write_through_fails_open(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    down = cls.from_url("redis://127.0.0.1:1/0", prefix="rk-down", retry_attempts=0)
    strict = cls.from_url(
        "redis://127.0.0.1:1/0", prefix="rk-down", retry_attempts=0, cache_fail_open=False
    )
    db: dict[Any, Any] = {}
    try:
        save = behind(down, down.queue("persist"), db.__setitem__, debounce=0)
        with pytest.raises(RedkitError):  # the value would be lost: the caller must know
            await call(save.set("k", 1))
        with caplog.at_level(logging.WARNING, "redkit.cache"):
            assert await call(through(down, db.__setitem__).set("t", 2)) is None
        assert db == {"t": 2}  # the writer ran; the cache failed open
        assert any("without its lock" in r.getMessage() for r in caplog.records)
        with pytest.raises(RedkitConnectionError):
            await call(through(strict, db.__setitem__).set("u", 3))
        assert db == {"t": 2}
    finally:
        for made in (down, strict):
            await call(made.aclose() if mode == "async" else made.close())
