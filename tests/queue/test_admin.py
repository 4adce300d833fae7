"""Administration: remove, drain, the ``redkit`` command, the workers' registry and the check of
Redis' eviction policy."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import ConfigurationError
from redkit.cli import main
from redkit.queue import STATES, JobFailed, JobNotFound
from tests.conftest import call, new_prefix
from tests.queue.conftest import (
    REDIS_AND_MEMORY,
    all_events,
    eventually,
    of_job,
    serving,
    start_worker,
)
from tests.servers import RedisProcess

ZERO = dict.fromkeys(STATES, 0)


# -- remove and drain -----------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_remove_deletes_a_job_that_is_not_running(kit: Any) -> None:
    q = kit.queue("remove")
    started = threading.Event()
    gate = threading.Event()

    @q.task(name="hold")
    def hold() -> str:
        started.set()
        gate.wait(10)
        return "held"

    waiting = await call(q.add("x", 1))
    prio = await call(q.add("x", 2, priority=4))
    later = await call(q.add("x", 3, delay=60))
    for job in (waiting, prio, later):
        assert await call(job.remove()) is True
        assert await call(q.get_job(job.id)) is None
    assert await call(waiting.remove()) is False  # gone already
    with pytest.raises(JobNotFound):
        await call(waiting.wait(1))
    with pytest.raises(JobNotFound):
        await call(waiting.refresh())
    assert await call(q.counts()) == ZERO
    assert of_job(await all_events(q), waiting.id) == ["added", "removed"]

    running = await call(q.add("hold", {"args": []}))
    try:
        async with serving(q):
            await eventually(started.is_set)
            with pytest.raises(ValueError, match="active"):
                await call(running.remove())
            assert (await call(q.get_job(running.id))).state == "active"
            gate.set()
            assert await call(running.wait(10)) == "held"
    finally:
        gate.set()
    assert await call(running.remove()) is True  # a completed job can go
    assert await call(q.counts()) == ZERO


@REDIS_AND_MEMORY
async def test_drain_deletes_waiting_jobs_and_delayed_ones_when_asked(kit: Any) -> None:
    q = kit.queue("drain")
    # more than one drain call's worth (1000) of waiting and prioritized jobs
    plain = await call(q.add_bulk([("x", {"i": i}) for i in range(600)]))
    prio = await call(q.add_bulk([("x", {"i": i}, {"priority": 1 + i % 3}) for i in range(500)]))
    later = await call(q.add_bulk([("x", {"i": i}, {"delay": 60}) for i in range(20)]))
    assert await call(q.drain()) == 1100
    assert await call(q.counts()) == {**ZERO, "delayed": 20}
    assert await call(q.get_job(plain[0].id)) is None
    assert await call(q.get_job(prio[-1].id)) is None
    assert (await call(q.get_job(later[0].id))).state == "delayed"
    assert await call(q.drain(delayed=True)) == 20
    assert await call(q.counts()) == ZERO
    assert await call(q.drain(delayed=True)) == 0
    assert [e.event for e in await all_events(q) if e.job_id is None].count("drained") >= 2


# -- workers --------------------------------------------------------------------------------------
@REDIS_AND_MEMORY
async def test_running_workers_are_listed_and_leave_the_list_when_they_stop(kit: Any) -> None:
    q = kit.queue("registry")
    assert await call(q.workers()) == []
    first = await start_worker(q, name="first")
    second = await start_worker(q, name="second")
    try:
        listed = await call(q.workers())
        assert sorted(wid for wid, _ in listed) == ["first", "second"]
        assert all(seen > 0 for _, seen in listed)
    finally:
        await first.stop()
    assert [wid for wid, _ in await call(q.workers())] == ["second"]
    await second.stop()
    assert await call(q.workers()) == []


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture
def cli_kit(backend: str, url: str, prefix: str) -> Iterator[redkit.Redkit]:
    kit = redkit.Redkit.from_url(url, prefix=prefix)
    yield kit
    kit.clear()
    kit.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


@REDIS_AND_MEMORY
async def test_cli_info_reports_counts_and_workers(
    cli_kit: redkit.Redkit, url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    q = cli_kit.queue("mail")
    other = cli_kit.queue("reports")
    await call(q.add("send", None))
    await call(q.add("send", None, delay=60))
    await call(other.add("build", None, priority=2))
    other.pause()
    conn = ["--url", url, "--prefix", prefix]
    async with serving(q, name="cli-worker", concurrency=3):
        # nothing runs "send": the waiting job fails, then the listing is stable
        await eventually(lambda: q.counts()["failed"] == 1)
        code, out = run_cli(capsys, "info", *conn, "--json")
        assert code == 0
        report = {item["queue"]: item for item in json.loads(out)}
        code, text = run_cli(capsys, "info", "mail", *conn)
    assert set(report) == {"mail", "reports"}
    mail = report["mail"]
    assert {s: mail[s] for s in STATES} == {**ZERO, "delayed": 1, "failed": 1}
    assert mail["paused"] is False
    (worker,) = mail["workers"]
    assert worker["id"] == "cli-worker"
    assert worker["concurrency"] == 3
    assert "seen_seconds_ago" in worker
    assert report["reports"]["paused"] is True
    assert report["reports"]["prioritized"] == 1
    assert report["reports"]["workers"] == []
    assert code == 0
    assert "queue mail" in text
    assert "delayed=1" in text
    assert "failed=1" in text
    assert "worker cli-worker" in text
    assert "reports" not in text


@REDIS_AND_MEMORY
async def test_cli_retry_failed_and_drain(
    cli_kit: redkit.Redkit, url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    q = cli_kit.queue("jobs")
    broken = {"on": True}

    @q.task(name="flaky")
    def flaky(i: int) -> int:
        if broken["on"]:
            raise RuntimeError("down")
        return i

    failing = [q.add("flaky", {"args": [i]}) for i in range(3)]
    async with serving(q):
        for job in failing:
            with pytest.raises(JobFailed):
                job.wait(10)
        q.pause()
    conn = ["--url", url, "--prefix", prefix]
    code, out = run_cli(capsys, "retry-failed", "jobs", "--limit", "1", *conn)
    assert code == 0
    assert out.startswith("1 failed job(s)")
    assert q.counts() == {**ZERO, "waiting": 1, "failed": 2}
    code, out = run_cli(capsys, "retry-failed", "jobs", *conn)
    assert code == 0
    assert out.startswith("2 failed job(s)")
    assert q.counts() == {**ZERO, "waiting": 3}

    q.add("flaky", {"args": [9]}, delay=60)
    code, out = run_cli(capsys, "drain", "jobs", *conn)
    assert code == 0
    assert out.startswith("3 waiting job(s)")
    assert q.counts() == {**ZERO, "delayed": 1}
    code, out = run_cli(capsys, "drain", "jobs", "--delayed", *conn)
    assert code == 0
    assert out.startswith("1 waiting job(s)")
    assert q.counts() == ZERO


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("no_such_module_for_redkit:queue", "cannot import 'no_such_module_for_redkit'"),
        ("json:no_such_attribute", "has no attribute 'no_such_attribute'"),
        ("json:dumps.__name__", "is a str, not a redkit queue or worker"),
        ("no-colon", "expected module:attribute"),
        ("json:", "expected module:attribute"),
        (":queue", "expected module:attribute"),
    ],
)
def test_cli_worker_with_a_bad_target_is_a_usage_error(
    target: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["worker", target])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: redkit")
    assert says in err
    assert "Traceback" not in err


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["worker", "json:dumps", "--concurrency", "0"],
        [],
        ["frobnicate"],
        ["worker", "x:y", "--limiter", "fast"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    capsys.readouterr()


# -- eviction policy ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evicting_redis() -> Iterator[str]:
    proc = RedisProcess(None, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru").start()
    yield proc.url
    proc.cleanup()


def _kit(mode: str, url: str, **settings: Any) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), **settings)


async def _close(kit: Any) -> None:
    await call(kit.clear())
    await call(kit.close() if isinstance(kit, redkit.Redkit) else kit.aclose())


async def test_an_evicting_redis_is_refused(evicting_redis: str, mode: str) -> None:
    kit = _kit(mode, evicting_redis, queue_eviction_policy="refuse")
    try:
        w = kit.queue("jobs").worker()
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            await w.serve()
        assert w.processed == 0
    finally:
        await _close(kit)


def test_start_raises_when_the_worker_cannot_serve(evicting_redis: str) -> None:
    kit = _kit("sync", evicting_redis, queue_eviction_policy="refuse")
    try:
        w = kit.queue("jobs").worker()
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            w.start()
        w.stop()
    finally:
        kit.clear()
        kit.close()


async def test_an_evicting_redis_is_reported(
    evicting_redis: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = _kit(mode, evicting_redis)  # the default: warn
    q = kit.queue("jobs")

    @q.task(name="ok")
    def ok() -> str:
        return "ran"

    try:
        with caplog.at_level(logging.INFO, logger="redkit.worker"):
            async with serving(q):
                assert await call((await call(q.add("ok", {"args": []}))).wait(10)) == "ran"
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].name == "redkit.worker"
        assert "allkeys-lru" in errors[0].getMessage()
        assert "noeviction" in errors[0].getMessage()
    finally:
        await _close(kit)


async def test_ignore_skips_the_eviction_check(
    evicting_redis: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = _kit(mode, evicting_redis, queue_eviction_policy="ignore")
    try:
        with caplog.at_level(logging.WARNING, logger="redkit.worker"):
            async with serving(kit.queue("jobs")):
                pass
        assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]
    finally:
        await _close(kit)


@pytest.mark.parametrize(
    "argv", [["info"], ["info", "--json"], ["retry-failed", "q"], ["drain", "q"]]
)
def test_cli_reports_an_unreachable_redis_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.2&retry_attempts=0"
    capsys.readouterr()
    code = main([*argv, "--url", url])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("redkit: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
