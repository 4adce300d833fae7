"""Pure ASGI middleware over :mod:`redkit.web`: rate limits, the cache of GET endpoints and
idempotency keys (the session middleware is in ``_sessions``). Outermost first::

    RateLimitMiddleware, CacheMiddleware, IdempotencyMiddleware, SessionMiddleware

so that each sees the response as it leaves, with every cookie the session added: a wrong
order raises when Starlette builds its middleware stack (at start-up). ``rk.middleware()``
gives the list in that order. Scopes other than HTTP pass straight through.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from redkit import web
from redkit.cache import writes_pending
from redkit.errors import RedkitConnectionError

from ._asgi import Body, BodyTooLarge, Recorder, describe, route_of, send_answer
from ._rules import rules_of

__all__ = [
    "IDEMPOTENCY",
    "OPENED",
    "ROUTE",
    "SESSION_STATE",
    "VARY",
    "CacheMiddleware",
    "IdempotencyMiddleware",
    "RateLimitMiddleware",
    "RedkitMiddleware",
    "check_order",
]

log = logging.getLogger("redkit.starlette")

IDEMPOTENCY = "redkit.idempotency"
"""Set by the idempotency middleware on every HTTP scope it sees (its dependency checks it)."""
SESSION_STATE = "redkit.session_state"
"""Where the session middleware leaves ``(used, changed)`` of the request's session."""
VARY = "redkit.vary"
"""Where it leaves the response's ``Vary`` before it added ``Cookie``."""
OPENED = "redkit.session_opened"
"""The session middleware whose session ``scope["session"]`` holds (opened early or by it)."""

MAX_CACHED = 1024 * 1024
"""Largest response body the cache stores."""


def check_order(outer: Any, app: Any) -> None:
    """Raise when a redkit middleware inside ``outer`` (walking ``app``, ``app.app``, ...)
    should be outside it, or appears twice."""
    inner, depth = app, 0
    while inner is not None and depth < 64:
        rank = getattr(inner, "rank", None)
        if isinstance(inner, RedkitMiddleware) and isinstance(rank, int) and rank <= outer.rank:
            raise RuntimeError(
                f"redkit middleware out of order: {type(inner).__name__} is inside "
                f"{type(outer).__name__}, it must come before it (outermost first: "
                "RateLimitMiddleware, CacheMiddleware, IdempotencyMiddleware, "
                "SessionMiddleware; rk.middleware() lists them in that order)"
            )
        inner, depth = getattr(inner, "app", None), depth + 1


class RedkitMiddleware:
    """What every redkit middleware shares: the ``Redkit`` object, the order check."""

    rank = 0

    def __init__(self, app: ASGIApp, redkit: Any) -> None:
        self.app = app
        self.rk = redkit
        check_order(self, app)
        self.sessions = sessions_inside(redkit, app)


def sessions_inside(redkit: Any, app: Any) -> Any:
    """The session middleware of ``redkit`` inside ``app`` (walking ``app.app``, ...), or
    ``None``: hooks of an outer middleware may read ``request.session`` through it."""
    inner, depth = app, 0
    while inner is not None and depth < 64:
        if getattr(inner, "opens_sessions", False) and getattr(inner, "rk", None) is redkit:
            return inner
        inner, depth = getattr(inner, "app", None), depth + 1
    return None


def _early(scope: Scope, sessions: Any, fn: Any, *args: Any) -> Any:
    """``fn(*args)``; when the request's session is not open yet, a coroutine that opens it
    first (the flows await what a hook returns), so the hook may read ``request.session``."""
    if sessions is None or "session" in scope:
        return fn(*args)

    async def opened() -> Any:
        await sessions.attach(scope)
        result = fn(*args)
        return await result if inspect.isawaitable(result) else result

    return opened()


def _caller(scope: Scope, sessions: Any = None) -> Any:
    request = Request(scope)  # hooks get the request; its body is never read through it

    def call(fn: Any) -> Any:
        return _early(scope, sessions, fn, request)

    return call


def _user(rk: Any, scope: Scope, sessions: Any = None) -> Any:
    loader = rk.user_loader

    def read() -> Any:
        if loader is not None:
            return _early(scope, sessions, loader, Request(scope))
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            try:
                return user.identity
            except NotImplementedError:
                return getattr(user, "display_name", None) or None
        return None

    return read


