"""Running :mod:`redkit.web`'s flows around one Django view, sync or async: the part the
middleware and the decorators share (the rules of a view, before, the headers, finish, abort)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections
from django.http import HttpResponseBase

from redkit import web
from redkit.errors import RedkitConnectionError

from . import _web
from .conf import get_async_kit, get_kit

__all__ = ["RULES", "Held", "abegin", "afinish", "begin", "endpoint_of", "finish", "rules_of_view"]

RULES = "_redkit_rules"
"""The attribute holding the :class:`redkit.web.ViewRules` the decorators put on a view."""

Held = tuple[web.WebRules, web.Request, web.Pending, dict[str, Any]]
"""What a request owes after its view: the flows, the request, the pending part, the view's
keyword arguments (for cache tags)."""


def rules_of(fn: Any) -> web.ViewRules | None:
    """The rules on ``fn`` or on what it wraps (``functools.wraps`` chains)."""
    probe, depth = fn, 0
    while probe is not None and depth < 16:
        found = getattr(probe, "__dict__", {}).get(RULES)
        if isinstance(found, web.ViewRules):
            return found
        probe, depth = getattr(probe, "__wrapped__", None), depth + 1
    return None


def rules_of_view(view: Any, method: str) -> web.ViewRules | None:
    """The rules of a routed view: on the view function, else (class-based views decorated
    with ``method_decorator``) on its class's ``dispatch`` or on the method's handler
    (``get``, a ViewSet's action)."""
    found = rules_of(view)
    if found is not None:
        return found
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if cls is None:
        return None
    actions = getattr(view, "actions", None) or {}
    handler = actions.get(method.lower(), method.lower())
    return rules_of(getattr(cls, "dispatch", None)) or rules_of(getattr(cls, handler, None))


def endpoint_of(request: Any, view: Any) -> str:
    """The name rate-limit counters of a view default to: its URL name, else its path."""
    match = getattr(_web.django_request(request), "resolver_match", None)
    name = getattr(match, "view_name", None)
    if name:
        return str(name)
    return f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', repr(view))}"


def uncommitted() -> bool:
    """Whether a database transaction is open (what the view read may still roll back)."""
    return any(c.in_atomic_block for c in connections.all(initialized_only=True))


def _guarded(got: web.Answer | web.Pending) -> HttpResponseBase | web.Pending:
    return _web.to_response(got) if isinstance(got, web.Answer) else got


def begin(
    rules: web.WebRules, request: Any, endpoint: str, view: web.ViewRules | None, limited: bool
) -> tuple[web.Request, HttpResponseBase | web.Pending]:
    """Run :meth:`WebRules.before`: a response to send instead of the view, or what is owed."""
    req = _web.describe(request, False)
    try:
        got = web.run(rules.before(req, endpoint, view, limited=limited), get_kit())
    except RedkitConnectionError:
        return req, _web.unavailable()
    return req, _guarded(got)


async def abegin(
    rules: web.WebRules, request: Any, endpoint: str, view: web.ViewRules | None, limited: bool
) -> tuple[web.Request, HttpResponseBase | web.Pending]:
    """:func:`begin` on the running loop's client."""
    req = _web.describe(request, True)
    try:
        got = await web.arun(rules.before(req, endpoint, view, limited=limited), get_async_kit())
    except RedkitConnectionError:
        return req, _web.unavailable()
    return req, _guarded(got)


def _session_cookie(request: Any) -> list[tuple[str, str]]:
    """A ``Set-Cookie`` standing for the session cookie Django's middleware will set for a
    changed session, so the flows treat the response as the client will get it."""
    r = _web.django_request(request)
    session = getattr(r, "session", None)
    if session is None or not getattr(session, "modified", False):
        return []
    return [("Set-Cookie", f"{django_settings.SESSION_COOKIE_NAME}={session.session_key or ''}")]


def _finish_flow(held: Held, request: Any, response: HttpResponseBase) -> web.WebFlow[None]:
    rules, req, pending, kwargs = held
    for name, value in rules.headers(pending).items():
        if not response.has_header(name):
            response[name] = value
    described = _web.described(response)
    described.headers += _session_cookie(request)
    return rules.finish(
        req, pending, described, response, kwargs, _web.session_state(request), uncommitted()
    )


def finish(held: Held, request: Any, response: HttpResponseBase) -> HttpResponseBase:
    """Add the rate-limit headers and run :meth:`WebRules.finish` (after the response is
    rendered, for a template or REST framework response not rendered yet)."""
    if not getattr(response, "is_rendered", True):
        render: Callable[[Any], Any] = response.add_post_render_callback
        render(lambda done: _finish_now(held, request, done))
        return response
    _finish_now(held, request, response)
    return response


def _finish_now(held: Held, request: Any, response: HttpResponseBase) -> None:
    try:
        web.run(_finish_flow(held, request, response), get_kit())
    except Exception:  # the response is made: a failing store must not turn it into a 500
        _web.log.exception("redkit: finishing the request failed")


async def afinish(held: Held, request: Any, response: HttpResponseBase) -> HttpResponseBase:
    """:func:`finish` on the running loop's client."""
    if not getattr(response, "is_rendered", True):
        response = await sync_to_async(response.render)()
    try:
        await web.arun(_finish_flow(held, request, response), get_async_kit())
    except Exception:
        _web.log.exception("redkit: finishing the request failed")
    return response


def abort(held: Held) -> None:
    """The view raised: release the request's idempotency key."""
    if held[2].holds_key:
        web.run(held[0].abort(held[2]), get_kit())


async def aabort(held: Held) -> None:
    """:func:`abort` on the running loop's client."""
    if held[2].holds_key:
        await web.arun(held[0].abort(held[2]), get_async_kit())
