"""Cache hot-path benchmark: ``kit.cache`` against plain redis-py, on the same Redis.

Run ``python bench/cache.py`` (``--url``, or ``REDIS_URL``; default ``redis://127.0.0.1:6379/15``).
It writes keys under a fresh prefix (``rkbench-<random>``) and deletes them at the end.

Scenarios, each sync (``redis.Redis``) and async (``redis.asyncio.Redis``):

* ``hit``: a present key holding a ~200-byte JSON dict. Baseline ``json.loads(r.get(key))``;
  contenders ``kit.cache.get(key)`` and ``kit.cache.get_or_set(key, loader)``, plus
  ``orjson.loads(r.get(key))`` when orjson is installed. redkit's entry is written by
  ``kit.cache.set``: a plain value, no metadata.
* ``miss``: a fresh key on every call and a loader that returns a constant at once. Baseline a raw
  ``GET`` of a missing key followed by the loader (one round trip, nothing stored); contenders
  ``kit.cache.get_or_set(key, loader)`` and a naive cache-aside ``GET`` + loader + ``SET`` (two
  round trips, no stampede lock).

Both sides use their default connection pools (``redis.Redis.from_url(url)`` and
``Redkit.from_url(url)``); redis-py uses hiredis for both when it is installed. redkit decodes with
orjson when it is installed while the baseline uses ``json.loads``; the ``raw GET + orjson.loads``
row shows what the decoder alone accounts for.

Method: every contender first runs ``--warmup`` calls (connections opened, scripts loaded). Then a
scenario runs ``--rounds`` rounds. In a round each contender makes ``--ops`` calls, in slices of
``--chunk`` calls that alternate between the contenders (A B C A B C ..., the order rotated from
round to round), so that drift in the machine or in Redis reaches all of them alike. A round's
figure for a contender is the wall time (and the CPU time of this process) of its slices divided
by ``--ops``. The garbage collector stays on and is run before each round.

How to read the output: ``µs/op`` is the median wall time per call over the rounds (``range`` the
fastest and the slowest round); ``cpu µs`` the median CPU time of this process per call (the
client's work, including its system calls; the network wait and Redis' own work are the rest);
``RTT/op`` the round trips per call (redkit's ``round_trips`` counter, or by construction for raw
redis-py); ``ratio`` and ``cpu ratio`` the contender's median over the baseline's (first row).
The header gives the share of a CPU that other processes used during the run (Linux; Redis counted
out when it is local): figures from a busy machine are not comparable.
The targets: a hit costs at most 1.15 times the raw call; a miss takes at most two round trips
plus the loader. ``--json`` prints the same figures as JSON; ``--check`` exits with status 1 when
a target is missed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
from harness import (
    Contender,
    Counters,
    Op,
    Result,
    Scenario,
    Watch,
    cli,
    config,
    load_line,
    machine_line,
    orjson,
    run_async,
    run_sync,
    table,
    target_lines,
)

import redkit
import redkit.asyncio

__all__ = ["Contender", "Result", "Scenario", "check_loads", "main", "render", "run", "targets"]

HIT_RATIO_TARGET = 1.15
MISS_RTT_TARGET = 2.0

VALUE: dict[str, Any] = {
    "id": 48213,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "active": True,
    "score": 98.5,
    "roles": ["admin", "editor"],
    "created": "2024-01-31T12:00:00Z",
    "address": {"city": "London", "country": "GB"},
}
"""The cached value: a small dict, about 200 bytes of JSON."""
PAYLOAD = json.dumps(VALUE, separators=(",", ":")).encode()
MISS_VALUE: dict[str, Any] = {"loaded": True}
MISS_TTL = 60.0


def loader() -> dict[str, Any]:
    """The loader of every ``get_or_set``: returns a constant at once."""
    return MISS_VALUE


# -- scenarios --------------------------------------------------------------------------------


class Keys:
    """Key lists: the hit keys are fixed, the miss keys fresh for every round and contender."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.kit_hit = "hit"
        self.raw_hit = f"{prefix}:raw:hit"

    @staticmethod
    def hit(key: str) -> Callable[[str, int], list[str]]:
        return lambda label, n: [key] * n

    @staticmethod
    def kit_miss(who: str) -> Callable[[str, int], list[str]]:
        # user keys: redkit builds "<prefix>:cache:{...}" itself
        return lambda label, n: [f"miss:{who}:{label}:{i}" for i in range(n)]

    def raw_miss(self, who: str) -> Callable[[str, int], list[str]]:
        # under the prefix as well, so that kit.clear() removes them
        return lambda label, n: [f"{self.prefix}:raw:miss:{who}:{label}:{i}" for i in range(n)]


