"""Rate limits on views: which rules apply to a request, who is counted, the decision, the
headers and the ``429`` answer.

Rules come from the view, else from its group (a Flask blueprint, a Django app, a Starlette
router), else from ``ratelimit_default``; ``ratelimit_application`` is one counter per client
shared by every view, checked first. Exempt views are counted by none. A rule with
``deduct_when`` charges the request before the view runs, like any other, and gives the
units back afterwards when the hook, given the framework's response, returns false (count
failed logins only): requests that arrive together are all counted while they run. Redis down: each
limit follows ``ratelimit_fail_open`` (allowed, or a ``503``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._clientip import ClientIP, network_key
from ..errors import InvalidRateLimit, RedkitConnectionError
from ..ratelimit import Decision, parse_limits
from ..ratelimit._limits import Limit
from ..settings import RATELIMIT_ALGORITHMS
from ._http import Answer, Request, WebFlow, problem, unavailable

__all__ = ["LimitRule", "RateLimits", "too_many_requests"]

log = logging.getLogger("redkit.web")

LOG_MAX_AMOUNT = 100_000  # the sliding window log keeps one entry per admitted unit


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One rate limit on a view (or group of views).

    ``key``: a hook returning who is counted (default, and when it returns ``None``: the
    client's address, IPv6 by /64);
    ``scope``: the counter's name (default: the view, so views naming one scope share it);
    ``methods``: only these are counted; ``cost``: units a request takes (or a hook returning
    them); ``exempt_when``: a hook, true skips the limit; ``deduct_when``: a hook given the
    response, false gives back what the request was charged before the view ran)."""

    limits: tuple[Limit, ...]
    key: Callable[..., Any] | None = None
    scope: str | None = None
    methods: frozenset[str] | None = None
    cost: int | Callable[..., Any] = 1
    exempt_when: Callable[..., Any] | None = None
    algorithm: str | None = None
    deduct_when: Callable[[Any], Any] | None = None

    @classmethod
    def build(
        cls,
        limits: Any,
        key: Callable[..., Any] | None = None,
        scope: str | None = None,
        methods: Iterable[str] | None = None,
        cost: int | Callable[..., Any] = 1,
        exempt_when: Callable[..., Any] | None = None,
        algorithm: str | None = None,
        deduct_when: Callable[[Any], Any] | None = None,
    ) -> LimitRule:
        """A checked rule: bad limits, costs, algorithms or hooks fail here, when the view is
        decorated, not when a request comes."""
        parsed = parse_limits(limits)
        if isinstance(methods, str):
            methods = [methods]
        if isinstance(cost, bool) or not (callable(cost) or (isinstance(cost, int) and cost >= 1)):
            raise ValueError(f"cost must be an int >= 1 or a callable, got {cost!r}")
        if algorithm is not None and algorithm not in RATELIMIT_ALGORITHMS:
            raise InvalidRateLimit(
                f"unknown algorithm {algorithm!r}; use one of {', '.join(RATELIMIT_ALGORITHMS)}"
            )
        check_log_limits(parsed, algorithm)
        for name, hook in (
            ("key", key),
            ("exempt_when", exempt_when),
            ("deduct_when", deduct_when),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be a callable, not {hook!r}")
        if scope is not None and not isinstance(scope, str):
            raise TypeError(f"scope must be a string, not {scope!r}")
        chosen = None if methods is None else frozenset(m.upper() for m in methods)
        return cls(parsed, key, scope, chosen, cost, exempt_when, algorithm, deduct_when)


def check_log_limits(limits: tuple[Limit, ...], algorithm: str | None) -> None:
    """Refuse limits the sliding window log cannot hold (it stores one entry per unit)."""
    if algorithm == "sliding_window_log":
        for limit in limits:
            if limit.amount > LOG_MAX_AMOUNT:
                raise InvalidRateLimit(
                    f"sliding_window_log holds at most {LOG_MAX_AMOUNT} per period, got {limit}"
                )


def hook(req: Request, fn: Callable[..., Any]) -> Callable[[Any], Any]:
    """The operation that runs a user hook the framework's way."""
    return lambda kit: req.invoke(fn)


def _accepts(fn: Callable[[Any], Any], response: Any) -> Callable[[Any], Any]:
    """The operation that asks a ``deduct_when`` hook about ``response``."""
    return lambda kit: fn(response)


def charge(rule: LimitRule, name: str, cost: int, mode: str) -> Callable[[Any], Any]:
    """The operation that counts (``hit``) or tests (``test``) ``name`` against ``rule``."""
    return lambda kit: getattr(kit.limiter, mode)(name, rule.limits, cost, algorithm=rule.algorithm)


def too_many_requests(decision: Decision, headers: bool = True) -> Answer:
    """The ``429 Too Many Requests`` answer of a denied request: ``Retry-After`` always, the
    rate-limit headers when ``headers``; an RFC 9457 problem body."""
    fields = decision.headers(legacy=headers, draft=headers)
    wait = fields.setdefault("Retry-After", str(max(1, math.ceil(min(decision.retry_after, 1e9)))))
    return problem(
        429,
        "Too Many Requests",
        f"rate limit exceeded ({decision.limit}); retry in {wait} s",
        fields.items(),
        "rate_limited",
        decision,
    )


@dataclass(slots=True)
class Counted:
    """What the limits of one request left to do after the view: the decisions to show in
    headers and the rules charged only when ``deduct_when`` says so."""

    decisions: list[Decision] = field(default_factory=list)
    deferred: list[tuple[LimitRule, str, int]] = field(default_factory=list)


class RateLimits:
    """The rate limits of one application (``settings``: ``ratelimit_enabled``,
    ``ratelimit_default``, ``ratelimit_application``, ``ratelimit_headers``,
    ``ratelimit_algorithm``, ``ratelimit_fail_open``)."""

    def __init__(self, settings: Any, resolver: ClientIP) -> None:
        self.enabled = bool(settings.ratelimit_enabled)
        self.resolver = resolver
        algorithm = settings.ratelimit_algorithm
        self.default = (
            parse_limits(settings.ratelimit_default) if settings.ratelimit_default else None
        )
        self.application = (
            parse_limits(settings.ratelimit_application) if settings.ratelimit_application else None
        )
        for limits in (self.default, self.application):
            if limits is not None:
                check_log_limits(limits, algorithm)
        self.headers = bool(settings.ratelimit_headers)
        self.retry_after = max(1, round(settings.breaker_cooldown))
        self._warned = False

    def client(self, req: Request) -> str:
        """Who a request comes from: the client address through trusted proxies (IPv6 by its
        /64), or ``unknown``."""
        ip = self.resolver.resolve_ip(req.client, req.headers)  # read only behind proxies
        if ip is None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "redkit: a request came without a client address (a proxy on a unix "
                    "socket?): such requests share one rate-limit counter and one idempotency "
                    "scope; add 'unix' to trusted_proxies if that proxy sends X-Forwarded-For"
                )
            return "unknown"
        return network_key(ip)

    def rules_for(
        self, own: Iterable[LimitRule], groups: Iterable[Iterable[LimitRule]]
    ) -> list[LimitRule]:
        """The rules of a view: its own, else its groups', else the default."""
        rules = list(own)
        if not rules:
            for group in groups:
                rules.extend(group)
        if not rules and self.default is not None:
            rules = [LimitRule(self.default)]
        return rules

    def check(
        self, req: Request, endpoint: str, rules: list[LimitRule]
    ) -> WebFlow[Answer | Counted]:
        """Flow: count ``req`` against the application limits and ``rules``; a ``429`` (or a
        ``503`` when Redis is down and the limiter fails closed) when one denies it."""
        counted = Counted()
        if not self.enabled:
            return counted
        client: str | None = None
        try:
            if self.application is not None:
                client = self.client(req)
                limits = self.application
                decision = yield lambda kit: kit.limiter.hit(f"app:{client}", limits)
                counted.decisions.append(decision)
                if not decision.allowed:
                    return too_many_requests(decision, self.headers)
            for rule in rules:
                if rule.methods is not None and req.method not in rule.methods:
                    continue
                if rule.exempt_when is not None and (yield hook(req, rule.exempt_when)):
                    continue
                found = None if rule.key is None else (yield hook(req, rule.key))
                if found is None:  # no key, or the hook knows nobody: the client's address
                    who = client = client or self.client(req)
                else:
                    who = str(found)
                cost = rule.cost
                if callable(cost):
                    cost = yield hook(req, cost)
                if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
                    raise InvalidRateLimit(f"a cost hook must return an int >= 1, got {cost!r}")
                name = f"view:{rule.scope or endpoint}:{who}"
                decision = yield charge(rule, name, cost, "hit")
                counted.decisions.append(decision)
                if not decision.allowed:
                    return too_many_requests(decision, self.headers)
                if rule.deduct_when is not None:
                    counted.deferred.append((rule, name, cost))
        except RedkitConnectionError:
            return unavailable(self.retry_after, "rate limits cannot be checked")
        return counted

    def shown(self, counted: Counted) -> dict[str, str]:
        """The rate-limit headers of an allowed response: those of the tightest limit."""
        if not self.headers or not counted.decisions:
            return {}
        tightest = min(counted.decisions, key=lambda d: (d.remaining, -d.reset_after))
        return tightest.headers()

    def settle(self, counted: Counted, response: Any) -> WebFlow[None]:
        """Flow: give back what the ``deduct_when`` rules charged when their hook does not
        accept the framework's ``response``."""
        for rule, name, cost in counted.deferred:
            assert rule.deduct_when is not None
            if not (yield _accepts(rule.deduct_when, response)):  # an async hook is awaited
                try:
                    yield charge(rule, name, cost, "refund")
                except RedkitConnectionError:
                    return
