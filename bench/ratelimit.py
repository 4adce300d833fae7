"""Rate-limit benchmark: ``kit.limiter.hit`` against the ``limits`` library, on the same Redis.

Run ``python bench/ratelimit.py`` (``--url``, or ``REDIS_URL``; default
``redis://127.0.0.1:6379/15``) with a Python where ``limits`` is installed. It is not one of
redkit's dependencies: install it into a separate virtual environment, next to redkit itself::

    python -m venv ../benchenv
    ../benchenv/bin/pip install -e . limits redis hiredis orjson
    ../benchenv/bin/python bench/ratelimit.py

Without ``limits`` the benchmark says so and measures redkit's rows alone. It writes keys under a
fresh prefix (``rkbench-<random>`` for redkit, ``rkbench-<random>-limits`` for ``limits``) and
deletes them at the end (``SCAN`` + ``UNLINK``).

A check is one hit of ``"100000/minute"`` on one key per contender, and the caller branches on
the answer. The limit is never reached (the benchmark checks that no call was denied), so every
call takes the path of an admitted request that is charged. Pairs, each sync and async:

* redkit ``fixed_window`` and ``limits``' ``FixedWindowRateLimiter``;
* redkit ``sliding_window_log`` and ``MovingWindowRateLimiter`` (both keep one entry per request);
* redkit ``sliding_window_counter`` and ``SlidingWindowCounterRateLimiter`` (``limits`` >= 4.1);
* redkit ``token_bucket`` and ``gcra``, which ``limits`` does not have: information rows.

Clients: ``Redkit.from_url(url)`` and ``redkit.asyncio.Redkit.from_url(url)`` with redkit's
default settings; ``storage_from_string(url)`` for ``limits``, and for its ``limits.aio``
strategies ``storage_from_string("async+" + url, implementation="redispy")``, which runs on
redis-py's asyncio client (``limits``' default async client is coredis), both on a redis-py
connection pool built from the URL with redis-py's defaults. redis-py uses hiredis for all of
them when it is installed.

Method: ``bench/harness.py``. All the contenders of a mode are one scenario, so their slices
alternate (``--rounds`` rounds of ``--ops`` calls per contender, in slices of ``--chunk``, after
``--warmup`` calls).

How to read the output: ``µs/op`` is the median wall time per check over the rounds (``range``
the fastest and the slowest round), ``cpu µs`` the median CPU time of this process per check;
``RTT/op`` the requests written to Redis per check, counted on the connections of each client's
pool, the same way for both libraries (a command or a script call is one write followed by its
reply: one round trip; redis-py also writes when it opens a connection, which the warm-up does);
for redkit it must also equal ``kit.stats``' ``round_trips`` counter. ``cmds`` is the number of
Redis commands the check's Lua script runs and ``redis µs`` the time Redis spends on the script
call, both from ``INFO commandstats`` over ``--probe`` more checks per contender, made after the
rounds, one contender at a time, three times. Those counters are server-wide: an attempt that
saw script calls other than its own is dropped, each command counts with its lowest figure over
the other attempts, and ``-`` means that every attempt was disturbed. The figures are exact only
when nothing else uses this Redis. ``ratio`` and ``cpu ratio`` are redkit's median over
``limits``' for the same algorithm: below 1, redkit is faster. The header gives the share of a
CPU that other processes used during the run: figures from a busy machine are not comparable.

``--json`` prints the same figures as JSON; ``--check`` exits with status 1 when a redkit check
is not exactly one round trip, or when redkit is slower than ``limits`` for an algorithm both
have.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.metadata
import secrets
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import harness
import redis
import redis.asyncio
from harness import Contender, Op, Result, Scenario, fmt

import redkit
import redkit.asyncio

__all__ = ["ALGORITHMS", "Peer", "Probe", "Wire", "load_peer", "main", "render", "run", "targets"]

DESCRIPTION = "Rate-limit benchmark: kit.limiter against the limits library."
LIMIT = "100000/minute"
PROBE = 500
PROBE_ATTEMPTS = 3

INSTALL = """\
the peer library `limits` is not installed in this Python: only redkit's rows are measured.
To compare, install it into a separate virtual environment and run the benchmark from there:
    python -m venv ../benchenv
    ../benchenv/bin/pip install -e . limits redis hiredis orjson
    ../benchenv/bin/python bench/ratelimit.py"""


@dataclass(frozen=True)
class Algorithm:
    """One of redkit's algorithms and the ``limits`` strategy that does the same (if any)."""

    name: str
    peer: str | None


