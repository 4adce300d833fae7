"""The outbox: ``enqueue_after_commit`` on a binding with ``outbox=`` writes the job to a table in
the session's transaction, sends it after the commit and deletes the row; a process that dies
between the commit and the send leaves the row, and the relay sends it, once. On SQLite and
PostgreSQL, with real Redis, sync and async."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("aiosqlite")

from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import redkit
import redkit.asyncio
from redkit import sqlalchemy as rksa
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.core.test_sqlalchemy import _engine
from tests.core.test_sqlalchemy_async import make_engine

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

SUFFIX = os.environ.get("RK_OUTBOX_SUFFIX") or uuid.uuid4().hex[:8]  # the killed process's too


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = f"rk_notes_{SUFFIX}"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(50))


OUTBOX = rksa.Outbox(Base.metadata, f"rk_outbox_{SUFFIX}")


def rows(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(OUTBOX.table.c.id).order_by(OUTBOX.table.c.id))]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = (
        create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        if request.param == "sqlite"
        else _engine("postgresql")
    )
    Base.metadata.create_all(made)
    yield made
    Base.metadata.drop_all(made)
    made.dispose()


@pytest.fixture
def kit() -> Iterator[redkit.Redkit]:
    k = redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    yield k
    k.clear()
    k.close()


def _setup(engine: Any, kit: redkit.Redkit) -> tuple[sessionmaker[Session], Any, Any]:
    made = sessionmaker(engine)
    q = kit.queue("mail")

    @q.task(name="send")
    def send(to: str) -> str:
        return f"sent to {to}"

    binding = rksa.bind(made, kit, outbox=OUTBOX)
    return made, send, binding


def test_a_committed_job_is_written_sent_then_its_row_deleted(engine: Any, kit: Any) -> None:
    made, send, binding = _setup(engine, kit)
    with made() as s:
        s.add(Note(id=1, body="hello"))
        job_id = rksa.enqueue_after_commit(s, send, "ada@example.com")
        s.flush()
        assert rows(engine) == []  # another connection: not committed yet
        assert kit.queue("mail").get_job(job_id) is None
        s.commit()
    job = kit.queue("mail").get_job(job_id)
    assert job is not None
    assert job.state == "waiting"
    assert job.data == {"args": ["ada@example.com"], "kwargs": {}}
    assert rows(engine) == []  # sent: its row is gone
    worker = kit.queue("mail").worker().start()
    assert job.wait(10) == "sent to ada@example.com"
    worker.stop()
    binding.unbind()


def test_rollback_and_a_rolled_back_savepoint_write_nothing(engine: Any, kit: Any) -> None:
    made, send, binding = _setup(engine, kit)
    with made() as s:
        dropped = rksa.enqueue_after_commit(s, send, "a")
        s.rollback()
    with made() as s:
        kept = rksa.enqueue_after_commit(s, send, "b")
        with s.begin_nested() as sp:
            inner = rksa.enqueue_after_commit(s, send, "c")
            sp.rollback()
        with s.begin_nested():
            released = rksa.enqueue_after_commit(s, send, "d")
        s.commit()
    q = kit.queue("mail")
    assert q.get_job(dropped) is None
    assert q.get_job(inner) is None
    assert {q.get_job(kept).data["args"][0], q.get_job(released).data["args"][0]} == {"b", "d"}
    assert rows(engine) == []
    binding.unbind()


def test_bad_arguments_raise_before_anything_is_written(engine: Any, kit: Any) -> None:
    made, send, binding = _setup(engine, kit)
    with made() as s:
        with pytest.raises(redkit.SerializationError):
            rksa.enqueue_after_commit(s, send, object())
        s.commit()
    assert rows(engine) == []
    assert kit.queue("mail").counts()["waiting"] == 0
    with pytest.raises(TypeError, match="Outbox"):
        rksa.bind(sessionmaker(engine), kit, outbox="redkit_outbox")  # type: ignore[arg-type]
    binding.unbind()


def _down(kit: Any) -> tuple[Any, Any]:
    """A kit of ``kit``'s kind and prefix on a closed port (every Redis call fails) and its task
    ``send`` on queue ``mail``."""
    down = type(kit).from_url("redis://127.0.0.1:1/0", prefix=kit.settings.prefix, retry_attempts=0)
    q = down.queue("mail")
    if isinstance(kit, redkit.Redkit):

        @q.task(name="send")
        def send(to: str) -> str:
            return to

        return down, send

    @q.task(name="send")
    async def send_async(to: str) -> str:
        return to

    return down, send_async


def test_with_redis_down_at_commit_the_row_waits_for_the_relay(engine: Any, kit: Any) -> None:
    made = sessionmaker(engine)
    down, send = _down(kit)
    binding = rksa.bind(made, down, outbox=OUTBOX)
    with made() as s:
        s.add(Note(id=2, body="kept"))
        job_id = rksa.enqueue_after_commit(s, send, "bob")
        s.commit()  # the database commit stands; the send failed and was logged
    with made() as s:
        assert s.get(Note, 2) is not None
    assert rows(engine) == [job_id]
    binding.unbind()
    down.close()
    assert OUTBOX.relay(engine, kit) == 1
    assert rows(engine) == []
    q = kit.queue("mail")
    assert q.get_job(job_id).data == {"args": ["bob"], "kwargs": {}}
    assert OUTBOX.relay(engine, kit) == 0


def test_a_row_relayed_twice_is_one_job_even_after_its_job_is_gone(
    engine: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = kit.queue("mail", keep=False)  # a completed job leaves nothing behind
    ran: list[str] = []

    @q.task(name="send")
    def send(to: str) -> None:
        ran.append(to)

    made = sessionmaker(engine)
    # the commit's own send does not happen: as if the process died right after the COMMIT
    monkeypatch.setattr("redkit.sqlalchemy._binding._move", lambda *a: None)
    binding = rksa.bind(made, kit, outbox=OUTBOX)
    with made() as s:
        job_id = rksa.enqueue_after_commit(s, send, "carol")
        s.commit()
    binding.unbind()
    real_delete = OUTBOX.delete

    def died(ids: Any) -> Any:
        raise RuntimeError("died")

    monkeypatch.setattr(OUTBOX, "delete", died)
    with pytest.raises(RuntimeError, match="died"):
        OUTBOX.relay(engine, kit)  # added, then died before deleting the row
    monkeypatch.setattr(OUTBOX, "delete", real_delete)
    assert rows(engine) == [job_id]
    job = q.get_job(job_id)  # before any worker: kept=False deletes it as it completes
    assert job is not None
    worker = q.worker().start()
    job.wait(10)
    assert q.get_job(job_id) is None  # deleted as it completed
    assert OUTBOX.relay(engine, kit) == 1  # the row again: its dedup id holds, nothing is added
    time.sleep(0.3)
    worker.stop()
    assert ran == ["carol"]
    assert q.counts()["waiting"] == 0
    assert rows(engine) == []


def test_a_relay_thread_moves_rows_until_stopped(
    engine: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, send, binding = _setup(engine, kit)
    monkeypatch.setattr("redkit.sqlalchemy._binding._move", lambda *a: None)
    with made() as s:
        ids = [rksa.enqueue_after_commit(s, send, str(i)) for i in range(5)]
        s.commit()
    assert sorted(rows(engine)) == sorted(ids)
    relay = OUTBOX.start(engine, kit, interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while rows(engine) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        relay.stop()
    assert rows(engine) == []
    assert relay.moved == 5
    assert kit.queue("mail").counts()["waiting"] == 5
    binding.unbind()


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import sessionmaker
    import redkit
    from redkit import sqlalchemy as rksa
    from tests.core.test_sqlalchemy_outbox import OUTBOX, Note

    engine = create_engine(sys.argv[1])
    kit = redkit.Redkit.from_url(sys.argv[2], prefix=sys.argv[3])
    q = kit.queue("mail")

    @q.task(name="send")
    def send(to): return to

    made = sessionmaker(engine)
    rksa.bind(made, kit, outbox=OUTBOX)

    @event.listens_for(made, "after_commit")
    def die(session):
        os.kill(os.getpid(), signal.SIGKILL)  # the COMMIT is done; nothing was sent

    with made() as s:
        s.add(Note(id=7, body="paid"))
        print(rksa.enqueue_after_commit(s, send, "dave"), flush=True)
        s.commit()
    """
)


