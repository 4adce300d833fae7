"""The sync and the async APIs behave alike: every scenario below is written once, as a script of
steps (a call and its arguments), run through ``redkit.Redkit`` by a blocking runner and through
``redkit.asyncio.Redkit`` by an awaiting one, each on its own prefix, on real Redis, on the test
cluster and on ``memory://``. The results are normalized (prefixes, random ids and tokens,
clocks) and compared step by step, the type and message of every error included.

A step expected to raise is written with :func:`bad`; any other step that raises, and a ``bad``
step that does not, fails the run outright, so a script cannot pass by failing the same way twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import inspect
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.cache import AsyncCache
from redkit.queue import AsyncJob, Job
from tests.conftest import new_prefix

EVERY_BACKEND = pytest.mark.parametrize("backend", ["redis", "cluster", "memory"], indirect=True)


# -- the script language ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """``call`` is a dotted path from a name (``kit`` or one kept by an earlier step) to a
    method, attribute or callable; a leading ``$`` names a runner action (``$sleep``,
    ``$calls``)."""

    call: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    keep: str | None = None
    """Keep the result under this name for later steps."""
    take: int | None = None
    """The result is an iterator: read up to this many items from it, then close it."""
    raises: bool = False
    varies_on_cluster: bool = False
    """The result depends on where a cluster put the prefix's keys (a ``publish`` count only
    counts the subscribers on the node owning the channel's slot): not compared on a cluster."""


def c(call: str, *args: Any, **kwargs: Any) -> Step:
    return Step(call, args, kwargs)


def keep(name: str, call: str, *args: Any, **kwargs: Any) -> Step:
    return Step(call, args, kwargs, keep=name)


def placed(call: str, *args: Any, **kwargs: Any) -> Step:
    """A step whose result on a cluster depends on the node placement of the prefix."""
    return Step(call, args, kwargs, varies_on_cluster=True)


def bad(call: str, *args: Any, **kwargs: Any) -> Step:
    """A step that must raise (its error is what gets compared)."""
    return Step(call, args, kwargs, raises=True)


@dataclass(frozen=True)
class Ref:
    """A kept result, or a part of it: ``Ref("job", "id")``, ``Ref("read", 0)``."""

    name: str
    path: tuple[str | int, ...] = ()

    def __init__(self, name: str, *path: str | int) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "path", path)


#: Bodies of the functions scripts pass to the API (loaders, cached functions, job processors).
BODIES: dict[str, Callable[..., Any]] = {}


def body(func: Callable[..., Any]) -> Callable[..., Any]:
    BODIES[func.__name__] = func
    return func


@dataclass(frozen=True)
class Fn:
    """The function named ``name`` of :data:`BODIES`: a ``def`` for the blocking runner, an
    ``async def`` for the awaiting one. Its calls are counted (``$calls``)."""

    name: str


@body
def load() -> dict[str, int]:
    return {"loaded": 1}


@body
def square(n: int) -> int:
    return n * n


@body
def process(job: Any) -> Any:
    if job.name == "boom":
        raise ValueError(f"boom on {job.data!r}")
    return {"doubled": job.data * 2}


# -- normalization ---------------------------------------------------------------------------------
VOLATILE_FIELDS = {"reset_after", "retry_after", "now", "time", "fencing_token"}
_STREAM_ID = re.compile(r"\b\d{10,}-\d+\b")
_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{16,}(?![\w-])")
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b")
_EPOCH_MS = re.compile(r"\b1\d{12}\b")


