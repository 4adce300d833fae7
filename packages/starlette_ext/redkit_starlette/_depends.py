"""FastAPI dependencies over :mod:`redkit.web`: ``Depends(rk.limit("10/minute"))`` counts a
request against a limit where the endpoint declares it (in its parameters, or a router's
``dependencies=``), with the limit's headers set on FastAPI's ``Response``; over the limit the
dependency raises ``HTTPException(429)`` with ``Retry-After`` and those headers.
``Depends(rk.idempotency())`` makes the routes declaring it idempotent (the idempotency
middleware, which sees the response, does the work) and hands the endpoint the key;
``Depends(rk.session)`` is the request's server-side session. Nothing is wrapped: the
endpoint's signature, validation and OpenAPI schema stay as they are (the idempotency
dependency adds its ``Idempotency-Key`` header to the schema)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from redkit import web
from redkit.errors import RedkitConnectionError

from ._asgi import describe
from ._middleware import DECLARED, IDEMPOTENCY, _caller, _user

__all__ = ["Dependencies", "Refused"]

Dependency = Callable[[Request, Response], Awaitable[None]]

KEY_HEADER = "Idempotency-Key"


class Refused(HTTPException):
    """What a dependency raises instead of running the endpoint (a 429, a 503): FastAPI (and
    Starlette) answer it with its status, its ``detail`` and its headers. ``answer`` is the
    :class:`redkit.web.Answer` behind it."""

    def __init__(self, answer: web.Answer) -> None:
        self.answer = answer
        try:
            detail = str(json.loads(answer.body).get("detail") or "")
        except (ValueError, AttributeError):
            detail = ""
        headers = {n: v for n, v in answer.headers if n.lower() != "content-type"}
        super().__init__(answer.status, detail or None, headers)


def _endpoint_name(request: Request) -> str:
    endpoint = request.scope.get("endpoint")
    name = getattr(endpoint, "__qualname__", None) or request.scope.get("path", "?")
    return f"{getattr(endpoint, '__module__', '')}.{name}"


class Dependencies:
    """The FastAPI dependencies of :class:`redkit_starlette.Redkit`."""

    def running(self, where: Any) -> Any:  # pragma: no cover - Redkit's
        raise NotImplementedError

    def limit(
        self,
        limits: Any,
        *,
        key: Callable[[Any], Any] | None = None,
        scope: str | None = None,
        methods: Iterable[str] | None = None,
        cost: int | Callable[[Any], Any] = 1,
        exempt_when: Callable[[Any], Any] | None = None,
        algorithm: str | None = None,
    ) -> Dependency:
        """A dependency limiting the endpoints it is declared on:
        ``@app.get("/search", dependencies=[Depends(rk.limit("10/minute"))])``, per client
        address unless ``key(request)`` says who (hooks take the ``Request`` and may be
        async). Endpoints that share one dependency object share no counter: each counts on
        its own, unless ``scope`` names a counter they share. Over the limit:
        :class:`Refused` (429, ``Retry-After`` and the rate-limit headers); Redis unreachable:
        ``ratelimit_fail_open`` decides (closed: 503). Bad limits fail here, not at a request.
        The default and application limits are the middleware's, never counted here."""
        rule = web.LimitRule.build(limits, key, scope, methods, cost, exempt_when, algorithm)
        view = web.ViewRules(limits=[rule])

        async def rate_limited(request: Request, response: Response) -> None:
            running = self.running(request)
            rules = running.views
            req = describe(
                request.scope, None, _user(self, request.scope), None, _caller(request.scope)
            )
            try:
                got = await web.arun(rules.before(req, _endpoint_name(request), view), running.kit)
            except RedkitConnectionError:
                raise Refused(web.unavailable(rules.limits.retry_after, "this request")) from None
            if isinstance(got, web.Answer):
                raise Refused(got)
            for name, value in rules.headers(got).items():
                response.headers[name] = value

        return rate_limited

    def idempotency(
        self,
        *,
        required: bool = False,
        methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
        scope: Callable[[Any], Any] | None = None,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> Callable[..., Awaitable[str | None]]:
        """A dependency making the routes that declare it idempotent, like ``@rk.idempotent``
        (same arguments): ``key: Annotated[str | None, Depends(rk.idempotency())]`` in an
        endpoint, or in a router's ``dependencies=``. Its value is the request's ``Idempotency-Key``
        (``None`` without one); the schema documents the header (required with
        ``required=True``). :class:`~redkit_starlette.IdempotencyMiddleware` does the work,
        since only it sees the response: without it the dependency raises ``RuntimeError``."""
        from fastapi import Header

        rule = web.IdempotentRule.build(
            required, methods, scope, store_server_errors, allow_headers
        )
        about = "a key unique to this operation: a retry with it gets the first answer"

        if required:

            async def idempotency_key(
                request: Request, key: str = Header(alias=KEY_HEADER, description=about)
            ) -> str | None:
                return _checked(request, key)

        else:

            async def idempotency_key(  # type: ignore[misc]
                request: Request,
                key: str | None = Header(None, alias=KEY_HEADER, description=about),
            ) -> str | None:
                return _checked(request, key)

        setattr(idempotency_key, DECLARED, rule)
        return idempotency_key

    @staticmethod
    async def session(request: Request) -> web.LazySession:  # async: no thread-pool hop
        """A dependency giving the request's server-side session:
        ``session: Annotated[LazySession, Depends(rk.session)]`` (a mapping; changes are saved
        when the response leaves). Needs :class:`~redkit_starlette.SessionMiddleware`."""
        session = request.scope.get("session")
        if not isinstance(session, web.LazySession):
            raise RuntimeError(
                "Depends(rk.session) needs redkit_starlette.SessionMiddleware: pass "
                "middleware=rk.middleware() with sessions=True"
            )
        return session


def _checked(request: Request, key: str | None) -> str | None:
    if not request.scope.get(IDEMPOTENCY):
        raise RuntimeError(
            "Depends(rk.idempotency()) needs redkit_starlette.IdempotencyMiddleware: pass "
            "middleware=rk.middleware() to the application"
        )
    return key
