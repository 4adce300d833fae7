"""redkit.sqlalchemy with SQLAlchemy's asyncio extension and redkit.AsyncRedkit: tags invalidated
(and awaited) before ``await session.commit()`` returns, nothing on rollback, savepoints, ORM
bulk statements, jobs sent after commit, and cached reads not stored while a transaction has
written. On SQLite (aiosqlite) and PostgreSQL (psycopg's async mode), on real Redis, the
embedded backend and the test cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("greenlet")
pytest.importorskip("aiosqlite")

from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)

import redkit
import redkit.asyncio
from redkit import sqlalchemy as rksa
from tests.conftest import IN_CI
from tests.core.test_sqlalchemy import DATABASE_URL, RULES, TAGS, Base, Order, User

ASYNC_URL = make_url(DATABASE_URL).set(drivername="postgresql+psycopg_async")
Kit = redkit.asyncio.Redkit


async def make_engine(which: str) -> AsyncEngine:
    if which == "sqlite":
        return create_async_engine("sqlite+aiosqlite://")
    engine = create_async_engine(ASYNC_URL)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # pragma: no cover - no database on this machine
        await engine.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {ASYNC_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    engine = await make_engine(request.param)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


@pytest.fixture
async def factory(engine: AsyncEngine, async_kit: Kit) -> AsyncIterator[async_sessionmaker[Any]]:
    made = async_sessionmaker(engine, expire_on_commit=False)
    binding = rksa.bind(made, async_kit, RULES)
    yield made
    binding.unbind()


async def cache_entries(kit: Kit, *tags: str) -> None:
    for tag in tags:
        await kit.cache.set(f"entry:{tag}", "cached", tags=[tag])


async def present(kit: Kit, *tags: str) -> dict[str, bool]:
    return {tag: await kit.cache.get(f"entry:{tag}") == "cached" for tag in tags}


def only_gone(*gone: str, among: tuple[str, ...] = TAGS) -> dict[str, bool]:
    return {tag: tag not in gone for tag in among}


async def test_commit_returns_once_the_tags_are_invalidated(
    factory: async_sessionmaker[Any], async_kit: Kit
) -> None:
    async with factory() as s:
        s.add_all([User(id=1, name="ada"), User(id=2, name="bob")])
        await s.commit()
    await cache_entries(async_kit, *TAGS)
    async with factory() as s:
        s.add(Order(id=10, user_id=1, total=5))
        await s.flush()
        assert all((await present(async_kit, *TAGS)).values()), "nothing before the commit"
        await s.commit()
        # read as soon as commit() returned, with a blocking client so that nothing else runs
        # on the loop before the read: the tags are gone already
        with redkit.Redkit(async_kit.settings) as mirror:
            assert {t: mirror.cache.get(f"entry:{t}") == "cached" for t in TAGS} == only_gone(
                "order:10", "user:1:orders"
            )

    await cache_entries(async_kit, *TAGS)
    async with factory() as s:
        order = await s.get(Order, 10)
        assert order is not None
        order.user_id = 2  # moved: both users' order lists change
        user = await s.get(User, 2)
        assert user is not None
        user.name = "bobby"
        await s.commit()
    assert await present(async_kit, *TAGS) == only_gone(
        "order:10", "user:1:orders", "user:2:orders", "user:2", "users"
    )

    await cache_entries(async_kit, *TAGS)
    async with factory.begin() as s:  # the begin() block commits on exit
        await s.delete(await s.get(Order, 10))
    assert await present(async_kit, *TAGS) == only_gone("order:10", "user:2:orders")


async def test_a_rollback_invalidates_nothing(
    factory: async_sessionmaker[Any], async_kit: Kit
) -> None:
    await cache_entries(async_kit, *TAGS)
    async with factory() as s:
        s.add(User(id=1, name="ada"))
        await s.flush()
        await s.rollback()
    async with factory() as s:  # closed without a commit
        s.add(User(id=2, name="bob"))
        await s.flush()

    async def fails() -> None:
        async with factory.begin() as s:  # an error in the block rolls back
            s.add(User(id=2, name="bob"))
            await s.flush()
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await fails()
    assert all((await present(async_kit, *TAGS)).values())
    async with factory() as s:  # the session goes on after its rollback; the next commit counts
        s.add(User(id=1, name="ada"))
        await s.flush()
        await s.rollback()
        s.add(User(id=2, name="bob"))
        await s.commit()
    assert await present(async_kit, *TAGS) == only_gone("user:2", "users")


async def test_savepoints_released_count_rolled_back_ones_do_not(
    factory: async_sessionmaker[Any], async_kit: Kit
) -> None:
    await cache_entries(async_kit, *TAGS, "user:3")
    async with factory() as s:
        s.add(User(id=1, name="ada"))
        inner = await s.begin_nested()
        s.add(User(id=2, name="bob"))
        await s.flush()
        await inner.rollback()  # user 2 never existed
        async with s.begin_nested():
            s.add(Order(id=10, user_id=1))
            async with s.begin_nested():  # nested twice, released twice: reaches the transaction
                s.add(User(id=3, name="cy"))
        await s.commit()
        assert await s.get(User, 2) is None
    assert await present(async_kit, *TAGS, "user:3") == only_gone(
        "user:1", "users", "order:10", "user:1:orders", "user:3", among=(*TAGS, "user:3")
    )


async def test_orm_bulk_statements_invalidate_their_table_tags(
    engine: AsyncEngine, async_kit: Kit
) -> None:
    made = async_sessionmaker(engine)
    binding = rksa.bind(made, async_kit, RULES, tables={Order: ["orders"]})
    try:
        async with made() as s:
            s.add(User(id=1, name="ada"))
            await s.flush()
            s.add(Order(id=10, user_id=1))
            await s.commit()
        await cache_entries(async_kit, "users", "user:1", "orders")
        async with made() as s:
            await s.execute(update(User).where(User.id == 1).values(name="ADA"))
            await s.commit()
        assert await present(async_kit, "users", "user:1", "orders") == {
            "users": False,
            "user:1": True,
            "orders": True,
        }
        async with made() as s:
            await s.execute(delete(Order).where(Order.total == 0))
            await s.rollback()
        assert await present(async_kit, "orders") == {"orders": True}
        async with made() as s:
            await s.execute(delete(Order).where(Order.total == 0))
            await s.commit()
        assert await present(async_kit, "orders") == {"orders": False}
    finally:
        binding.unbind()


async def test_jobs_are_sent_after_commit_only(engine: AsyncEngine, async_kit: Kit) -> None:
    q = async_kit.queue("after-commit")

    @q.task(name="welcome")
    async def welcome(user_id: int) -> None:
        pass

    made = async_scoped_session(async_sessionmaker(engine), scopefunc=asyncio.current_task)
    binding = rksa.bind(made, async_kit, RULES)
    try:
        job_id = rksa.enqueue_after_commit(made, welcome, 1)  # before the session began
        assert isinstance(job_id, str)
        made.add(User(id=1, name="ada"))
        await made.flush()
        assert await q.get_job(job_id) is None
        await made.commit()
        job = await q.get_job(job_id)
        assert job is not None
        assert (job.name, job.data) == ("welcome", {"args": [1], "kwargs": {}})

        dropped = rksa.enqueue_after_commit(made, welcome, 2)
        made.add(User(id=2, name="bob"))
        await made.rollback()
        await made.commit()  # a later commit does not send what the rollback dropped
        assert await q.get_job(dropped) is None

        outer = made()
        sp = await outer.begin_nested()
        in_savepoint = rksa.enqueue_after_commit(outer, welcome, 3)
        await sp.rollback()
        kept = rksa.enqueue_after_commit(outer, welcome, 4)
        await outer.commit()
        assert await q.get_job(in_savepoint) is None
        assert await q.get_job(kept) is not None
        assert (await q.counts())["waiting"] == 2

        sync_task = redkit.Redkit.from_url("memory://", prefix="p").queue("q").task(name="s")
        with pytest.raises(TypeError, match="async queue's task"):
            rksa.enqueue_after_commit(made, sync_task(lambda: None))
        with pytest.raises(TypeError, match="redkit task"):
            rksa.enqueue_after_commit(made, lambda: None)
    finally:
        await made.remove()
        binding.unbind()


async def test_engine_session_and_class_bindings_cover_their_sessions_only(
    async_kit: Kit,
) -> None:
    first, second = await make_engine("sqlite"), await make_engine("sqlite")
    try:
        for e in (first, second):
            async with e.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        binding = rksa.bind(first, async_kit, RULES)
        await cache_entries(async_kit, "user:1", "user:2")
        async with AsyncSession(second) as s:
            s.add(User(id=2, name="bob"))
            await s.commit()
            with pytest.raises(RuntimeError, match="not bound"):
                rksa.enqueue_after_commit(s, async_kit.queue("q").task(name="t")(_noop))
        async with AsyncSession(first) as s:
            s.add(User(id=1, name="ada"))
            await s.commit()
        assert await present(async_kit, "user:1", "user:2") == {"user:1": False, "user:2": True}
        binding.unbind()

        class Mine(AsyncSession):
            pass

        for target in ("instance", "class"):
            await cache_entries(async_kit, "user:3", "user:4")
            session = Mine(second) if target == "instance" else AsyncSession(second)
            other = AsyncSession(second) if target == "instance" else Mine(second)
            bound = rksa.bind(session if target == "instance" else Mine, async_kit, RULES)
            try:
                async with session as s, other as o:
                    s.add(User(id=3, name="cy"))
                    o.add(User(id=4, name="di"))
                    await s.commit()
                    await o.commit()
                    await s.execute(delete(User).where(User.id.in_([3, 4])))
                    await s.commit()
            finally:
                bound.unbind()
            # the bound one is the Mine session: the instance itself, or of the class
            expected = {"user:3": False, "user:4": True}
            if target == "class":
                expected = {"user:3": True, "user:4": False}
            assert await present(async_kit, "user:3", "user:4") == expected
    finally:
        await first.dispose()
        await second.dispose()


async def _noop() -> None:
    pass


async def test_clients_of_the_wrong_kind_are_refused(engine: AsyncEngine, async_kit: Kit) -> None:
    from sqlalchemy.orm import sessionmaker

    sync_kit = redkit.Redkit.from_url("memory://refused", prefix="p")
    try:
        for target in (
            async_sessionmaker(engine),
            engine,
            AsyncSession(engine),
            AsyncSession,
            async_scoped_session(async_sessionmaker(engine), scopefunc=asyncio.current_task),
        ):
            with pytest.raises(TypeError, match="would block the event loop"):
                rksa.bind(target, sync_kit, RULES)
        with pytest.raises(TypeError, match=r"a sync Session binds to a redkit\.Redkit"):
            rksa.bind(sessionmaker(engine.sync_engine), async_kit, RULES)
        with pytest.raises(TypeError, match="AsyncRedkit"):
            rksa.bind(engine, object(), RULES)
        # a sync binding of every Session leaves AsyncSessions to async bindings
        from sqlalchemy.orm import Session

        broad = rksa.bind(Session, sync_kit, RULES)
        try:
            sync_kit.cache.set("entry", "cached", tags=["user:5"])
            async with AsyncSession(engine) as s:
                s.add(User(id=5, name="ed"))
                await s.commit()
            assert sync_kit.cache.get("entry") == "cached"
        finally:
            broad.unbind()
    finally:
        sync_kit.close()


async def test_a_transaction_that_wrote_does_not_fill_the_cache(
    factory: async_sessionmaker[Any], async_kit: Kit
) -> None:
    loads: list[int] = []

    @async_kit.cache.cached(ttl=60, key="name:{user_id}", tags=["user:{user_id}"])
    async def name_of(session: AsyncSession, user_id: int) -> str | None:
        loads.append(user_id)
        user = await session.get(User, user_id, populate_existing=True)
        return None if user is None else user.name

    @async_kit.cache.cached(ttl=60, key="count", tags=["stats"])
    async def count(session: AsyncSession) -> int:
        loads.append(0)
        return len((await session.scalars(select(User))).all())

    async with factory() as s:
        s.add(User(id=1, name="ada"))
        await s.commit()
        assert await name_of(s, 1) == "ada"  # filled: no write pending
    assert await async_kit.cache.get("name:1") == "ada"

    async def rename(s: AsyncSession, name: str) -> None:
        user = await s.get(User, 1)
        assert user is not None
        user.name = name
        await s.flush()

    async with factory() as s:
        await rename(s, "ada lovelace")
        # its own write: read past the cache, and nothing stored
        assert await name_of(s, 1) == "ada lovelace"
        assert await async_kit.cache.get("name:1") == "ada"
        # another tag: a miss loads without storing (it may read the uncommitted row)
        s.add(User(id=2, name="bob"))
        await s.flush()
        assert await count(s) == 2
        assert await async_kit.cache.get("count") is None
        await s.rollback()
    assert await async_kit.cache.get("name:1") == "ada"
    async with factory() as s:
        assert await name_of(s, 1) == "ada"
        assert await count(s) == 1
    assert await async_kit.cache.get("count") == 1

    async with factory() as s:
        await rename(s, "ada byron")
        assert await name_of(s, 1) == "ada byron"
        await s.commit()
    assert await async_kit.cache.get("name:1") is None  # invalidated by the commit
    async with factory() as s:
        assert await name_of(s, 1) == "ada byron"
    assert await async_kit.cache.get("name:1") == "ada byron"