ALGORITHMS = (
    Algorithm("fixed_window", "FixedWindowRateLimiter"),
    Algorithm("sliding_window_log", "MovingWindowRateLimiter"),
    Algorithm("sliding_window_counter", "SlidingWindowCounterRateLimiter"),
    Algorithm("token_bucket", None),
    Algorithm("gcra", None),
)


# -- the peer ---------------------------------------------------------------------------------


@dataclass
class Peer:
    """The ``limits`` library, imported at run time: it is not one of redkit's dependencies."""

    version: str
    item: Any
    """The parsed ``LIMIT``."""
    storage_from_string: Any
    sync: dict[str, Any]
    """Strategy classes by name."""
    aio: dict[str, Any]
    """``limits.aio`` strategy classes by name (empty when unavailable)."""


def load_peer() -> tuple[Peer | None, list[str]]:
    """``limits`` when it is installed, and notes on what it lacks."""
    try:
        limits: Any = importlib.import_module("limits")
        storage: Any = importlib.import_module("limits.storage")
        strategies: Any = importlib.import_module("limits.strategies")
    except ImportError:
        return None, [INSTALL]
    version = importlib.metadata.version("limits")
    notes: list[str] = []
    wanted = [a.peer for a in ALGORITHMS if a.peer is not None]
    sync = {n: getattr(strategies, n) for n in wanted if hasattr(strategies, n)}
    notes += [
        f"limits {version} has no {n}: that pair is left out" for n in wanted if n not in sync
    ]
    try:
        aio_strategies: Any = importlib.import_module("limits.aio.strategies")
        aio = {n: getattr(aio_strategies, n) for n in sync if hasattr(aio_strategies, n)}
    except ImportError as exc:
        aio = {}
        notes.append(f"limits.aio is not usable ({exc}): no async limits rows")
    return Peer(version, limits.parse(LIMIT), storage.storage_from_string, sync, aio), notes


def _peer_url(url: str, aio: bool) -> str:
    """``limits``' storage URL for a redis-py URL."""
    if url.startswith("unix://"):
        url = "redis+" + url
    return "async+" + url if aio else url


# -- counting ---------------------------------------------------------------------------------


class Wire:
    """Counts the requests that the connections of one redis-py connection pool write to Redis.

    A plain command or a script call is one write and then one reply, so one round trip; a
    pipeline writes all its commands at once, one round trip too. Attach it before the pool
    opens its first connection: connections made earlier are not counted.
    """

    def __init__(self, pool: Any) -> None:
        self.writes = 0
        base = pool.connection_class
        wire = self

        def send_packed_command(conn: Any, *args: Any, **kwargs: Any) -> Any:
            wire.writes += 1
            # the async connection's method is a coroutine function: its awaitable is returned
            return base.send_packed_command(conn, *args, **kwargs)

        pool.connection_class = type(
            f"Counted{base.__name__}", (base,), {"send_packed_command": send_packed_command}
        )


class Denied:
    """Checks a contender saw denied: any means that the run measured the wrong path."""

    def __init__(self) -> None:
        self.n = 0


class Probe:
    """Redis' own account of one check: ``INFO commandstats`` deltas over ``n`` checks, made
    ``attempts`` times per contender.

    The counters are server-wide. An attempt that saw script calls other than its own is
    dropped, and each command's count is the lowest over the remaining attempts (another client
    can only add to it); the figures are exact when nothing else uses this Redis.
    """

    def __init__(self, r: redis.Redis, n: int, attempts: int = PROBE_ATTEMPTS) -> None:
        self.r = r
        self.n = n
        self.attempts = attempts
        self._kept: dict[str, list[tuple[dict[str, int], int]]] = {}
        self._before: dict[str, tuple[int, int]] = {}

    def _read(self) -> dict[str, tuple[int, int]]:
        stats = self.r.info("commandstats")
        return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in stats.items()}

    def start(self) -> None:
        """Call before an attempt's checks."""
        self._before = self._read()

    def stop(self, name: str) -> None:
        """Call after an attempt's checks of contender ``name``."""
        before, zero = self._before, (0, 0)
        delta = {
            k: (c - before.get(k, zero)[0], u - before.get(k, zero)[1])
            for k, (c, u) in self._read().items()
        }
        kept = self._kept.setdefault(name, [])
        calls, usec = delta.get("evalsha", zero)
        if calls == self.n:
            kept.append(
                ({k: c for k, (c, _) in delta.items() if c and k not in ("evalsha", "info")}, usec)
            )

    def figures(self, name: str) -> dict[str, Any] | None:
        """Contender ``name``'s commands per check inside the script (by name and in all) and
        Redis' microseconds per script call; None when every attempt was disturbed."""
        kept = self._kept.get(name)
        if not kept:
            return None
        names = sorted({k for counts, _ in kept for k in counts})
        commands = {
            k: round(min(counts.get(k, 0) for counts, _ in kept) / self.n, 2) for k in names
        }
        commands = {k: v for k, v in commands.items() if v}
        return {
            "commands": commands,
            "commands_per_op": round(sum(commands.values()), 2),
            "redis_us": round(min(usec for _, usec in kept) / self.n, 2),
        }