class Normalizer:
    """Turns results into plain data two runs can be compared by: the prefix becomes
    ``<prefix>``, each distinct stream id and random token becomes ``<id1>``, ``<id2>``... in the
    order first seen (so "the id read is the id added" survives), clocks become ``<time>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.labels: dict[str, str] = {}

    def _label(self, match: re.Match[str]) -> str:
        return self.labels.setdefault(match.group(0), f"<id{len(self.labels) + 1}>")

    def text(self, value: str) -> str:
        value = value.replace(self.prefix, "<prefix>")
        value = _STREAM_ID.sub(self._label, value)
        value = _EPOCH_MS.sub("<time>", value)
        value = _HEX.sub(self._label, value)
        return _TOKEN.sub(self._label, value)

    def __call__(self, value: Any, name: str = "") -> Any:
        if name in VOLATILE_FIELDS and isinstance(value, (int, float)) and value:
            return "<time>" if value > 0 else "<negative>"
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return ("bytes", self.text(value.decode("utf-8", "backslashreplace")))
        if isinstance(value, (datetime.datetime, datetime.date)):
            return "<time>"
        if isinstance(value, enum.Enum):
            return f"{type(value).__name__}.{value.name}"
        if isinstance(value, BaseException):
            return {"raises": _type_name(value), "message": self.text(str(value))}
        if isinstance(value, (Job, AsyncJob)):
            return {
                "type": "Job",
                "id": self(value.id),
                "state": value.state,
                "record": self(value.record),
            }
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out = {"type": _type_name(value)}
            for f in dataclasses.fields(value):
                raw = getattr(value, f.name)
                if raw and f.name in ("stacktrace", "worker_id"):  # differ run to run
                    out[f.name] = f"<{f.name}>"
                else:
                    out[f.name] = self(raw, f.name)
            return out
        if isinstance(value, Mapping):
            return {self(k): self(v, k if isinstance(k, str) else "") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if isinstance(value, (set, frozenset)):
            return sorted(map(repr, (self(v) for v in value)))
        # handles (Lock, Stream, Queue, Worker, Subscription, ...): what they are, not their state
        return {"type": _type_name(value)}


def _type_name(value: object) -> str:
    """The class name with an ``Async`` in front of it dropped (``AsyncJob`` is the twin of
    ``Job``); exceptions keep their module, the one thing a caller catches them by."""
    cls = type(value)
    name = cls.__qualname__.removeprefix("Async")
    if isinstance(value, BaseException):
        return f"{cls.__module__}.{name}"
    return name


# -- the runners -----------------------------------------------------------------------------------
class ScriptError(AssertionError):
    """The script itself went wrong (a step raised unexpectedly, or a bad step did not)."""


class _Outcome:
    result: Any = None


class _Run:
    """What both runners share: names, argument resolution, recording (no I/O)."""

    def __init__(self, kit: Any, mode: str, prefix: str) -> None:
        self.names: dict[str, Any] = {"kit": kit}
        self.mode = mode
        self.cluster = bool(kit.settings.is_cluster)
        self.normalize = Normalizer(prefix)
        self.calls: dict[str, int] = dict.fromkeys(BODIES, 0)
        self.trace: list[tuple[str, Any]] = []

    def function(self, fn: Fn) -> Callable[..., Any]:
        impl = BODIES[fn.name]

        def sync_fn(*args: Any, **kwargs: Any) -> Any:
            self.calls[fn.name] += 1
            return impl(*args, **kwargs)

        async def async_fn(*args: Any, **kwargs: Any) -> Any:
            self.calls[fn.name] += 1
            await asyncio.sleep(0)
            return impl(*args, **kwargs)

        made = sync_fn if self.mode == "sync" else async_fn
        made.__name__ = made.__qualname__ = fn.name
        return made

    def value(self, arg: Any) -> Any:
        if isinstance(arg, Ref):
            out = self.names[arg.name]
            for part in arg.path:
                out = out[part] if isinstance(part, int) else getattr(out, part)
            return out
        if isinstance(arg, Fn):
            return self.function(arg)
        if isinstance(arg, list):
            return [self.value(a) for a in arg]
        if isinstance(arg, dict):
            return {k: self.value(v) for k, v in arg.items()}
        return arg

    def target(self, step: Step) -> Any:
        root, *attrs = step.call.split(".")
        obj = self.names[root]
        for i, attr in enumerate(attrs):
            if self.mode == "async" and i == len(attrs) - 1 and attr == "close":
                attr = "aclose"  # the one name that differs on purpose
            obj = getattr(obj, attr)
        return obj

    def arguments(self, step: Step) -> tuple[list[Any], dict[str, Any]]:
        return [self.value(a) for a in step.args], {
            k: self.value(v) for k, v in step.kwargs.items()
        }

    def call(self, step: Step) -> Any:
        """Make the step's call (or read its attribute); the result, not yet awaited."""
        if step.call == "$calls":
            return dict(self.calls)
        if step.call.startswith("$"):
            raise ScriptError(f"unknown action {step.call}")
        target = self.target(step)
        if not callable(target):
            return target
        args, kwargs = self.arguments(step)
        return target(*args, **kwargs)

    @contextlib.contextmanager
    def step(self, i: int, step: Step) -> Iterator[_Outcome]:
        """Around one step: what it returned (set ``.result``) or raised is recorded."""
        out = _Outcome()
        try:
            yield out
        except ScriptError:
            raise
        except Exception as exc:
            self.record(i, step, None, exc)
        else:
            self.record(i, step, out.result, None)

    def record(self, i: int, step: Step, result: Any, error: BaseException | None) -> None:
        where = f"step {i} ({step.call}) of the {self.mode} run"
        if error is not None and not step.raises:
            raise ScriptError(f"{where} raised {error!r}") from error
        if error is None and step.raises:
            raise ScriptError(f"{where} was to raise, and returned {result!r}")
        if step.keep is not None:
            self.names[step.keep] = result
        outcome = error if error is not None else result
        if step.varies_on_cluster and self.cluster and error is None:
            outcome = "<placed by the cluster>"
        self.trace.append((step.call, self.normalize(outcome, step.call.rpartition(".")[2])))


