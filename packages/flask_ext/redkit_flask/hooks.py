"""The request hooks behind ``@kit.rate_limit``, ``@kit.cached`` and ``@kit.idempotent``.

Decorators only mark a view function (an attribute on the function itself, so they work above
or below ``@app.route``); the extension's ``before_request`` / ``after_request`` /
``teardown_request`` hooks read the marks of the view Flask dispatches to, and do the work
through the application's ``redkit.Redkit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, TooManyRequests

from flask import Flask, Response, g, request, session
from redkit.cache.core import uncommitted
from redkit.clientip import ClientIP, network_key
from redkit.errors import IdempotencyKeyError, RedkitConnectionError, ResponseTooLarge
from redkit.idempotency import Begin, LeaseKeeper, parse_key_header
from redkit.ratelimit import Decision, parse_limits
from redkit.web import (
    CachedResponse,
    ViewCachePolicy,
    idempotency_error,
    request_fingerprint,
    too_many_requests,
)

log = logging.getLogger("redkit.flask")

MARK = "_redkit_marks"
IDEMPOTENT_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(slots=True)
class LimitRule:
    """A ``@kit.rate_limit`` on a view (or blueprint)."""

    limits: Any
    key: Callable[[], object] | None = None
    scope: str | None = None
    methods: frozenset[str] | None = None
    cost: int | Callable[[], int] = 1
    exempt_when: Callable[[], bool] | None = None
    algorithm: str | None = None


@dataclass(slots=True)
class CacheRule:
    """A ``@kit.cached`` on a view."""

    ttl: float | None
    tags: Any
    policy: ViewCachePolicy


@dataclass(slots=True)
class IdempotentRule:
    """An ``@kit.idempotent`` on a view."""

    methods: frozenset[str] = frozenset(IDEMPOTENT_METHODS)
    required: bool = False
    scope: Callable[[], object] | None = None
    store_server_errors: bool | None = None
    allow_headers: tuple[str, ...] = ()


@dataclass(slots=True)
class Marks:
    """What the decorators put on a view function."""

    limits: list[LimitRule] = field(default_factory=list)
    exempt: bool = False
    cache: CacheRule | None = None
    idempotent: IdempotentRule | None = None


def marks_of(fn: Any, create: bool = False) -> Marks | None:
    """The marks of a view function (following ``__wrapped__``), created when asked."""
    seen = 0
    probe = fn
    while probe is not None and seen < 16:
        found = getattr(probe, MARK, None)
        if isinstance(found, Marks):
            return found
        probe = getattr(probe, "__wrapped__", None)
        seen += 1
    if not create:
        return None
    marks = Marks()
    setattr(fn, MARK, marks)
    return marks


class RateLimitExceeded(TooManyRequests):
    """Raised by a limited view's ``before_request`` hook: a ``429 Too Many Requests`` with
    ``Retry-After`` and the rate-limit headers. Register an error handler for 429 to change its
    body; ``error.decision`` says which limit was hit."""

    def __init__(self, decision: Decision, headers: bool = True) -> None:
        status, fields, body = too_many_requests(decision, headers)
        super().__init__(response=Response(body, status, fields))
        self.decision = decision


class _RequestState:
    """Per-request record kept in ``g``."""

    __slots__ = ("begun", "cache_key", "cache_rule", "decisions", "hit", "idem_rule", "lease")

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.cache_rule: CacheRule | None = None
        self.cache_key: str | None = None
        self.hit = False
        self.begun: Begin | None = None  # an idempotent request that holds its key
        self.lease = 0
        self.idem_rule: IdempotentRule | None = None


_G = "_redkit_request"


class Hooks:
    """The request hooks of one application."""

    def __init__(self, ext: Any, app: Flask) -> None:
        self.ext = ext
        self.app = app
        state = ext.state(app)
        self.kit = state.kit
        s = self.kit.settings
        self.resolver = ClientIP(s.trusted_proxies, header=s.client_ip_header)
        self.default_limits = parse_limits(s.ratelimit_default) if s.ratelimit_default else None
        self.app_limits = parse_limits(s.ratelimit_application) if s.ratelimit_application else None
        self.headers = s.ratelimit_headers
        self.idem_methods = frozenset(m.upper() for m in s.idempotency_methods)
        self.leases = LeaseKeeper(self.kit.idempotency, s.idempotency_lease)
        self.idem_header = s.idempotency_header

    # -- helpers --------------------------------------------------------------------------------
    def client(self) -> str:
        """The client's address (through trusted proxies); IPv6 clients by their /64."""
        ip = self.resolver.resolve_ip(request.remote_addr, request.headers.items())
        return "unknown" if ip is None else network_key(ip)

    def _view(self) -> Any:
        endpoint = request.endpoint
        return None if endpoint is None else self.app.view_functions.get(endpoint)

    def _blueprint_marks(self) -> list[Marks]:
        found = []
        for name in request.blueprints:
            marks = self.ext._blueprint_marks.get(name)
            if marks is not None:
                found.append(marks)
        return found

    # -- before ---------------------------------------------------------------------------------
    def before(self) -> Response | None:
        endpoint = request.endpoint
        if endpoint is None:
            return None  # 404 / 405: nothing to limit, cache or guard
        marks = marks_of(self._view())
        bp_marks = self._blueprint_marks()
        rs = _RequestState()
        setattr(g, _G, rs)
        exempt = (marks is not None and marks.exempt) or any(m.exempt for m in bp_marks)
        if endpoint != "static" and not exempt:
            self._limit(marks, bp_marks, endpoint, rs)
        if marks is not None and marks.cache is not None and request.method in ("GET", "HEAD"):
            hit = self._cache_lookup(marks.cache, rs)
            if hit is not None:
                return hit
        rule = marks.idempotent if marks is not None else None
        if rule is None and request.method in self.idem_methods:
            rule = IdempotentRule(methods=self.idem_methods)
        if rule is not None and request.method in rule.methods:
            return self._idempotent(rule, rs)
        return None

    def _limit(
        self, marks: Marks | None, bp_marks: list[Marks], endpoint: str, rs: _RequestState
    ) -> None:
        limiter = self.kit.limiter
        client: str | None = None
        if self.app_limits is not None:
            client = self.client()
            rs.decisions.append(limiter.hit(f"app:{client}", self.app_limits))
            self._check(rs.decisions[-1])
        rules = list(marks.limits) if marks is not None else []
        if not rules:
            for bm in bp_marks:
                rules.extend(bm.limits)
        if not rules and self.default_limits is not None:
            rules = [LimitRule(self.default_limits)]
        for rule in rules:
            if rule.methods is not None and request.method not in rule.methods:
                continue
            if rule.exempt_when is not None and rule.exempt_when():
                continue
            if rule.key is not None:
                who = str(rule.key())
            else:
                who = client = client or self.client()
            cost = rule.cost() if callable(rule.cost) else rule.cost
            scope = rule.scope or endpoint
            decision = limiter.hit(
                f"view:{scope}:{who}", rule.limits, cost, algorithm=rule.algorithm
            )
            rs.decisions.append(decision)
            self._check(decision)

    def _check(self, decision: Decision) -> None:
        if not decision.allowed:
            raise RateLimitExceeded(decision, self.headers)

    def _cache_lookup(self, rule: CacheRule, rs: _RequestState) -> Response | None:
        base = rule.policy.base_key(
            request.method, request.host, request.path, request.args.items(multi=True)
        )
        rs.cache_rule = rule
        rs.cache_key = base
        cache = self.kit.cache
        found = cache.get(base)
        if isinstance(found, dict) and "vary" in found:
            names = [str(n) for n in found["vary"]]
            found = cache.get(ViewCachePolicy.varied_key(base, names, request.headers.get))
        stored = CachedResponse.decode(found)
        if stored is None:
            return None
        rs.hit = True
        return self.app.response_class(stored.body, stored.status, list(stored.headers))

    def _idempotent(self, rule: IdempotentRule, rs: _RequestState) -> Response | None:
        raw = request.headers.get(self.idem_header)
        if raw is None:
            if rule.required:
                return self._answer(
                    *idempotency_error(None, f"this request needs an {self.idem_header} header")
                )
            return None
        try:
            key = parse_key_header(raw)
        except IdempotencyKeyError as exc:
            return self._answer(*idempotency_error(None, str(exc)))
        scope_fn = rule.scope or self.ext._scope_loader
        scope = scope_fn() if scope_fn is not None else None
        if scope is not None and not isinstance(scope, (str, int)):
            scope = str(scope)
        fp = request_fingerprint(
            request.method,
            request.path,
            request.query_string,
            request.get_data(cache=True),
            request.content_type,
        )
        begun = self.kit.idempotency.begin(key, fp, scope)
        if begun.started:
            rs.begun = begun
            rs.idem_rule = rule
            rs.lease = self.leases.add(begun)
            return None
        if begun.replayed:
            headers = begun.replay_headers()
            return self.app.response_class(begun.body, begun.status, headers)
        return self._answer(*idempotency_error(begun))

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> Response:
        return self.app.response_class(body, status, headers)

    # -- after ----------------------------------------------------------------------------------
    def after(self, response: Response) -> Response:
        rs: _RequestState | None = getattr(g, _G, None)
        if rs is None:
            return response
        if self.headers and rs.decisions and response.status_code != 429:
            shown = min(rs.decisions, key=lambda d: (d.remaining, -d.reset_after))
            for name, value in shown.headers().items():
                response.headers.setdefault(name, value)
        if rs.cache_rule is not None and not rs.hit:
            self._cache_store(rs.cache_rule, rs.cache_key, response)
        if rs.begun is not None:
            self._complete(rs, response)
        return response

    def _cache_store(self, rule: CacheRule, base: str | None, response: Response) -> None:
        if base is None or response.is_streamed or response.direct_passthrough:
            return
        scope = uncommitted.get()
        if scope is not None and scope.pending:
            return  # what this request read may still roll back
        headers = list(response.headers.items())
        if not rule.policy.storable(request.method, response.status_code, headers):
            return
        extra = ["cookie"] if getattr(session, "accessed", False) else []
        names = rule.policy.vary_of(headers, extra)
        if names is None:
            return
        stored = rule.policy.stored(response.status_code, headers, response.get_data())
        tags = self._tags(rule.tags)
        cache = self.kit.cache
        if names:
            key = ViewCachePolicy.varied_key(base, names, request.headers.get)
            cache.set(base, {"vary": names}, rule.ttl, tags)
            cache.set(key, stored.encode(), rule.ttl, tags)
        else:
            cache.set(base, stored.encode(), rule.ttl, tags)

    def _tags(self, spec: Any) -> list[str] | None:
        if spec is None:
            return None
        args = dict(request.view_args or {})
        if callable(spec):
            out = spec(**args)
            return [out] if isinstance(out, str) else list(out)
        return [t.format(**args) for t in spec]

    def _complete(self, rs: _RequestState, response: Response) -> None:
        begun, rs.begun = rs.begun, None
        assert begun is not None
        assert begun.token is not None
        self.leases.remove(rs.lease)
        rule = rs.idem_rule or IdempotentRule()
        idem = self.kit.idempotency
        try:
            if response.is_streamed:  # a stream cannot be replayed: release the key
                idem.release(begun.key, begun.token, begun.scope)
                return
            idem.complete(
                begun.key,
                begun.token,
                response.status_code,
                list(response.headers.items()),
                response.get_data(),
                begun.scope,
                store_server_errors=rule.store_server_errors,
                allow_headers=rule.allow_headers,
            )
        except ResponseTooLarge:
            log.warning("redkit: response too large to store for replay; key released")
        except RedkitConnectionError as exc:
            log.warning(
                "redkit: could not store an idempotent response (%s); its lease expires in %.0fs",
                exc,
                self.kit.settings.idempotency_lease,
            )

    def teardown(self, exc: BaseException | None) -> None:
        rs: _RequestState | None = getattr(g, _G, None)
        if rs is None or rs.begun is None:
            return
        begun, rs.begun = rs.begun, None  # the request failed before a response was made
        self.leases.remove(rs.lease)
        try:
            assert begun.token is not None
            self.kit.idempotency.release(begun.key, begun.token, begun.scope)
        except RedkitConnectionError as err:
            log.warning("redkit: could not release an idempotency key (%s)", err)


def limit_rule(
    limits: Any,
    key: Callable[[], object] | None,
    scope: str | None,
    methods: Iterable[str] | None,
    cost: int | Callable[[], int],
    exempt_when: Callable[[], bool] | None,
    algorithm: str | None,
) -> LimitRule:
    """A checked :class:`LimitRule` (bad limits fail at decoration time)."""
    parsed = parse_limits(limits)
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(cost, bool) or not (callable(cost) or (isinstance(cost, int) and cost >= 1)):
        raise ValueError(f"cost must be an int >= 1 or a callable, got {cost!r}")
    return LimitRule(
        parsed,
        key,
        scope,
        None if methods is None else frozenset(m.upper() for m in methods),
        cost,
        exempt_when,
        algorithm,
    )


__all__ = ["HTTPException", "Hooks", "RateLimitExceeded", "marks_of"]
