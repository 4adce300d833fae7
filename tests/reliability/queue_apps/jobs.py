"""A worker app for the reliability tests, configured by the environment.

``RKQ_URL`` is the Redis URL with the settings in its query (``?prefix=...&queue_lock_ttl=1``),
``RKQ_QUEUE`` the queue's name, ``RKQ_DEAD`` (optional) its dead-letter queue and
``RKQ_KEEP_FAILED`` (optional) how many failed jobs it keeps. Every task records its runs in
Redis, under the test's prefix: ``<prefix>:starts`` and ``<prefix>:ends`` are lists of
``"<index>:<pid>"`` entries pushed when a run begins and when its work is done, so a test can count
how many times each job ran and where. ``RKQ_LEDGER`` (optional) is a file outside Redis where the
``slot`` task appends one line per run of a job scheduler: ``<job id> <pid>``, and the ``gather``
task (a parent of a flow) one per run: ``<job id> <pid> <its children's indexes, or - for one that
did not complete>``. ``persist`` is a write-behind writer (``kit.cache.write_behind``): it
records each value it persists in the hash ``<prefix>:db`` after ``value["sleep"]`` seconds.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import time
from typing import Any

import redis

import redkit
from redkit.queue import Keep, Unrecoverable, current_job

kit = redkit.Redkit.from_url(os.environ["RKQ_URL"])
queue = kit.queue(
    os.environ.get("RKQ_QUEUE", "jobs"),
    dead_letter=os.environ.get("RKQ_DEAD") or None,
    keep=Keep(failed=int(os.environ["RKQ_KEEP_FAILED"]))
    if "RKQ_KEEP_FAILED" in os.environ
    else None,
)
STARTS = kit.keyspace.key("starts")
ENDS = kit.keyspace.key("ends")


def note(key: str, index: Any) -> None:
    """Push ``"<index>:<pid>"``; rides out a Redis restart (a run must not be lost to it)."""
    entry = f"{index}:{os.getpid()}"
    deadline = time.monotonic() + 60
    while True:
        try:
            kit.client.rpush(key, entry)
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@queue.task(name="record")
def record(index: int, sleep: float = 0.0) -> dict[str, Any]:
    note(STARTS, index)
    if sleep:
        time.sleep(sleep)
    note(ENDS, index)
    return {"index": index, "pid": os.getpid()}


@queue.task(name="arecord")
async def arecord(index: int, sleep: float = 0.0) -> dict[str, Any]:
    note(STARTS, index)
    if sleep:
        await asyncio.sleep(sleep)
    note(ENDS, index)
    return {"index": index, "pid": os.getpid()}


@queue.task(name="refuse")
def refuse(index: int, sleep: float = 0.0) -> None:
    """Fails for good, at once."""
    note(STARTS, index)
    raise Unrecoverable(f"job {index} is refused")


@queue.task(name="exit")
def exit_process(index: int) -> None:
    """A poison job: the process dies without a word, every time."""
    note(STARTS, index)
    os._exit(1)


@queue.task(name="segfault")
def segfault(index: int) -> None:
    """A poison job: a read at address 0 kills the process with SIGSEGV, every time."""
    note(STARTS, index)
    ctypes.string_at(0)


@queue.task(name="slot")
def slot() -> None:
    """A job scheduler's run: one line in the ledger file, written before the job completes."""
    _ledger(f"{current_job().id} {os.getpid()}\n")


def _ledger(line: str) -> None:
    fd = os.open(os.environ["RKQ_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())  # one write of a short line with O_APPEND: no interleaving
    finally:
        os.close(fd)


@queue.task(name="gather")
def gather() -> list[Any]:
    """A parent of a flow whose children are ``record`` jobs: one ledger line per run."""
    job = current_job()
    seen = [c.result["index"] if c.state == "completed" else None for c in job.children]
    _ledger(f"{job.id} {os.getpid()} {','.join('-' if i is None else str(i) for i in seen)}\n")
    return seen


DB = kit.keyspace.key("db")


@kit.cache.write_behind(queue, name="persist", debounce=0, lock_ttl=2, attempts=5)
def persist(key: int, value: dict[str, Any]) -> None:
    """Write ``value`` to the test's "database" (a hash in Redis, under the test's prefix)."""
    note(STARTS, key)
    time.sleep(value.get("sleep", 0))
    kit.client.hset(DB, str(key), json.dumps(value))
    note(ENDS, key)