def run_sync(kit: redkit.Redkit, prefix: str, steps: Iterable[Step]) -> list[tuple[str, Any]]:
    """Run ``steps`` through the blocking API; the normalized trace."""
    run = _Run(kit, "sync", prefix)
    for i, step in enumerate(steps):
        with run.step(i, step) as out:
            if step.call == "$sleep":
                time.sleep(*step.args)
                continue
            out.result = run.call(step)
            if step.take is not None:
                items = list(itertools.islice(out.result, step.take))
                out.result.close()
                out.result = items
    return run.trace


async def run_async(
    kit: redkit.asyncio.Redkit, prefix: str, steps: Iterable[Step]
) -> list[tuple[str, Any]]:
    """Run ``steps`` through the asyncio API, awaiting what is awaitable; the normalized trace."""
    run = _Run(kit, "async", prefix)
    for i, step in enumerate(steps):
        with run.step(i, step) as out:
            if step.call == "$sleep":
                await asyncio.sleep(*step.args)
                continue
            out.result = run.call(step)
            if inspect.isawaitable(out.result):
                out.result = await out.result
            if step.take is not None:
                items = [item async for item in _first(out.result, step.take)]
                await out.result.aclose()
                out.result = items
    return run.trace


async def _first(items: Any, count: int) -> Any:
    """The first ``count`` items of an async iterator (leaving it open)."""
    for _ in range(count):
        try:
            yield await anext(items)
        except StopAsyncIteration:
            return


def differences(sync_trace: list[tuple[str, Any]], async_trace: list[tuple[str, Any]]) -> list[str]:
    """One line per step whose normalized results differ."""
    out = []
    for i, (left, right) in enumerate(itertools.zip_longest(sync_trace, async_trace)):
        if left != right:
            call = (left or right)[0]
            out.append(
                f"step {i} {call}:\n  sync:  {left and left[1]!r}\n  async: {right and right[1]!r}"
            )
    return out


