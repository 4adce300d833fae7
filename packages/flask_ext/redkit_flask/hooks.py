"""Flask's request hooks over :mod:`redkit.web`: translation only, no rule.

``before_request`` runs :meth:`~redkit.web.WebRules.before` for the view Flask routed to;
``after_request`` adds the rate-limit headers; the ``request_finished`` signal (sent after the
session was saved, so every ``Set-Cookie`` is on the response) runs
:meth:`~redkit.web.WebRules.finish`; ``teardown_request`` releases the idempotency key of a
request that failed without a response. What a request owes between them is kept in its WSGI
environ, never in ``g`` (an application context may outlive one request).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from flask.globals import request_ctx
from flask.sessions import SecureCookieSessionInterface
from flask.signals import request_finished
from werkzeug.exceptions import TooManyRequests

from flask import Flask, Response, after_this_request, request
from redkit import web
from redkit.cache import writes_pending
from redkit.errors import RedkitConnectionError
from redkit.idempotency import LeaseKeeper

from .sessions import SESSION_STATE, RedkitSessionInterface

KNOWN_SESSIONS = (RedkitSessionInterface, SecureCookieSessionInterface)
"""Session interfaces whose sessions the view cache can tell apart without the Cookie header."""

__all__ = ["Hooks", "RateLimitExceeded", "rules_of"]

RULES = "_redkit_rules"
_PENDING = "redkit.pending"
_VARY = "redkit.vary"


def rules_of(fn: Any, create: bool = False) -> web.ViewRules | None:
    """The rules the decorators put on a view function (following ``__wrapped__``)."""
    probe, depth = fn, 0
    while probe is not None and depth < 16:
        found = getattr(probe, RULES, None)
        if isinstance(found, web.ViewRules):
            return found
        probe, depth = getattr(probe, "__wrapped__", None), depth + 1
    if not create:
        return None
    rules = web.ViewRules()
    setattr(fn, RULES, rules)
    return rules


class RateLimitExceeded(TooManyRequests):
    """A ``429 Too Many Requests`` raised before a limited view runs, with ``Retry-After`` and
    the rate-limit headers. Register an error handler for 429 to change its body;
    ``error.decision`` says which limit was hit."""

    def __init__(self, answer: web.Answer) -> None:
        super().__init__(response=to_response(answer))
        self.decision = answer.detail


def to_response(answer: web.Answer) -> Response:
    """A Flask response of a flow's answer."""
    return Response(answer.body, answer.status, list(answer.headers))


class _Cookies(Mapping[str, str]):
    """The request's cookies, parsed only when a flow reads them."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def __getitem__(self, name: str) -> str:
        return self._request.cookies[name]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self._request.cookies)

    def __len__(self) -> int:
        return len(self._request.cookies)


def session_digest() -> str | None:
    """Who the request's session is, for the view cache: redkit's server-side session by id
    and contents, Flask's cookie session by its contents."""
    session = raw_session()
    if isinstance(session, web.LazySession):
        return session.digest()
    if not session:
        return "anonymous"
    text = json.dumps(dict(session), sort_keys=True, default=repr)
    return "cookie:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def raw_session() -> Any:
    """The request's session as it is, without marking it accessed (Flask 3.1 marks it on
    every ``flask.session`` lookup; older versions keep it in ``ctx.session``)."""
    state = vars(request_ctx._get_current_object())  # type: ignore[attr-defined]
    return state["_session"] if "_session" in state else state.get("session")


