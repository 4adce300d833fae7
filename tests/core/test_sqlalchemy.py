"""redkit.sqlalchemy: cache tags invalidated after the outermost commit, nothing on rollback,
savepoints, ORM bulk statements, and jobs sent only once their transaction commits. On SQLite
and on PostgreSQL (``DATABASE_URL``, default the local ``test`` database), with real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import ForeignKey, Integer, String, create_engine, delete, text, update
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    scoped_session,
    sessionmaker,
)

import redkit
from redkit import sqlalchemy as rksa
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = f"rk_users_{uuid.uuid4().hex[:8]}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Order(Base):
    __tablename__ = f"rk_orders_{uuid.uuid4().hex[:8]}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(f"{User.__tablename__}.id"))
    total: Mapped[int] = mapped_column(Integer, default=0)


RULES: dict[type, Any] = {
    User: ["user:{id}", "users"],
    Order: lambda o: [f"order:{o.id}", f"user:{o.user_id}:orders"],
}


def _engine(which: str) -> Any:
    if which == "sqlite":
        return create_engine("sqlite://")
    pytest.importorskip("psycopg")
    engine = create_engine(DATABASE_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # pragma: no cover - no database on this machine
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    engine = _engine(request.param)
    Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["redis", "memory"])
def kit(request: pytest.FixtureRequest) -> Iterator[redkit.Redkit]:
    if request.param == "redis" and not REAL_REDIS:  # pragma: no cover
        pytest.skip(f"no Redis at {REDIS_URL}")
    url = REDIS_URL if request.param == "redis" else "memory://sqlalchemy"
    k = redkit.Redkit.from_url(url, prefix=new_prefix())
    yield k
    k.clear()
    k.close()


@pytest.fixture
def factory(engine: Any, kit: redkit.Redkit) -> Iterator[sessionmaker[Session]]:
    made = sessionmaker(engine)
    binding = rksa.bind(made, kit, RULES)
    yield made
    binding.unbind()


def cache_entries(kit: redkit.Redkit, *tags: str) -> dict[str, str]:
    """One cache entry per tag (``entry:<tag>``), set now."""
    for tag in tags:
        kit.cache.set(f"entry:{tag}", "cached", tags=[tag])
    return {tag: f"entry:{tag}" for tag in tags}


def present(kit: redkit.Redkit, *tags: str) -> dict[str, bool]:
    return {tag: kit.cache.get(f"entry:{tag}") == "cached" for tag in tags}


TAGS = ("user:1", "user:2", "users", "order:10", "user:1:orders", "user:2:orders", "other")


def test_commit_invalidates_the_tags_of_what_was_written(
    factory: sessionmaker[Session], kit: redkit.Redkit
) -> None:
    with factory() as s:
        s.add(User(id=1, name="ada"))
        s.add(User(id=2, name="bob"))
        s.commit()
    cache_entries(kit, *TAGS)
    with factory() as s:
        s.add(Order(id=10, user_id=1, total=5))
        s.flush()
        assert all(present(kit, *TAGS).values()), "nothing is invalidated before the commit"
        s.commit()
    assert present(kit, *TAGS) == {
        **dict.fromkeys(TAGS, True),
        "order:10": False,
        "user:1:orders": False,
    }

    cache_entries(kit, *TAGS)
    with factory() as s:
        order = s.get(Order, 10)
        assert order is not None
        order.user_id = 2  # moved: both users' order lists change
        user = s.get(User, 2)
        assert user is not None
        user.name = "bobby"
        s.commit()
    assert present(kit, *TAGS) == {
        **dict.fromkeys(TAGS, True),
        "order:10": False,
        "user:1:orders": False,
        "user:2:orders": False,
        "user:2": False,
        "users": False,
    }

    cache_entries(kit, *TAGS)
    with factory() as s:
        order = s.get(Order, 10)
        s.delete(order)
        s.commit()
    assert present(kit, *TAGS) == {
        **dict.fromkeys(TAGS, True),
        "order:10": False,
        "user:2:orders": False,
    }


def test_a_rollback_invalidates_nothing(factory: sessionmaker[Session], kit: redkit.Redkit) -> None:
    cache_entries(kit, *TAGS)
    with factory() as s:
        s.add(User(id=1, name="ada"))
        s.flush()
        s.rollback()
    with factory() as s:  # closed without a commit
        s.add(User(id=2, name="bob"))
        s.flush()
    assert all(present(kit, *TAGS).values())
    with factory() as s:  # the session goes on after its rollback; the next commit counts
        s.add(User(id=2, name="bob"))
        s.commit()
    assert present(kit, "user:1", "user:2", "users") == {
        "user:1": True,
        "user:2": False,
        "users": False,
    }


def test_savepoints_released_count_rolled_back_ones_do_not(
    factory: sessionmaker[Session], kit: redkit.Redkit
) -> None:
    cache_entries(kit, *TAGS)
    with factory() as s:
        s.add(User(id=1, name="ada"))
        inner = s.begin_nested()
        s.add(User(id=2, name="bob"))
        s.flush()
        inner.rollback()  # user 2 never existed
        with s.begin_nested():
            s.add(Order(id=10, user_id=1))
            with s.begin_nested():  # nested twice, released twice: reaches the transaction
                s.add(User(id=3, name="cy"))
        s.commit()
        assert s.get(User, 2) is None
    assert present(kit, *TAGS, "user:3") == {
        **dict.fromkeys(TAGS, True),
        "user:1": False,
        "users": False,
        "order:10": False,
        "user:1:orders": False,
        "user:3": False,
    }


def test_orm_bulk_statements_invalidate_their_table_tags(engine: Any, kit: redkit.Redkit) -> None:
    made = sessionmaker(engine)
    binding = rksa.bind(made, kit, RULES, tables={Order: ["orders"]})
    try:
        with made() as s:
            s.add(User(id=1, name="ada"))
            s.flush()
            s.add(Order(id=10, user_id=1))
            s.commit()
        cache_entries(kit, *TAGS, "orders")
        with made() as s:
            s.execute(update(User).where(User.id == 1).values(name="ADA"))
            s.commit()
        # a rule's tags without a field are its table's: "users"; rows are not known
        assert present(kit, "users", "user:1", "orders") == {
            "users": False,
            "user:1": True,
            "orders": True,
        }
        with made() as s:
            s.execute(delete(Order).where(Order.total == 0))
            s.rollback()
        assert present(kit, "orders") == {"orders": True}
        with made() as s:
            s.execute(delete(Order).where(Order.total == 0))
            s.commit()
        assert present(kit, "orders") == {"orders": False}
    finally:
        binding.unbind()


def test_jobs_are_sent_after_commit_only(engine: Any, kit: redkit.Redkit) -> None:
    q = kit.queue("after-commit")

    @q.task(name="welcome")
    def welcome(user_id: int) -> None:
        pass

    made = scoped_session(sessionmaker(engine))  # what Flask-SQLAlchemy's db.session is
    binding = rksa.bind(made, kit, RULES)
    try:
        job_id = rksa.enqueue_after_commit(made, welcome, 1)  # before the session began
        made.add(User(id=1, name="ada"))
        made.flush()
        assert q.get_job(job_id) is None
        made.commit()
        job = q.get_job(job_id)
        assert job is not None
        assert (job.name, job.data) == ("welcome", {"args": [1], "kwargs": {}})

        dropped = rksa.enqueue_after_commit(made, welcome, 2)
        made.add(User(id=2, name="bob"))
        made.rollback()
        made.commit()  # a later commit does not send what the rollback dropped
        assert q.get_job(dropped) is None

        outer = made()
        sp = outer.begin_nested()
        in_savepoint = rksa.enqueue_after_commit(outer, welcome, 3)
        sp.rollback()
        kept = rksa.enqueue_after_commit(outer, welcome, 4)
        outer.commit()
        assert q.get_job(in_savepoint) is None
        assert q.get_job(kept) is not None
        assert q.counts()["waiting"] == 2
    finally:
        made.remove()
        binding.unbind()


def test_an_engine_binding_covers_its_sessions_only(kit: redkit.Redkit) -> None:
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    for e in (first, second):
        Base.metadata.create_all(e)
    binding = rksa.bind(first, kit, RULES)
    try:
        cache_entries(kit, "user:1", "user:2")
        with Session(second) as s:
            s.add(User(id=2, name="bob"))
            s.commit()
            with pytest.raises(RuntimeError, match="not bound"):
                rksa.enqueue_after_commit(s, kit.queue("q").task(lambda: None))
        with Session(first) as s:
            s.add(User(id=1, name="ada"))
            s.commit()
        assert present(kit, "user:1", "user:2") == {"user:1": False, "user:2": True}
    finally:
        binding.unbind()


def test_bad_rules_are_refused_at_bind(engine: Any, kit: redkit.Redkit) -> None:
    made = sessionmaker(engine)
    with pytest.raises(TypeError, match="mapped classes"):
        rksa.bind(made, kit, {"users": ["users"]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not a string"):
        rksa.bind(made, kit, {User: "users"})
    with pytest.raises(TypeError, match=r"redkit\.Redkit"):
        rksa.bind(made, object(), RULES)


def test_a_transaction_that_wrote_does_not_fill_the_cache(
    factory: sessionmaker[Session], kit: redkit.Redkit
) -> None:
    loads: list[int] = []

    @kit.cache.cached(ttl=60, key="name:{user_id}", tags=["user:{user_id}"])
    def name_of(session: Session, user_id: int) -> str | None:
        loads.append(user_id)
        user = session.get(User, user_id)
        return None if user is None else user.name

    @kit.cache.cached(ttl=60, key="count", tags=["stats"])
    def count(session: Session) -> int:
        loads.append(0)
        return len(session.query(User).all())

    with factory() as s:
        s.add(User(id=1, name="ada"))
        s.commit()
        assert name_of(s, 1) == "ada"  # filled: no write pending
    assert kit.cache.get("name:1") == "ada"

    with factory() as s:
        user = s.get(User, 1)
        assert user is not None
        user.name = "ada lovelace"
        s.flush()
        # its own write: read past the cache, and nothing stored
        assert name_of(s, 1) == "ada lovelace"
        assert kit.cache.get("name:1") == "ada"
        # another tag: a miss loads without storing (it may read the uncommitted row)
        s.add(User(id=2, name="bob"))
        s.flush()
        assert count(s) == 2
        assert kit.cache.get("count") is None
        s.rollback()
    # rolled back: the cache holds only committed data, and fills again
    assert kit.cache.get("name:1") == "ada"
    with factory() as s:
        assert name_of(s, 1) == "ada"
        assert count(s) == 1
    assert kit.cache.get("count") == 1

    with factory() as s:
        user = s.get(User, 1)
        assert user is not None
        user.name = "ada byron"
        s.flush()
        assert name_of(s, 1) == "ada byron"
        s.commit()
    assert kit.cache.get("name:1") is None  # invalidated by the commit
    with factory() as s:
        assert name_of(s, 1) == "ada byron"
    assert kit.cache.get("name:1") == "ada byron"
