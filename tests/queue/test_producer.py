"""Putting jobs in a queue and reading them back: add, add_bulk, deduplication, states, counts,
listings, and a lost reply of the add script."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.errors import ResponseError
from redkit.queue import STATES, Keep
from tests.conftest import call, new_prefix, proxied_url
from tests.queue.conftest import all_events, keys, of_job
from tests.servers import ReplyDroppingProxy

ZERO = dict.fromkeys(STATES, 0)


async def test_add_returns_a_job_in_the_state_its_options_give(kit: Any) -> None:
    q = kit.queue("mail")
    plain = await call(q.add("send", {"to": "a@example.com"}))
    later = await call(q.add("send", {"to": "b"}, delay=60))
    urgent = await call(q.add("send", {"to": "c"}, priority=3))
    both = await call(q.add("send", {"to": "d"}, delay=timedelta(minutes=5), priority=1))
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduled = await call(q.add("send", None, delay=at))
    past = await call(q.add("send", None, delay=datetime.now(timezone.utc) - timedelta(hours=1)))

    assert [j.state for j in (plain, later, urgent, both, scheduled, past)] == [
        "waiting",
        "delayed",
        "prioritized",
        "delayed",
        "delayed",
        "waiting",
    ]
    assert len({j.id for j in (plain, later, urgent, both, scheduled, past)}) == 6
    assert await call(q.counts()) == {**ZERO, "waiting": 2, "prioritized": 1, "delayed": 3}
    assert await call(q.jobs("waiting")) == [plain.id, past.id]
    assert await call(q.jobs("prioritized")) == [urgent.id]
    # delayed jobs are listed by due time
    assert await call(q.jobs("delayed")) == [later.id, both.id, scheduled.id]
    assert await call(q.jobs("delayed", 1, 1)) == [both.id]
    assert await call(q.jobs("completed")) == []
    with pytest.raises(ValueError, match="state must be one of"):
        await call(q.jobs("done"))

    got = await call(q.get_job(urgent.id))
    assert got == urgent
    assert (got.name, got.data, got.state) == ("send", {"to": "c"}, "prioritized")
    record = got.record
    assert record.priority == 3
    assert record.created_at is not None
    assert record.created_at.tzinfo is not None
    assert record.processed_at is None
    assert record.finished_at is None
    assert record.attempts_made == 0
    assert got.result is None
    assert got.progress is None
    assert await call(q.get_job("no-such-job")) is None
    assert "prioritized" in repr(got)
    assert urgent.id in repr(got)


async def test_the_job_add_returns_knows_its_name_and_data(kit: Any) -> None:
    q = kit.queue("handles")
    new = await call(q.add("send", {"to": "a"}, job_id="one"))
    existing = await call(q.add("send", {"to": "b"}, job_id="one"))
    # a new job's handle and an existing one's say the same
    assert (existing.name, existing.data) == ("send", {"to": "a"})
    assert (new.name, new.data) == ("send", {"to": "a"})
    bulk = await call(q.add_bulk([("resize", {"w": 1})]))
    assert (bulk[0].name, bulk[0].data) == ("resize", {"w": 1})


async def test_job_options_are_stored_with_the_job(kit: Any) -> None:
    q = kit.queue("opts", attempts=4, timeout=30)
    job = await call(q.add("x", [1, 2], backoff=2.5, keep=Keep(completed=3)))
    record = (await call(q.get_job(job.id))).record
    assert record.options["a"] == 4
    assert record.options["t"] == 30
    assert record.options["b"] == {"k": "fixed", "d": 2.5}
    # a job's own options win over the queue's defaults
    job = await call(q.add("x", None, attempts=1, timeout=5))
    assert (await call(q.get_job(job.id))).record.options == {"t": 5}


async def test_add_bulk_crosses_the_chunk_size_and_keeps_order(kit: Any) -> None:
    q = kit.queue("bulk")
    items: list[Any] = []
    for i in range(2500):
        if i % 500 == 1:
            items.append(("prio", {"i": i}, {"priority": 2}))
        elif i % 500 == 2:
            items.append({"name": "late", "data": {"i": i}, "delay": 30})
        else:
            items.append(("plain", {"i": i}))
    jobs = await call(q.add_bulk(items))

    assert len(jobs) == 2500
    assert len({j.id for j in jobs}) == 2500
    states = [j.state for j in jobs]
    assert states.count("prioritized") == 5
    assert states.count("delayed") == 5
    assert await call(q.counts()) == {**ZERO, "waiting": 2490, "prioritized": 5, "delayed": 5}
    waiting = [j.id for j in jobs if j.state == "waiting"]
    assert await call(q.jobs("waiting", 0, -1)) == waiting  # FIFO across the chunks
    last = await call(q.get_job(jobs[-1].id))
    assert (last.name, last.data) == ("plain", {"i": 2499})
    assert await call(q.add_bulk([])) == []


async def test_add_bulk_deduplicates_within_and_across_calls(kit: Any) -> None:
    q = kit.queue("bulk-dedup")
    first = await call(q.add("charge", {"amount": 1}, job_id="order-1"))
    jobs = await call(
        q.add_bulk(
            [
                ("charge", {"amount": 2}, {"job_id": "order-1"}),
                ("charge", {"amount": 3}, {"job_id": "order-2"}),
                {"name": "charge", "data": {"amount": 4}, "job_id": "order-2", "delay": 10},
            ]
        )
    )
    assert [j.id for j in jobs] == ["order-1", "order-2", "order-2"]
    assert [j.data for j in jobs[::2]] == [{"amount": 1}, {"amount": 3}]
    assert jobs[2].state == "waiting"  # the existing job, not the delayed duplicate
    assert first.state == "waiting"
    assert await call(q.counts()) == {**ZERO, "waiting": 2}


async def test_a_custom_job_id_returns_the_existing_job(kit: Any) -> None:
    q = kit.queue("dedup")
    first = await call(q.add("report", {"day": 1}, job_id="report:2024-01-01"))
    again = await call(q.add("report", {"day": 2}, job_id="report:2024-01-01", priority=1))
    assert again.id == first.id == "report:2024-01-01"
    assert again.data == {"day": 1}
    assert again.state == "waiting"
    assert await call(q.counts()) == {**ZERO, "waiting": 1}
    events = await all_events(q)
    assert of_job(events, first.id) == ["added"]


async def test_add_bulk_validates_every_job_before_sending_any(kit: Any) -> None:
    q = kit.queue("bulk-bad")
    items: list[Any] = [("ok", {"i": i}) for i in range(1500)]
    items.append(("bad", {"when": datetime.now(timezone.utc)}))
    with pytest.raises(redkit.SerializationError):
        await call(q.add_bulk(items))
    with pytest.raises(TypeError, match="unknown job option"):
        await call(q.add_bulk([("ok", 1), ("ok", 2, {"delay_seconds": 3})]))
    with pytest.raises(TypeError, match="each of jobs is"):
        await call(q.add_bulk([("ok", 1), ["ok", 2]]))
    with pytest.raises(ValueError, match="needs a 'name'"):
        await call(q.add_bulk([{"data": 1}]))
    assert await call(q.counts()) == ZERO
    assert await keys(kit) == []


# -- a lost reply ---------------------------------------------------------------------------------
@pytest.fixture
async def proxied_kit(proxy: ReplyDroppingProxy, mode: str) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    kit = cls.from_url(proxied_url(proxy.port), prefix=new_prefix())
    yield kit
    await call(kit.clear())
    await call(kit.close() if mode == "sync" else kit.aclose())


async def test_an_add_whose_reply_is_lost_is_resent_and_adds_one_job(
    proxied_kit: Any, proxy: ReplyDroppingProxy
) -> None:
    kit = proxied_kit
    q = kit.queue("lost")
    warm = await call(q.add("warm"))  # loads the script and registers the queue
    proxy.drop_next_reply()
    job = await call(q.add("send", {"n": 1}))
    assert proxy.dropped == 1
    assert kit.stats.get("retries") == 1
    assert job.state == "waiting"
    assert job.data == {"n": 1}
    assert await call(q.jobs("waiting")) == [warm.id, job.id]
    assert await call(q.counts()) == {**ZERO, "waiting": 2}
    assert of_job(await all_events(q), job.id) == ["added"]


async def test_a_bulk_add_whose_reply_is_lost_adds_each_job_once(
    proxied_kit: Any, proxy: ReplyDroppingProxy
) -> None:
    kit = proxied_kit
    q = kit.queue("lost-bulk")
    await call(q.add("warm"))
    proxy.drop_next_reply()
    # the proxy relays one read of a command at a time: keep the batch under 64 KiB
    jobs = await call(q.add_bulk([("n", {"i": i}) for i in range(200)]))
    assert proxy.dropped == 1
    assert len({j.id for j in jobs}) == 200
    assert [j.data for j in jobs[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert await call(q.counts()) == {**ZERO, "waiting": 201}
    added = [e.job_id for e in await all_events(q) if e.event == "added"]
    assert len(added) == len(set(added)) == 201


@pytest.mark.parametrize("which", ["wait", "events", "delayed"])
async def test_an_add_on_a_key_of_the_wrong_type_writes_nothing(kit: Any, which: str) -> None:
    q = kit.queue("wrong-type")
    await call(kit.client.set(getattr(q._core, which), "not mine"))
    opts = {"delay": 60} if which == "delayed" else {}
    with pytest.raises(ResponseError, match="WRONGTYPE queue_add"):
        await call(q.add("send", {"to": "a"}, job_id="one", **opts))
    assert await call(kit.client.exists(q._core.job_key("one"))) == 0
    await call(kit.client.delete(getattr(q._core, which)))
    job = await call(q.add("send", {"to": "a"}, job_id="one", **opts))  # not taken as existing
    assert job.state == ("delayed" if which == "delayed" else "waiting")
