"""redkit.sqlalchemy with AsyncSession when things go wrong or crowd: an unreachable Redis after
the commit (the invalidation is logged and the commit stands; a job not sent is raised), a
commit cancelled while it invalidates (the invalidation still ends), and many sessions of
many tasks on one event loop (each task's own uncommitted writes, each commit its own tags)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import pytest

pytest.importorskip("greenlet")
pytest.importorskip("aiosqlite")

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

import redkit
import redkit.asyncio
from redkit import sqlalchemy as rksa
from redkit.cache import uncommitted_scope
from tests.conftest import new_prefix
from tests.core.test_sqlalchemy import RULES, Base, User
from tests.core.test_sqlalchemy_async import cache_entries, make_engine, present

Kit = redkit.asyncio.Redkit
DEADLINE = 10.0


async def _tables(which: str) -> Any:
    engine = await make_engine(which)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return engine


async def _drop(engine: Any) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


async def _users(made: async_sessionmaker[Any]) -> int:
    async with made() as s:
        return int(await s.scalar(select(func.count()).select_from(User)) or 0)


async def test_redis_unreachable_after_the_commit(caplog: pytest.LogCaptureFixture) -> None:
    engine = await _tables("sqlite")
    down = Kit.from_url("redis://127.0.0.1:1", prefix=new_prefix())  # nothing listens there
    made = async_sessionmaker(engine)
    binding = rksa.bind(made, down, RULES)
    task = down.queue("lost").task(name="welcome")(_welcome)
    try:
        with caplog.at_level(logging.ERROR, logger="redkit.sqlalchemy"):
            async with made() as s:
                s.add(User(id=1, name="ada"))
                await s.commit()  # the cache fails open: the commit returns
        assert await _users(made) == 1
        assert any("invalidating ['user:1', 'users']" in r.getMessage() for r in caplog.records)

        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="redkit.sqlalchemy"):
            async with made() as s:
                s.add(User(id=2, name="bob"))
                job_id = rksa.enqueue_after_commit(s, task, 2)
                with pytest.raises(redkit.RedkitConnectionError):
                    await s.commit()  # committed, but the job is lost: the caller learns it
        assert await _users(made) == 2  # the rows are committed all the same
        assert any(job_id in r.getMessage() for r in caplog.records)
    finally:
        binding.unbind()
        await down.aclose()
        await _drop(engine)


async def _welcome(user_id: int) -> None:
    pass


class _HeldCache:
    """An async cache whose invalidation waits for ``release`` before reaching Redis."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def invalidate(self, tags: Iterable[str]) -> int:
        self.started.set()
        await self.release.wait()
        return await self.kit.cache.invalidate(tags)


class _HeldKit:
    def __init__(self, kit: Kit) -> None:
        self.cache = _HeldCache(kit)


async def test_a_commit_cancelled_while_invalidating_still_invalidates(async_kit: Kit) -> None:
    engine = await _tables("sqlite")
    held = _HeldKit(async_kit)
    made = async_sessionmaker(engine)
    binding = rksa.bind(made, held, RULES)
    try:
        await cache_entries(async_kit, "user:1")

        async def write() -> None:
            async with made() as s:
                s.add(User(id=1, name="ada"))
                await s.commit()

        writer = asyncio.create_task(write())
        await asyncio.wait_for(held.cache.started.wait(), DEADLINE)
        assert not writer.done()  # the commit waits for its invalidation
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        held.cache.release.set()
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while (await present(async_kit, "user:1"))["user:1"]:
            assert asyncio.get_running_loop().time() < deadline, "never invalidated"
            await asyncio.sleep(0.01)
        assert await _users(made) == 1
    finally:
        binding.unbind()
        await _drop(engine)


async def test_many_sessions_on_one_loop(async_kit: Kit) -> None:
    # a transaction of this task that already ended (a sync session, say): the scope it leaves
    # behind is inherited by the tasks below, which must still each track their own writes
    earlier = uncommitted_scope()
    earlier.record("earlier", ["users"])
    earlier.settle("earlier")
    engine = await _tables("postgresql")
    made = async_sessionmaker(engine)
    binding = rksa.bind(made, async_kit, RULES)
    writers = 10  # within the engine's pool (5 + 10 overflow), with a reader beside them
    ids = range(1, writers + 1)
    flushed = [asyncio.Event() for _ in ids]
    go = asyncio.Event()

    @async_kit.cache.cached(ttl=60, key="motd", tags=["motd"])
    async def motd() -> str:
        return "hello"

    async def writer(i: int) -> None:
        async with made() as s:
            s.add(User(id=i, name=f"u{i}"))
            await s.flush()
            flushed[i - 1].set()
            await go.wait()
            if i % 2:
                await s.rollback()
            else:
                await s.commit()

    async def reader() -> None:
        await asyncio.gather(*(e.wait() for e in flushed))
        # every writer has uncommitted writes, in tasks of their own: this task still fills
        assert await motd() == "hello"
        assert await async_kit.cache.get("motd") == "hello"
        go.set()

    try:
        tags = [f"user:{i}" for i in ids]
        await cache_entries(async_kit, *tags)
        async with asyncio.timeout(DEADLINE * 3), asyncio.TaskGroup() as group:
            # one failing task cancels the others: no session is left holding its locks
            for work in (reader(), *(writer(i) for i in ids)):
                group.create_task(work)
        assert await present(async_kit, *tags) == {f"user:{i}": bool(i % 2) for i in ids}
        assert await _users(made) == writers // 2
    finally:
        binding.unbind()
        await _drop(engine)
