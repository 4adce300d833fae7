"""redkit's dashboard in a Django project: ``path("redkit/", include(dashboard_urls()))``.

Staff only by default: the rule lets in an active staff user (Django's authentication must
run first, ``AuthenticationMiddleware``); ``auth=`` replaces it with a callable of the request,
``token=`` adds a bearer token. The views carry the dashboard's own CSRF check, so Django's
``CsrfViewMiddleware`` is told to leave them alone (``csrf_exempt``). The live stream holds one
thread per open tab for at most five minutes (a worker thread under WSGI; under ASGI, a thread
that waits for its next message).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from redkit import web
from redkit.dashboard import Dashboard, WSGIDashboard, make_wsgi_app

from .conf import get_kit

__all__ = ["dashboard_urls", "staff_only"]

MAX_FORM = 16 * 1024


def staff_only(request: HttpRequest) -> str | None:
    """The default rule: the username of an active staff user, else None (refused)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return str(user.get_username())
    return None


def dashboard_urls(
    *,
    auth: Callable[[HttpRequest], Any] | None = staff_only,
    token: str | None = None,
    redact: Callable[[str, Any], Any] | None = None,
    queues: Iterable[str] | None = None,
    read_only: bool = False,
    title: str = "redkit",
) -> list[Any]:
    """URL patterns serving the dashboard under the path they are included at, on the
    project's client (``get_kit()``). ``auth=None`` leaves ``token`` alone to sign in."""
    dashboard = Dashboard(
        auth=auth, token=token, redact=redact, queues=queues, read_only=read_only, title=title
    )
    servers: weakref.WeakKeyDictionary[Any, WSGIDashboard] = weakref.WeakKeyDictionary()

    def server() -> WSGIDashboard:
        kit = get_kit()
        found = servers.get(kit)
        if found is None:
            found = servers[kit] = make_wsgi_app(kit, dashboard)
            kit.on_close(found.close)
        return found

    def view(request: HttpRequest, rest: str = "") -> HttpResponse | StreamingHttpResponse:
        def body() -> bytes:
            try:
                size = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return b""
            return b"" if size > MAX_FORM else bytes(request.body)

        described = web.Request(
            request.method or "GET",
            "/" + rest,
            request.META.get("QUERY_STRING", ""),
            web.Headers.of(request.headers, joined=True),
            request.META.get("REMOTE_ADDR"),
            _host(request),
            dict(request.COOKIES),
            body=body,
            scheme=request.scheme or "http",
            call=lambda fn: fn(request),
        )
        answer, stream = server().respond(described)
        response: HttpResponse | StreamingHttpResponse
        if stream is not None:
            chunks: Any = _async_chunks(stream) if _is_asgi(request) else stream
            response = StreamingHttpResponse(chunks, status=answer.status)
        else:
            response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers:
            if name.lower() == "set-cookie":
                _set_cookie(response, value)
            else:
                response.headers[name] = value
        return response

    exempt = csrf_exempt(view)
    return [path("", exempt, name="redkit-dashboard"), re_path(r"^(?P<rest>.+)$", exempt)]


def _host(request: HttpRequest) -> str:
    """The host the request is for, as Django resolves it (``USE_X_FORWARDED_HOST``); one
    that ``ALLOWED_HOSTS`` refuses is empty (a form posted with an ``Origin`` then fails)."""
    from django.core.exceptions import DisallowedHost

    try:
        return str(request.get_host())
    except DisallowedHost:
        return ""


def _is_asgi(request: HttpRequest) -> bool:
    from django.core.handlers.asgi import ASGIRequest

    return isinstance(request, ASGIRequest)


async def _async_chunks(stream: Iterable[bytes]) -> AsyncIterator[bytes]:
    """The live stream's chunks for Django under ASGI, which wants an async iterator: each is
    waited for on a thread, as the blocking stream waits for its next message."""
    it = iter(stream)
    try:
        while True:
            chunk = await asyncio.to_thread(next, it, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still waiting on its thread: it ends alone
                close()


def _set_cookie(response: HttpResponse | StreamingHttpResponse, header: str) -> None:
    """A ``Set-Cookie`` of the dashboard's, through Django's cookies (one per name)."""
    first, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    flags = {
        a.split("=", 1)[0].lower(): a.split("=", 1)[1] if "=" in a else True for a in attributes
    }
    max_age = flags.get("max-age")
    response.set_cookie(
        name,
        value,
        max_age=int(max_age) if isinstance(max_age, str) else None,
        path=str(flags.get("path", "/")),
        secure="secure" in flags,
        httponly="httponly" in flags,
        samesite=str(flags.get("samesite", "Strict")),
    )
