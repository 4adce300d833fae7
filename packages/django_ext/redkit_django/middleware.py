"""redkit's middleware: site-wide rate limits, idempotency keys and the view cache, each over the
same :mod:`redkit.web` flows as the decorators (and as the Flask adapter), sync and async.

Put them first in ``MIDDLEWARE``, before ``SessionMiddleware``, so that the response they see
carries every cookie the other middleware adds::

    MIDDLEWARE = [
        "redkit_django.middleware.RateLimitMiddleware",
        "redkit_django.middleware.CacheMiddleware",
        "redkit_django.middleware.IdempotencyMiddleware",
        "redkit_django.middleware.SessionMiddleware",
        ...
    ]

Their checks run when Django has routed the request (``process_view``), in that order: rate
limits, the cache, idempotency keys. A view with rules of its own (the decorators) is left to
them. Under ASGI every step awaits :func:`~redkit_django.get_async_kit`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponseBase

from redkit import web
from redkit.errors import RedkitConnectionError

from . import _views, _web

__all__ = [
    "CacheMiddleware",
    "IdempotencyMiddleware",
    "RateLimitMiddleware",
    "SessionMiddleware",
]

_OWED = "_redkit_owed"
_SESSION_DOWN = "_redkit_session_down"


class _Middleware:
    """One part of :class:`redkit.web.WebRules`, run around every routed view."""

    sync_capable = True
    async_capable = True
    part = ""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        # Django adapts these hooks to the handler's mode: give it the one of this mode
        self.process_view: Callable[..., Any] = self._process_view
        self.process_exception: Callable[..., Any] = self._process_exception
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view
            self.process_exception = self._aprocess_exception

    def select(
        self, request: HttpRequest, view: Any
    ) -> tuple[web.WebRules, web.ViewRules | None, bool] | None:
        """The flows to run for this view, its rules, and whether rate limits count; ``None``
        when this part has nothing to do."""
        raise NotImplementedError

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        held = self._owed(request)
        return response if held is None else _views.finish(held, request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        held = self._owed(request)
        return response if held is None else await _views.afinish(held, request, response)

    def _owed(self, request: HttpRequest) -> _views.Held | None:
        owed: dict[str, _views.Held] = request.__dict__.get(_OWED, {})
        return owed.pop(self.part, None)

    def _keep(
        self,
        request: HttpRequest,
        chosen: tuple[web.WebRules, web.ViewRules | None, bool],
        req: web.Request,
        got: HttpResponseBase | web.Pending,
        kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if isinstance(got, HttpResponseBase):
            return got
        request.__dict__.setdefault(_OWED, {})[self.part] = (chosen[0], req, got, kwargs)
        return None

    def _process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> HttpResponseBase | None:
        chosen = self.select(request, view)
        if chosen is None:
            return None
        endpoint = _views.endpoint_of(request, view)
        req, got = _views.begin(chosen[0], request, endpoint, chosen[1], chosen[2])
        return self._keep(request, chosen, req, got, kwargs)

    async def _aprocess_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: dict[str, Any]
    ) -> HttpResponseBase | None:
        chosen = self.select(request, view)
        if chosen is None:
            return None
        endpoint = _views.endpoint_of(request, view)
        req, got = await _views.abegin(chosen[0], request, endpoint, chosen[1], chosen[2])
        return self._keep(request, chosen, req, got, kwargs)

    def _process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        held = self._owed(request)
        if held is not None:
            _views.abort(held)
        return _web.unavailable() if isinstance(exception, RedkitConnectionError) else None

    async def _aprocess_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        held = self._owed(request)
        if held is not None:
            await _views.aabort(held)
        return _web.unavailable() if isinstance(exception, RedkitConnectionError) else None


class RateLimitMiddleware(_Middleware):
    """``REDKIT["RATELIMIT_DEFAULT"]`` on every view without limits of its own, and
    ``REDKIT["RATELIMIT_APPLICATION"]`` (one counter per client) on every view, per client
    address (through ``TRUSTED_PROXIES``). Views decorated with
    :func:`~redkit_django.ratelimit_exempt` are counted by neither. Over a limit: ``429`` with
    ``Retry-After`` and the rate-limit headers; Redis down: ``RATELIMIT_FAIL_OPEN``."""

    part = "limits"

    def select(
        self, request: HttpRequest, view: Any
    ) -> tuple[web.WebRules, web.ViewRules | None, bool] | None:
        own = _views.rules_of_view(view, request.method or "GET")
        if own is not None and own.exempt:
            return None
        rules = _web.rules().get("application" if own is not None and own.limits else "limits")
        return (rules, None, True) if rules.everywhere else None


class IdempotencyMiddleware(_Middleware):
    """``Idempotency-Key`` on every ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` (or the methods
    of ``REDKIT["IDEMPOTENCY_METHODS"]``), with the answers of
    :func:`~redkit_django.idempotent` (which views may use instead, to require the key)."""

    part = "idempotency"

    def select(
        self, request: HttpRequest, view: Any
    ) -> tuple[web.WebRules, web.ViewRules | None, bool] | None:
        rules = _web.rules().get("idempotency")
        if request.method not in rules.idempotency.methods:
            return None
        own = _views.rules_of_view(view, request.method or "GET")
        return None if own is not None and own.idempotent is not None else (rules, None, False)


class CacheMiddleware(_Middleware):
    """The view cache on every ``GET`` and ``HEAD`` view, for ``REDKIT["CACHE_TTL"]`` seconds,
    with the rules of :func:`~redkit_django.cached_view` (which views may use instead, for a
    TTL, tags or ``vary`` of their own)."""

    part = "cache"

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.view_rules = web.ViewRules(cache=web.CacheRule.build())

    def select(
        self, request: HttpRequest, view: Any
    ) -> tuple[web.WebRules, web.ViewRules | None, bool] | None:
        if request.method not in ("GET", "HEAD"):
            return None
        own = _views.rules_of_view(view, request.method)
        if own is not None and own.cache is not None:
            return None
        return _web.rules().get("cache"), self.view_rules, False


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware``, answering ``503`` with ``Retry-After`` instead of a
    ``500`` when the session cannot be read or saved because Redis is unreachable (sessions
    fail closed: a session treated as empty would look like a logout)."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> Any:
        if request.__dict__.pop(_SESSION_DOWN, False):
            return response  # the session was never read: neither saved nor its cookie deleted
        try:
            return super().process_response(request, response)
        except RedkitConnectionError:
            _web.log.warning("redkit: the session was not saved, Redis is unreachable")
            return _web.unavailable("the session")

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if isinstance(exception, RedkitConnectionError):
            request.__dict__[_SESSION_DOWN] = True
            return _web.unavailable("the session")
        return None