async def both(url: str, steps: list[Step]) -> list[str]:
    """Run ``steps`` through both APIs (each on a fresh prefix); the differences."""
    sync_prefix, async_prefix = new_prefix(), new_prefix()
    sync_kit = redkit.Redkit.from_url(url, prefix=sync_prefix)
    async_kit = redkit.asyncio.Redkit.from_url(url, prefix=async_prefix)
    try:
        sync_trace = run_sync(sync_kit, sync_prefix, steps)
        async_trace = await run_async(async_kit, async_prefix, steps)
    finally:
        sync_kit.clear()
        sync_kit.close()
        await async_kit.clear()
        await async_kit.aclose()
    assert len(sync_trace) == len(steps)
    return differences(sync_trace, async_trace)


# -- the scenarios ---------------------------------------------------------------------------------
CACHE = [
    c("kit.cache.get", "missing"),
    c("kit.cache.get", "missing", "fallback"),
    c("kit.cache.set", "a", {"x": 1, "list": [1, 2.5, None]}, ttl=60),
    c("kit.cache.get", "a"),
    c("kit.cache.set", "b", [1, 2], tags=["t1"]),
    c("kit.cache.set", "c", "v", tags=["t1", "t2"]),
    c("kit.cache.set", "d", True, tags=["t2"]),
    c("kit.cache.get_many", ["a", "b", "c", "d", "zzz"]),
    c("kit.cache.invalidate", ["t1"]),
    c("kit.cache.get_many", ["a", "b", "c", "d"]),
    c("kit.cache.invalidate", ["t2", "never-used"]),
    c("kit.cache.get", "d"),
    c("kit.cache.set_many", {"m1": 1, "m2": "two"}, ttl=30),
    c("kit.cache.get_many", ["m1", "m2"]),
    c("kit.cache.get_or_set", "lo", Fn("load"), ttl=60),
    c("kit.cache.get_or_set", "lo", Fn("load"), ttl=60),
    c("$calls"),
    c("kit.cache.delete", "a"),
    c("kit.cache.delete", "a"),
    c("kit.cache.delete_many", ["m1", "m2", "nope"]),
    c("kit.cache.touch", "missing"),
    c("kit.cache.touch", "lo", 120),
    c("kit.cache.incr", "n"),
    c("kit.cache.incr", "n", 5),
    c("kit.cache.incr", "n", -2, ttl=60),
    c("kit.cache.get", "n"),
    keep("decorator", "kit.cache.cached", ttl=60),
    keep("squared", "decorator", Fn("square")),
    c("squared", 3),
    c("squared", 3),
    c("squared", n=4),
    c("$calls"),
    c("squared.invalidate", 3),
    c("squared.invalidate", 3),
    c("squared", 3),
    c("$calls"),
    c("squared.key_for", 3),
    # bad input: the same error, before anything is written
    c("kit.cache.set", "s", "text"),
    bad("kit.cache.incr", "s"),
    bad("kit.cache.get", ["a", "list"]),
    bad("kit.cache.get", None),
    bad("kit.cache.set", "x", 1, ttl=-1),
    bad("kit.cache.set", "x", 1, ttl=float("nan")),
    bad("kit.cache.set", "x", 1, tags=True),
    bad("kit.cache.set", "x", 1, tags=["\ud800"]),
    bad("kit.cache.set", "x", {1, 2}),
    bad("kit.cache.incr", "n", 1.5),
    bad("kit.cache.get_or_set", "x", "not callable"),
    c("kit.cache.get_many", ["x", "s"]),
]

