"""The measuring harness of the benchmarks in ``bench/``: contenders, interleaved rounds, medians,
CPU time, the machine they ran on, and the shared command line.

A benchmark builds :class:`Scenario` objects, each a list of :class:`Contender` objects (the
first one is the baseline), and measures them with :func:`run_sync` or :func:`run_async`.

Method: every contender first runs ``warmup`` calls (connections opened, scripts loaded). Then a
scenario runs ``rounds`` rounds. In a round each contender makes ``ops`` calls, in slices of
``chunk`` calls that alternate between the contenders (A B C A B C ..., the order rotated from
round to round), so that drift in the machine or in Redis reaches all of them alike. A round's
figure for a contender is the wall time (and the CPU time of this process) of its slices divided
by ``ops``. The garbage collector stays on and is run before each round. A contender's counters
(round trips, ...) are read before and after each of its slices, outside the timed part.

:class:`Watch` gives the share of a CPU that other processes used during a run (Linux; Redis
counted out when it is local): figures from a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import DefaultParser
from redis.utils import HIREDIS_AVAILABLE

import redkit
from redkit.settings import redact_url

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = [
    "DEFAULT_URL",
    "Contender",
    "Counters",
    "Op",
    "Result",
    "Scenario",
    "Watch",
    "cli",
    "config",
    "load_line",
    "machine",
    "machine_line",
    "round_trip_target",
    "run_async",
    "run_sync",
    "table",
    "target_lines",
    "versus",
]

DEFAULT_URL = "redis://127.0.0.1:6379/15"

Op = Callable[[Sequence[str]], Any]
"""Makes one call per key: a function (sync) or a coroutine function (async)."""
Counters = Callable[[], Mapping[str, int]]
"""Reads monotonically increasing counters, such as ``Stats.snapshot``."""


@dataclass(frozen=True)
class Contender:
    """One way of doing a scenario's operation."""

    name: str
    op: Op
    keys: Callable[[str, int], list[str]]
    """(round label, n) -> the n keys of one round."""
    counters: Counters | None = None
    """Its counters: a slice's counts are their growth during the slice. ``round_trips`` among
    them gives the round trips; None for a contender without counters."""
    round_trips: float | None = None
    """Round trips per call of a contender without counters, by construction."""


@dataclass(frozen=True)
class Scenario:
    """Contenders measured together, in alternating slices; the first one is the baseline."""

    name: str
    mode: str  # "sync" or "async"
    contenders: list[Contender]


