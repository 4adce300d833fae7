"""FastAPI dependencies over :mod:`redkit.web`: ``Depends(rk.limit("10/minute"))`` counts a
request against a limit where the endpoint declares it (in its parameters, or a router's
``dependencies=``), with the limit's headers set on FastAPI's ``Response``; over the limit the
dependency raises ``HTTPException(429)`` with ``Retry-After`` and those headers. Nothing is
wrapped: the endpoint's signature, validation and OpenAPI schema stay as they are."""

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
from ._middleware import _caller, _user

__all__ = ["Dependencies", "Refused"]

Dependency = Callable[[Request, Response], Awaitable[None]]


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