SESSIONS = [
    keep("sid", "kit.sessions.create", {"user": 1, "cart": []}),
    c("kit.sessions.load", Ref("sid")),
    c("kit.sessions.save", Ref("sid"), {"cart": [7]}, ["user"]),
    c("kit.sessions.load", Ref("sid")),
    c("kit.sessions.touch", Ref("sid")),
    keep("sid2", "kit.sessions.regenerate", Ref("sid")),
    c("kit.sessions.load", Ref("sid")),
    c("kit.sessions.load", Ref("sid2")),
    c("kit.sessions.destroy", Ref("sid2")),
    c("kit.sessions.destroy", Ref("sid2")),
    c("kit.sessions.load", Ref("sid2")),
    c("kit.sessions.save", Ref("sid2"), {"a": 1}),
    c("kit.sessions.regenerate", Ref("sid2")),
    c("kit.sessions.touch", Ref("sid2")),
    keep("empty", "kit.sessions.create"),
    c("kit.sessions.load", Ref("empty")),
    c("kit.sessions.load", "not-a-session-id"),
    c("kit.sessions.load", ""),
    c("kit.sessions.load", 12.5),
    bad("kit.sessions.create", {"bad": {1, 2}}),
    bad("kit.sessions.create", "not a mapping"),
    bad("kit.sessions.save", Ref("empty"), {"bad": object()}),
    bad("kit.sessions.save", Ref("empty"), {"big": "x" * 2_000_000}),
    c("kit.sessions.load", Ref("empty")),
]

LOCK = [
    keep("l1", "kit.lock", "res", ttl=5),
    keep("l2", "kit.lock", "res", ttl=5),
    c("l1.locked"),
    c("l1.acquire", blocking=False),
    c("l1.fencing_token"),
    c("l2.acquire", blocking=False),
    c("l2.acquire", timeout=0.1),
    c("l1.locked"),
    c("l1.owned"),
    c("l2.owned"),
    c("l1.extend", 10),
    bad("l2.release"),
    bad("l2.extend", 10),
    c("l1.release"),
    bad("l1.release"),
    c("l1.owned"),
    c("l2.acquire", blocking=False),
    c("l2.fencing_token"),
    c("l2.release"),
    keep("short", "kit.lock", "expiring", ttl=0.1),
    c("short.acquire"),
    c("$sleep", 0.25),
    c("short.locked"),
    c("short.owned"),
    c("short.lost"),
    bad("short.release"),
    bad("kit.lock", "x", ttl=-1),
    bad("kit.lock", "x", ttl=float("nan")),
    bad("kit.lock", "x", ttl=True),
    bad("kit.lock", ["x"]),
    bad("l1.extend", -5),
    bad("l1.acquire", timeout=-1),
]

LIMITER = [
    c("kit.limiter.hit", "u", "3/minute"),
    c("kit.limiter.hit", "u", "3/minute"),
    c("kit.limiter.test", "u", "3/minute"),
    c("kit.limiter.hit", "u", "3/minute"),
    c("kit.limiter.hit", "u", "3/minute"),
    c("kit.limiter.test", "u", "3/minute"),
    c("kit.limiter.refund", "u", "3/minute"),
    c("kit.limiter.hit", "u", "3/minute"),
    c("kit.limiter.reset", "u"),
    c("kit.limiter.hit", "u", "3/minute", cost=2),
    c("kit.limiter.hit", "u", "3/minute", cost=2),
    c("kit.limiter.hit", "multi", "1/second;5/minute"),
    c("kit.limiter.hit", "multi", "1/second;5/minute"),
    c("kit.limiter.hit", "big", "2/hour", cost=3),
    c("kit.limiter.hit", "g", "2/minute", algorithm="gcra"),
    c("kit.limiter.hit", "g", "2/minute", algorithm="token_bucket"),
    c("kit.limiter.hit", "f", "1/hour", algorithm="fixed_window"),
    c("kit.limiter.hit", "f", "1/hour", algorithm="fixed_window"),
    c("kit.limiter.hit", "s", "1/hour", algorithm="sliding_window_log"),
    c("kit.limiter.hit", "s", "1/hour", algorithm="sliding_window_log"),
    c("kit.limiter.reset", "nobody"),
    bad("kit.limiter.hit", "u", "nonsense"),
    bad("kit.limiter.hit", "u", "3/fortnight"),
    bad("kit.limiter.hit", "u", "0/minute"),
    bad("kit.limiter.hit", "u", "3/minute", cost=0),
    bad("kit.limiter.hit", "u", "3/minute", cost=-1),
    bad("kit.limiter.hit", "u", "3/minute", algorithm="nope"),
    bad("kit.limiter.hit", "u", "9" * 5000 + "/minute"),
    bad("kit.limiter.hit", None, "3/minute"),
    bad("kit.limiter.configure", algorithm="nope"),
    c("kit.limiter.test", "u", "3/minute"),
]

