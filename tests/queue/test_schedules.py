"""Job schedulers: ``q.schedule(id, name, cron=... | every=...)`` makes one run per slot, whatever
the number of workers, with no process of its own; the next run is made by the step that makes
the current one due. Upsert, list, remove, limits, the missed-run policy, time zones and
daylight-saving changes."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from redkit.queue import Backoff, Keep, Schedule, current_job
from tests.conftest import call
from tests.queue.conftest import REDIS_AND_MEMORY, all_events, eventually, serving

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
NOARGS = {"args": [], "kwargs": {}}


def _slot(job_id: str) -> int:
    return int(job_id.rpartition(":")[2])


def _ledger(q: Any) -> tuple[Counter[int], threading.Lock]:
    """Register task ``tick`` (it takes no argument) that counts the slot of each run."""
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @q.task(name="tick")
    def tick() -> None:
        job = current_job()
        with lock:
            runs[_slot(job.id)] += 1

    return runs, lock


async def _delayed_runs(q: Any) -> list[str]:
    return [i for i in await call(q.jobs("delayed")) if i.startswith("sched:")]


# -- one run per slot -------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_three_workers_run_each_slot_once_and_none_is_skipped(kit: Any) -> None:
    q = kit.queue("every")
    runs, lock = _ledger(q)
    made = await call(q.schedule("tick", "tick", NOARGS, every=0.1))
    assert isinstance(made, Schedule)
    assert made.next_run is not None
    assert _slot_ms(made.next_run) % 100 == 0  # aligned on the epoch
    async with serving(q, name="w1"), serving(q, name="w2"), serving(q, name="w3"):
        await eventually(lambda: sum(runs.values()) >= 25, 15, "25 runs")
        with lock:
            seen = dict(runs)
    assert set(seen.values()) == {1}  # no slot twice
    # every slot ran though more than ten were used up (the workers computed more as they ran
    # low), but for those a late run stood for
    await _no_gap_but_late_ones(q, sorted(seen), 100)
    assert len(await _delayed_runs(q)) == 1  # only the next run exists as a job


async def _no_gap_but_late_ones(q: Any, slots: list[int], every_ms: int) -> None:
    """Between two slots that ran, none is missing, unless the first ran late by as much: a run
    that comes due while no worker can take it at once (all busy, or starved of CPU) runs once
    for every slot that went by meanwhile (``missed="run_once"``)."""
    for before, after in itertools.pairwise(slots):
        if after - before > every_ms:
            record = (await call(q.get_job(f"sched:tick:{before}"))).record
            late = (record.processed_at - record.scheduled_for).total_seconds() * 1000
            assert late >= after - before - every_ms - 5, (before, after, late)
    assert len(slots) > (slots[-1] - slots[0]) // every_ms // 2  # most ran on time


def _slot_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_the_same_definition_twice_changes_nothing(kit: Any) -> None:
    q = kit.queue("idem")
    first = await call(q.schedule("report", "report", {"kind": "daily"}, cron="0 3 * * *"))
    again = await call(q.schedule("report", "report", {"kind": "daily"}, cron="0 3 * * *"))
    assert again.next_run == first.next_run
    assert again.runs == first.runs == 1
    assert len(await _delayed_runs(q)) == 1
    listed = await call(q.schedules())
    assert [(s.id, s.name, s.data, s.cron, s.tz) for s in listed] == [
        ("report", "report", {"kind": "daily"}, "0 3 * * *", "UTC")
    ]


async def test_a_changed_definition_replaces_the_pending_run(kit: Any) -> None:
    q = kit.queue("change")
    old = await call(q.schedule("report", "report", cron="0 3 * * *"))
    new = await call(q.schedule("report", "report", cron="30 4 * * *", tz="Europe/Paris"))
    assert new.next_run != old.next_run
    pending = await _delayed_runs(q)
    assert pending == [f"sched:report:{_slot_ms(new.next_run)}"]
    assert await call(q.get_job(f"sched:report:{_slot_ms(old.next_run)}")) is None
    at = new.next_run.astimezone(PARIS)
    assert (at.hour, at.minute) == (4, 30)
    job = await call(q.get_job(pending[0]))
    assert job.record.schedule_id == "report"
    assert job.record.scheduled_for == new.next_run
    assert job.state == "delayed"


async def test_a_definition_with_job_options_passes_them_to_each_run(kit: Any) -> None:
    q = kit.queue("opts")
    made = await call(
        q.schedule("s", "work", [1, 2], every=timedelta(hours=1), priority=3, attempts=4)
    )
    assert made.every == timedelta(hours=1)
    assert made.options == {"a": 4, "priority": 3}
    record = (await call(q.get_job(f"sched:s:{_slot_ms(made.next_run)}"))).record
    assert (record.name, record.data, record.priority) == ("work", [1, 2], 3)
    assert record.options["a"] == 4


# -- remove, limit, end ---------------------------------------------------------------------
async def test_unschedule_removes_the_scheduler_and_its_pending_run(kit: Any) -> None:
    q = kit.queue("gone")
    made = await call(q.schedule("s", "x", every=3600))
    assert await call(q.unschedule("s")) is True
    assert await call(q.unschedule("s")) is False
    assert await call(q.schedules()) == []
    assert await call(q.get_schedule("s")) is None
    assert await call(q.get_job(f"sched:s:{_slot_ms(made.next_run)}")) is None
    assert (await call(q.counts()))["delayed"] == 0


@REDIS_AND_MEMORY
async def test_a_limit_makes_that_many_runs_then_the_scheduler_is_over(kit: Any) -> None:
    q = kit.queue("limited")
    runs, _ = _ledger(q)
    await call(q.schedule("three", "tick", NOARGS, every=0.05, limit=3))
    tomorrow = datetime.now(UTC) + timedelta(days=1)  # never due while the test runs
    await call(
        q.schedule("later", "tick", every=3600, start=tomorrow)
    )  # a task's name: no arguments
    async with serving(q):
        await eventually(lambda: sum(runs.values()) == 3, 10, "three runs")
        await asyncio.sleep(0.3)
    assert sum(runs.values()) == 3
    over = await call(q.get_schedule("three"))
    assert (over.runs, over.next_run) == (3, None)
    assert over.last_run is not None
    # the one that is over is listed last; calling schedule() again does not start it over
    assert [s.id for s in await call(q.schedules())] == ["later", "three"]
    assert (await call(q.schedule("three", "tick", NOARGS, every=0.05, limit=3))).next_run is None


async def test_end_and_start_bound_the_slots(kit: Any) -> None:
    q = kit.queue("bounded")
    start = datetime.now(UTC) + timedelta(days=2)
    made = await call(q.schedule("s", "x", every=60, start=start, end=start + timedelta(minutes=3)))
    assert made.next_run == start.replace(microsecond=(start.microsecond // 1000) * 1000)
    assert len(made.upcoming(10)) == 4  # start, +1, +2, +3 minutes


# -- missed runs -------------------------------------------------------------------------------
@REDIS_AND_MEMORY
@pytest.mark.parametrize("missed", ["run_once", "skip"])
async def test_runs_missed_while_no_worker_ran(kit: Any, missed: str) -> None:
    q = kit.queue(f"missed-{missed}")
    runs, lock = _ledger(q)
    made = await call(q.schedule("s", "tick", NOARGS, every=0.1, missed=missed, grace=0.25))
    first = _slot_ms(made.next_run)
    await asyncio.sleep(0.6)  # about six slots pass with no worker
    async with serving(q):
        await eventually(lambda: sum(runs.values()) >= 3, 10, "runs after the gap")
        with lock:
            seen = sorted(runs)
    events = await all_events(q)
    skipped = [e.job_id for e in events if e.event == "skipped"]
    if missed == "run_once":
        assert seen[0] == first  # the late run ran, once
        assert seen[1] - seen[0] >= 500  # and the slots missed meanwhile did not
        assert skipped == []
    else:
        assert first not in seen
        assert skipped == [f"sched:s:{first}"]
        assert seen[0] > first + 500
    assert set(runs.values()) == {1}


# -- a run that fails, retention, a lost run -------------------------------------------------
@REDIS_AND_MEMORY
async def test_a_retried_run_and_a_deleted_one_make_no_extra_run(kit: Any) -> None:
    q = kit.queue("retry-sched")
    tries: Counter[int] = Counter()
    lock = threading.Lock()

    @q.task(name="flaky")
    def flaky() -> None:
        slot = _slot(current_job().id)
        with lock:
            tries[slot] += 1
            n = tries[slot]
        if n == 1:
            raise RuntimeError("first try fails")

    await call(
        q.schedule(
            "s", flaky, every=0.2, attempts=2, backoff=Backoff.fixed(0.05), keep=Keep(completed=0)
        )
    )
    async with serving(q):
        await eventually(lambda: sum(1 for v in tries.values() if v == 2) >= 4, 15, "4 slots")
    with lock:
        assert set(tries.values()) <= {1, 2}  # a retry is the same run, never a new slot
    assert len(await _delayed_runs(q)) <= 1


async def test_removing_the_next_run_skips_that_slot_and_drain_keeps_it(kit: Any) -> None:
    q = kit.queue("skip-one")
    made = await call(q.schedule("s", "x", every=60))
    first = _slot_ms(made.next_run)
    await call(q.add("other", None, delay=30))
    job = await call(q.get_job(f"sched:s:{first}"))
    assert await call(job.remove()) is True
    assert await _delayed_runs(q) == [f"sched:s:{first + 60_000}"]  # the scheduler went on
    assert (await call(q.get_schedule("s"))).next_run == made.next_run + timedelta(minutes=1)
    assert await call(q.drain(delayed=True)) == 1  # the other delayed job, not the next run
    assert await _delayed_runs(q) == [f"sched:s:{first + 60_000}"]


@REDIS_AND_MEMORY
async def test_drain_reaches_delayed_jobs_behind_more_than_a_calls_worth_of_scheduler_runs(
    kit: Any,
) -> None:
    q = kit.queue("drain-behind")
    for i in range(1_205):  # next runs within a minute, ahead of every delayed job
        await call(q.schedule(f"s{i}", "tick", every=60))
    later = await call(q.add_bulk([("x", {"i": i}, {"delay": 3600}) for i in range(30)]))
    await call(q.add_bulk([("x", {"i": i}) for i in range(5)]))
    assert await call(q.drain(delayed=True)) == 35
    assert await call(q.get_job(later[-1].id)) is None
    assert (await call(q.counts()))["delayed"] == 1_205  # every scheduler keeps its next run
    assert len(await call(q.schedules(0, -1))) == 1_205
    assert await call(q.drain(delayed=True)) == 0  # and a drain with only runs left ends


async def test_a_worker_restores_a_next_run_whose_job_vanished(kit: Any) -> None:
    q = kit.queue("restore")
    runs, _ = _ledger(q)
    made = await call(q.schedule("s", "tick", every=0.2))
    # deleted behind redkit's back (by hand, or an evicting Redis): its slot never comes due
    await call(kit.client.delete(q._core.job_key(f"sched:s:{_slot_ms(made.next_run)}")))
    await asyncio.sleep(1.2)  # overdue: a worker starting now looks at it
    async with serving(q):
        await eventually(lambda: sum(runs.values()) >= 2, 10, "runs again")
    assert set(runs.values()) == {1}


# -- tasks -------------------------------------------------------------------------------------
async def test_a_task_schedules_itself_with_its_arguments(kit: Any) -> None:
    q = kit.queue("task-sched")
    got: list[Any] = []

    @q.task(name="greet", attempts=3)
    def greet(who: str, *, loud: bool = False) -> None:
        got.append((who, loud))

    made = await call(
        greet.schedule("hello", every=0.05, limit=1, args=("ann",), kwargs={"loud": True})
    )
    assert made.name == "greet"
    assert made.options == {"a": 3}
    also = await call(q.schedule("hi", greet, {"args": ["bob"], "kwargs": {}}, every=0.05, limit=1))
    assert also.options == {"a": 3}
    async with serving(q):
        await eventually(lambda: len(got) == 2, 10, "both runs")
    assert sorted(got) == [("ann", True), ("bob", False)]


# -- time zones and daylight saving --------------------------------------------------------
def _spec(**when: Any) -> Schedule:
    from redkit.queue._schedules import ScheduleSpec

    return Schedule("s", "x", None, ScheduleSpec.build(**when), None, None, 0)


def test_a_daily_run_happens_once_on_both_daylight_saving_days() -> None:
    daily = _spec(cron="30 2 * * *", tz="Europe/Paris")
    spring = daily.upcoming(3, after=datetime(2026, 3, 28, 12, tzinfo=PARIS))
    # 02:30 does not exist on 29 March: the run comes at 03:00, when the clocks have gone forward
    assert [t.isoformat() for t in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    autumn = daily.upcoming(3, after=datetime(2026, 10, 24, 12, tzinfo=PARIS))
    # 02:30 happens twice on 25 October: one run, at the first
    assert [t.isoformat() for t in autumn] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    in_utc = [t.astimezone(UTC).strftime("%d %H:%M") for t in autumn]
    assert in_utc == ["25 00:30", "26 01:30", "27 01:30"]


def test_an_hourly_run_follows_the_clock_across_daylight_saving() -> None:
    hourly = _spec(cron="0 * * * *", tz="America/New_York")
    ny = ZoneInfo("America/New_York")
    back = hourly.upcoming(4, after=datetime(2026, 11, 1, 0, 30, tzinfo=ny))
    # the hour from 1:00 comes twice: it runs in both (they are an hour apart in real time)
    assert [t.astimezone(UTC).strftime("%H:%M") for t in back] == [
        "05:00",
        "06:00",
        "07:00",
        "08:00",
    ]
    ahead = hourly.upcoming(3, after=datetime(2026, 3, 8, 0, 30, tzinfo=ny))
    assert [t.strftime("%H:%M %Z") for t in ahead] == ["01:00 EST", "03:00 EDT", "04:00 EDT"]


def test_every_is_real_time_whatever_the_clocks_do() -> None:
    every = _spec(every=timedelta(hours=6), tz="Europe/Paris")
    runs = every.upcoming(5, after=datetime(2026, 3, 28, 23, tzinfo=UTC))
    assert [t.strftime("%H:%M") for t in runs] == ["01:00", "08:00", "14:00", "20:00", "02:00"]
    in_utc = [t.astimezone(UTC) for t in runs]
    assert {b - a for a, b in itertools.pairwise(in_utc)} == {timedelta(hours=6)}
    assert all(t.astimezone(UTC).hour % 6 == 0 for t in runs)  # aligned on the epoch


def test_cron_aliases_seconds_and_weekdays() -> None:
    after = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)  # a Friday
    assert _spec(cron="@daily").upcoming(1, after=after) == [datetime(2026, 12, 5, tzinfo=UTC)]
    weekdays = _spec(cron="0 9 * * MON-FRI").upcoming(2, after=after)
    assert [t.strftime("%a %d") for t in weekdays] == ["Mon 07", "Tue 08"]
    seconds = _spec(cron="*/15 * * * * *").upcoming(2, after=after)
    assert [t.second for t in seconds] == [15, 30]


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, TypeError, "one of cron= or every="),
        ({"cron": "0 3 * * *", "every": 60}, TypeError, "one of cron= or every="),
        ({"cron": "61 * * * *"}, ValueError, "Bad minute"),
        ({"cron": "0 3 * *"}, ValueError, "cron '0 3 \\* \\*'"),
        ({"cron": 5}, TypeError, "cron must be a str"),
        ({"every": 0}, ValueError, "every"),
        ({"every": 0.001}, ValueError, "at least 10 ms"),
        ({"every": 60, "tz": "Mars/Olympus"}, ValueError, "no time zone"),
        ({"every": 60, "tz": "../../etc/passwd"}, ValueError, "no time zone"),
        ({"every": 60, "start": datetime(2026, 1, 1)}, ValueError, "timezone-aware"),
        ({"every": 60, "missed": "later"}, ValueError, "run_once"),
        ({"every": 60, "limit": 0}, ValueError, "limit"),
        ({"every": 60, "job_id": "x"}, TypeError, "no job_id"),
        ({"every": 60, "dedup": "d"}, TypeError, "delay or dedup"),
        ({"every": 60, "delay": 5}, TypeError, "no job_id, delay or dedup"),
        ({"every": 60, "colour": "red"}, TypeError, "unknown job option"),
    ],
)
async def test_a_bad_definition_fails_before_anything_is_written(
    kit: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    q = kit.queue("bad")
    with pytest.raises(error, match=match):
        await call(q.schedule("s", "x", **kwargs))
    assert await call(q.schedules()) == []
    assert (await call(q.counts()))["delayed"] == 0


@pytest.mark.parametrize(
    ("ident", "match"), [("", "must not be empty"), ("x" * 171, "at most 170"), ("a\nb", "control")]
)
async def test_a_bad_schedule_id_is_refused(kit: Any, ident: str, match: str) -> None:
    q = kit.queue("bad-id")
    with pytest.raises(ValueError, match=match):
        await call(q.schedule(ident, "x", every=60))
    with pytest.raises(ValueError, match=match):
        await call(q.get_schedule(ident))
    assert await call(q.schedules()) == []


async def test_cron_without_its_extra_names_the_extra_and_writes_nothing(
    kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from redkit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "cronsim", None)  # as if not installed
    q = kit.queue("no-cron")
    with pytest.raises(MissingDependencyError, match=r"redkit\[cron\]"):
        await call(q.schedule("s", "x", cron="0 3 * * *"))
    assert await call(q.schedules()) == []
    assert (await call(q.schedule("t", "x", every=60))).every == timedelta(minutes=1)
