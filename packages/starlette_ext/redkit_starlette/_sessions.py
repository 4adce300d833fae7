"""Server-side sessions for Starlette: ``request.session`` kept in Redis, the cookie carrying
only the signed session id (:class:`redkit.web.SessionCookies`, the rules every adapter
shares)."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from redkit import web
from redkit.errors import RedkitConnectionError
from redkit.sessions import SessionData

from ._asgi import cookies_of, send_answer
from ._middleware import OPENED, SESSION_STATE, VARY, RedkitMiddleware, log

__all__ = ["SessionMiddleware", "regenerate_session"]


def regenerate_session(conn: HTTPConnection) -> None:
    """Give the request's session a new id when the response leaves, keeping its data: call
    it at login and logout (against session fixation)."""
    session = conn.scope.get("session")
    if not isinstance(session, web.LazySession):
        raise RuntimeError("regenerate_session() needs redkit_starlette.SessionMiddleware")
    session.regenerate()


DEFAULT_COOKIE = web.CookieAttributes()


def _preloaded(found: SessionData | BaseException) -> Any:
    def load(sid: str, cls: type[SessionData]) -> SessionData:
        if isinstance(found, BaseException):
            raise found
        return found

    return load


class SessionMiddleware(RedkitMiddleware):
    """``request.session`` in Redis. The cookie (``cookie`` attributes: a
    :class:`redkit.web.CookieAttributes`) holds the session id signed with the ``Redkit``
    object's ``session_secret``; a cookie that is missing, malformed, tampered with or signed
    by another key gives a new, empty session. The session is read once per request, when
    the request carries a valid cookie; Redis down: a request that uses the session gets 503
    (sessions fail closed), one that does not is served."""

    rank = 4
    opens_sessions = True

    def __init__(
        self,
        app: ASGIApp,
        redkit: Any,
        cookie: web.CookieAttributes = DEFAULT_COOKIE,
        refresh_each_request: bool = True,
    ) -> None:
        super().__init__(app, redkit)
        if not any(redkit.session_secrets):
            raise ValueError("SessionMiddleware needs the Redkit object's session_secret")
        self.cookies = web.SessionCookies(
            web.CookieSigner(redkit.session_secrets), cookie, refresh_each_request
        )

    async def attach(self, scope: Scope) -> web.LazySession:
        """Open the request's session into ``scope["session"]`` (reading it from Redis when the
        request carries a valid cookie): done here, or earlier by an outer middleware whose
        hooks read ``request.session``; either way it is read once."""
        kit = self.rk.running(scope["app"]).kit
        value = cookies_of(scope).get(self.cookies.attributes.name)
        sid = self.cookies.signer.session_id(value)
        found: SessionData | BaseException = SessionData()
        if sid is not None:
            try:
                found = await kit.sessions.open(sid, SessionData)
            except RedkitConnectionError as exc:
                found = exc  # raised where the session is used: a 503 there
        session = self.cookies.open(value, _preloaded(found))
        scope["session"] = session
        scope[OPENED] = self
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        running = self.rk.running(scope["app"])
        kit, retry_after = running.kit, running.web.limits.retry_after
        opened = scope.get(OPENED) is self and isinstance(scope.get("session"), web.LazySession)
        session = scope["session"] if opened else await self.attach(scope)
        state = {"started": False, "replaced": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                answer = await self._save(scope, session, message, kit, retry_after)
                if answer is not None:
                    state["replaced"] = True
                    await send_answer(send, answer)
                    return
            elif state["replaced"]:
                return  # the body of a response replaced by a 503
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except RedkitConnectionError as exc:
            if state["started"]:
                raise
            log.warning("redkit: answering 503, Redis is unreachable: %s", exc)
            await send_answer(send, web.unavailable(retry_after, "the session"))

    async def _save(
        self, scope: Scope, session: web.LazySession, message: Message, kit: Any, retry: int
    ) -> web.Answer | None:
        session.seal()
        headers = list(message.get("headers", ()))
        if session.touched:
            scope[VARY] = [
                bytes(v).decode("latin-1") for n, v in headers if bytes(n).lower() == b"vary"
            ]
        scope[SESSION_STATE] = web.session_state(session)
        try:
            change = await web.arun(self.cookies.save(session), kit)
        except RedkitConnectionError as exc:
            log.warning("redkit: session not saved, Redis is unreachable: %s", exc)
            return web.unavailable(retry, "the session")
        if session.touched:
            headers.append((b"vary", b"Cookie"))
        if change is not None:
            headers.append((b"set-cookie", self._cookie(change).encode("latin-1")))
        message["headers"] = headers
        return None

    def _cookie(self, change: web.CookieChange) -> str:
        a = self.cookies.attributes
        made = Response()
        samesite: Any = a.samesite.lower() if a.samesite else None
        if change.action == "delete":
            made.set_cookie(a.name, "", 0, 0, a.path, a.domain, a.secure, a.httponly, samesite)
        else:
            age = None if change.max_age is None else max(0, int(change.max_age))
            made.set_cookie(
                a.name, change.value, age, None, a.path, a.domain, a.secure, a.httponly, samesite
            )
        made_cookie = next(v for n, v in made.raw_headers if n == b"set-cookie")
        cookie = bytes(made_cookie).decode("latin-1")
        # added here: Starlette takes partitioned= only from 0.39, and only on Python 3.14+
        return f"{cookie}; Partitioned" if a.partitioned else cookie