def sync_scenarios(kit: redkit.Redkit, r: redis.Redis, keys: Keys) -> list[Scenario]:
    """The scenarios over a blocking redis-py client and ``redkit.Redkit``."""
    cache = kit.cache
    loads, dumps = json.loads, json.dumps
    px = int(MISS_TTL * 1000)

    def raw_get(ks: Sequence[str]) -> None:
        get = r.get
        for k in ks:
            loads(get(k))  # type: ignore[arg-type]  # a present key: bytes

    def raw_get_orjson(ks: Sequence[str]) -> None:
        get, oloads = r.get, orjson.loads
        for k in ks:
            oloads(get(k))

    def kit_get(ks: Sequence[str]) -> None:
        get = cache.get
        for k in ks:
            get(k)

    def kit_get_or_set(ks: Sequence[str]) -> None:
        get_or_set = cache.get_or_set
        for k in ks:
            get_or_set(k, loader, MISS_TTL)

    def raw_get_miss(ks: Sequence[str]) -> None:
        get = r.get
        for k in ks:
            if get(k) is None:
                loader()

    def raw_get_set_miss(ks: Sequence[str]) -> None:
        get, set_ = r.get, r.set
        for k in ks:
            if get(k) is None:
                set_(k, dumps(loader()), px=px)

    ops = (raw_get, raw_get_orjson, kit_get, kit_get_or_set, raw_get_miss, raw_get_set_miss)
    return _scenarios("sync", kit.stats.snapshot, keys, *ops)


def async_scenarios(
    akit: redkit.asyncio.Redkit, ar: redis.asyncio.Redis, keys: Keys
) -> list[Scenario]:
    """The same scenarios over an asyncio redis-py client and ``redkit.asyncio.Redkit``."""
    cache = akit.cache
    loads, dumps = json.loads, json.dumps
    px = int(MISS_TTL * 1000)

    async def raw_get(ks: Sequence[str]) -> None:
        get = ar.get
        for k in ks:
            loads(await get(k))  # type: ignore[arg-type]  # a present key: bytes

    async def raw_get_orjson(ks: Sequence[str]) -> None:
        get, oloads = ar.get, orjson.loads
        for k in ks:
            oloads(await get(k))

    async def kit_get(ks: Sequence[str]) -> None:
        get = cache.get
        for k in ks:
            await get(k)

    async def kit_get_or_set(ks: Sequence[str]) -> None:
        get_or_set = cache.get_or_set
        for k in ks:
            await get_or_set(k, loader, MISS_TTL)

    async def raw_get_miss(ks: Sequence[str]) -> None:
        get = ar.get
        for k in ks:
            if await get(k) is None:
                loader()

    async def raw_get_set_miss(ks: Sequence[str]) -> None:
        get, set_ = ar.get, ar.set
        for k in ks:
            if await get(k) is None:
                await set_(k, dumps(loader()), px=px)

    ops = (raw_get, raw_get_orjson, kit_get, kit_get_or_set, raw_get_miss, raw_get_set_miss)
    return _scenarios("async", akit.stats.snapshot, keys, *ops)


def _scenarios(
    mode: str,
    stats: Counters,
    keys: Keys,
    raw_get: Op,
    raw_get_orjson: Op,
    kit_get: Op,
    kit_get_or_set: Op,
    raw_get_miss: Op,
    raw_get_set_miss: Op,
) -> list[Scenario]:
    raw_hit = keys.hit(keys.raw_hit)
    kit_hit = keys.hit(keys.kit_hit)
    hit = [
        Contender("raw GET + json.loads", raw_get, raw_hit, round_trips=1),
        Contender("kit.cache.get", kit_get, kit_hit, stats),
        Contender("kit.cache.get_or_set", kit_get_or_set, kit_hit, stats),
    ]
    if orjson is not None:
        hit.append(Contender("raw GET + orjson.loads", raw_get_orjson, raw_hit, round_trips=1))
    miss = [
        Contender("raw GET + loader", raw_get_miss, keys.raw_miss(f"{mode}-get"), round_trips=1),
        Contender("kit.cache.get_or_set", kit_get_or_set, keys.kit_miss(f"{mode}-gos"), stats),
        Contender(
            "raw GET + loader + SET",
            raw_get_set_miss,
            keys.raw_miss(f"{mode}-getset"),
            round_trips=2,
        ),
    ]
    return [Scenario("hit", mode, hit), Scenario("miss", mode, miss)]


def _seed(kit: redkit.Redkit, r: redis.Redis, keys: Keys) -> None:
    kit.cache.set(keys.kit_hit, VALUE, ttl=3600)
    r.set(keys.raw_hit, PAYLOAD, ex=3600)
    if kit.cache.get(keys.kit_hit) != VALUE or json.loads(r.get(keys.raw_hit) or b"") != VALUE:
        raise RuntimeError("the seeded values do not read back")


def check_loads(results: list[Result]) -> None:
    """Raise unless every redkit miss called the loader once and no hit called it."""
    for r in results:
        loads = r.count("cache_loads")
        if loads is None:
            continue
        want = r.calls if r.scenario == "miss" else 0
        if loads != want:
            raise RuntimeError(
                f"{r.contender} ({r.scenario}, {r.mode}): the loader ran {loads:g} times "
                f"in {r.calls} calls, expected {want}"
            )


