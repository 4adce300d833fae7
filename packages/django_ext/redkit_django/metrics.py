"""The queues' Prometheus exposition as a Django view (the ``metrics`` extra).

``path("metrics", metrics_view(token=...))`` serves what :mod:`redkit.metrics` collects, read from
Redis at each scrape. It is never open: a request passes when ``allow(request)`` says so (by
default: an active staff user, through Django's authentication) or when it carries
``Authorization: Bearer <token>`` with the token given (Prometheus' ``authorization`` setting).
Anyone else gets 401 (a token is configured) or 403, and no metric.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from redkit.errors import RedkitError
from redkit.web import require

from .conf import get_kit

__all__ = ["metrics_view"]

log = logging.getLogger("redkit.django")


def _staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def metrics_view(
    *,
    queues: Iterable[str] | None = None,
    token: str | None = None,
    allow: Callable[[HttpRequest], bool] | None = _staff,
) -> Callable[[HttpRequest], HttpResponse]:
    """A view serving the metrics of ``queues`` (default: every queue of the registry).

    ``token``: a bearer token that grants access (at least 16 characters); ``allow``: a callable
    of the request that grants access (default: active staff users; ``None``: the token only)."""
    prometheus = require("prometheus_client", "metrics")
    from redkit.metrics import registry

    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ValueError("metrics_view(token=...) must be a string of at least 16 characters")
    if token is None and allow is None:
        raise ValueError("metrics_view() needs a token or an allow rule: it is never open")
    expected = None if token is None else f"Bearer {token}".encode()
    names = None if queues is None else list(queues)

    def granted(request: HttpRequest) -> bool:
        if expected is not None:
            given = request.META.get("HTTP_AUTHORIZATION", "")
            raw = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else b""
            if hmac.compare_digest(raw, expected):
                return True
        return bool(allow is not None and allow(request))

    def view(request: HttpRequest) -> HttpResponse:
        if not granted(request):
            denied = HttpResponse(
                "Forbidden\n",
                status=401 if expected is not None else 403,
                content_type="text/plain",
            )
            if expected is not None:
                denied["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return denied
        encoder, content_type = prometheus.exposition.choose_encoder(
            request.META.get("HTTP_ACCEPT", "")
        )
        try:
            body = encoder(registry(get_kit(), names))
        except RedkitError as exc:
            log.warning("redkit: metrics not collected: %s", exc)
            failed = HttpResponse("Redis is unavailable\n", status=503, content_type="text/plain")
            failed["Retry-After"] = "5"
            return failed
        return HttpResponse(body, content_type=content_type)

    guarded: Callable[[HttpRequest], HttpResponse] = never_cache(require_GET(view))
    return guarded
