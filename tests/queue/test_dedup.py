"""Deduplication by an id of the caller's: ``dedup="id"`` holds until the job ends, ``Dedup(id,
ttl=...)`` for a time (a throttle), ``extend=True`` from the last duplicate, ``replace=True`` and
``Dedup.debounce(id, wait)`` give the waiting job the last data ("the last change within 5 s
wins", one call)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from redkit.queue import Dedup, JobFailed
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, all_events, eventually, serving

NOARGS = {"args": [], "kwargs": {}}


async def test_a_dedup_id_holds_until_its_job_ends(kit: Any) -> None:
    q = kit.queue("simple-dedup")
    done: list[Any] = []

    @q.task(name="build")
    def build(n: int) -> int:
        done.append(n)
        return n

    first = await call(build.options(dedup="report:7").enqueue(1))
    again = await call(build.options(dedup="report:7").enqueue(2))
    assert again.id == first.id
    assert again.data == {"args": [1], "kwargs": {}}  # the first job's, read back
    assert (await call(q.counts()))["waiting"] == 1
    other = await call(build.options(dedup="report:8").enqueue(3))
    assert other.id != first.id
    async with serving(q):
        await call(first.wait(10))
        await call(other.wait(10))
    later = await call(build.options(dedup="report:7").enqueue(4))  # it ended: free again
    assert later.id != first.id
    assert sorted(done) == [1, 3]
    events = await all_events(q)
    dups = [e for e in events if e.event == "deduplicated"]
    assert [(e.job_id, e.fields["dedup"], e.fields["replaced"]) for e in dups] == [
        (first.id, "report:7", "0")
    ]


@REDIS_AND_MEMORY
async def test_a_job_that_fails_for_good_or_is_removed_frees_its_dedup_id(kit: Any) -> None:
    q = kit.queue("free-dedup")

    @q.task(name="boom")
    def boom() -> None:
        raise RuntimeError("no")

    failing = await call(q.add("boom", NOARGS, dedup="d"))
    async with serving(q):
        with pytest.raises(JobFailed):
            await call(failing.wait(10))
    second = await call(q.add("boom", NOARGS, dedup="d", delay=60))
    assert second.id != failing.id
    assert await call(second.remove()) is True
    third = await call(q.add("boom", NOARGS, dedup="d", delay=60))
    assert third.id not in (failing.id, second.id)
    assert await call(q.drain(delayed=True)) == 1
    fourth = await call(q.add("boom", NOARGS, dedup="d", delay=60))
    assert fourth.id not in (failing.id, second.id, third.id)


async def test_a_ttl_throttles_whatever_the_job_does(kit: Any) -> None:
    q = kit.queue("throttle", keep=False)  # a job deleted as it completes still throttles

    @q.task(name="ping")
    def ping() -> None:
        return None

    rule = Dedup("p", ttl=1.5)
    async with serving(q):
        first = await call(q.add("ping", NOARGS, dedup=rule))
        added = time.monotonic()
        await call(first.wait(10))
        assert await call(q.get_job(first.id)) is None  # gone
        again = await call(q.add("ping", NOARGS, dedup=rule))
        assert again.id == first.id
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - added)))
        later = await call(q.add("ping", NOARGS, dedup=rule))
        assert later.id not in (first.id, again.id)


async def test_extend_holds_from_the_last_duplicate(kit: Any) -> None:
    q = kit.queue("extend")
    rule = Dedup("e", ttl=0.4, extend=True)
    first = await call(q.add("x", 1, dedup=rule))
    for _ in range(4):  # 0.8 s of duplicates, each less than the ttl after the previous one
        await asyncio.sleep(0.2)
        assert (await call(q.add("x", 2, dedup=rule))).id == first.id
    await asyncio.sleep(0.5)
    assert (await call(q.add("x", 3, dedup=rule))).id != first.id
    plain = Dedup("p", ttl=0.4)
    held = await call(q.add("x", 1, dedup=plain))
    await asyncio.sleep(0.25)
    assert (await call(q.add("x", 2, dedup=plain))).id == held.id
    await asyncio.sleep(0.25)  # 0.5 s after the first: a ttl that was not extended is over
    assert (await call(q.add("x", 3, dedup=plain))).id != held.id


@REDIS_AND_MEMORY
async def test_debounce_runs_once_after_the_last_add_with_its_data(kit: Any) -> None:
    q = kit.queue("debounce")
    runs: list[tuple[Any, float]] = []

    @q.task(name="save")
    def save(doc: dict[str, Any]) -> None:
        runs.append((doc, time.monotonic()))

    async with serving(q):
        job = None
        for version in range(5):
            added = await call(
                save.options(dedup=Dedup.debounce("doc:42", 0.3)).enqueue({"v": version})
            )
            assert job is None or added.id == job.id
            job = added
            last = time.monotonic()
            await asyncio.sleep(0.1)
        assert job is not None
        await call(job.wait(10))
        await asyncio.sleep(0.4)  # nothing else runs
    assert [doc for doc, _ in runs] == [{"v": 4}]
    assert runs[0][1] - last >= 0.28  # the wait counts from the last add
    events = await all_events(q)
    assert [e.fields["replaced"] for e in events if e.event == "deduplicated"] == ["1"] * 4


@REDIS_AND_MEMORY
async def test_debounce_with_max_wait_runs_while_adds_keep_coming(kit: Any) -> None:
    q = kit.queue("debounce-max")
    runs: list[tuple[int, float]] = []

    @q.task(name="save")
    def save(v: int) -> None:
        runs.append((v, time.monotonic()))

    rule = Dedup.debounce("doc", 0.3, max_wait=0.6)
    async with serving(q):
        began = time.monotonic()
        ids = []
        for v in range(20):  # an add every 0.1 s for 2 s: the debounce alone never runs
            ids.append((await call(save.options(dedup=rule).enqueue(v))).id)
            await asyncio.sleep(0.1)
        ran_meanwhile = len(runs)
        await eventually(lambda: runs and runs[-1][0] == 19, 10, "the last value's run")
    assert ran_meanwhile >= 2  # a run at most 0.6 s after each job's first add
    assert runs[0][1] - began >= 0.58  # and never sooner than max_wait after it
    values = [v for v, _ in runs]
    assert values == sorted(values)  # in order
    assert len(set(ids)) == len(runs)  # each job ran once


async def test_debounce_after_the_job_started_adds_a_job_for_the_new_data(kit: Any) -> None:
    q = kit.queue("debounce-started")
    started = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    @q.task(name="save")
    def save(v: int) -> None:
        seen.append(v)
        started.set()
        release.wait(10)

    rule = Dedup.debounce("doc", 0.05)
    first = await call(save.options(dedup=rule).enqueue(1))
    async with serving(q):
        await eventually(started.is_set, 10, "the first run")
        second = await call(save.options(dedup=rule).enqueue(2))
        assert second.id != first.id  # the running job does not have the new data
        third = await call(save.options(dedup=rule).enqueue(3))
        assert third.id == second.id  # but the new one, not started, takes the last
        release.set()
        await call(third.wait(10))
    assert seen == [1, 3]


async def test_concurrent_debounced_adds_make_one_job(kit: Any, mode: str) -> None:
    q = kit.queue("debounce-concurrent")
    ids: set[str] = set()
    lock = threading.Lock()
    rule = Dedup.debounce("doc", 30)

    def writer(w: int) -> None:  # five threads on the blocking client
        for i in range(20):
            job = q.add("save", {"w": w, "i": i}, dedup=rule)
            with lock:
                ids.add(job.id)

    async def awriter(w: int) -> None:  # five tasks on the asyncio client
        for i in range(20):
            ids.add((await q.add("save", {"w": w, "i": i}, dedup=rule)).id)

    if mode == "sync":
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        await asyncio.gather(*(awriter(w) for w in range(5)))
    assert len(ids) == 1
    assert (await call(q.counts()))["delayed"] == 1
    data = (await call(q.get_job(ids.pop()))).data
    assert data["i"] == 19  # the last add of all was some writer's last


async def test_bulk_adds_share_dedup_ids_and_a_job_id_comes_first(kit: Any) -> None:
    q = kit.queue("bulk-dedup")
    jobs = await call(
        q.add_bulk(
            [
                {"name": "a", "data": 1, "dedup": "same"},
                {"name": "a", "data": 2, "dedup": "same"},
                {"name": "a", "data": 3, "dedup": "other", "job_id": "fixed"},
            ]
        )
    )
    assert jobs[0].id == jobs[1].id
    assert jobs[2].id == "fixed"
    again = await call(q.add("a", 4, job_id="fixed", dedup="third"))
    assert again.id == "fixed"  # the existing id: nothing added, the dedup id not taken
    assert (await call(q.add("a", 5, dedup="third"))).data == 5
    assert (await call(q.counts()))["waiting"] == 3


@pytest.mark.parametrize(
    ("dedup", "error", "match"),
    [
        (5, TypeError, "dedup is a str"),
        ("", ValueError, "dedup id must not be empty"),
        ("a\nb", ValueError, "control characters"),
    ],
)
async def test_a_bad_dedup_fails_before_anything_is_written(
    kit: Any, dedup: Any, error: type[Exception], match: str
) -> None:
    q = kit.queue("bad-dedup")
    with pytest.raises(error, match=match):
        await call(q.add("x", 1, dedup=dedup))
    assert sum((await call(q.counts())).values()) == 0


def test_dedup_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="need a ttl"):
        Dedup("x", extend=True)
    with pytest.raises(ValueError, match="need a ttl"):
        Dedup("x", replace=True)
    with pytest.raises(ValueError, match="dedup ttl"):
        Dedup("x", ttl=0)
    with pytest.raises(ValueError, match="debounce wait"):
        Dedup.debounce("x", -1)
    with pytest.raises(TypeError, match=r"Dedup\.extend is a bool"):
        Dedup("x", ttl=1, extend="yes")  # type: ignore[arg-type]
    rule = Dedup.debounce("x", 5)
    assert (rule.ttl, rule.extend, rule.replace, rule.delay) == (5.0, True, True, 5.0)
    assert rule.max_wait is None
    assert Dedup.debounce("x", 5, max_wait=timedelta(minutes=1)).max_wait == 60.0
    with pytest.raises(ValueError, match="needs replace=True"):
        Dedup("x", ttl=5, max_wait=10)
    with pytest.raises(ValueError, match=r"max_wait \(2s\) is shorter than its delay \(5s\)"):
        Dedup.debounce("x", 5, max_wait=2)
    with pytest.raises(ValueError, match="dedup max_wait"):
        Dedup.debounce("x", 5, max_wait=0)
    with pytest.raises(TypeError, match="dedup max_wait"):
        Dedup.debounce("x", 5, max_wait="soon")  # type: ignore[arg-type]


async def test_a_dedup_key_of_the_wrong_type_refuses_the_add_and_writes_nothing(kit: Any) -> None:
    q = kit.queue("wrong-dedup")
    await call(kit.client.rpush(q._core.base + ":dd:taken", "x"))
    with pytest.raises(Exception, match="WRONGTYPE"):
        await call(q.add_bulk([("a", 1), {"name": "b", "data": 2, "dedup": "taken"}]))
    assert sum((await call(q.counts())).values()) == 0
