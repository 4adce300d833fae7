"""Django's request and response as :mod:`redkit.web` describes them, and back: translation only,
no rule."""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from redkit import web
from redkit.idempotency import LeaseKeeper

from .conf import get_kit, get_settings

log = logging.getLogger("redkit.django")

__all__ = [
    "Dual",
    "Rules",
    "describe",
    "described",
    "django_request",
    "rules",
    "session_digest",
    "session_state",
    "to_response",
    "unavailable",
]


def django_request(request: Any) -> HttpRequest:
    """The Django request behind ``request`` (Django REST framework wraps it)."""
    inner = getattr(request, "_request", None)
    return inner if isinstance(inner, HttpRequest) else request


class _Cookies(Mapping[str, str]):
    """The request's cookies, parsed by Django only when a flow reads them."""

    __slots__ = ("_request",)

    def __init__(self, request: HttpRequest) -> None:
        self._request = request

    def __getitem__(self, name: str) -> str:
        return str(self._request.COOKIES[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._request.COOKIES)

    def __len__(self) -> int:
        return len(self._request.COOKIES)


def _digest_of(key: object, items: Any) -> str:
    if not key and not items:
        return "anonymous"
    text = json.dumps([str(key), sorted(items)], sort_keys=True, default=repr)
    return "session:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def session_digest(request: HttpRequest, is_async: bool) -> Callable[[], Any] | None:
    """Who the request's session is, for the view cache (its key and contents, hashed), read
    with the session's async methods under ASGI; ``None`` without sessions."""
    session = getattr(request, "session", None)
    if session is None:
        return None

    def read() -> str:
        return _digest_of(session.session_key, list(session.items()))

    async def aread() -> str:
        return _digest_of(session.session_key, list(await session.aitems()))

    return aread if is_async else read


def _user(request: HttpRequest, is_async: bool) -> Callable[[], Any]:
    """Who the request is for idempotency keys: the authenticated user's primary key, else
    its session (``session:<key>``), else ``None`` (then its credentials or its address).
    Under ASGI the user comes from ``request.auser()``: no query runs on the event loop."""

    def anonymous() -> object:
        key = getattr(getattr(request, "session", None), "session_key", None)
        return f"session:{key}" if key else None

    def read() -> object:
        user = getattr(request, "user", None)
        return user.pk if user is not None and user.is_authenticated else anonymous()

    async def aread() -> object:
        auser = getattr(request, "auser", None)
        user = None if auser is None else await auser()
        return user.pk if user is not None and user.is_authenticated else anonymous()

    return aread if is_async else read


class Dual:
    """A hook with a sync and an async way to run (the user, read without a query on the
    event loop): under ASGI the flows await ``aread(request)``."""

    def __init__(self, read: Callable[[Any], Any], aread: Callable[[Any], Any]) -> None:
        self.read, self.aread = read, aread

    def __call__(self, request: Any) -> Any:
        return self.read(request)


def _caller(request: HttpRequest, is_async: bool) -> Callable[[Callable[..., Any]], Any]:
    def call(fn: Callable[..., Any]) -> Any:
        return fn.aread(request) if is_async and isinstance(fn, Dual) else fn(request)

    return call


def describe(request: Any, is_async: bool) -> web.Request:
    """``request`` (Django's, or Django REST framework's) as :class:`redkit.web.Request`; user
    hooks are called with the Django request."""
    r = django_request(request)
    return web.Request(
        r.method or "GET",
        r.path,
        r.META.get("QUERY_STRING", ""),
        web.Headers.of(r.headers, joined=True),  # a WSGI/ASGI META: one field per name
        r.META.get("REMOTE_ADDR") or None,
        r.get_host(),
        _Cookies(r),
        body=lambda: r.body,
        user=_user(r, is_async),
        scheme=r.scheme or "http",
        session_digest=session_digest(r, is_async),
        call=_caller(r, is_async),
    )


def session_state(request: Any) -> tuple[bool, bool]:
    """``(used, changed)`` of the request's session, for the view cache; a CSRF cookie about
    to be set counts as a change (the page holds a token of this client)."""
    r = django_request(request)
    session = getattr(r, "session", None)
    used = bool(getattr(session, "accessed", False))
    changed = bool(getattr(session, "modified", False)) or bool(
        r.META.get("CSRF_COOKIE_NEEDS_UPDATE")
    )
    return used, changed


def described(response: HttpResponseBase, vary: list[str] | None = None) -> web.Response:
    """``response`` as :class:`redkit.web.Response`: its headers and cookies, its body (``None``
    when it streams)."""
    headers = list(response.items())
    headers += [("Set-Cookie", m.OutputString()) for m in response.cookies.values()]
    body = None if response.streaming else bytes(response.content)
    return web.Response(response.status_code, headers, body, vary)


def to_response(answer: web.Answer) -> HttpResponse:
    """A Django response of a flow's answer (repeated fields joined, as HTTP allows)."""
    response = HttpResponse(answer.body, status=answer.status)
    joined: dict[str, list[str]] = {}
    for name, value in answer.headers:
        joined.setdefault(name, []).append(value)
    for name, values in joined.items():
        response.headers[name] = ", ".join(values)
    return response


@dataclass(slots=True)
class Rules:
    """The web flows of the process's settings, one variant per concern (each middleware
    runs only its own part; the decorators only what they put on a view)."""

    keeper: LeaseKeeper
    variants: dict[str, web.WebRules] = field(default_factory=dict)
    retry_after: int = 1

    def get(self, name: str) -> web.WebRules:
        found = self.variants.get(name)
        if found is None:
            found = self.variants[name] = web.WebRules(_variant(name), self.keeper)
        return found


DEFAULT_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _variant(name: str) -> Any:
    """The settings of one part: ``views`` (the decorators' rules only), ``limits`` (the
    default and application limits), ``application`` (the application limit only, for views
    with limits of their own), ``idempotency`` (every unsafe method), ``cache``."""
    s = get_settings()
    quiet: dict[str, Any] = {"idempotency_methods": ()}
    if name in ("views", "cache", "idempotency"):
        quiet.update(ratelimit_default=None, ratelimit_application=None)
    if name == "application":
        quiet.update(ratelimit_default=None)
    if name == "idempotency":
        quiet.update(idempotency_methods=s.idempotency_methods or DEFAULT_METHODS)
    return replace(s, **quiet)


_rules: weakref.WeakKeyDictionary[Any, Rules] = weakref.WeakKeyDictionary()


def rules() -> Rules:
    """The :class:`Rules` of the process's client (made again when ``REDKIT`` changes)."""
    kit = get_kit()
    found = _rules.get(kit)
    if found is None:
        keeper = LeaseKeeper(kit.idempotency, kit.settings.idempotency_lease)
        kit.on_close(keeper.close)
        found = _rules[kit] = Rules(
            keeper, retry_after=max(1, round(kit.settings.breaker_cooldown))
        )
    return found


def unavailable(what: str = "this request") -> HttpResponse:
    """``503`` with ``Retry-After`` when Redis is unreachable."""
    return to_response(web.unavailable(rules().retry_after, what))