class Hooks:
    """The request hooks of one application."""

    def __init__(self, ext: Any, app: Flask, kit: Any) -> None:
        self.ext = ext
        self.app = app
        self.kit = kit
        self.keeper = LeaseKeeper(kit.idempotency, kit.settings.idempotency_lease)
        self.web = web.WebRules(kit.settings, self.keeper)
        self._endpoints: dict[str, tuple[web.ViewRules | None, list[web.ViewRules]]] = {}
        app.before_request(self.before)
        app.after_request(self.after)
        app.teardown_request(self.teardown)
        request_finished.connect(self.finished, app, weak=False)
        kit.on_close(self.close)  # closing the client stops the lease renewer too
        if kit.settings.sessions:
            app.before_request(self.seal_after_view)
        app.register_error_handler(RedkitConnectionError, self.unavailable)

    def describe(self) -> web.Request:
        """The current Flask request as :class:`redkit.web.Request`."""
        r = request._get_current_object()  # type: ignore[attr-defined]
        loader = self.ext._user_loader
        known = isinstance(self.app.session_interface, KNOWN_SESSIONS)
        return web.Request(
            r.method,
            r.path,
            r.query_string.decode("latin-1"),
            web.Headers.of(r.headers, joined=True),  # an environ: one field per name
            r.remote_addr,
            r.host,
            _Cookies(r),
            body=lambda: r.get_data(cache=True),
            user=loader,
            scheme=r.scheme,
            session_digest=session_digest if known else None,
        )

    def rules_for(self, endpoint: str) -> tuple[web.ViewRules | None, list[web.ViewRules]]:
        """The rules of an endpoint and of its blueprints, looked up once per endpoint."""
        found = self._endpoints.get(endpoint)
        if found is None:
            view = rules_of(self.app.view_functions.get(endpoint))
            groups = [g for g in map(self.ext._groups.get, request.blueprints) if g is not None]
            found = self._endpoints[endpoint] = (view, groups)
        return found

    def before(self) -> Response | None:
        r = request._get_current_object()  # type: ignore[attr-defined]
        endpoint = r.endpoint
        if endpoint is None:
            return None  # 404 / 405: nothing to limit, cache or guard
        view, groups = self.rules_for(endpoint)
        if view is None and not groups and not self.web.everywhere:
            return None  # nothing to limit, cache or guard: no request to describe
        req = self.describe()
        flow = self.web.before(req, endpoint, view, groups, limited=endpoint != "static")
        got = web.run(flow, self.kit)
        if isinstance(got, web.Answer):
            if got.kind == "rate_limited":
                raise RateLimitExceeded(got)
            return to_response(got)
        r.environ[_PENDING] = (req, got)
        return None

    def seal_after_view(self) -> None:
        """Run first after the view: from then on a session Redis cannot read looks empty to
        hooks (Flask-Login's), and its save answers 503."""
        after_this_request(self._seal)

    @staticmethod
    def _seal(response: Response) -> Response:
        session = raw_session()
        if isinstance(session, web.LazySession):
            session.seal()
        return response

    def after(self, response: Response) -> Response:
        held = request.environ.get(_PENDING)
        if held is not None:
            for name, value in self.web.headers(held[1]).items():
                response.headers.setdefault(name, value)
            if held[1].ticket is not None:
                request.environ[_VARY] = list(response.vary)  # before the session adds Cookie
        return response

    def finished(self, sender: Any, response: Response, **extra: Any) -> None:
        held = request.environ.pop(_PENDING, None)
        if held is None or not held[1].owes:
            return
        req, pending = held
        streamed = response.is_streamed or response.direct_passthrough
        described = web.Response(
            response.status_code,
            list(response.headers.items()),
            None if streamed else response.get_data(),
            request.environ.get(_VARY),
        )
        flow = self.web.finish(
            req,
            pending,
            described,
            response,
            request.view_args,
            request.environ.get(SESSION_STATE) or web.session_state(raw_session()),
            writes_pending(),
        )
        try:
            web.run(flow, self.kit)
        except Exception:  # the response is made: a failing store must not turn it into a 500
            self.app.logger.exception("redkit: finishing the request failed")

    def teardown(self, exc: BaseException | None) -> None:
        held = request.environ.pop(_PENDING, None)
        if held is not None and held[1].holds_key:  # failed before its response was finished
            web.run(self.web.abort(held[1]), self.kit)

    def unavailable(self, exc: RedkitConnectionError) -> Response:
        """``503`` with ``Retry-After`` when a view needed Redis (its session, say) and Redis
        is unreachable."""
        self.app.logger.warning("redkit: answering 503, Redis is unreachable: %s", exc)
        return to_response(web.unavailable(self.web.limits.retry_after, "this request"))

    def close(self) -> None:
        """Stop renewing leases and disconnect the signal (from every sender: blinker keeps a
        receiver disconnected from one sender only, and with it this object and its client)."""
        self.keeper.close()
        request_finished.disconnect(self.finished)
