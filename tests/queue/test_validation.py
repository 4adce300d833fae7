"""Bad input is refused at the call, before anything reaches Redis: data that is not JSON, payloads
over the size limit, hostile names and ids, invalid options."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from redkit import SerializationError
from redkit.queue import STATES, Backoff, Keep, PayloadTooLarge
from tests.conftest import call
from tests.queue.conftest import keys, serving

ZERO = dict.fromkeys(STATES, 0)


async def assert_nothing_written(kit: Any, q: Any) -> None:
    assert await call(q.counts()) == ZERO
    assert await keys(kit) == []


async def test_data_that_is_not_json_names_where_it_is(kit: Any) -> None:
    q = kit.queue("bad-data")
    with pytest.raises(SerializationError) as caught:
        await call(q.add("signup", {"user": {"name": "a", "born": datetime(2000, 1, 1)}}))
    message = str(caught.value)
    assert 'data["user"]' in message
    assert "datetime" in message

    cases: list[tuple[Any, str]] = [
        ({"tags": {"a", "b"}}, "set"),
        ({"score": math.nan}, "nan"),
        ({"score": -math.inf}, "inf"),
        ([1, Decimal("1.5")], "Decimal"),
        ({1: "int key"}, "key"),
        (b"raw bytes", "bytes"),
        (object(), "object"),
    ]
    for data, what in cases:
        with pytest.raises(SerializationError, match=what):
            await call(q.add("x", data))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="circular"):
        await call(q.add("x", {"loop": loop}))
    assert isinstance(SerializationError("x"), TypeError)
    await assert_nothing_written(kit, q)


async def test_task_arguments_that_are_not_json_are_refused(kit: Any) -> None:
    q = kit.queue("bad-args")

    @q.task
    def greet(who: Any, *, when: Any = None) -> str:
        return f"hi {who}"

    with pytest.raises(SerializationError, match=r"args"):
        await call(greet.enqueue({"a", "b"}))
    with pytest.raises(SerializationError, match=r"kwargs"):
        await call(greet.enqueue("a", when=datetime.now(timezone.utc)))
    await assert_nothing_written(kit, q)


async def test_a_payload_over_the_limit_writes_nothing(kit: Any) -> None:
    q = kit.queue("big")
    blob = "x" * (10 * 1024 * 1024)
    with pytest.raises(PayloadTooLarge, match="queue_max_bytes") as caught:
        await call(q.add("upload", {"blob": blob}))
    assert isinstance(caught.value, ValueError)
    with pytest.raises(PayloadTooLarge):
        await call(q.add_bulk([("ok", {"i": 1}), ("upload", {"blob": blob})]))

    @q.task
    def upload(data: str) -> None:
        return None

    with pytest.raises(PayloadTooLarge):
        await call(upload.enqueue(blob))
    await assert_nothing_written(kit, q)


async def test_the_payload_limit_is_a_setting(make_kit: Any) -> None:
    kit = make_kit(queue_max_bytes=2048)
    q = kit.queue("small")
    job = await call(q.add("ok", "y" * 2000))
    assert job.state == "waiting"
    with pytest.raises(PayloadTooLarge, match="2048"):
        await call(q.add("big", "y" * 2100))
    assert await call(q.counts()) == {**ZERO, "waiting": 1}


HOSTILE = [
    "a{b}",
    "}{",
    "{",
    "*",
    "a b",
    "üñíçødé ✓ 🎉",
    "a:b:j:c",
    "%41",
    "x" * 200,
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_but_valid_names_and_ids_work(kit: Any, name: str) -> None:
    q = kit.queue(name)
    job = await call(q.add(name, {"v": name}, job_id=name))
    assert job.id == name
    got = await call(q.get_job(name))
    assert (got.name, got.data, got.state) == (name, {"v": name}, "waiting")
    assert await call(q.jobs("waiting")) == [name]
    prio = await call(q.add(name, 1, job_id=name[:190] + "-p", priority=1))
    assert await call(q.jobs("prioritized")) == [prio.id]
    assert await call(q.counts()) == {**ZERO, "waiting": 1, "prioritized": 1}
    # another queue, whose name is close, shares nothing with it
    other = kit.queue(name[:199] + "}")
    assert await call(other.counts()) == ZERO
    assert await call(other.get_job(name)) is None
    assert await call(call(job.remove())) is True
    assert await call(q.get_job(name)) is None


async def test_a_worker_runs_jobs_of_hostile_names(kit: Any) -> None:
    name = "{weird} *queue* ü"
    q = kit.queue(name)
    ran: list[Any] = []

    @q.task(name="task {x} * ✓")
    def echo(value: Any) -> Any:
        ran.append(value)
        return value

    job = await call(echo.options(job_id="id }{ * ✓").enqueue({"k": "v"}))
    async with serving(q, concurrency=1):
        assert await call(job.wait(10)) == {"k": "v"}
    assert ran == [{"k": "v"}]
    assert (await call(q.get_job("id }{ * ✓"))).state == "completed"


BAD_NAMES: list[tuple[Any, type[Exception]]] = [
    ("", ValueError),
    ("x" * 201, ValueError),
    ("line\nbreak", ValueError),
    ("nul\x00", ValueError),
    ("tab\t", ValueError),
    ("del\x7f", ValueError),
    ("escape\x1b[31m", ValueError),
    ("separator\u2028", ValueError),
    ("surrogate\ud800", ValueError),
    (42, TypeError),
    (None, TypeError),
    (b"bytes", TypeError),
]


@pytest.mark.parametrize(("bad", "error"), BAD_NAMES, ids=repr)
async def test_bad_names_and_ids_are_refused(kit: Any, bad: Any, error: type[Exception]) -> None:
    if bad is not None:
        with pytest.raises(error):
            kit.queue(bad)
    q = kit.queue("names")
    if bad is not None:
        with pytest.raises(error):
            await call(q.add(bad, 1))
        with pytest.raises(error):
            await call(q.add_bulk([("ok", 1), (bad, 2)]))

        with pytest.raises(error):

            @q.task(name=bad)
            def named() -> None: ...

        with pytest.raises(error):
            kit.queue("other", dead_letter=bad)
        with pytest.raises(error):
            await call(q.get_job(bad))
    with pytest.raises(error):
        await call(q.add("ok", 1, job_id=bad if bad is not None else 7))
    with pytest.raises(error):
        await call(q.add_bulk([("ok", 1), ("ok", 2, {"job_id": bad if bad is not None else 7})]))
    await assert_nothing_written(kit, q)


INVALID_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"delay": -1}, ValueError),
    ({"delay": -0.001}, ValueError),
    ({"delay": math.nan}, ValueError),
    ({"delay": math.inf}, ValueError),
    ({"delay": timedelta(seconds=-5)}, ValueError),
    ({"delay": datetime(2030, 1, 1)}, ValueError),  # naive
    ({"delay": 20 * 365 * 86400}, ValueError),
    ({"delay": "5"}, TypeError),
    ({"delay": True}, ValueError),  # a bool is no duration (and True == 1)
    ({"attempts": 0}, ValueError),
    ({"attempts": -1}, ValueError),
    ({"attempts": 1.5}, TypeError),
    ({"attempts": True}, TypeError),
    ({"attempts": 10**6}, ValueError),
    ({"backoff": math.nan}, ValueError),
    ({"backoff": -1}, ValueError),
    ({"backoff": "5s"}, TypeError),
    ({"backoff": lambda attempt, exc: 1.0}, TypeError),  # a function cannot be stored
    ({"priority": True}, TypeError),
    ({"priority": -1}, ValueError),
    ({"priority": 2**31}, ValueError),
    ({"priority": 1.0}, TypeError),
    ({"timeout": 0}, ValueError),
    ({"timeout": -1}, ValueError),
    ({"timeout": math.nan}, ValueError),
    ({"keep": "all"}, TypeError),
    ({"keep": -1}, ValueError),
    ({"job_id": ""}, ValueError),
    ({"delay_ms": 5}, TypeError),
    ({"retries": 3}, TypeError),
]


@pytest.mark.parametrize(("options", "error"), INVALID_OPTIONS, ids=repr)
async def test_invalid_options_raise_at_the_call(
    kit: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    q = kit.queue("options")

    @q.task
    def noop() -> None: ...

    with pytest.raises(error):
        await call(q.add("x", None, **options))
    with pytest.raises(error):
        await call(q.add_bulk([("x", None), ("x", None, options)]))
    with pytest.raises(error):
        await call(noop.options(**options).enqueue())
    await assert_nothing_written(kit, q)


async def test_invalid_queue_task_and_backoff_settings_raise(kit: Any) -> None:
    with pytest.raises(ValueError):
        kit.queue("q", attempts=0)
    with pytest.raises(TypeError):
        kit.queue("q", priority=True)
    with pytest.raises(ValueError):
        kit.queue("q", timeout=0)
    with pytest.raises(ValueError):
        kit.queue("q", events=-1)
    with pytest.raises(ValueError, match="its own dead-letter"):
        kit.queue("q", dead_letter="q")
    with pytest.raises(ValueError):
        Backoff.fixed(math.nan)
    with pytest.raises(ValueError):
        Backoff.exponential(1, jitter=1.5)
    with pytest.raises(ValueError):
        Backoff("linear", 1)
    with pytest.raises(ValueError):
        Keep(completed=-1)
    with pytest.raises(ValueError):
        Keep(failed_age=math.nan)

    q = kit.queue("tasks")
    with pytest.raises(TypeError, match="job_id is per job"):

        @q.task(job_id="fixed")
        def one() -> None: ...

    with pytest.raises(ValueError):

        @q.task(attempts=0)
        def two() -> None: ...

    with pytest.raises(TypeError):

        @q.task(retries=3)
        def three() -> None: ...

    with pytest.raises(TypeError):
        q.task(42)

    @q.task
    def four() -> None: ...

    with pytest.raises(TypeError):
        await call(four.enqueue_at(60))
    with pytest.raises(ValueError, match="timezone-aware"):
        await call(four.enqueue_at(datetime(2030, 1, 1)))
    with pytest.raises(ValueError):
        await call(four.enqueue_in(-1))
    with pytest.raises(TypeError, match="unknown job option"):
        four.options(delay_seconds=1)

    for options in (
        {"concurrency": 0},
        {"concurrency": True},
        {"limiter": (0, 1.0)},
        {"limiter": (5, 0)},
        {"lock_ttl": 0.0},
        {"max_stalled": -1},
        {"shutdown_timeout": -1},
        {"batch": 0},
        {"name": "bad\nname"},
    ):
        with pytest.raises(ValueError):
            q.worker(**options)
    with pytest.raises(TypeError):
        q.worker(limiter=5)
    with pytest.raises(TypeError):
        q.worker(processor="not callable")
    assert await keys(kit) == []


async def test_queue_scripts_refuse_malformed_calls_before_their_first_write(kit: Any) -> None:
    # the scripts check every job and every finish of a call before they write anything (a Lua
    # error does not undo earlier writes), so a malformed call leaves the queue as it was
    from redkit._ops import Batch, script
    from redkit.errors import ResponseError
    from redkit.queue._core import ADD, STEP

    q = kit.queue("malformed")
    job = await call(q.add("good", {"n": 1}))
    core = q._core
    before = sorted(await keys(kit))
    add_keys = core.add_keys
    good = [3, "fresh-1", "n", b"{}"]
    for argv, message in (
        ([core.job_prefix, 100, 2, *good, 4, "fresh-2", "n", b"{}"], "bad argument count"),
        ([core.job_prefix, 100, 2, *good, 3, "", "n", b"{}"], "empty job id"),
        ([core.job_prefix, 100, 1, 10, "x", "n", b"{}", b"", -1, 0, -1, -1, -1, -1], "priority"),
        ([core.job_prefix, 100, 1, 10, "x", "n", b"{}", b"", 0, 0, "a", -1, -1, -1], "retention"),
        ([core.job_prefix, 100, 1, *good, "extra"], "bad argument count"),
    ):
        with pytest.raises(ResponseError, match=message):
            await call(kit._executor.run(Batch.one(script(ADD, add_keys, argv))))
    step_keys = core.step_keys
    fixed = [core.job_prefix, 100, "w1", 30_000, 1, 1, 0, 0, 10, 0, 10, 0]
    for finishes in (
        [2, f"n1:{job.id}", "x1:other"],  # the second finish is malformed
        [1, f"r1:{job.id}", "reason", "stack", "soon"],  # a retry's delay is not a number
        [1, f"c1:{job.id}"],  # a completion without its result
        [2, f"n1:{job.id}"],  # fewer finishes than announced
    ):
        with pytest.raises(ResponseError, match="bad"):
            await call(kit._executor.run(Batch.one(script(STEP, step_keys, fixed + finishes))))
    # nothing was taken, finished or created by any of the refused calls
    assert sorted(await keys(kit)) == before
    assert (await call(q.get_job(job.id))).state == "waiting"
    assert (await call(q.counts()))["waiting"] == 1