class _Part(RedkitMiddleware):
    """One part of :class:`redkit.web.WebRules`, run around the endpoint the router will
    reach."""

    limit = MAX_CACHED

    def select(
        self, scope: Scope, own: web.ViewRules | None, groups: list[web.ViewRules]
    ) -> tuple[web.ViewRules | None, bool] | None:
        """The rules to run and whether rate limits count (``groups``: those of the mounts
        on the way); ``None``: nothing to do."""
        raise NotImplementedError

    def own(self, route: Any, endpoint: Any) -> web.ViewRules | None:
        """The rules declared for ``route`` (its endpoint's decorators)."""
        return rules_of(endpoint)

    async def prepare(self, scope: Scope, view: web.ViewRules | None) -> None:
        """Called before the rules run (the cache opens the session for a sync ``unless``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = _route(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, endpoint, mounts = found
        groups = [g for g in map(rules_of, mounts) if g is not None] if mounts else []
        chosen = self.select(scope, self.own(route, endpoint), groups)
        if chosen is None:
            await self.app(scope, receive, send)
            return
        running = self.rk.running(scope["app"])
        rules, kit = running.web, running.kit
        name = getattr(endpoint, "__qualname__", None) or getattr(route, "path", "?")
        name = f"{getattr(endpoint, '__module__', '')}.{name}"
        body = Body(receive, self.rk.settings.idempotency_max_body)
        user, call = _user(self.rk, scope, self.sessions), _caller(scope, self.sessions)
        req = describe(scope, body.read, user, lambda: _digest(scope), call)
        view, limited = chosen
        try:
            await self.prepare(scope, view)
            got = await web.arun(rules.before(req, name, view, groups, limited=limited), kit)
        except BodyTooLarge:
            await send_answer(
                send, web.problem(413, "Content Too Large", "the request body is too large")
            )
            return
        except RedkitConnectionError as exc:  # a hook read the session, Redis is down
            log.warning("redkit: answering 503, Redis is unreachable: %s", exc)
            await send_answer(send, web.unavailable(rules.limits.retry_after, "this request"))
            return
        if isinstance(got, web.Answer):
            await send_answer(send, got)
            return
        pending = got

        async def finish(response: web.Response) -> None:
            if not pending.owes:
                return
            counted = pending.counted
            sent = None if counted is None or not counted.deferred else Sent(response)
            flow = rules.finish(
                req,
                pending,
                response,
                sent,
                scope.get("path_params") or {},
                scope.get(SESSION_STATE) or (False, False),
                writes_pending(),
            )
            try:
                await web.arun(flow, kit)
            except Exception:  # the response is made: a failing store must not break it
                log.exception("redkit: finishing the request failed")

        recorder = Recorder(
            send, finish, rules.headers(pending), self.limit, lambda: scope.get(VARY)
        )
        try:
            await self.app(scope, body.receive, recorder.send)
        except Exception as exc:
            if pending.holds_key:
                await web.arun(rules.abort(pending), kit)
            if isinstance(exc, RedkitConnectionError) and not recorder.started:
                await send_answer(send, web.unavailable(rules.limits.retry_after, "this request"))
                return
            raise
        if not recorder.finished and pending.holds_key:
            await web.arun(rules.abort(pending), kit)


class Sent:
    """The response a ``deduct_when`` hook is given: its status and headers as sent."""

    __slots__ = ("headers", "status_code")

    def __init__(self, response: web.Response) -> None:
        self.status_code = response.status
        self.headers = Headers(raw=[(_latin(n.lower()), _latin(v)) for n, v in response.headers])

    def __repr__(self) -> str:
        return f"<response {self.status_code}>"


def _latin(text: str) -> bytes:
    return text.encode("latin-1", "replace")


ROUTE = "redkit.route"
"""Where the first middleware leaves the route it found, for the others (matched once)."""


def _route(scope: Scope) -> Any:
    """:func:`route_of` the scope, matched once for all of redkit's middleware (again when an
    application's middleware between them changed the path or the method)."""
    where = (scope.get("path"), scope.get("root_path"), scope.get("method"), id(scope.get("app")))
    known = scope.get(ROUTE)
    if known is not None and known[0] == where:
        return known[1]
    found = route_of(scope)
    scope[ROUTE] = (where, found)
    return found


async def _digest(scope: Scope) -> str | None:
    session = scope.get("session")
    if isinstance(session, web.LazySession):
        return session.digest()
    return None


class RateLimitMiddleware(_Part):
    """The ``ratelimit_default`` limits on every endpoint without limits of its own, the
    ``ratelimit_application`` limit on every endpoint, and the limits of ``@rk.rate_limit``;
    ``@rk.exempt`` endpoints are counted by none. Over a limit: ``429`` with
    ``Retry-After`` and the rate-limit headers; Redis down: ``ratelimit_fail_open``."""

    rank = 1

    def select(
        self, scope: Scope, own: web.ViewRules | None, groups: list[web.ViewRules]
    ) -> tuple[web.ViewRules | None, bool] | None:
        if (own is not None and own.exempt) or any(g.exempt for g in groups):
            return None
        view = web.ViewRules(limits=list(own.limits)) if own is not None and own.limits else None
        if view is not None or any(g.limits for g in groups):
            return view, True
        return (None, True) if self.rk.running(scope["app"]).web.everywhere else None


