"""Job schedulers: ``q.schedule("nightly", "report", cron="0 3 * * *", tz="Europe/Paris")``.

No beat process: a scheduler is a hash in the queue's slot holding its definition, the job it
makes and the next few slots (computed here, since Lua has no cron). Only its next run exists as
a job, a delayed one with the id ``sched:<scheduler id>:<slot ms>``; the worker step that makes
it due creates the run after it in the same script (``queue_iterate.lua``), so each slot is
created once, whatever the number of workers, and a worker computes more slots when they run
low. Cron expressions are read by cronsim (the ``cron`` extra), which follows cronie across
daylight-saving changes: a daily job runs once on both transition days, one in the skipped hour
runs when the clocks go forward.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .. import _durations as durations
from .._checks import int64, shown
from .._ops import Batch, Flow, Script, command, script
from .._optional import require
from ..errors import RedkitError
from ._options import MAX_NAME, JobOptions, _int, check_name, encode
from ._state import _text, _WorkerState

__all__ = ["MISSED", "Schedule", "ScheduleSpec"]

log = logging.getLogger("redkit.worker")

SCHEDULE = Script.load("queue_schedule")
MAX_SCHEDULE_ID = MAX_NAME - 30  # room for 'sched:' and ':<slot ms>' in the job ids
SLOTS = 10  # upcoming slots computed at a time (the step asks for more below 5)
MISSED = ("run_once", "skip")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SWEEP_EVERY = 30.0  # seconds between a worker's looks for schedulers that lost their next run
_OVERDUE_MS = 1000  # a next run this late was lost (or every worker is busy): look at it


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: int, tz: timezone | ZoneInfo = timezone.utc) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz)


def _aware(what: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a timezone-aware datetime, not {shown(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (a naive datetime is ambiguous)")
    return _ms(value)


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name like 'Europe/Paris', not {shown(tz)}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz: no time zone named {shown(tz)}") from None


@dataclass(frozen=True)
class ScheduleSpec:
    """When a scheduler runs, validated: a cron expression in a time zone, or a fixed interval."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = 0
    missed: str = "run_once"
    grace_ms: int = 60_000

    @classmethod
    def build(
        cls,
        *,
        cron: object = None,
        every: object = None,
        tz: object = "UTC",
        start: object = None,
        end: object = None,
        limit: object = None,
        missed: object = "run_once",
        grace: object = 60,
    ) -> ScheduleSpec:
        if (cron is None) == (every is None):
            raise TypeError("a schedule takes one of cron= or every=")
        zone = _zone(tz)
        every_ms = None
        expr = None
        if every is not None:
            every_ms = durations.to_ms(durations.seconds("every", every))
            if every_ms < 10:
                raise ValueError("every must be at least 10 ms")
        else:
            if not isinstance(cron, str):
                raise TypeError(f"cron must be a str like '0 3 * * *', not {shown(cron)}")
            expr = " ".join(cron.split())
            _expression(expr, zone)  # parsed now: a mistake fails here
        if missed not in MISSED:
            raise ValueError(f"missed must be 'run_once' or 'skip', not {shown(missed)}")
        start_ms, end_ms = _aware("start", start), _aware("end", end)
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ValueError("end is before start")
        return cls(
            cron=expr,
            every_ms=every_ms,
            tz=str(tz),
            start_ms=start_ms,
            end_ms=end_ms,
            limit=0 if limit is None else _int("limit", limit, 1, 2**40),
            missed=str(missed),
            grace_ms=durations.to_ms(durations.seconds("grace", grace, zero=True)),
        )

    def slots_after(self, after_ms: int, count: int = SLOTS) -> tuple[list[int], bool]:
        """The next ``count`` slots (ms) later than ``after_ms``, and whether they are the last
        (the schedule's ``end`` comes before more)."""
        low = after_ms if self.start_ms is None else max(after_ms, self.start_ms - 1)
        out: list[int] = []
        if self.every_ms is not None:
            anchor, step = self.start_ms or 0, self.every_ms
            slot = anchor + ((low - anchor) // step + 1) * step
            while len(out) < count and (self.end_ms is None or slot <= self.end_ms):
                out.append(slot)
                slot += step
        else:
            assert self.cron is not None
            zone = ZoneInfo(self.tz)
            for moment in _expression(self.cron, zone, _moment(low, zone)):
                slot = _ms(moment)
                if self.end_ms is not None and slot > self.end_ms:
                    break
                if slot > low:
                    out.append(slot)
                if len(out) == count:
                    break
        return out, len(out) < count

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ScheduleSpec:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def _expression(expr: str, zone: ZoneInfo, after: datetime | None = None) -> Any:
    """cronsim's iterator over ``expr`` (an ``@daily``-style alias allowed) from ``after``."""
    cronsim = require("cronsim", "cron")
    try:
        return cronsim.CronSim(
            _ALIASES.get(expr.lower(), expr), after or datetime.now(zone).replace(microsecond=0)
        )
    except cronsim.CronSimError as exc:
        raise ValueError(f"cron {shown(expr)}: {exc}") from None


@dataclass
class Schedule:
    """A job scheduler of a queue, as Redis holds it: ``q.schedule(...)``, ``q.schedules()``."""

    id: str
    name: str
    """The task (or job name) each run runs."""
    data: Any
    spec: ScheduleSpec
    next_run: datetime | None
    """When the next run is due (``None``: the schedule is over, or its next run is being
    made)."""
    last_run: datetime | None
    """The slot of the latest run that came due (run, or skipped under ``missed="skip"``)."""
    runs: int
    """Runs made since the definition last changed (what ``limit`` counts)."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def cron(self) -> str | None:
        return self.spec.cron

    @property
    def every(self) -> timedelta | None:
        return None if self.spec.every_ms is None else timedelta(milliseconds=self.spec.every_ms)

    @property
    def tz(self) -> str:
        return self.spec.tz

    @property
    def missed(self) -> str:
        return self.spec.missed

    def upcoming(self, count: int = 5, after: datetime | None = None) -> list[datetime]:
        """The next ``count`` times this schedule comes due after ``after`` (default: now), in
        its time zone, computed here: what the workers will create."""
        count = _int("count", count, 1, 10_000)
        after_ms = _aware("after", after) if after is not None else int(time.time() * 1000)
        assert after_ms is not None
        zone = ZoneInfo(self.spec.tz)
        return [_moment(s, zone) for s in self.spec.slots_after(after_ms, count)[0]]

    @classmethod
    def parse(cls, schedule_id: str, raw: Mapping[bytes, bytes]) -> Schedule | None:
        try:
            definition = json.loads(raw[b"def"])
            spec = ScheduleSpec.from_json(definition["when"])
            data = json.loads(raw.get(b"td") or b"null")
        except (KeyError, ValueError, TypeError):
            return None
        pend, ran = raw.get(b"pend") or b"", raw.get(b"ran") or b""
        return cls(
            id=schedule_id,
            name=_text(raw.get(b"tn", b"")),
            data=data,
            spec=spec,
            next_run=_moment(int(pend)) if pend.isdigit() else None,
            last_run=_moment(int(ran)) if ran.isdigit() else None,
            runs=int(raw.get(b"cnt") or 0),
            options=definition.get("options", {}),
        )


def check_schedule_id(value: object) -> str:
    ident = check_name("schedule id", value)
    if len(ident) > MAX_SCHEDULE_ID:
        raise ValueError(f"schedule id must be at most {MAX_SCHEDULE_ID} characters")
    return ident


class Schedules:
    """The batches and flows of one queue's schedulers (no I/O)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.index = core.schedulers

    def key(self, schedule_id: str) -> str:
        return f"{self.index}:{schedule_id}"

    def _keys(self, schedule_id: str) -> list[str]:
        c = self.core
        return [self.index, self.key(schedule_id), c.delayed, c.meta, c.events, c.marker]

    def define(
        self, schedule_id: object, name: object, data: Any, spec: ScheduleSpec, opts: JobOptions
    ) -> tuple[str, list[Any]]:
        """The checked arguments of an upsert after ``schedule_id``, the definition and the
        slots: (id, [definition JSON, policy, grace, limit, name, data, option pairs...])."""
        ident = check_schedule_id(schedule_id)
        task = check_name("task name", name)
        payload = encode(data, "data", self.core.max_bytes)
        if opts.job_id is not None or opts.delay or opts.dedup is not None:
            raise TypeError(
                "a schedule's runs take no job_id, delay or dedup (the schedule says when, and "
                "makes one run per slot)"
            )
        pairs: list[Any] = []
        stored = opts.stored()
        if stored:
            pairs += ["o", stored]
        if opts.priority:
            pairs += ["p", opts.priority]
        if opts.keep is not None:
            for field_name, value in zip(("kc", "ka", "kf", "kfa"), opts.keep.args()):
                if value >= 0:
                    pairs += [field_name, value]
        options = json.loads(stored) if stored else {}
        if opts.priority:
            options["priority"] = opts.priority
        definition = json.dumps(
            {
                "when": spec.to_json(),
                "name": task,
                "data": payload.decode(),
                "options": options,
                "pairs": [str(p) if not isinstance(p, bytes) else p.decode() for p in pairs],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        missed = "run" if spec.missed == "run_once" else "skip"
        return ident, [definition, missed, spec.grace_ms, spec.limit, task, payload, *pairs]

    def upsert(
        self, schedule_id: object, name: object, data: Any, spec: ScheduleSpec, opts: JobOptions
    ) -> Flow[Schedule]:
        ident, args = self.define(schedule_id, name, data, spec, opts)  # checked before a send
        now = yield _redis_ms()
        slots, final = spec.slots_after(now)
        c = self.core
        argv = [c.job_prefix, c.maxlen, ident, "u", args[0], _joined(slots), "1" if final else "0"]
        yield Batch.one(script(SCHEDULE, self._keys(ident), [*argv, *args[1:]]), list)
        found: Schedule | None = yield self.get(ident)
        assert found is not None, "a schedule just written is there"
        return found

    def refill(self, schedule_id: str) -> Flow[int]:
        """Compute the slots after the pending run and hand them to the scheduler; -1 when its
        definition changed meanwhile, -2 when it is gone or unreadable."""
        now, raw = yield Batch(
            (command("TIME"), command("HMGET", self.key(schedule_id), "def", "pend", "ran")),
            lambda r: (_time_ms(r[0]), r[1]),
        )
        definition, pend, ran = raw
        if definition is None:
            return -2
        try:
            spec = ScheduleSpec.from_json(json.loads(definition)["when"])
        except (KeyError, ValueError, TypeError):
            log.error("redkit: job scheduler %r has a definition it cannot read", schedule_id)
            return -2
        after = max(now, *(int(v) for v in (pend, ran) if v and v.isdigit()))
        slots, final = spec.slots_after(after)
        c = self.core
        argv = [c.job_prefix, c.maxlen, schedule_id, "r", definition, _joined(slots)]
        argv.append("1" if final else "0")
        code, _ = yield Batch.one(script(SCHEDULE, self._keys(schedule_id), argv), list)
        return int(code)

    def remove(self, schedule_id: object) -> Batch[bool]:
        ident = check_schedule_id(schedule_id)
        c = self.core
        return Batch.one(
            script(SCHEDULE, self._keys(ident), [c.job_prefix, c.maxlen, ident, "x"]),
            lambda r: int(r[0]) == 1,
        )

    def get(self, schedule_id: object) -> Batch[Schedule | None]:
        ident = check_schedule_id(schedule_id)
        return Batch.one(
            command("HGETALL", self.key(ident)),
            lambda raw: Schedule.parse(ident, raw) if raw else None,
        )

    def listed(self, start: int, stop: int) -> Flow[list[Schedule]]:
        """Schedulers by their next run (soonest first; over ones last), by position."""
        start, stop = int64("start", start), int64("stop", stop)
        ids = yield Batch.one(command("ZRANGE", self.index, start, stop), list)
        if not ids:
            return []
        names = [_text(i) for i in ids]
        raws = yield Batch(tuple(command("HGETALL", self.key(n)) for n in names), list)
        found = (Schedule.parse(n, raw) for n, raw in zip(names, raws) if raw)
        return [s for s in found if s is not None]

    def overdue(self) -> Batch[list[str]]:
        """Schedulers with no next run, or one overdue by more than :data:`_OVERDUE_MS`."""
        upto = int(time.time() * 1000) - _OVERDUE_MS
        return Batch.one(
            command("ZRANGEBYSCORE", self.index, "-inf", upto, "LIMIT", 0, 100),
            lambda r: [_text(i) for i in r],
        )


def _joined(slots: list[int]) -> str:
    return ",".join(str(s) for s in slots)


def _time_ms(reply: Any) -> int:
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


def _redis_ms() -> Batch[int]:
    return Batch.one(command("TIME"), _time_ms)


class _Scheduling(_WorkerState):
    """The worker's part that keeps its queue's schedulers going (a part of the worker): it
    computes more slots when a step says they run low, and looks every half minute for a
    scheduler whose next run was lost (its job removed by hand, or slots never computed)."""

    _sweep_at: float = 0.0

    async def _refill(self, ids: list[str]) -> None:
        sched = self._core.sched
        for ident in ids:
            try:
                await self._exec.drive(sched.refill(ident))
            except (RedkitError, ValueError) as exc:
                # its next look (every half minute) tries again: one line per look, not per step
                log.error(
                    "redkit worker %s: could not compute the next runs of job scheduler %r "
                    "(%s); trying again later",
                    self.id,
                    ident,
                    exc,
                )

    async def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._sweep_at:
            return
        self._sweep_at = now + _SWEEP_EVERY
        try:
            ids = await self._exec.run(self._core.sched.overdue())
        except RedkitError as exc:
            log.warning("redkit worker %s: could not look at job schedulers (%s)", self.id, exc)
            return
        if ids:
            await self._refill(ids)
