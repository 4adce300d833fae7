"""The lifespan runs the application's workers in its event loop and stops them gracefully:
in process (asgi-lifespan) and in a real uvicorn process stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

import redkit
from redkit.errors import ConfigurationError
from redkit_starlette import Redkit
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.servers import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


async def wait_for(check: Callable[[], object], what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not await check():  # type: ignore[misc]
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def state(job: object) -> str | None:
    """The job's state as Redis has it now (``None`` when it is gone)."""
    if job is None:
        return None
    record = (await job.refresh()).record  # type: ignore[attr-defined]
    return None if record is None else str(record.state)


async def test_a_declared_worker_runs_jobs_and_stops_with_the_app(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    done: list[int] = []

    @rk.task(queue="work")
    async def record(n: int) -> int:
        done.append(n)
        return n * 2

    rk.worker("work", concurrency=2, shutdown_timeout=5)
    app = Starlette(lifespan=rk.lifespan)
    async with LifespanManager(app):
        kit = app.state.redkit
        jobs = [await rk.task_for(app, record).enqueue(n) for n in range(5)]

        async def all_done() -> bool:
            return all([await state(j) == "completed" for j in jobs])

        await wait_for(all_done, "the jobs to complete")
        assert sorted(done) == list(range(5))
        assert (await jobs[3].refresh()).result == 6
        await kit.clear()
    assert kit.closed


async def test_a_worker_that_cannot_start_fails_the_start_up() -> None:
    evicting = RedisProcess(None, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    evicting.start()
    try:
        rk = Redkit(evicting.url, prefix=new_prefix(), queue_eviction_policy="refuse")

        @rk.task(queue="work")
        async def noop() -> None:
            return None

        rk.worker("work")
        entered: list[bool] = []

        @contextlib.asynccontextmanager
        async def own(app: Starlette) -> AsyncIterator[None]:
            entered.append(True)
            try:
                yield None
            finally:
                entered.append(False)

        app = Starlette(lifespan=rk.lifespan(own))
        with pytest.raises(ConfigurationError, match="maxmemory-policy"):
            async with LifespanManager(app):
                pytest.fail("the application must not start")
        assert entered == [True, False]  # the application's own lifespan was exited
        assert not hasattr(app.state, "redkit")  # the kit was closed and removed
    finally:
        evicting.cleanup()


async def test_shutdown_lets_running_jobs_finish_and_gives_the_rest_back(url: str) -> None:
    prefix = new_prefix()
    rk = Redkit(url, prefix=prefix)
    started = asyncio.Event()
    release = asyncio.Event()

    @rk.task(queue="grace", name="quick")
    async def quick() -> str:
        started.set()
        await release.wait()
        return "finished"

    @rk.task(queue="grace", name="stuck")
    async def stuck() -> str:
        await asyncio.sleep(3600)
        return "never"

    rk.worker("grace", concurrency=4, shutdown_timeout=0.5)
    app = Starlette(lifespan=rk.lifespan)
    async with LifespanManager(app):
        ok = await rk.task_for(app, quick).enqueue()
        hung = await rk.task_for(app, stuck).enqueue()
        await started.wait()

        async def both_active() -> bool:
            return await state(hung) == "active"

        await wait_for(both_active, "the stuck job to start")
        asyncio.get_running_loop().call_later(0.05, release.set)
    async with redkit.asyncio.Redkit.from_url(url, prefix=prefix) as kit:
        queue = kit.queue("grace")
        assert await state(await queue.get_job(ok.id)) == "completed"
        assert await state(await queue.get_job(hung.id)) == "waiting"
        await kit.clear()


needs_redis = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


def _uvicorn(
    env: dict[str, str], port: int, app: str = "tests.starlette.served_app:app"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "on",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _started(http: httpx.AsyncClient, server: subprocess.Popen[str], path: str) -> None:
    """Wait until uvicorn answers ``path`` with a 200."""
    end = time.monotonic() + 30
    while True:
        try:
            if (await http.get(path)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.communicate()[0]
        assert time.monotonic() < end, "uvicorn did not start"
        await asyncio.sleep(0.05)


async def test_redis_stopped_while_uvicorn_serves_then_started_again() -> None:
    redis_server = RedisProcess().start()
    port = free_port()
    env = {**os.environ, "RKTEST_URL": redis_server.url, "RKTEST_PREFIX": new_prefix()}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    server = _uvicorn(env, port, "tests.starlette.served_web:app")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await _started(http, server, "/hello")
            assert (await http.get("/counter")).json() == {"n": 1}
            assert (await http.get("/counter")).json() == {"n": 2}  # the cookie came back
            first = (await http.get("/page")).text
            assert (await http.get("/page")).text == first  # cached
            key = {"idempotency-key": "order-1"}
            paid = (await http.post("/pay", headers=key)).json()
            assert (await http.post("/pay", headers=key)).json() == paid  # replayed

            redis_server.stop()  # while serving
            down = await http.get("/counter")
            assert down.status_code == 503
            assert int(down.headers["retry-after"]) >= 1
            assert down.headers["content-type"] == "application/problem+json"
            assert (await http.post("/pay", headers=key)).status_code == 503  # not run twice
            assert (await http.post("/pay")).status_code == 200  # no key: nothing to guard
            assert (await http.get("/hello")).text == "hello"  # limits fail open
            assert (await http.get("/page")).text != first  # the cached route runs
            assert server.poll() is None

            redis_server.start()  # back, empty (it keeps nothing on disk)
            assert (await http.get("/counter")).json() == {"n": 1}  # a new session
            again = (await http.get("/page")).text
            assert (await http.get("/page")).text == again  # cached again
            assert (await http.get("/hello")).headers["x-ratelimit-limit"] == "1000"
        server.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(server.communicate, timeout=60)
        assert server.returncode in (0, -signal.SIGTERM), output
        assert "Traceback" not in output, output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        redis_server.cleanup()


@needs_redis
async def test_sigterm_under_uvicorn_loses_no_job_and_closes_the_pools() -> None:
    prefix = new_prefix()
    port = free_port()
    env = {**os.environ, "RKTEST_URL": REDIS_URL, "RKTEST_PREFIX": prefix, "RKTEST_GRACE": "10"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    server = _uvicorn(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            await _started(http, server, "/ping")
            ids = [
                (await http.get("/enqueue", params={"seconds": 0.3})).json()["id"] for _ in range(3)
            ]
        async with redkit.asyncio.Redkit.from_url(REDIS_URL, prefix=prefix) as kit:
            queue = kit.queue("slow")

            async def running() -> bool:
                jobs = [await queue.get_job(i) for i in ids]
                return all([await state(j) == "active" for j in jobs])

            await wait_for(running, "the jobs to run")
            server.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(server.communicate, timeout=60)
            assert server.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises it
            statuses = [await state(await queue.get_job(i)) for i in ids]
            assert statuses == ["completed"] * 3, output  # finished within the grace
            assert "SHUTDOWN workers=0" in output  # the worker stopped and said so
            assert "CLOSED [True]" in output  # the pools closed
            await kit.clear()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
