"""The sync and the async public APIs have the same names and parameters."""

from __future__ import annotations

import inspect

import pytest

import redkit
import redkit.asyncio
from redkit.cache import (
    AsyncCache,
    AsyncCachedFunction,
    AsyncWriteBehind,
    AsyncWriteThrough,
    Cache,
    CachedFunction,
    WriteBehind,
    WriteThrough,
)
from redkit.idempotency import AsyncIdempotency, Idempotency
from redkit.lock import AsyncLock, Lock
from redkit.messaging import (
    AsyncPubSub,
    AsyncStream,
    AsyncSubscription,
    PubSub,
    Stream,
    Subscription,
)
from redkit.queue import AsyncJob, AsyncQueue, AsyncTask, Job, Queue, Task
from redkit.ratelimit import AsyncLimiter, Limiter
from redkit.sessions import AsyncSessions, Sessions

# the first pairs are the ones whose async methods all do I/O (see IO_PAIRS)
PAIRS = [
    (redkit.Redkit, redkit.asyncio.Redkit),
    (Cache, AsyncCache),
    (Sessions, AsyncSessions),
    (Idempotency, AsyncIdempotency),
    (Limiter, AsyncLimiter),
    (Lock, AsyncLock),
    (PubSub, AsyncPubSub),
    (Stream, AsyncStream),
    (Subscription, AsyncSubscription),
    (Queue, AsyncQueue),
    (Job, AsyncJob),
    (Task, AsyncTask),
    (WriteBehind, AsyncWriteBehind),
    (WriteThrough, AsyncWriteThrough),
    (CachedFunction, AsyncCachedFunction),
]
IO_PAIRS = PAIRS[:-1]
# factories and pure helpers of async classes: they build objects or compute, and send nothing
NO_IO = {
    "cached",
    "write_behind",  # decorators: they build writers and send nothing
    "write_through",
    "configure",
    "from_url",
    "from_env",
    "from_settings",
    "lock",
    "on_close",
    "stream",
    "using",
    "queue",
    "task",
    "worker",
    "register",
    "options",
    "node",  # a job of a flow, described: nothing is sent
    "s",
    "si",
}
# objects that start their I/O when entered or awaited (``async with kit.pubsub.subscribe(...)``)
LAZY = {"AsyncIdempotency.guard", "AsyncPubSub.subscribe", "AsyncQueue.events"}
# names that differ on purpose: close/aclose and the context-manager protocols
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


def _public(cls: type) -> dict[str, inspect.Signature]:
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in RENAMED and name not in RENAMED.values():
            continue
        if callable(member):
            out[RENAMED.get(name, name)] = inspect.signature(member)
    return out


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=lambda c: c.__qualname__)
def test_same_names_and_parameters(sync_cls: type, async_cls: type) -> None:
    sync_api, async_api = _public(sync_cls), _public(async_cls)
    assert sorted(sync_api) == sorted(async_api)
    for name, sig in sync_api.items():
        other = async_api[name]
        assert list(sig.parameters) == list(other.parameters), name
        for p, q in zip(sig.parameters.values(), other.parameters.values()):
            assert (p.kind, p.default) == (q.kind, q.default), f"{name}({p.name})"


@pytest.mark.parametrize(("sync_cls", "async_cls"), IO_PAIRS, ids=lambda c: c.__qualname__)
def test_async_methods_that_do_io_are_coroutines(sync_cls: type, async_cls: type) -> None:
    for name, member in inspect.getmembers(async_cls, inspect.isfunction):
        if name.startswith("_") or name in NO_IO or f"{async_cls.__name__}.{name}" in LAZY:
            continue
        assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), name


def test_exported_names_are_sorted_and_exist() -> None:
    assert list(redkit.__all__) == sorted(redkit.__all__)
    for name in redkit.__all__:
        assert hasattr(redkit, name), name


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for cls in [c for pair in PAIRS for c in pair] + [redkit.Settings]:
        if not cls.__doc__:
            missing.append(cls.__qualname__)
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not callable(member):
                continue
            if not inspect.getdoc(member):
                missing.append(f"{cls.__qualname__}.{name}")
    assert missing == []