class CacheMiddleware(_Part):
    """The cache of ``@rk.cached`` GET endpoints (with ``every_get=True``, of every GET
    endpoint, for ``cache_ttl``): a response is stored only under the shared safety rules
    (no credentials, no cookie set, no session change, ``Cache-Control`` and ``Vary``
    respected); a streamed body is stored up to ``max_bytes``."""

    rank = 2

    def __init__(
        self, app: ASGIApp, redkit: Any, every_get: bool = False, max_bytes: int = MAX_CACHED
    ) -> None:
        super().__init__(app, redkit)
        self.default = web.CacheRule.build() if every_get else None
        self.limit = int(max_bytes)

    def select(
        self, scope: Scope, own: web.ViewRules | None, groups: list[web.ViewRules]
    ) -> tuple[web.ViewRules | None, bool] | None:
        if scope.get("method") not in ("GET", "HEAD"):
            return None
        rule = own.cache if own is not None and own.cache is not None else self.default
        return None if rule is None else (web.ViewRules(cache=rule), False)

    async def prepare(self, scope: Scope, view: web.ViewRules | None) -> None:
        rule = None if view is None else view.cache
        unless = None if rule is None else rule.unless
        if unless is not None and self.sessions is not None and "session" not in scope:
            await self.sessions.attach(scope)


class IdempotencyMiddleware(_Part):
    """``Idempotency-Key`` on every ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` (or the
    ``idempotency_methods`` setting), and the rules of ``@rk.idempotent``: a retry gets the
    stored response (``Idempotent-Replayed: true``), 409 while the first runs, 422 for another
    request under the key, 400 for a malformed key, 503 when Redis is down. The body is read
    once (up to ``idempotency_max_body``, else 413) and replayed to the endpoint; a streamed
    response is stored up to ``idempotency_max_bytes``, else the key is released."""

    rank = 3

    def __init__(self, app: ASGIApp, redkit: Any) -> None:
        super().__init__(app, redkit)
        methods = redkit.settings.idempotency_methods or ("POST", "PUT", "PATCH", "DELETE")
        self.default = web.IdempotentRule.build(methods=methods)
        self.limit = redkit.settings.idempotency_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[IDEMPOTENCY] = True
        await super().__call__(scope, receive, send)

    def own(self, route: Any, endpoint: Any) -> web.ViewRules | None:
        """The endpoint's ``@rk.idempotent``, else a ``Depends(rk.idempotency())`` of the
        route (its own, its router's or the application's)."""
        own = rules_of(endpoint)
        if own is not None and own.idempotent is not None:
            return own
        declared = declared_rule(route)
        return own if declared is None else web.ViewRules(idempotent=declared)

    def select(
        self, scope: Scope, own: web.ViewRules | None, groups: list[web.ViewRules]
    ) -> tuple[web.ViewRules | None, bool] | None:
        rule = own.idempotent if own is not None and own.idempotent is not None else self.default
        if scope.get("method") not in rule.methods:
            return None
        return web.ViewRules(idempotent=rule), False


DECLARED = "_redkit_idempotent"
"""The attribute of a ``Depends(rk.idempotency())`` callable holding its rule."""
_NONE = web.IdempotentRule()


def declared_rule(route: Any) -> web.IdempotentRule | None:
    """The rule of the first ``rk.idempotency()`` dependency in ``route``'s FastAPI
    dependency tree (remembered on the route), or ``None``."""
    cached = getattr(route, DECLARED, None)
    if cached is None:
        cached = _walk(getattr(route, "dependant", None), 0, set()) or _NONE
        with contextlib.suppress(AttributeError):  # a route class with __slots__
            setattr(route, DECLARED, cached)
    return None if cached is _NONE else cached


def _walk(dependant: Any, depth: int, seen: set[int]) -> web.IdempotentRule | None:
    if dependant is None or depth > 32 or id(dependant) in seen:
        return None
    seen.add(id(dependant))
    rule = getattr(getattr(dependant, "call", None), DECLARED, None)
    if isinstance(rule, web.IdempotentRule):
        return rule
    for sub in getattr(dependant, "dependencies", ()) or ():
        found = _walk(sub, depth + 1, seen)
        if found is not None:
            return found
    return None