@dataclass
class Result:
    """The rounds of one contender in one scenario."""

    scenario: str
    mode: str
    contender: str
    baseline: bool
    wall_us: list[float] = field(default_factory=list)
    """Wall time per call, one figure per round."""
    cpu_us: list[float] = field(default_factory=list)
    """CPU time of this process per call, one figure per round."""
    calls: int = 0
    round_trips: float | None = None
    counts: dict[str, int] | None = None
    """How much each of the contender's counters grew over the measured calls."""
    ratio: float = 1.0
    """Median wall time over the baseline's."""
    cpu_ratio: float = 1.0

    @property
    def median_us(self) -> float:
        return statistics.median(self.wall_us)

    @property
    def median_cpu_us(self) -> float:
        return statistics.median(self.cpu_us)

    def rtt_per_call(self) -> float | None:
        return None if self.round_trips is None else self.round_trips / self.calls

    def count(self, name: str) -> int | None:
        """How much counter ``name`` grew over the measured calls (None: no counters)."""
        return None if self.counts is None else self.counts.get(name, 0)

    def per_call(self, name: str) -> float | None:
        """Counter ``name``'s growth per measured call (None: no counters)."""
        n = self.count(name)
        return None if n is None else n / self.calls

    def as_dict(
        self,
        after_baseline: Mapping[str, Any] | None = None,
        after_round_trips: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The figures, with a benchmark's own fields inserted after ``baseline`` and after
        ``round_trips_per_op``."""
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "contender": self.contender,
            "baseline": self.baseline,
            **(after_baseline or {}),
            "median_us": round(self.median_us, 2),
            "min_us": round(min(self.wall_us), 2),
            "max_us": round(max(self.wall_us), 2),
            "rounds_us": [round(x, 2) for x in self.wall_us],
            "median_cpu_us": round(self.median_cpu_us, 2),
            "round_trips_per_op": self.rtt_per_call(),
            **(after_round_trips or {}),
            "ratio": round(self.ratio, 3),
            "cpu_ratio": round(self.cpu_ratio, 3),
        }


# -- measuring --------------------------------------------------------------------------------


@dataclass
class _Tally:
    """The wall and CPU time of one contender's slices in one round."""

    wall: float = 0.0
    cpu: float = 0.0

    @staticmethod
    def start() -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    def stop(self, started: tuple[float, float]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall += wall - started[1]
        self.cpu += cpu - started[0]


class _Round:
    """The slices of one round: which keys each contender gets, in which order."""

    def __init__(self, scenario: Scenario, rnd: int, ops: int, chunk: int) -> None:
        shift = rnd % len(scenario.contenders)
        self.order = scenario.contenders[shift:] + scenario.contenders[:shift]
        self.keys = {c.name: c.keys(str(rnd), ops) for c in self.order}
        self.tally = {c.name: _Tally() for c in self.order}
        self.slices = [(i, min(i + chunk, ops)) for i in range(0, ops, chunk)]

    def steps(self) -> list[tuple[Contender, list[str]]]:
        return [(c, self.keys[c.name][a:b]) for a, b in self.slices for c in self.order]


def _read(c: Contender) -> dict[str, int] | None:
    return None if c.counters is None else dict(c.counters())


def _account(
    results: dict[str, Result], c: Contender, n: int, before: dict[str, int] | None
) -> None:
    result = results[c.name]
    result.calls += n
    after = _read(c)
    if before is not None and after is not None:
        counts = result.counts if result.counts is not None else {}
        for name, value in after.items():
            counts[name] = counts.get(name, 0) + value - before.get(name, 0)
        result.counts = counts
        result.round_trips = counts.get("round_trips", 0)
    elif c.round_trips is not None:
        result.round_trips = (result.round_trips or 0) + c.round_trips * n


def _close_round(results: dict[str, Result], rnd: _Round, ops: int) -> None:
    for name, t in rnd.tally.items():
        results[name].wall_us.append(t.wall / ops * 1e6)
        results[name].cpu_us.append(t.cpu / ops * 1e6)


def _new_results(scenario: Scenario) -> dict[str, Result]:
    return {
        c.name: Result(scenario.name, scenario.mode, c.name, i == 0)
        for i, c in enumerate(scenario.contenders)
    }


def _slices(
    scenario: Scenario, rounds: int, ops: int, chunk: int, results: dict[str, Result]
) -> Iterator[tuple[Op, list[str], _Tally]]:
    """Every slice of every round, in order. A slice's counters are read before it is handed
    out and after the caller asks for the next one (outside the caller's timing)."""
    for i in range(rounds):
        rnd = _Round(scenario, i, ops, chunk)
        steps = rnd.steps()
        gc.collect()
        for c, ks in steps:
            before = _read(c)
            yield c.op, ks, rnd.tally[c.name]
            _account(results, c, len(ks), before)
        _close_round(results, rnd, ops)


def run_sync(scenario: Scenario, rounds: int, ops: int, chunk: int, warmup: int) -> list[Result]:
    """Measure a sync scenario."""
    results = _new_results(scenario)
    for c in scenario.contenders:
        c.op(c.keys("warmup", warmup))
    for op, keys, tally in _slices(scenario, rounds, ops, chunk, results):
        started = tally.start()
        op(keys)
        tally.stop(started)
    return _finish(results)


async def run_async(
    scenario: Scenario, rounds: int, ops: int, chunk: int, warmup: int
) -> list[Result]:
    """Measure an async scenario (inside the running event loop)."""
    results = _new_results(scenario)
    for c in scenario.contenders:
        await c.op(c.keys("warmup", warmup))
    for op, keys, tally in _slices(scenario, rounds, ops, chunk, results):
        started = tally.start()
        await op(keys)
        tally.stop(started)
    return _finish(results)


def _finish(results: dict[str, Result]) -> list[Result]:
    out = list(results.values())
    base = out[0]
    for r in out:
        r.ratio = r.median_us / base.median_us
        r.cpu_ratio = r.median_cpu_us / base.median_cpu_us
    return out


# -- the machine ------------------------------------------------------------------------------


def machine(r: redis.Redis, **extra: Any) -> dict[str, Any]:
    """What the figures depend on; ``extra`` (versions of peers, ...) is added at the end."""
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": r.info("server").get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": bool(HIREDIS_AVAILABLE),
        "parser": DefaultParser.__name__,
        "orjson": getattr(orjson, "__version__", None),
        "redkit": redkit.__version__,
        "loadavg_start": round(os.getloadavg()[0], 2),
        **extra,
    }


def redis_work(r: redis.Redis) -> tuple[float, int, int]:
    """Redis' CPU seconds so far (``used_cpu_sys`` + ``used_cpu_user``, server-wide), the
    commands it processed (those scripts ran included) and its script calls (``EVALSHA`` and
    ``EVAL`` of ``commandstats``): take it before and after a measurement."""
    cpu = r.info("cpu")
    calls = sum(
        v["calls"]
        for k, v in r.info("commandstats").items()
        if k in ("cmdstat_evalsha", "cmdstat_eval")
    )
    seconds = float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return seconds, int(r.info("stats")["total_commands_processed"]), calls


def _cpu_seconds(r: redis.Redis, local: bool) -> tuple[float, float, float] | None:
    """Busy CPU seconds of the whole host, of this process and of Redis (when it runs on this
    host), to tell how much other processes ran during the measurement. None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    own = sum(os.times()[:2])
    server = 0.0
    if local:
        cpu = r.info("cpu")
        server = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return busy, own, server


def _other_cpu(
    before: tuple[float, float, float] | None,
    after: tuple[float, float, float] | None,
    seconds: float,
) -> float | None:
    """Percent of one CPU used by processes other than this one and Redis, over the run."""
    if before is None or after is None:
        return None
    busy, own, server = (a - b for a, b in zip(after, before))
    return round(max(0.0, busy - own - server) / seconds * 100, 1)


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "unix" or parts.hostname in ("127.0.0.1", "localhost", "::1")


class Watch:
    """A run's duration, the machine it ran on (``info``), and the CPU that other processes
    used meanwhile (``info["other_cpu_percent"]``, set by :meth:`stop`)."""

    def __init__(self, r: redis.Redis, url: str, **extra: Any) -> None:
        self._r = r
        self._local = _is_local(url)
        self._started = time.perf_counter()
        self.info = machine(r, **extra)
        self._cpu_before = _cpu_seconds(r, self._local)

    def stop(self) -> float:
        """The seconds since the start; records the other processes' share of a CPU."""
        seconds = time.perf_counter() - self._started
        after = _cpu_seconds(self._r, self._local)
        self.info["other_cpu_percent"] = _other_cpu(self._cpu_before, after, seconds)
        return seconds


# -- reporting and the command line -----------------------------------------------------------


def config(url: str, rounds: int, ops: int, chunk: int, warmup: int) -> dict[str, Any]:
    """The common part of a report's ``config`` (the URL without its password)."""
    return {"url": redact_url(url), "rounds": rounds, "ops": ops, "chunk": chunk, "warmup": warmup}


def versus(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """A redkit row against the peer's row doing the same: both times, redkit's over the
    peer's, the same for what each adds over the baseline, and the round trips of each."""
    return {
        "redkit_us": ours["median_us"],
        "peer_us": theirs["median_us"],
        "ratio": round(ours["median_us"] / theirs["median_us"], 3),
        "redkit_extra_us": ours["extra_us"],
        "peer_extra_us": theirs["extra_us"],
        "extra_ratio": round(ours["extra_us"] / theirs["extra_us"], 3)
        if theirs["extra_us"] > 0
        else None,
        "redkit_rtt": ours["round_trips_per_op"],
        "peer_rtt": theirs["round_trips_per_op"],
    }


def round_trip_target(what: str, row: Mapping[str, Any], expected: float) -> dict[str, Any]:
    """The target of a redkit row: ``expected`` round trips per op, on the wire and by the
    kit's own counters."""
    rtt, counted = row["round_trips_per_op"], row["kit_round_trips_per_op"]
    return {
        "what": what,
        "measure": "round trips",
        "value": round(rtt, 3),
        "limit": expected,
        "ok": rtt == expected and counted == expected,
    }


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``-`` when it is missing."""
    return "-" if value is None else format(value, spec)


def unlink(r: redis.Redis, match: str) -> int:
    """Delete every key matching ``match`` (``SCAN`` + ``UNLINK``); returns how many."""
    removed, batch = 0, []
    for key in r.scan_iter(match=match, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(r.unlink(*batch))
            batch = []
    if batch:
        removed += int(r.unlink(*batch))
    return removed


def machine_line(m: Mapping[str, Any]) -> str:
    """CPUs and the versions that matter, as one line."""
    return (
        f"{m['nproc']} CPUs, Python {m['python']}, Redis {m['redis_server']}, "
        f"redis-py {m['redis_py']}, hiredis {'yes' if m['hiredis'] else 'no'}, "
        f"orjson {m['orjson'] or 'no'}"
    )


def load_line(m: Mapping[str, Any]) -> str:
    """The load of the machine, as one line: figures from a busy machine are not comparable."""
    return f"load average at start {m['loadavg_start']:.2f}; " + (
        f"CPU used by other processes during the run: {m['other_cpu_percent']}% of one CPU"
        if m.get("other_cpu_percent") is not None
        else "CPU used by other processes: unknown"
    )


def table(
    rows: Sequence[Mapping[str, Any]],
    head: Callable[[Mapping[str, Any]], tuple[str, ...]],
    line: Callable[[tuple[str, ...], Mapping[str, Any]], str],
) -> list[str]:
    """Rows as lines, grouped by ``head``: a blank line between groups, and the head passed to
    ``line`` on a group's first row only (blanks after it)."""
    lines: list[str] = []
    previous: tuple[str, ...] | None = None
    for row in rows:
        current = head(row)
        if previous is not None and current != previous:
            lines.append("")
        shown = current if current != previous else tuple("" for _ in current)
        previous = current
        lines.append(line(shown, row))
    return lines


def target_lines(targets: Sequence[Mapping[str, Any]], width: int = 24) -> list[str]:
    """One line per target: what, the figure (``x`` for a ratio, else round trips), verdict."""
    lines = []
    for t in targets:
        value = f"{t['value']:.2f}{'x' if t['measure'] == 'ratio' else ' RTT'}"
        verdict = "info" if t["limit"] is None else ("ok" if t["ok"] else "MISSED")
        lines.append(f"  {t['what']:<{width}} {value:>9}  {verdict}")
    return lines


def cli(
    description: str,
    argv: Sequence[str] | None,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    passed: Callable[[dict[str, Any]], bool] | None = None,
    more: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line every benchmark shares: ``--url``, ``--rounds``, ``--ops``, ``--chunk``,
    ``--warmup``, ``--json`` and ``--check`` (plus what ``more`` adds). Runs ``run``, prints the
    report, and returns the exit status: 2 when Redis cannot be reached, 1 when ``--check`` is
    given and ``passed`` says no (by default: when a target in ``report["targets"]`` is not
    met)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url",
        default=os.environ.get("REDIS_URL", DEFAULT_URL),
        help=f"Redis URL (default: $REDIS_URL, else {DEFAULT_URL})",
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds per scenario (default 7)")
    parser.add_argument(
        "--ops", type=int, default=4000, help="calls per contender and round (default 4000)"
    )
    parser.add_argument(
        "--chunk", type=int, default=500, help="calls per alternating slice (default 500)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1000, help="warm-up calls per contender (default 1000)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    if more is not None:
        more(parser)
    args = parser.parse_args(argv)
    if min(args.rounds, args.ops, args.chunk, args.warmup) < 1:
        parser.error("--rounds, --ops, --chunk and --warmup must be at least 1")
    try:
        report = run(args)
    except redis.ConnectionError as exc:
        print(f"cannot reach Redis at {redact_url(args.url)}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else render(report))
    if passed is None:
        passed = _all_targets_met
    if args.check and not passed(report):
        return 1
    return 0


def _all_targets_met(report: Mapping[str, Any]) -> bool:
    return all(t["ok"] for t in report["targets"])
