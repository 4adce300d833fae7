"""What every contender's process shares: the round-trip counter, the job body, and readings of
Redis (commands, CPU, memory). Plain redis-py only: this module also runs in a virtual
environment without redkit.

Round trips are counted on the client: every request that a redis-py connection writes to
Redis (a command, a script call, a whole pipeline, a blocking pop) is one round trip. The
counter is installed on redis-py's connection classes, sync and asyncio, so it sees every client
a library makes in this process. The job body's own client is left out of the count.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection

COUNTER_KEY = "rkbench:counter"
"""The key every job body increments."""
MARK_KEY = "rkbench:mark"
"""A hash: the round trips this process had written when the body saw the first and the last
job (fields ``first`` and ``last``)."""

_writes = itertools.count()
_orig_sync = redis.connection.AbstractConnection.send_packed_command
_orig_async = redis.asyncio.connection.AbstractConnection.send_packed_command


def writes() -> int:
    """Round trips written so far by this process (without reading them twice)."""
    return int(repr(_writes)[6:-1])


def install() -> None:
    """Count every request written by a redis-py connection of this process."""
    count = _writes.__next__

    def send_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        count()
        return _orig_sync(self, *args, **kwargs)

    def send_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        count()
        return _orig_async(self, *args, **kwargs)  # the coroutine, awaited by the caller

    redis.connection.AbstractConnection.send_packed_command = send_sync  # type: ignore[method-assign]
    redis.asyncio.connection.AbstractConnection.send_packed_command = send_async  # type: ignore[method-assign]
    _count_redkit_connections(count)


def _count_redkit_connections(count: Callable[[], Any]) -> None:
    """redkit gives its asyncio pools connection classes of its own, whose ``send_packed_command``
    does not call redis-py's: count theirs too (when redkit is installed)."""
    try:
        import redkit._connection as rc
    except ImportError:
        return
    make = rc.fast_packing

    def fast_packing(pool: Any) -> Any:
        out = make(pool)
        cls = pool.connection_class
        send = cls.__dict__.get("send_packed_command")
        if send is not None and not getattr(send, "_rkbench_counted", False):

            def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
                if self.socket_timeout:  # without one it calls redis-py's, counted already
                    count()
                return send(self, *args, **kwargs)

            counted._rkbench_counted = True  # type: ignore[attr-defined]
            cls.send_packed_command = counted
        return out

    rc.fast_packing = fast_packing  # type: ignore[assignment]


class _UncountedSync(redis.connection.Connection):
    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        return _orig_sync(self, *args, **kwargs)


class _UncountedAsync(redis.asyncio.connection.Connection):
    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        return _orig_async(self, *args, **kwargs)


def url() -> str:
    return os.environ["RKBENCH_URL"]


def target() -> int:
    return int(os.environ.get("RKBENCH_N", "0"))


# -- the job body ---------------------------------------------------------------------------
# Module-level clients, outside the round-trip count; a forked child gets fresh connections
# (redis-py checks the pid). Their pools are not capped (redis-py 8 caps a pool at 100
# connections by default and raises beyond that): each job in flight may hold one.
BODY_CONNECTIONS = 10_000
_sync_client: redis.Redis | None = None
_async_client: redis.asyncio.Redis | None = None


def sync_client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            url(), connection_class=_UncountedSync, max_connections=BODY_CONNECTIONS
        )
    return _sync_client


def async_client() -> redis.asyncio.Redis:
    global _async_client
    if _async_client is None:
        _async_client = redis.asyncio.Redis.from_url(
            url(), connection_class=_UncountedAsync, max_connections=BODY_CONNECTIONS
        )
    return _async_client


def body_sync() -> None:
    """A no-op job: one INCR of the counter."""
    v = sync_client().incr(COUNTER_KEY)
    if v == 1 or v == target():
        sync_client().hset(MARK_KEY, "first" if v == 1 else "last", writes())


async def body_async() -> None:
    """A no-op job: one INCR of the counter."""
    client = _async_client or async_client()
    v = await client.incr(COUNTER_KEY)
    if v == 1 or v == target():
        await client.hset(MARK_KEY, "first" if v == 1 else "last", writes())


# -- reporting from a worker process ------------------------------------------------------------
def report_at_exit(extra: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Write this process's round trips (and ``extra()``) to $RKBENCH_OUT when it exits."""
    out = os.environ.get("RKBENCH_OUT")
    if not out:
        return
    pid = os.getpid()

    def dump() -> None:
        if os.getpid() != pid:  # a forked child exiting
            return
        data = {"writes": writes(), **(extra() if extra else {})}
        with open(out, "w") as f:
            json.dump(data, f)

    atexit.register(dump)


def emit(result: Mapping[str, Any]) -> None:
    """Hand a result to the orchestrating process (the last line of stdout)."""
    sys.stdout.write("RKBENCH " + json.dumps(result) + "\n")
    sys.stdout.flush()


# -- reading Redis --------------------------------------------------------------------------
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def command_delta(
    before: Mapping[str, Any], after: Mapping[str, Any], less: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Calls per command between two ``Server.stats()`` readings, less ``less``."""
    out = {}
    for name, calls in after["calls"].items():
        d = calls - before["calls"].get(name, 0) - (less or {}).get(name, 0)
        if d > 0:
            out[name] = d
    return out


class Server:
    """Readings of the Redis server through a client that the round-trip count leaves out."""

    def __init__(self, url_: str) -> None:
        self.r = redis.Redis.from_url(url_, connection_class=_UncountedSync)

    def stats(self) -> dict[str, float]:
        """Commands processed (scripts' inner commands included), script calls, CPU seconds."""
        info = self.r.info("all")
        calls = {
            k[8:]: int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and isinstance(v, dict)
        }
        return {
            "calls": calls,
            "commands": int(info["total_commands_processed"]),
            "scripts": sum(calls.get(name, 0) for name in SCRIPT_COMMANDS),
            "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "used_memory": int(info["used_memory"]),
            "at": time.perf_counter(),
        }

    def memory(self) -> dict[str, Any]:
        """The bytes the keys of this database take (``MEMORY USAGE`` of each, exact), by group
        of keys (ids in key names replaced by ``*``), and ``used_memory``."""
        groups: dict[str, list[int]] = {}
        keys = list(self.r.scan_iter(count=2000))
        for i in range(0, len(keys), 2000):
            chunk = keys[i : i + 2000]
            pipe = self.r.pipeline(transaction=False)
            for k in chunk:
                pipe.memory_usage(k, samples=0)
            for k, size in zip(chunk, pipe.execute()):
                g = groups.setdefault(key_group(k.decode("utf-8", "replace")), [0, 0])
                g[0] += 1
                g[1] += int(size or 0)
        return {
            "keys": len(keys),
            "bytes": sum(g[1] for g in groups.values()),
            "groups": {k: {"keys": v[0], "bytes": v[1]} for k, v in sorted(groups.items())},
            "used_memory": int(self.r.info("memory")["used_memory"]),
        }


_ID = re.compile(
    r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"  # a uuid
    r"|[0-9a-fA-F]{12,}"  # a long hex id
    r"|[0-9]+"  # a number
    r"|[0-9A-Za-z_-]{20,}"  # a long random id
)


def key_group(key: str) -> str:
    """A key with the parts of it that are ids replaced by ``*``: one group per kind of key."""
    return ":".join("*" if _ID.fullmatch(part) else part for part in key.split(":"))
