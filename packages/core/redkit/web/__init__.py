"""redkit's web layer: what an HTTP request needs from redkit, decided once for every framework.

The adapters (``redkit_flask``, ``redkit_django``, ``redkit_starlette``) translate their
framework's request and response to :class:`Request` and :class:`Response`, register hooks or
middleware, and run the flows here with :func:`run` (sync) or :func:`arun` (asyncio). The rules
live here: the view cache (what may be stored and for whom), rate-limit rules and their 429,
the idempotent-request lifecycle, the session cookie. None of it does I/O by itself or knows a
framework.
"""

from __future__ import annotations

from .._clientip import ClientIP, network_key
from .._optional import require
from ._config import url_from_environment
from ._http import Answer, Headers, Request, Response, WebFlow, arun, problem, run, unavailable
from ._idempotency import Held, IdempotentRequests, IdempotentRule, idempotency_error
from ._pipeline import Pending, ViewRules, WebRules
from ._ratelimit import Counted, LimitRule, RateLimits, too_many_requests
from ._sessions import (
    CookieAttributes,
    CookieChange,
    CookieSigner,
    LazySession,
    SessionCookies,
    session_state,
)
from ._viewcache import CachedResponse, CacheRule, CacheTicket, ViewCache, ViewCachePolicy

__all__ = [
    "Answer",
    "CacheRule",
    "CacheTicket",
    "CachedResponse",
    "ClientIP",
    "CookieAttributes",
    "CookieChange",
    "CookieSigner",
    "Counted",
    "Headers",
    "Held",
    "IdempotentRequests",
    "IdempotentRule",
    "LazySession",
    "LimitRule",
    "Pending",
    "RateLimits",
    "Request",
    "Response",
    "SessionCookies",
    "ViewCache",
    "ViewCachePolicy",
    "ViewRules",
    "WebFlow",
    "WebRules",
    "arun",
    "idempotency_error",
    "network_key",
    "problem",
    "require",
    "run",
    "session_state",
    "too_many_requests",
    "unavailable",
    "url_from_environment",
]
