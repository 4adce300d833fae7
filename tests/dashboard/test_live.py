"""Live updates over Server-Sent Events, on both shells: a tab watching a queue gets its new
counts once a job is added, a tab watching a job gets its state; many tabs share one reader of
Redis per process; a stream refuses anyone not signed in."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

import redkit
from redkit.dashboard import Dashboard, _live, make_asgi_app, make_wsgi_app
from tests.conftest import REDIS_URL, call, new_prefix
from tests.dashboard.conftest import TOKEN
from tests.queue.conftest import eventually

AUTH = [(b"authorization", f"Bearer {TOKEN}".encode())]


@pytest.fixture(autouse=True)
def quick_pings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ping every 0.2 s, so a WSGI stream notices its reader left at once (a server finds
    out when a write fails)."""
    monkeypatch.setattr(_live, "PING_EVERY", 0.2)


class _WsgiTab:
    """A stream of the WSGI app, read on a thread of its own."""

    def __init__(self, app: Any, query: str, auth: bool = True) -> None:
        self.events: list[tuple[str, Any]] = []
        self.status = ""
        self._app = app
        self._query = query
        self._auth = auth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/live",
            "QUERY_STRING": self._query,
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "localhost",
            "wsgi.url_scheme": "http",
        }
        if self._auth:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"

        def start(status: str, headers: Any) -> None:
            self.status = status

        body = self._app(environ, start)
        try:
            for chunk in body:
                self.events += _parse(chunk)
                if self._stop.is_set():
                    break
        finally:
            close = getattr(body, "close", None)
            if close:
                close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(20)


class _AsgiTab:
    """A stream of the ASGI app, read by a task; ``close`` disconnects like a browser."""

    def __init__(self, app: Any, query: str, auth: bool = True) -> None:
        self.events: list[tuple[str, Any]] = []
        self.status = 0
        self._gone = asyncio.Event()
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/live",
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver"), *(AUTH if auth else [])],
            "client": ("127.0.0.1", 5000),
            "scheme": "http",
        }

        async def receive() -> dict[str, Any]:
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message.get("body"):
                self.events += _parse(message["body"])

        self.task = asyncio.ensure_future(app(scope, receive, send))

    async def close(self) -> None:
        self._gone.set()
        await asyncio.wait_for(self.task, 10)


def _parse(chunk: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in chunk.decode().split("\n\n"):
        lines = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def _counts(events: list[tuple[str, Any]], queue: str) -> list[dict[str, int]]:
    return [data[queue] for kind, data in events if kind == "counts" and queue in data]


async def test_a_tab_sees_counts_and_the_job_in_view_change(kit: Any) -> None:
    dashboard = Dashboard(token=TOKEN)
    q = kit.queue("live")
    job = await call(q.add("x", None, delay=3600))
    if isinstance(kit, redkit.Redkit):
        app = make_wsgi_app(kit, dashboard)
        tab: Any = _WsgiTab(app, f"q=live&queue=live&job={job.id}")
    else:
        app = make_asgi_app(kit, dashboard)
        tab = _AsgiTab(app, f"q=live&queue=live&job={job.id}")
    try:
        await eventually(lambda: app.hub.tabs, 10, "the tab to open")
        await asyncio.sleep(0.7)  # the hub has read where each stream stands
        await call(q.add("y", None))
        await eventually(
            lambda: any(c["waiting"] == 1 for c in _counts(tab.events, "live")), 10, "new counts"
        )
        await call(job.promote())
        await eventually(
            lambda: any(k == "job" and d["state"] == "waiting" for k, d in tab.events),
            10,
            "the job's state",
        )
    finally:
        await call(tab.close())
        await call(app.hub.aclose() if not isinstance(kit, redkit.Redkit) else None)
    assert not app.hub.tabs  # a closed tab leaves the hub


async def test_many_tabs_share_one_reader(kit: Any) -> None:
    if not isinstance(kit, redkit.Redkit):
        app = make_asgi_app(kit, Dashboard(token=TOKEN))
        tabs: list[Any] = [_AsgiTab(app, "q=a&q=b") for _ in range(5)]
    else:
        app = make_wsgi_app(kit, Dashboard(token=TOKEN))
        tabs = [_WsgiTab(app, "q=a&q=b") for _ in range(5)]
    try:
        await eventually(lambda: len(app.hub.tabs) == 5, 10, "five tabs")
        before, started = app.hub.rounds, time.monotonic()
        await asyncio.sleep(2.0)
        rounds = app.hub.rounds - before
        elapsed = time.monotonic() - started
        assert 1 <= rounds <= elapsed / 0.5 + 1  # one read per interval, not one per tab
        await call(kit.queue("a").add("x", None))
        await eventually(lambda: all(_counts(t.events, "a") for t in tabs), 10, "every tab updated")
    finally:
        for t in tabs:
            await call(t.close())
        if not isinstance(kit, redkit.Redkit):
            await app.hub.aclose()


def test_a_head_or_an_unread_stream_leaves_no_tab() -> None:
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())  # the WSGI application's streams
    app = make_wsgi_app(kit, Dashboard(token=TOKEN))
    environ = {
        "PATH_INFO": "/live",
        "QUERY_STRING": "q=a",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        "wsgi.url_scheme": "http",
    }
    head = app({**environ, "REQUEST_METHOD": "HEAD"}, lambda status, headers: None)
    assert list(head) == [b""]
    unread = app({**environ, "REQUEST_METHOD": "GET"}, lambda status, headers: None)
    unread.close()  # a server that never read it: an error after the view, say
    assert not app.hub.tabs
    assert app.hub._thread is None
    kit.close()


async def test_a_stream_refuses_a_stranger(kit: Any) -> None:
    if isinstance(kit, redkit.Redkit):
        app = make_wsgi_app(kit, Dashboard(token=TOKEN))
        tab: Any = _WsgiTab(app, "q=a", auth=False)
        tab._thread.join(10)
        assert tab.status.startswith("401")
    else:
        app = make_asgi_app(kit, Dashboard(token=TOKEN))
        tab = _AsgiTab(app, "q=a", auth=False)
        await asyncio.wait_for(tab.task, 10)
        assert tab.status == 401
    assert tab.events == []
    assert not app.hub.tabs
