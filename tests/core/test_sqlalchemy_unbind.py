"""redkit.sqlalchemy: an unbound binding is gone (no job accepted, nothing invalidated) and no
binding keeps its client alive once it is unbound or its sessionmaker is dropped. PostgreSQL
(``DATABASE_URL``) and real Redis."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy.orm import Session, sessionmaker

import redkit
from redkit import sqlalchemy as rksa
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.core.test_sqlalchemy import RULES, Base, User, _engine

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def engine() -> Iterator[Any]:
    engine = _engine("postgresql")
    Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


def _kit() -> redkit.Redkit:
    return redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())


def test_after_unbind_jobs_are_refused_and_commits_invalidate_nothing(engine: Any) -> None:
    kit = _kit()
    try:
        made = sessionmaker(engine)
        task = kit.queue("unbound").task(name="t")(lambda: None)
        binding = rksa.bind(made, kit, RULES)
        binding.unbind()
        binding.unbind()  # a second unbind is harmless
        kit.cache.set("entry", "cached", tags=["user:1"])
        with made() as s:
            s.add(User(id=1, name="ada"))
            with pytest.raises(RuntimeError, match="not bound"):
                rksa.enqueue_after_commit(s, task)
            s.commit()
        assert kit.cache.get("entry") == "cached"
        assert kit.queue("unbound").counts()["waiting"] == 0
        # binding again works as the first time
        again = rksa.bind(made, kit, RULES)
        try:
            with made() as s:
                s.add(User(id=2, name="bob"))
                job_id = rksa.enqueue_after_commit(s, task)
                s.commit()
            assert kit.queue("unbound").get_job(job_id) is not None
        finally:
            again.unbind()
    finally:
        kit.clear()
        kit.close()


def _bound(engine: Any, unbind: bool) -> tuple[weakref.ref[redkit.Redkit], Any]:
    kit = _kit()
    made = sessionmaker(engine)
    binding = rksa.bind(made, kit, RULES)
    with made() as s:
        s.add(User(id=7, name="eve"))
        s.commit()
    s.close()
    if unbind:
        binding.unbind()
    kit.close()
    return weakref.ref(kit), made


@pytest.mark.parametrize("unbind", [True, False], ids=["unbound", "sessionmaker-dropped"])
def test_no_binding_keeps_its_client_alive(engine: Any, unbind: bool) -> None:
    refs = []
    for _ in range(3):
        ref, made = _bound(engine, unbind)
        refs.append(ref)
        if not unbind:
            del made  # the binding lives as long as its sessionmaker
        with Session(engine) as s:
            s.query(User).delete()
            s.commit()
    gc.collect()  # frees the dropped sessionmakers: SQLAlchemy then lets go of their listeners
    gc.collect()  # ... and with them the bindings and clients
    assert [r for r in refs if r() is not None] == []