def test_a_process_killed_between_commit_and_send_loses_nothing(engine: Any, kit: Any) -> None:
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, url, REDIS_URL, kit.settings.prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "RK_OUTBOX_SUFFIX": SUFFIX,
        },
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    job_id = proc.stdout.strip()
    with sessionmaker(engine)() as s:
        assert s.get(Note, 7) is not None  # committed
    assert rows(engine) == [job_id]
    q = kit.queue("mail")
    assert q.get_job(job_id) is None  # never reached Redis
    assert OUTBOX.relay(engine, kit) == 1
    assert OUTBOX.relay(engine, kit) == 0

    @q.task(name="send")
    def send(to: str) -> str:
        return to

    job = q.get_job(job_id)
    assert job is not None
    worker = q.worker().start()
    assert job.wait(10) == "dave"
    worker.stop()
    assert q.counts()["completed"] == 1


# -- asyncio ------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
async def aengine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = (
        create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
        if request.param == "sqlite"
        else await make_engine("postgresql")
    )
    async with made.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield made
    async with made.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await made.dispose()


async def arows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [r[0] for r in await conn.execute(select(OUTBOX.table.c.id))]


async def test_async_sessions_write_send_and_relay(aengine: AsyncEngine) -> None:
    kit = redkit.asyncio.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    q = kit.queue("mail")

    @q.task(name="send")
    async def send(to: str) -> str:
        return f"sent to {to}"

    made = async_sessionmaker(aengine)
    binding = rksa.bind(made, kit, outbox=OUTBOX)
    async with made() as s:
        s.add(Note(id=3, body="async"))
        job_id = rksa.enqueue_after_commit(s, send, "erin")  # not awaited: written by the flush
        async with s.begin_nested() as sp:
            rolled = rksa.enqueue_after_commit(s, send, "nobody")
            await sp.rollback()
        await s.commit()
    assert await arows(aengine) == []
    assert (await q.get_job(job_id)).state == "waiting"
    assert await q.get_job(rolled) is None
    binding.unbind()

    down, send_down = _down(kit)
    binding = rksa.bind(made, down, outbox=OUTBOX)
    async with made() as s:
        left = rksa.enqueue_after_commit(s, send_down, "frank")
        await s.commit()
    binding.unbind()
    await down.aclose()
    assert await arows(aengine) == [left]
    assert await OUTBOX.relay_async(aengine, kit) == 1
    assert await arows(aengine) == []
    assert (await q.get_job(left)).state == "waiting"
    worker = q.worker()
    serving = asyncio.create_task(worker.serve())
    assert await (await q.get_job(job_id)).wait(10) == "sent to erin"
    worker.stop()
    await serving
    await kit.clear()
    await kit.aclose()


async def test_serve_relays_until_cancelled(aengine: AsyncEngine) -> None:
    kit = redkit.asyncio.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    q = kit.queue("mail")

    @q.task(name="send")
    async def send(to: str) -> str:
        return to

    made = async_sessionmaker(aengine)
    down, send_down = _down(kit)
    binding = rksa.bind(made, down, outbox=OUTBOX)
    async with made() as s:
        ids = [rksa.enqueue_after_commit(s, send_down, str(i)) for i in range(3)]
        await s.commit()
    binding.unbind()
    await down.aclose()
    task = asyncio.create_task(OUTBOX.serve(aengine, kit, interval=0.05))
    for _ in range(200):
        if not await arows(aengine):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await arows(aengine) == []
    assert sorted(await q.jobs("waiting")) == sorted(ids)
    await kit.clear()
    await kit.aclose()