def targets(results: list[Result]) -> list[dict[str, Any]]:
    """One line per redkit contender: its figure, the limit, and whether the target holds."""
    out = []
    for r in results:
        if r.baseline or not r.contender.startswith("kit."):
            continue
        what = f"{r.contender.removeprefix('kit.cache.')} {r.scenario} {r.mode}"
        if r.scenario == "hit" and r.contender != "kit.cache.get":
            # the 1.15x hit target is get's; a get_or_set hit runs the lock-taking fetch script
            # that keeps a miss to two round trips (docs/performance.md): shown, not judged
            out.append(
                {
                    "what": what,
                    "measure": "ratio",
                    "value": round(r.ratio, 3),
                    "limit": None,
                    "ok": True,
                }
            )
            continue
        if r.scenario == "hit":
            value, limit, measure = r.ratio, HIT_RATIO_TARGET, "ratio"
        else:
            rtt = r.rtt_per_call()
            value = float("inf") if rtt is None else rtt
            limit, measure = MISS_RTT_TARGET, "round trips"
        out.append(
            {
                "what": what,
                "measure": measure,
                "value": round(value, 3),
                "limit": limit,
                "ok": value <= limit,
            }
        )
    return out


def run(
    url: str, rounds: int = 7, ops: int = 4000, chunk: int = 500, warmup: int = 1000
) -> dict[str, Any]:
    """Run every scenario against ``url``; returns the report (the ``--json`` document)."""
    prefix = f"rkbench-{secrets.token_hex(6)}"
    keys = Keys(prefix)
    r = redis.Redis.from_url(url)
    r.ping()  # fail here, before anything is written, when Redis does not answer
    kit = redkit.Redkit.from_url(url, prefix=prefix)
    results: list[Result] = []
    try:
        watch = Watch(r, url)
        _seed(kit, r, keys)
        for scenario in sync_scenarios(kit, r, keys):
            results += run_sync(scenario, rounds, ops, chunk, warmup)
        results += asyncio.run(_run_async(url, prefix, keys, rounds, ops, chunk, warmup))
        seconds = watch.stop()
        check_loads(results)
    finally:
        kit.clear()
        kit.close()
        r.close()
    return {
        "config": config(url, rounds, ops, chunk, warmup),
        "machine": watch.info,
        "value_bytes": len(PAYLOAD),
        "seconds": round(seconds, 1),
        "results": [
            x.as_dict({"target": x.scenario}, {"loads_per_op": x.per_call("cache_loads")})
            for x in results
        ],
        "targets": targets(results),
    }


async def _run_async(
    url: str, prefix: str, keys: Keys, rounds: int, ops: int, chunk: int, warmup: int
) -> list[Result]:
    ar = redis.asyncio.Redis.from_url(url)
    akit = redkit.asyncio.Redkit.from_url(url, prefix=prefix)
    results: list[Result] = []
    try:
        for scenario in async_scenarios(akit, ar, keys):
            results += await run_async(scenario, rounds, ops, chunk, warmup)
    finally:
        await akit.aclose()
        await ar.aclose()
    return results


def render(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    m, cfg = report["machine"], report["config"]
    lines = [
        f"redkit cache benchmark: {cfg['rounds']} rounds x {cfg['ops']} calls per contender "
        f"(slices of {cfg['chunk']}), {report['value_bytes']}-byte JSON value, "
        f"{report['seconds']} s",
        machine_line(m),
        load_line(m),
        "",
        f"{'scenario':<8} {'mode':<5} {'contender':<24} {'µs/op':>6} {'range':>13} "
        f"{'cpu µs':>6} {'RTT/op':>6} {'ratio':>5} {'cpu ratio':>9}",
    ]
    lines += table(report["results"], lambda r: (r["scenario"], r["mode"]), _row)
    lines += [
        "",
        f"targets: a hit <= {HIT_RATIO_TARGET}x the raw call (wall time), "
        f"a miss <= {MISS_RTT_TARGET:g} round trips + the loader",
    ]
    lines += target_lines(report["targets"])
    return "\n".join(lines)


def _row(head: tuple[str, ...], r: Mapping[str, Any]) -> str:
    scen, mode = head
    rtt = r["round_trips_per_op"]
    span = f"{r['min_us']:.1f}-{r['max_us']:.1f}"
    return (
        f"{scen:<8} {mode:<5} {r['contender']:<24} {r['median_us']:>6.1f} {span:>13} "
        f"{r['median_cpu_us']:>6.1f} {'-' if rtt is None else f'{rtt:.2f}':>6} "
        f"{r['ratio']:>5.2f} {r['cpu_ratio']:>9.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python bench/cache.py [--url URL] [--json] [--check] ...``."""
    return cli(
        "Cache hot-path benchmark: kit.cache against plain redis-py.",
        argv,
        lambda a: run(a.url, a.rounds, a.ops, a.chunk, a.warmup),
        render,
    )


if __name__ == "__main__":
    sys.exit(main())