def probe_sync(probe: Probe, contenders: Sequence[Contender]) -> None:
    """Probe every sync contender, one after the other."""
    for c in contenders:
        for _ in range(probe.attempts):
            probe.start()
            c.op(c.keys("probe", probe.n))
            probe.stop(c.name)


async def probe_async(probe: Probe, contenders: Sequence[Contender]) -> None:
    """Probe every async contender, one after the other."""
    for c in contenders:
        for _ in range(probe.attempts):
            probe.start()
            await c.op(c.keys("probe", probe.n))
            probe.stop(c.name)


# -- scenarios --------------------------------------------------------------------------------


def _sync_op(check: Callable[[str], Any], denied: Denied) -> Op:
    def op(keys: Sequence[str]) -> None:
        for k in keys:
            if not check(k):
                denied.n += 1

    return op


def _async_op(check: Callable[[str], Awaitable[Any]], denied: Denied) -> Op:
    async def op(keys: Sequence[str]) -> None:
        for k in keys:
            if not await check(k):
                denied.n += 1

    return op


@dataclass
class Side:
    """One library's client in one mode: how to make a check of an algorithm, and its counters."""

    library: str
    wire: Wire
    check: Callable[[Algorithm], Callable[[str], Any] | None]
    """The check of an algorithm (None: the library does not have it)."""
    kit: Any = None
    """redkit's client (its ``stats`` are read too); None for ``limits``."""

    def contender(self, mode: str, algo: Algorithm) -> Contender | None:
        check = self.check(algo)
        if check is None:
            return None
        denied = Denied()
        make = _sync_op if mode == "sync" else _async_op
        key = f"{mode}-{algo.name}"
        name = f"{self.library} {algo.name if self.kit is not None else algo.peer}"
        return Contender(
            name, make(check, denied), lambda label, n: [key] * n, self._counters(denied)
        )

    def _counters(self, denied: Denied) -> Callable[[], dict[str, int]]:
        wire, kit = self.wire, self.kit
        if kit is None:
            return lambda: {"round_trips": wire.writes, "denied": denied.n}
        stats = kit.stats
        return lambda: {
            "round_trips": wire.writes,
            "kit_round_trips": stats.get("round_trips"),
            "denied": denied.n,
        }


def kit_side(kit: Any) -> Side:
    """redkit's side: ``kit.limiter.hit(key, LIMIT, algorithm=...)``."""
    wire = Wire(kit.client.connection_pool)
    hit = kit.limiter.hit
    return Side(
        "redkit", wire, lambda a: functools.partial(hit, limits=LIMIT, algorithm=a.name), kit
    )


def peer_side(peer: Peer, storage: Any, wire: Wire, aio: bool) -> Side:
    """``limits``' side: ``Strategy(storage).hit(item, key)``."""
    classes = peer.aio if aio else peer.sync

    def check(a: Algorithm) -> Callable[[str], Any] | None:
        if a.peer not in classes:
            return None
        return functools.partial(classes[a.peer](storage).hit, peer.item)

    return Side("limits", wire, check)


def scenario(mode: str, sides: Sequence[Side]) -> Scenario:
    """Every contender of one mode, each ``limits`` strategy next to redkit's algorithm."""
    contenders = []
    for algo in ALGORITHMS:
        for side in reversed(sides):
            c = side.contender(mode, algo)
            if c is not None:
                contenders.append(c)
    return Scenario("hit", mode, contenders)