PUBSUB = [
    keep("sub", "kit.pubsub.subscribe", "news", patterns=["sport.*"]),
    c("sub.channels"),
    c("sub.patterns"),
    c("kit.pubsub.publish", "news", {"a": 1}),
    c("sub.get", timeout=5),
    placed("kit.pubsub.publish", "sport.tennis", [1, "x"]),
    c("sub.get", timeout=5),
    c("sub.get", timeout=0.05),
    c("kit.pubsub.publish", "other", 1),
    c("sub.get", timeout=0.05),
    c("sub.unsubscribe", "news"),
    c("sub.channels"),
    c("kit.pubsub.publish", "news", "gone"),
    c("sub.subscribe", "weather"),
    placed("kit.pubsub.publish", "weather", None),
    c("sub.get", timeout=5),
    c("sub.close"),
    c("sub.closed"),
    c("sub.get", timeout=0.05),
    bad("kit.pubsub.publish", "news", {1, 2}),
    bad("kit.pubsub.publish", "news", float("nan")),
    bad("kit.pubsub.publish", None, 1),
    bad("kit.pubsub.publish", "", 1),
    bad("kit.pubsub.subscribe", patterns=["a["]),
    bad("kit.pubsub.subscribe", ["not", "a", "name"]),
]

STREAMS = [
    keep("st", "kit.stream", "events"),
    c("st.length"),
    c("st.pending", "g"),
    keep("id1", "st.add", {"n": 1}),
    keep("id2", "st.add", {"n": 2, "tags": ["a"]}),
    c("st.length"),
    c("st.create_group", "g"),
    c("st.create_group", "g"),
    c("st.create_group", "late", start="$"),
    keep("r1", "st.read", "g", "c1", count=1),
    keep("r2", "st.read", "g", "c2", count=10),
    c("st.read", "g", "c2", count=10),
    c("st.read", "late", "c1", timeout=0.05),
    c("st.pending", "g"),
    c("st.ack", "g", Ref("r1", 0)),
    c("st.ack", "g", Ref("r1", 0, "id")),
    c("st.ack", "g"),
    c("st.pending", "g"),
    c("$sleep", 0.05),
    c("st.claim_stale", "g", "c3", min_idle=0.01),
    c("st.claim_stale", "g", "c3", min_idle=60),
    c("st.pending", "g"),
    c("st.ack", "g", Ref("id2")),
    c("st.add", {"n": 3}),
    c("st.trim", 1, approximate=False),
    c("st.length"),
    c("st.delete"),
    c("st.delete"),
    c("st.length"),
    bad("st.add", "not a mapping"),
    bad("st.add", {"x": {1}}),
    bad("st.add", {"x": 1}, ttl=-1),
    bad("st.add", {"x": 1}, maxlen=0),
    bad("st.read", "g", "c", count=0),
    bad("st.read", "g", "c", timeout=-1),
    bad("st.create_group", "\ud800"),
    bad("st.create_group", "g", start="nonsense"),
    bad("st.claim_stale", "g", "c", min_idle=-1),
    bad("st.ack", "g", "not-an-id"),
    bad("kit.stream", ""),
    c("st.length"),
]

