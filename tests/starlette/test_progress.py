"""``rk.job_events``: a job followed as Server-Sent Events, from its state to its last event,
with one reader of the queue's events however many streams are open; hostile ids get a 404.
On real Redis, memory:// and the cluster, with an in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import redkit.asyncio
from redkit.queue import JobFailed, current_job
from redkit_starlette import Redkit
from tests.starlette.conftest import serve


def _app(rk: Redkit, gate: asyncio.Event, **stream: Any) -> Starlette:
    @rk.task(queue="reports", attempts=1)
    async def build(steps: int, fail: bool = False) -> dict[str, int]:
        job = current_job()
        assert job is not None
        for step in range(1, steps + 1):
            await job.update_progress({"done": step, "of": steps})
        await gate.wait()
        if fail:
            raise RuntimeError("secret internal detail")
        return {"pages": steps}

    rk.worker("reports", concurrency=4, shutdown_timeout=1)

    async def start(request: Request) -> Response:
        fail = request.query_params.get("fail") == "1"
        job = await rk.task_for(request, build).enqueue(3, fail)
        return JSONResponse({"id": job.id}, 202)

    async def events(request: Request) -> Response:
        return await rk.job_events(
            request, request.path_params["job_id"], queue="reports", **stream
        )

    return Starlette(
        routes=[
            Route("/reports", start, methods=["POST"]),
            Route("/reports/{job_id:path}/events", events),
        ],
        lifespan=rk.lifespan,
    )


async def _read(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """The (event, data) pairs of a text/event-stream response, as they come."""
    kind, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


async def _follow(
    http: httpx.AsyncClient, job_id: str, until: int = 100, cut: list[bool] | None = None
) -> list[Any]:
    """The events of the job's stream, up to ``until`` of them; a stream the server cuts
    ends the list (and appends True to ``cut``)."""
    got: list[Any] = []
    async with http.stream("GET", f"/reports/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        try:
            async for item in _read(response):
                got.append(item)
                if len(got) >= until:
                    break
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if cut is None:
                raise
            cut.append(True)
    return got


async def test_a_job_is_followed_from_its_state_to_its_last_event(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    gate = asyncio.Event()
    app = _app(rk, gate, result=True)
    async with serve(app) as http:
        job_id = (await http.post("/reports")).json()["id"]
        follower = asyncio.create_task(_follow(http, job_id))
        await asyncio.sleep(0.3)  # the stream is open; the job reports its progress
        gate.set()
        got = await asyncio.wait_for(follower, 10)  # ends by itself at the last event
    kinds = [k for k, _ in got]
    assert kinds[0] == "state"
    assert got[0][1]["id"] == job_id
    assert kinds[-1] == "completed"
    assert got[-1][1] == {"id": job_id, "result": {"pages": 3}}
    progress = [d["progress"]["done"] for k, d in got if k == "progress"]
    first = (got[0][1]["progress"] or {"done": 0})["done"]
    # every step after the state was read arrives, in order (one read just before the state
    # may arrive again: the stream starts reading before it reads the state)
    assert progress == sorted(progress)
    assert set(range(first + 1, 4)) <= set(progress) <= set(range(first, 4))


async def test_a_finished_job_gives_its_state_and_the_stream_ends(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    gate = asyncio.Event()
    gate.set()
    app = _app(rk, gate)  # result and errors left out by default
    async with serve(app) as http:
        ok = (await http.post("/reports")).json()["id"]
        bad = (await http.post("/reports", params={"fail": "1"})).json()["id"]
        reports = app.state.redkit.queue("reports")
        assert await (await reports.get_job(ok)).wait(timeout=5) == {"pages": 3}
        with pytest.raises(JobFailed):
            await (await reports.get_job(bad)).wait(timeout=5)
        done = await asyncio.wait_for(_follow(http, ok), 5)
        failed = await asyncio.wait_for(_follow(http, bad), 5)
    assert done == [
        ("state", {"id": ok, "state": "completed", "progress": {"done": 3, "of": 3}, "attempts": 1})
    ]
    assert [k for k, _ in failed] == ["state"]
    assert failed[0][1]["state"] == "failed"
    assert "secret internal detail" not in json.dumps(failed)  # errors=False


async def test_errors_true_streams_the_failure_reason(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    gate = asyncio.Event()
    app = _app(rk, gate, errors=True)
    async with serve(app) as http:
        job_id = (await http.post("/reports", params={"fail": "1"})).json()["id"]
        follower = asyncio.create_task(_follow(http, job_id))
        await asyncio.sleep(0.3)
        gate.set()
        got = await asyncio.wait_for(follower, 10)
    assert got[-1][0] == "failed"
    assert "secret internal detail" in got[-1][1]["reason"]


async def test_a_cancelled_job_ends_its_stream(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    gate = asyncio.Event()  # never set: the job runs until it is cancelled
    app = _app(rk, gate)
    async with serve(app) as http:
        job_id = (await http.post("/reports")).json()["id"]
        follower = asyncio.create_task(_follow(http, job_id))
        reports = app.state.redkit.queue("reports")
        await asyncio.sleep(0.3)
        assert await (await reports.get_job(job_id)).cancel("no longer wanted") is True
        got = await asyncio.wait_for(follower, 10)  # ends by itself at the cancel
        finished = await asyncio.wait_for(_follow(http, job_id), 5)
    assert [k for k, _ in got][-2:] == ["cancelling", "cancelled"]
    assert "no longer wanted" not in json.dumps(got[-1])  # errors=False: no reason
    assert [(k, d["state"]) for k, d in finished] == [("state", "cancelled")]


@pytest.mark.parametrize(
    "job_id", ["nope", "x" * 300, "{reports}", "*", "%00", "a%09set-cookie:%20a=b", "%F0%9F%90%8D"]
)
async def test_unknown_or_hostile_job_ids_get_a_404(
    make_rk: Callable[..., Redkit], job_id: str
) -> None:
    rk = make_rk()
    app = _app(rk, asyncio.Event())
    async with serve(app) as http:
        got = await http.get(f"/reports/{job_id}/events")
        assert got.status_code == 404, got.text
        assert got.headers["content-type"] == "application/problem+json"
        assert "set-cookie" not in got.headers
        assert rk.running(app).hubs["reports"].followers == {}


@contextlib.asynccontextmanager
async def _uvicorn(app: Starlette, graceful: float | None = 2) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` served by uvicorn in this loop on a loopback port (streams are real here: a
    client that goes away is seen as gone), and a client of it; ``graceful`` is uvicorn's
    ``timeout_graceful_shutdown`` (``None``: it waits for every connection, its default)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", timeout_graceful_shutdown=graceful
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    port = sock.getsockname()[1]
    # the client outlives the server: a stream open at shutdown is ended by the server
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        try:
            while not server.started:
                assert not serving.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
            settings = app.state.redkit.settings
            yield http
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 20)
            sock.close()
    async with redkit.asyncio.Redkit(settings) as kit:  # the application's kit is closed
        await kit.clear()


def _readers() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == "redkit-events-reports")


async def test_many_streams_share_one_reader_and_leave_when_the_browser_goes(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    gate = asyncio.Event()
    app = _app(rk, gate)
    async with _uvicorn(app) as http:
        ids = [(await http.post("/reports")).json()["id"] for _ in range(3)]
        followers = [asyncio.create_task(_follow(http, ids[i % 3], until=1)) for i in range(30)]
        await asyncio.wait_for(asyncio.gather(*followers), 10)  # each read its state, left
        hub = rk.running(app).hubs["reports"]
        for _ in range(100):  # the server sees each client go
            if not hub.followers:
                break
            await asyncio.sleep(0.05)
        assert hub.followers == {}
        # thirty streams open at once: one reader of the events, not one connection each
        pool = getattr(app.state.redkit.client, "connection_pool", None)
        before = len(pool._in_use_connections) if pool is not None else 0
        opened = [asyncio.create_task(_follow(http, ids[i % 3])) for i in range(30)]
        for _ in range(100):
            if sum(len(v) for v in hub.followers.values()) == 30:
                break
            await asyncio.sleep(0.05)
        assert sum(len(v) for v in hub.followers.values()) == 30
        assert _readers() == 1
        if pool is not None:  # a cluster client keeps a pool per node
            # once each stream has read its job (a call of its own), none holds a connection
            for _ in range(100):
                if len(pool._in_use_connections) <= before + 1:
                    break
                await asyncio.sleep(0.02)
            assert len(pool._in_use_connections) <= before + 1  # the reader's, at most
        gate.set()
        ended = await asyncio.wait_for(asyncio.gather(*opened), 10)
        # each ends at the job's end: its completed event, or a state read after it completed
        assert all(
            got[-1][0] == "completed" or got[-1][1].get("state") == "completed" for got in ended
        )


async def test_shutdown_ends_open_streams_and_stops_the_reader(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = _app(rk, asyncio.Event())  # the job never finishes on its own
    async with _uvicorn(app) as http:
        job_id = (await http.post("/reports")).json()["id"]
        cut: list[bool] = []
        follower = asyncio.create_task(_follow(http, job_id, cut=cut))
        hub = None
        for _ in range(100):
            hub = rk.running(app).hubs.get("reports")
            if hub is not None and hub.followers:
                break
            await asyncio.sleep(0.05)
        assert hub is not None
        assert hub.running
    got = await asyncio.wait_for(follower, 10)  # the server went away: the stream ended
    assert got[0][0] == "state"
    assert cut == [True]  # cut by the server's graceful-shutdown timeout (EventSource retries)
    assert not hub.running
    assert _readers() == 0


async def test_a_stream_ends_after_its_lifetime_so_a_shutdown_does_not_wait_for_the_job(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = _app(rk, asyncio.Event(), lifetime=0.5, heartbeat=0.2)  # the job never finishes
    async with _uvicorn(app, graceful=None) as http:  # uvicorn waits for open streams
        job_id = (await http.post("/reports")).json()["id"]
        cut: list[bool] = []
        got = await asyncio.wait_for(_follow(http, job_id, cut=cut), 10)
        assert got[0][0] == "state"
        assert got[-1][0] in ("state", "active", "progress")  # not the job's end: its lifetime
        assert cut == []  # ended by the server, cleanly
        again = await asyncio.wait_for(_follow(http, job_id, until=1), 10)
        assert again[0][0] == "state"  # the reconnecting browser is up to date at once
        follower = asyncio.create_task(_follow(http, job_id, cut=cut))
        hub = rk.running(app).hubs["reports"]
        for _ in range(100):
            if hub.followers:
                break
            await asyncio.sleep(0.01)
        assert hub.followers
    await asyncio.wait_for(follower, 10)  # uvicorn shut down although the job still runs
    assert cut == []


async def test_bad_arguments_fail_before_anything_is_read(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    app = _app(rk, asyncio.Event())
    async with serve(app):
        request = Request({"type": "http", "app": app, "headers": [], "method": "GET"})
        for bad in (0, -1, float("nan"), float("inf"), True, "5"):
            with pytest.raises(ValueError, match="heartbeat"):
                await rk.job_events(request, "j", queue="reports", heartbeat=bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="lifetime"):
                await rk.job_events(request, "j", queue="reports", lifetime=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="queue"):
            await rk.job_events(request, "j", queue=None)  # type: ignore[arg-type]
        assert rk.running(app).hubs == {}


async def test_redis_unreachable_is_a_503_and_leaves_no_follower() -> None:
    rk = Redkit(
        "redis://127.0.0.1:1/0",  # nothing listens there
        socket_connect_timeout=0.2,
        retry_attempts=0,
    )

    async def events(request: Request) -> Response:
        return await rk.job_events(request, request.path_params["job_id"], queue="reports")

    app = Starlette(routes=[Route("/jobs/{job_id}/events", events)], lifespan=rk.lifespan)
    async with serve(app) as http:
        for _ in range(2):  # the first one fails to connect, the next finds the breaker open
            got = await http.get("/jobs/j-1/events")
            assert got.status_code == 503, got.text
            assert got.headers["content-type"] == "application/problem+json"
            assert int(got.headers["retry-after"]) >= 1
        hub = rk.running(app).hubs["reports"]
        assert hub.followers == {}
        assert not hub.running
