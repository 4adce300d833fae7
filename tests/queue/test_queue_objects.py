"""``kit.queue(name, ...)`` gives one object per name per client, whatever the order of the calls,
and ``queue.events(since="$")`` starts from Redis' newest event in both APIs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from redkit.queue import AsyncQueue, Backoff, Keep
from tests.conftest import call
from tests.queue.conftest import serving


async def test_a_queue_made_with_options_is_the_one_every_later_call_gets(kit: Any) -> None:
    first = kit.queue("mail", attempts=3, keep=Keep(completed=5))
    assert kit.queue("mail") is first
    assert kit.queue("mail", attempts=3, keep=Keep(completed=5)) is first

    @first.task(name="send")
    def send(to: str) -> str:
        return f"sent to {to}"

    # the worker of the object another call gave knows the task registered on the first
    again = kit.queue("mail", attempts=3)  # a subset of the same options: the same queue
    assert again is first
    job = await call(send.enqueue("ada"))
    async with serving(kit.queue("mail", keep=Keep(completed=5))):
        assert await call(job.wait(10)) == "sent to ada"


async def test_options_that_differ_from_the_first_call_raise_and_change_nothing(
    kit: Any,
) -> None:
    plain = kit.queue("reports")

    @plain.task(name="build")
    def build() -> str:
        return "built"

    for options in (
        {"attempts": 3},
        {"dead_letter": "reports-dead"},
        {"backoff": Backoff.fixed(1)},
        {"keep": False},
    ):
        with pytest.raises(ValueError, match="'reports' was made on this client with no opt"):
            kit.queue("reports", **options)
    assert kit.queue("reports") is plain
    assert plain.dead_letter is None

    tuned = kit.queue("exports", attempts=2)
    with pytest.raises(ValueError, match=r"with attempts=2; asking for it again with attempts=5"):
        kit.queue("exports", attempts=5)
    assert kit.queue("exports") is tuned
    job = await call(build.enqueue())
    async with serving(plain):
        assert await call(job.wait(10)) == "built"


async def test_two_clients_have_their_own_queue_objects(make_kit: Any) -> None:
    a, b = make_kit(), make_kit()
    assert a.queue("q", attempts=2) is not b.queue("q", attempts=4)


async def test_events_since_now_start_after_redis_newest_event_whatever_the_host_clock(
    kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = kit.queue("watched")
    old = await call(q.add("before", None))
    # a host clock an hour ahead of Redis' (skewed, or a Redis host behind): starting from the
    # host's clock would skip the next hour of events; an hour behind, replay the last hour's
    # (the embedded backend's clock is this host's: it has no other clock to disagree with)
    real = time.time
    for skew in (0.0,) if kit.settings.scheme == "memory" else (3600.0, -3600.0):
        monkeypatch.setattr(time, "time", lambda skew=skew: real() + skew)
        await asyncio.sleep(0.005)  # "since now" holds to the millisecond
        events = q.events(since="$", timeout=1)
        if isinstance(q, AsyncQueue):
            seen: list[Any] = []

            async def consume(events: Any = events, seen: list[Any] = seen) -> None:
                async for event in events:
                    seen.append(event)
                    if event.event == "added":
                        break

            reader = asyncio.create_task(consume())
            await asyncio.sleep(0.3)  # the iteration has started and read the newest id
            new = await q.add("after", None)
            await asyncio.wait_for(reader, 10)
        else:
            new = q.add("after", None)
            seen = []
            for event in events:
                seen.append(event)
                if event.event == "added":
                    break
        monkeypatch.undo()
        assert [(e.event, e.job_id) for e in seen] == [("added", new.id)], skew
    assert old.id != new.id