QUEUE = [
    keep("q", "kit.queue", "jobs", attempts=1),
    c("q.counts"),
    keep("j1", "q.add", "double", 21),
    keep("j2", "q.add", "boom", "x"),
    keep("j3", "q.add", "later", 1, delay=60),
    keep("j4", "q.add", "urgent", 2, priority=1, job_id="mine"),
    c("q.add", "urgent", 99, job_id="mine"),
    c("q.counts"),
    c("q.jobs", "waiting"),
    c("q.jobs", "delayed"),
    c("q.get_job", Ref("j1", "id")),
    c("q.get_job", "no-such-job"),
    bad("j1.wait", 0.05),
    Step("q.events", kwargs={"since": "0", "timeout": 0.2}, take=10),
    c("q.pause"),
    c("q.is_paused"),
    c("q.resume"),
    keep("w", "q.worker", processor=Fn("process"), concurrency=1),
    c("w.start"),
    c("j4.wait", 10),
    c("j1.wait", 10),
    bad("j2.wait", 10),
    c("w.stop"),
    c("j1.refresh"),
    c("j2.refresh"),
    c("$calls"),
    c("q.counts"),
    c("q.jobs", "failed"),
    c("j2.retry"),
    c("j2.retry"),
    c("q.counts"),
    c("j3.remove"),
    c("j3.remove"),
    c("q.get_job", Ref("j3", "id")),
    c("q.drain"),
    c("q.retry_failed"),
    c("q.counts"),
    Step("q.events", kwargs={"since": "0", "timeout": 0.2}, take=40),
    bad("q.add", ""),
    bad("q.add", "x", {1, 2}),
    bad("q.add", "x", 1, delay=-1),
    bad("q.add", "x", 1, priority="high"),
    bad("q.add", "x", 1, attempts=0),
    bad("q.add", "x", 1, nonsense=1),
    bad("q.add", "x", 1, job_id=""),
    bad("q.add_bulk", [("ok", 1), ("bad", {1})]),
    bad("q.jobs", "nostate"),
    bad("kit.queue", ""),
    bad("kit.queue", "q", attempts=-1),
    c("q.counts"),
]

IDEMPOTENCY = [
    keep("b1", "kit.idempotency.begin", "key-1", "fp-A"),
    c("kit.idempotency.begin", "key-1", "fp-A", timeout=0),
    c("kit.idempotency.begin", "key-1", "fp-B", timeout=0),
    c("kit.idempotency.renew", "key-1", Ref("b1", "token")),
    c("kit.idempotency.renew", "key-1", "not-the-token"),
    c(
        "kit.idempotency.complete",
        "key-1",
        Ref("b1", "token"),
        201,
        [("Content-Type", "application/json"), ("Set-Cookie-Not", "x")],
        b'{"ok": 1}',
    ),
    c("kit.idempotency.begin", "key-1", "fp-A"),
    c("kit.idempotency.begin", "key-1", "fp-B"),
    c("kit.idempotency.complete", "key-1", Ref("b1", "token"), 200, [], b"again"),
    c("kit.idempotency.release", "key-1", Ref("b1", "token")),
    c("kit.idempotency.begin", "key-1", "fp-A", scope="alice"),
    keep("b2", "kit.idempotency.begin", "key-2", "fp", scope="alice"),
    c("kit.idempotency.release", "key-2", Ref("b2", "token"), scope="alice"),
    c("kit.idempotency.release", "key-2", Ref("b2", "token"), scope="alice"),
    keep("b3", "kit.idempotency.begin", "key-3", "fp", token="my-own-token-1234567890"),
    c("kit.idempotency.begin", "key-3", "fp", token="my-own-token-1234567890"),
    c("kit.idempotency.complete", "key-3", Ref("b3", "token"), 503, [], b"down"),
    c("kit.idempotency.begin", "key-3", "fp"),
    bad("kit.idempotency.begin", "", "fp"),
    bad("kit.idempotency.begin", "k" * 300, "fp"),
    bad("kit.idempotency.begin", "bad\nkey", "fp"),
    bad("kit.idempotency.begin", "key", 5),
    bad("kit.idempotency.begin", "key", "fp", timeout=-1),
    bad("kit.idempotency.begin", "key", "fp", scope=1.5),
    bad("kit.idempotency.complete", "key-1", "t", 99, [], b""),
    bad("kit.idempotency.complete", "key-1", "t", 200, [], "not bytes"),
    bad("kit.idempotency.complete", "key-1", "t", 200, "not headers", b""),
    c("kit.idempotency.begin", "key", "fp", timeout=0),
]