# -- running ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one run measures, and where."""

    url: str
    rounds: int
    ops: int
    chunk: int
    warmup: int
    probe: int
    prefix: str
    peer_prefix: str

    def measure(self) -> tuple[int, int, int, int]:
        return self.rounds, self.ops, self.chunk, self.warmup


def _run_sync(s: Plan, r: redis.Redis, kit: Any, peer: Peer | None) -> tuple[list[Result], Probe]:
    sides = [kit_side(kit)]
    pool = None
    if peer is not None:
        pool = redis.ConnectionPool.from_url(s.url)
        wire = Wire(pool)
        storage = peer.storage_from_string(
            _peer_url(s.url, False), key_prefix=s.peer_prefix, connection_pool=pool
        )
        sides.append(peer_side(peer, storage, wire, False))
    try:
        sc = scenario("sync", sides)
        results = harness.run_sync(sc, *s.measure())
        probe = Probe(r, s.probe)
        probe_sync(probe, sc.contenders)
    finally:
        if pool is not None:
            pool.disconnect()
    return results, probe


async def _run_async(
    s: Plan, r: redis.Redis, peer: Peer | None, notes: list[str]
) -> tuple[list[Result], Probe]:
    akit = redkit.asyncio.Redkit.from_url(s.url, prefix=s.prefix)
    sides = [kit_side(akit)]
    pool = None
    if peer is not None and peer.aio:
        pool = redis.asyncio.ConnectionPool.from_url(s.url)
        wire = Wire(pool)
        try:
            storage = peer.storage_from_string(
                _peer_url(s.url, True),
                implementation="redispy",
                key_prefix=s.peer_prefix,
                connection_pool=pool,
            )
            sides.append(peer_side(peer, storage, wire, True))
        except Exception as exc:  # an older limits: no redis-py asyncio storage
            notes.append(f"limits.aio on redis-py's asyncio client is not usable ({exc!r})")
    try:
        sc = scenario("async", sides)
        results = await harness.run_async(sc, *s.measure())
        probe = Probe(r, s.probe)
        await probe_async(probe, sc.contenders)
    finally:
        await akit.aclose()
        if pool is not None:
            await pool.disconnect()
    return results, probe


def _row(result: Result, probe: Probe, peer: Result | None) -> dict[str, Any]:
    library = result.contender.partition(" ")[0]
    figures = probe.figures(result.contender)
    row = result.as_dict(
        {"library": library, "algorithm": _algorithm(result.contender)},
        {
            "kit_round_trips_per_op": result.per_call("kit_round_trips")
            if library == "redkit"
            else None,
            "script_commands_per_op": None if figures is None else figures["commands_per_op"],
            "script_commands": None if figures is None else figures["commands"],
            "redis_us": None if figures is None else figures["redis_us"],
        },
    )
    row["baseline"] = library == "limits"
    row["ratio"] = None if peer is None else round(result.median_us / peer.median_us, 3)
    row["cpu_ratio"] = None if peer is None else round(result.median_cpu_us / peer.median_cpu_us, 3)
    return row


def _algorithm(contender: str) -> str:
    library, _, name = contender.partition(" ")
    if library == "redkit":
        return name
    return next(a.name for a in ALGORITHMS if a.peer == name)


def _rows(results: list[Result], probe: Probe) -> list[dict[str, Any]]:
    peers = {_algorithm(r.contender): r for r in results if r.contender.startswith("limits ")}
    rows = []
    for r in results:
        redkit_row = r.contender.startswith("redkit ")
        rows.append(_row(r, probe, peers.get(_algorithm(r.contender)) if redkit_row else None))
    return rows


def _check_denied(results: list[Result]) -> None:
    for r in results:
        if r.count("denied"):
            raise RuntimeError(
                f"{r.contender} ({r.mode}): {r.count('denied')} of {r.calls} checks were denied; "
                f"the limit {LIMIT!r} should never be reached"
            )


def targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per redkit row: one round trip per check (on the wire and by ``kit.stats``), and, for an
    algorithm ``limits`` has too, a ratio of at most 1."""
    out = []
    for row in rows:
        if row["library"] != "redkit":
            continue
        what = f"{row['algorithm']} {row['mode']}"
        out.append(harness.round_trip_target(what, row, 1))
        if row["ratio"] is not None:
            out.append(
                {
                    "what": f"{what} vs limits",
                    "measure": "ratio",
                    "value": row["ratio"],
                    "limit": 1.0,
                    "ok": row["ratio"] <= 1.0,
                }
            )
    return out


def run(
    url: str,
    rounds: int = 7,
    ops: int = 4000,
    chunk: int = 500,
    warmup: int = 1000,
    probe: int = PROBE,
) -> dict[str, Any]:
    """Run both modes against ``url``; returns the report (the ``--json`` document)."""
    peer, notes = load_peer()
    if peer is None:
        print(INSTALL, file=sys.stderr)
    token = secrets.token_hex(6)
    s = Plan(url, rounds, ops, chunk, warmup, probe, f"rkbench-{token}", f"rkbench-{token}-limits")
    r = redis.Redis.from_url(url)
    r.ping()  # fail here, before anything is written, when Redis does not answer
    kit = redkit.Redkit.from_url(url, prefix=s.prefix)
    rows: list[dict[str, Any]] = []
    try:
        watch = harness.Watch(r, url, limits=None if peer is None else peer.version)
        results, sync_probe = _run_sync(s, r, kit, peer)
        rows += _rows(results, sync_probe)
        _check_denied(results)
        results, async_probe = asyncio.run(_run_async(s, r, peer, notes))
        rows += _rows(results, async_probe)
        _check_denied(results)
        seconds = watch.stop()
    finally:
        kit.clear()
        kit.close()
        harness.unlink(r, f"{s.peer_prefix}:*")
        left = sum(1 for _ in r.scan_iter(match=f"rkbench-{token}*", count=1000))
        r.close()
    if left:
        raise RuntimeError(f"{left} keys under rkbench-{token} were not deleted")
    return {
        "config": {
            **harness.config(url, rounds, ops, chunk, warmup),
            "limit": LIMIT,
            "probe": probe,
        },
        "machine": watch.info,
        "peer": {"library": "limits", "version": None if peer is None else peer.version},
        "notes": notes,
        "seconds": round(seconds, 1),
        "results": rows,
        "targets": targets(rows),
    }


# -- reporting --------------------------------------------------------------------------------


def _line(head: tuple[str, ...], r: Mapping[str, Any]) -> str:
    mode, algo = head
    name = r["contender"].removesuffix("RateLimiter")
    span = f"{r['min_us']:.1f}-{r['max_us']:.1f}"
    return (
        f"{mode:<5} {algo:<22} {name:<29} {r['median_us']:>6.1f} {span:>13} "
        f"{r['median_cpu_us']:>6.1f} {fmt(r['round_trips_per_op'], '.2f'):>6} "
        f"{fmt(r['script_commands_per_op'], '.1f'):>5} {fmt(r['redis_us'], '.1f'):>8} "
        f"{fmt(r['ratio'], '.2f'):>5} {fmt(r['cpu_ratio'], '.2f'):>9}"
    )


def render(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    m, cfg = report["machine"], report["config"]
    lines = [
        f"redkit rate-limit benchmark: {cfg['rounds']} rounds x {cfg['ops']} checks per "
        f"contender (slices of {cfg['chunk']}), limit {cfg['limit']!r}, {report['seconds']} s",
        f"{harness.machine_line(m)}, limits {m.get('limits') or 'not installed'}",
        harness.load_line(m),
        *(f"note: {n}" for n in report["notes"] if n != INSTALL),
        "",
        f"{'mode':<5} {'algorithm':<22} {'contender':<29} {'µs/op':>6} {'range':>13} "
        f"{'cpu µs':>6} {'RTT/op':>6} {'cmds':>5} {'redis µs':>8} {'ratio':>5} {'cpu ratio':>9}",
    ]
    lines += harness.table(report["results"], lambda r: (r["mode"], r["algorithm"]), _line)
    lines += [
        "",
        "ratio: redkit over limits, same algorithm (< 1: redkit faster); cmds and redis µs: "
        f"the script's commands and Redis' time per check, over {cfg['probe']} more checks",
        "targets: every redkit check is one round trip; redkit no slower than limits",
        *harness.target_lines(report["targets"], 40),
    ]
    return "\n".join(lines)


def _more(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--probe",
        type=int,
        default=PROBE,
        help=f"checks per contender for the INFO commandstats probe (default {PROBE})",
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return run(args.url, args.rounds, args.ops, args.chunk, args.warmup, max(1, args.probe))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python bench/ratelimit.py [--url URL] [--json] [--check] ...``."""
    return harness.cli(DESCRIPTION, argv, _run, render, more=_more)


if __name__ == "__main__":
    sys.exit(main())
