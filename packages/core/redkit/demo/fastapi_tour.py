"""A tour of the FastAPI shop (:mod:`redkit.demo.fastapi_shop`) on SQLite, its workers in the
application's event loop; requests are handed to the ASGI application directly, the way a
server would. ``python -m redkit demo --part fastapi`` runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode


class Answer:
    """One response: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class Browser:
    """Sends requests to an ASGI application and keeps its cookies, like a browser."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        raw = b"" if body is None else json.dumps(body).encode()
        sent = [(b"host", b"shop.example"), (b"content-type", b"application/json")]
        sent += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if self.cookies:
            jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            sent.append((b"cookie", jar.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(query or {}).encode(),
            "headers": sent,
            "client": ("203.0.113.7", 50000),
            "server": ("shop.example", 80),
            "state": {},
        }
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        done = asyncio.Event()
        status, got_headers, chunks = 500, [], []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await done.wait()  # nothing more: the client stays until the response ends
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, got_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                got_headers = [(n.decode().lower(), v.decode()) for n, v in message["headers"]]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.app(scope, receive, send)
        done.set()
        answer = Answer(status, got_headers, b"".join(chunks))
        for name, value in answer.headers:
            if name == "set-cookie":
                for morsel in SimpleCookie(value).values():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(morsel.key, None)
                    else:
                        self.cookies[morsel.key] = morsel.value
        return answer


def run(url: str) -> None:
    before = os.environ.get("REDKIT_URL")
    os.environ["REDKIT_URL"] = url  # read when the shop's module is imported
    try:
        from redkit.demo import fastapi_shop
    finally:
        if before is None:
            del os.environ["REDKIT_URL"]
        else:
            os.environ["REDKIT_URL"] = before
    asyncio.run(_tour(fastapi_shop))


async def _tour(shop: Any) -> None:
    app = shop.create_app()
    async with app.router.lifespan_context(app):  # what the server runs at start and stop
        await app.state.redkit.clear()
        try:
            await tour(Browser(app), shop)
        finally:
            await app.state.redkit.clear()
            async with shop.engine.begin() as conn:
                await conn.run_sync(shop.Base.metadata.drop_all)


async def tour(browser: Browser, shop: Any) -> None:
    print("1. users: a cached read, invalidated when the change commits, not on rollback")
    made = await browser.request("POST", "/users", {"name": "Alice", "email": "alice@example.com"})
    alice = made.json()
    print("  created:", alice, "at", made.header("location"))
    path = f"/users/{alice['id']}"
    await browser.request("GET", path)
    await browser.request("PATCH", path, {"name": "Mallory"}, query={"dry_run": "true"})
    cached = (await browser.request("GET", path)).json()["name"]
    print("  after a rolled-back rename, the cached user:", cached)
    await browser.request("PATCH", path, {"name": "Alice Smith"})
    cached = (await browser.request("GET", path)).json()["name"]
    print("  after a committed rename, the cached user:", cached)

    print("\n2. sessions: login regenerates the session id")
    await browser.request("GET", path)
    before = browser.cookies.get("session")
    await browser.request("POST", "/login", {"user_id": alice["id"]})
    after = browser.cookies.get("session")
    print("  the cookie carries only a signed id:", after is not None and "Alice" not in after)
    print("  new id after login:", before != after)

    print("\n3. idempotency: a retried POST /orders runs once")
    key = {"Idempotency-Key": "order-2f1c"}
    first = await browser.request("POST", "/orders", {"total": 1250}, key)
    retry = await browser.request("POST", "/orders", {"total": 1250}, key)
    print(f"  first: {first.status} {first.json()}")
    print(f"  retry: {retry.status}, Idempotent-Replayed: {retry.header('idempotent-replayed')}")
    other = await browser.request("POST", "/orders", {"total": 999}, key)
    print(f"  same key, other body: {other.status}")
    bad = await browser.request("POST", "/orders", {"total": -5})
    print(f"  a rejected order: {bad.status}, its receipt job is never sent")
    orders = (await browser.request("GET", f"{path}/orders")).json()["orders"]
    print("  the user's orders (cached, invalidated by the commit):", orders)
    for _ in range(500):
        if shop.receipts:
            break
        await asyncio.sleep(0.02)
    print("  receipts sent after commit:", shop.receipts)

    print("\n4. a slow report: 202 at once, then its events as they happen (Server-Sent Events)")
    started = await browser.request("POST", "/reports")
    body = started.json()
    print(f"  {started.status} job {body['job_id'][:8]}..., Location {started.header('location')}")
    stream = (await browser.request("GET", body["events"])).body.decode()
    kinds = [line[7:] for line in stream.splitlines() if line.startswith("event: ")]
    print("  events:", kinds)
    last = json.loads([line for line in stream.splitlines() if line.startswith("data: ")][-1][6:])
    print("  the last:", last)
    stranger = Browser(browser.app)
    hidden = await stranger.request("GET", body["status"])
    print(f"  another browser (not logged in) asking for the job: {hidden.status}")

    print("\n5. rate limits: login allows 5 a minute per client (one was used above)")
    codes = [
        (await browser.request("POST", "/login", {"user_id": alice["id"]})).status for _ in range(5)
    ]
    limited = await browser.request("POST", "/login", {"user_id": alice["id"]})
    print(f"  next five: {codes}, Retry-After {limited.header('retry-after')} s")
