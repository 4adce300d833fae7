"""The dashboard as a WSGI and as an ASGI application: each turns its server's request into a
:class:`redkit.web.Request` (the path relative to where it is mounted), runs
:meth:`Dashboard.handle` on a blocking or an asyncio client, and sends the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from ..web import Answer, Headers, Request
from ._app import MAX_FORM, Dashboard
from ._live import LiveHub, live_stream

__all__ = ["ASGIDashboard", "WSGIDashboard", "make_asgi_app", "make_wsgi_app", "parse_cookies"]


def parse_cookies(fields: Iterable[str]) -> dict[str, str]:
    """The cookies of ``Cookie`` fields; a malformed pair is skipped, never an error."""
    found: dict[str, str] = {}
    for field in fields:
        for part in field.split(";"):
            name, eq, value = part.strip().partition("=")
            if not eq or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found.setdefault(name.strip(), value)
    return found


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


class WSGIDashboard:
    """The dashboard as a WSGI application (``make_wsgi_app``). ``respond(request)`` answers a
    :class:`redkit.web.Request` made by a framework adapter: the answer, and for a live stream
    the iterator of its body's chunks (``None`` otherwise)."""

    def __init__(self, kit: Any, dashboard: Dashboard) -> None:
        self.kit = kit
        self.dashboard = dashboard
        self.hub = LiveHub(kit, dashboard)

    def respond(self, request: Request) -> tuple[Answer, Iterable[bytes] | None]:
        if request.path == "/live":
            return self.hub.open(request)
        return self.kit._executor.drive(self.dashboard.handle(request, self.kit)), None

    def close(self) -> None:
        """Stop the live updates' reader."""
        self.hub.close()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        if path == "":
            base = quote(environ.get("SCRIPT_NAME", "") or "") + "/"
            query = environ.get("QUERY_STRING") or ""
            start_response(
                "308 Permanent Redirect", [("Location", base + (f"?{query}" if query else ""))]
            )
            return [b""]
        pairs = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
            if environ.get(key):
                pairs.append((name, environ[key]))
        headers = Headers(pairs)

        def body() -> bytes:
            try:
                size = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return b""
            if size <= 0 or size > MAX_FORM:
                return b""
            data: bytes = environ["wsgi.input"].read(size)
            return data

        request = Request(
            environ.get("REQUEST_METHOD", "GET"),
            path,
            query=environ.get("QUERY_STRING", "") or "",
            headers=headers,
            client=environ.get("REMOTE_ADDR"),
            host=headers.get("host") or environ.get("SERVER_NAME", ""),
            cookies=parse_cookies(headers.get_all("cookie")),
            body=body,
            scheme=environ.get("wsgi.url_scheme", "http"),
        )
        request.call = lambda fn: fn(request)
        answer, stream = self.respond(request)
        start_response(_status(answer.status), list(answer.headers))
        if stream is not None:
            return stream
        return [b"" if request.method == "HEAD" else answer.body]


def make_wsgi_app(kit: Any, dashboard: Dashboard) -> WSGIDashboard:
    """A WSGI application serving ``dashboard`` with ``kit`` (a blocking ``redkit.Redkit``);
    its auth rule is called with the :class:`redkit.web.Request`."""
    return WSGIDashboard(kit, dashboard)


class ASGIDashboard:
    """The dashboard as an ASGI application (``make_asgi_app``): ``hub`` is its reader of live
    updates, ``close()`` stops it."""

    def __init__(self, app: Callable[..., Any], hub: LiveHub) -> None:
        self._app = app
        self.hub = hub

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def close(self) -> None:
        self.hub.close()

    async def aclose(self) -> None:
        await self.hub.aclose()


def make_asgi_app(
    kit: Any, dashboard: Dashboard, request_for: Callable[[dict[str, Any]], Any] | None = None
) -> ASGIDashboard:
    """An ASGI application serving ``dashboard`` with ``kit`` (an asyncio
    ``redkit.asyncio.Redkit``); mount it under any path (``root_path`` is honoured). Its auth
    rule is called with ``request_for(scope)`` (a framework's request object), by default
    with the :class:`redkit.web.Request`."""
    hub = LiveHub(kit, dashboard)

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await hub.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        root = scope.get("root_path", "") or ""
        path = scope.get("path", "") or ""
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == "":
            query = (scope.get("query_string") or b"").decode("latin-1")
            target = quote(root) + "/" + (f"?{query}" if query else "")
            await _send(send, Answer(308, (("Location", target),), b""), scope)
            return
        headers = Headers(scope.get("headers", ()))

        async def body() -> bytes:
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return b""
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_FORM:
                    return b""
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)

        client = scope.get("client")
        request = Request(
            scope.get("method", "GET"),
            path,
            query=(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers,
            client=client[0] if client else None,
            host=headers.get("host") or "",
            cookies=parse_cookies(headers.get_all("cookie")),
            body=body,
            scheme=scope.get("scheme", "http"),
        )
        if request_for is None:
            request.call = lambda fn: fn(request)
        else:
            request.call = lambda fn: fn(request_for(scope))
        if path == "/live":
            await live_stream(hub, request, receive, send)
            return
        answer = await kit._executor.drive(dashboard.handle(request, kit))
        await _send(send, answer, scope)

    return ASGIDashboard(app, hub)


async def _send(send: Callable[..., Any], answer: Answer, scope: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers
            ],
        }
    )
    body = b"" if scope.get("method") == "HEAD" else answer.body
    await send({"type": "http.response.body", "body": body})


_ = asyncio  # the ASGI shell runs on the server's event loop