SCENARIOS = {
    "cache": CACHE,
    "sessions": SESSIONS,
    "lock": LOCK,
    "limiter": LIMITER,
    "pubsub": PUBSUB,
    "streams": STREAMS,
    "queue": QUEUE,
    "idempotency": IDEMPOTENCY,
}


@EVERY_BACKEND
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_sync_and_async_behave_alike(url: str, scenario: str) -> None:
    found = await both(url, SCENARIOS[scenario])
    assert not found, f"{scenario}: the sync and async runs differ\n" + "\n".join(found)


# -- the comparison can fail -----------------------------------------------------------------------
SMALL = [
    c("kit.cache.set", "k", 1),
    c("kit.cache.get", "k"),
    c("kit.cache.incr", "k"),
]


@EVERY_BACKEND
async def test_a_different_async_result_is_reported(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await both(url, SMALL) == []
    real_get = AsyncCache.get

    async def off_by_one(self: AsyncCache, key: object, default: Any = None) -> Any:
        return await real_get(self, key, default) + 1

    monkeypatch.setattr(AsyncCache, "get", off_by_one)
    found = await both(url, SMALL)
    assert found == ["step 1 kit.cache.get:\n  sync:  1\n  async: 2"]


@EVERY_BACKEND
async def test_a_different_error_is_reported(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script = [*SMALL, c("kit.cache.set", "s", "text"), bad("kit.cache.incr", "s")]
    assert await both(url, script) == []

    real_incr = AsyncCache.incr

    async def other_error(self: AsyncCache, key: object, delta: int = 1, ttl: Any = None) -> int:
        if key == "s":
            raise ValueError(f"cannot add to {key!r}")
        return await real_incr(self, key, delta, ttl)

    monkeypatch.setattr(AsyncCache, "incr", other_error)
    found = await both(url, script)
    assert len(found) == 1
    assert found[0].startswith("step 4 kit.cache.incr:\n  sync:  {'raises': 'redkit.errors.")
    assert "async: {'raises': 'builtins.ValueError', 'message': \"cannot add to 's'\"}" in found[0]


def test_normalizing_keeps_which_id_is_which() -> None:
    """Random ids become labels by order of appearance: the same relation on both sides compares
    equal, a broken one (the id read is not the id added) does not."""
    added, read, other = "1700000000000-0", "1700000000000-0", "1700000000001-0"
    left = Normalizer("rktest-a")([added, read, "rktest-a:stream:{x}"])
    right = Normalizer("rktest-b")(["1800000000000-5", "1800000000000-5", "rktest-b:stream:{x}"])
    broken = Normalizer("rktest-b")([added, other, "rktest-b:stream:{x}"])
    assert left == right == ["<id1>", "<id1>", "<prefix>:stream:{x}"]
    assert broken != left
    token = Normalizer("p")
    assert token("a3f9c2d4e5b6a7c8d9e0") == token("a3f9c2d4e5b6a7c8d9e0") == "<id1>"
    assert token("sliding_window_counter") == "sliding_window_counter"


def test_a_script_that_fails_the_same_way_twice_does_not_pass() -> None:
    kit = redkit.Redkit.from_url("memory://parity-selfcheck", prefix="p")
    try:
        with pytest.raises(ScriptError, match="raised"):
            run_sync(kit, "p", [c("kit.cache.no_such_method")])
        with pytest.raises(ScriptError, match="was to raise"):
            run_sync(kit, "p", [bad("kit.cache.get", "fine")])
    finally:
        kit.close()
