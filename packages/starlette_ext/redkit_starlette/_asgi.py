"""An ASGI exchange as :mod:`redkit.web` describes it, and back: translation only, no rule.

- :func:`describe` turns an HTTP scope into a :class:`redkit.web.Request`;
- :class:`Body` reads the request body once, up to a cap, and replays it to the application;
- :class:`Recorder` stands between the application and ``send``: it adds headers to the
  response start, keeps the body up to a cap, and runs a hook before the last message leaves;
- :func:`send_answer` sends a flow's :class:`redkit.web.Answer`;
- :func:`route_of` finds the route (its endpoint, the mounts on the way) a scope will reach,
  before the router runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import cookie_parser
from starlette.routing import Match, Mount
from starlette.types import Message, Receive, Scope, Send

from redkit import web

__all__ = [
    "Body",
    "BodyTooLarge",
    "Recorder",
    "cookies_of",
    "describe",
    "route_of",
    "send_answer",
]


class BodyTooLarge(Exception):
    """The request body is larger than the middleware reads."""


def cookies_of(scope: Scope) -> dict[str, str]:
    """The request's cookies (every ``Cookie`` field; a malformed one gives what it can)."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            found.update(cookie_parser(value.decode("latin-1")))
    return found


def describe(
    scope: Scope,
    body: Callable[[], Awaitable[bytes]] | None = None,
    user: Callable[[], Any] | None = None,
    session_digest: Callable[[], Any] | None = None,
    call: Callable[[Callable[..., Any]], Any] | None = None,
) -> web.Request:
    """``scope`` as :class:`redkit.web.Request`."""
    headers = web.Headers(scope.get("headers", ()))
    client = scope.get("client")
    server = scope.get("server")
    host = headers.get("host") or (f"{server[0]}:{server[1]}" if server else "")
    return web.Request(
        scope.get("method", "GET"),
        scope.get("path", "/"),  # the whole path: Starlette keeps root_path inside it
        bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers,
        client[0] if client else None,
        host,
        cookies_of(scope),
        body=body,
        user=user,
        scheme=scope.get("scheme", "http"),
        session_digest=session_digest,
        call=call,
    )


class Body:
    """The request body, read from ``receive`` at most once and only when asked (up to
    ``limit`` bytes, else :class:`BodyTooLarge`); :meth:`receive` replays it to the app."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._body: bytes | None = None
        self._replayed = False

    async def read(self) -> bytes:
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self._receive()
                if message["type"] != "http.request":
                    break  # the client went away: what came is the body
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._limit:
                    raise BodyTooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def receive(self) -> Message:
        if self._body is None or self._replayed:
            return await self._receive()
        self._replayed = True
        return {"type": "http.request", "body": self._body, "more_body": False}


def _fields(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]


async def send_answer(send: Send, answer: web.Answer) -> None:
    """Send ``answer`` as the whole response."""
    headers = _fields(answer.headers)
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


Finish = Callable[[web.Response], Awaitable[None]]


class Recorder:
    """Forwards the application's response to ``send``: adds ``extra`` headers (those the
    response lacks) to its start, keeps its body up to ``limit`` bytes and, before the last
    body message leaves, awaits ``finish`` with the response as :class:`redkit.web.Response`
    (its body ``None`` past the limit)."""

    def __init__(
        self, send: Send, finish: Finish, extra: dict[str, str], limit: int, vary: Callable[[], Any]
    ) -> None:
        self._send = send
        self._finish = finish
        self._extra = extra
        self._limit = limit
        self._vary = vary
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] | None = []
        self._size = 0
        self.started = False
        self.finished = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            raw = list(message.get("headers", ()))
            present = {bytes(n).lower() for n, _ in raw}
            raw += [f for f in _fields(self._extra.items()) if f[0] not in present]
            self.headers = [
                (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in raw
            ]
            message = {**message, "headers": raw}
        elif kind == "http.response.body" and not self.finished:
            chunk = message.get("body", b"")
            if self._chunks is not None:
                self._size += len(chunk)
                if self._size > self._limit:
                    self._chunks = None  # too large to keep: stored nowhere
                else:
                    self._chunks.append(chunk)
            if not message.get("more_body", False):
                self.finished = True
                body = None if self._chunks is None else b"".join(self._chunks)
                await self._finish(web.Response(self.status, self.headers, body, self._vary()))
        await self._send(message)


def route_of(scope: Scope) -> tuple[Any, Any, tuple[Any, ...]] | None:
    """``(route, endpoint, mounts)`` of the route the application's router will run for
    ``scope``, following mounts (``mounts``: those it went through, outermost first); ``None``
    when none matches fully (a 404 or 405)."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    if routes is None:
        return None
    return _match(routes, scope, 0, ())


def _match(
    routes: Any, scope: Scope, depth: int, mounts: tuple[Any, ...]
) -> tuple[Any, Any, tuple[Any, ...]] | None:
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        return _inside(route, scope, child, depth, mounts)
    return None


def _inside(
    route: Any, scope: Scope, child: Scope, depth: int, mounts: tuple[Any, ...]
) -> tuple[Any, Any, tuple[Any, ...]] | None:
    """The route reached through ``route`` (which matched ``scope`` fully, giving ``child``)."""
    if depth >= 8:
        return route, getattr(route, "endpoint", None), mounts
    if isinstance(route, Mount):
        inner = getattr(route, "routes", None)
        if inner:
            return _match(inner, {**scope, **child}, depth + 1, (*mounts, route))
        return route, getattr(route, "endpoint", None), (*mounts, route)
    if hasattr(route, "original_router") and callable(getattr(route, "_match", None)):
        # a router included into a FastAPI application (FastAPI 0.16x): it matches its own
        # routes, each in an effective context holding the router's prefix and dependencies
        match, more, inner, context = route._match({**scope, **child})
        if match is not Match.FULL or inner is None:
            return None
        if context is None:
            return _inside(inner, {**scope, **child}, more, depth + 1, mounts)
        endpoint = getattr(context, "endpoint", None) or getattr(inner, "endpoint", None)
        return context, endpoint, mounts
    return route, getattr(route, "endpoint", None), mounts
