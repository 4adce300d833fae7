"""The decorators putting :mod:`redkit.web` rules on an endpoint: ``@rk.rate_limit``,
``@rk.exempt``, ``@rk.cached`` and ``@rk.idempotent``. Each returns the endpoint itself (its
signature untouched, so FastAPI still sees its parameters); the middleware applies them.
``@rk.rate_limit`` and ``@rk.exempt`` also take a ``Mount``: the limit (or the exemption)
then covers every route under it that has no limit of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.routing import Mount

from redkit import web

__all__ = ["RouteDecorators", "rules_of"]

RULES = "_redkit_rules"
V = TypeVar("V")


def rules_of(endpoint: Any, create: bool = False) -> web.ViewRules | None:
    """The rules put on ``endpoint`` (a function or an endpoint class)."""
    found = getattr(endpoint, RULES, None)
    if isinstance(found, web.ViewRules) or not create:
        return found if isinstance(found, web.ViewRules) else None
    if not callable(endpoint):
        raise TypeError(f"decorate an endpoint, not {endpoint!r}")
    rules = web.ViewRules()
    setattr(endpoint, RULES, rules)
    return rules


def _put(change: Callable[[web.ViewRules], None], mounts: bool = False) -> Callable[[V], V]:
    def decorate(endpoint: V) -> V:
        if isinstance(endpoint, Mount) and not mounts:
            raise TypeError(
                "only @rk.rate_limit and @rk.exempt apply to a Mount; decorate its endpoints"
            )
        rules = rules_of(endpoint, create=True)
        assert rules is not None
        change(rules)
        return endpoint

    return decorate


class RouteDecorators:
    """The endpoint decorators of :class:`redkit_starlette.Redkit`. Hooks (``key``, ``cost``,
    ``exempt_when``, ``unless``, ``scope``) take the Starlette ``Request`` and may be async."""

    def rate_limit(
        self,
        limits: Any,
        *,
        key: Callable[[Any], Any] | None = None,
        scope: str | None = None,
        methods: Iterable[str] | None = None,
        cost: int | Callable[[Any], Any] = 1,
        exempt_when: Callable[[Any], Any] | None = None,
        algorithm: str | None = None,
        deduct_when: Callable[[Any], Any] | None = None,
    ) -> Callable[[V], V]:
        """Limit an endpoint: ``@rk.rate_limit("10/second;100/minute")`` (per client address
        unless ``key(request)`` says who); over it, ``429`` with ``Retry-After`` and the
        rate-limit headers. ``deduct_when(response)`` (``response.status_code``,
        ``response.headers``) counts only the responses it accepts: failed logins, say; the
        request is charged before the endpoint runs and given back after it when the hook
        refuses its response. ``rk.rate_limit(...)(Mount(...))`` gives the limit to each
        route under the mount without limits of its own (one counter per route unless
        ``scope`` names a shared one). Needs :class:`~redkit_starlette.RateLimitMiddleware`."""
        rule = web.LimitRule.build(
            limits, key, scope, methods, cost, exempt_when, algorithm, deduct_when
        )
        return _put(lambda rules: rules.limits.append(rule), mounts=True)

    def exempt(self, endpoint: V) -> V:
        """Exempt an endpoint (or every route under a ``Mount``) from every rate limit: its
        own, its mounts', the default and the application's."""

        def change(rules: web.ViewRules) -> None:
            rules.exempt = True

        return _put(change, mounts=True)(endpoint)

    def cached(
        self, ttl: Any = None, *, tags: Any = None, unless: Any = None, **policy: Any
    ) -> Callable[[V], V]:
        """Cache a GET endpoint's responses for ``ttl`` seconds (default ``cache_ttl``) under
        the shared safety rules; ``policy`` as :class:`redkit.web.ViewCachePolicy` (``query``,
        ``statuses``, ``vary``, ``per_credential``, ...). Needs
        :class:`~redkit_starlette.CacheMiddleware`."""
        rule = web.CacheRule.build(ttl, tags, unless, **policy)

        def change(rules: web.ViewRules) -> None:
            rules.cache = rule

        return _put(change)

    def idempotent(
        self,
        *,
        required: bool = False,
        methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
        scope: Callable[[Any], Any] | None = None,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> Callable[[V], V]:
        """Make an endpoint idempotent: a retry with the same ``Idempotency-Key`` gets the
        stored response (``required`` answers 400 without a key). Needs
        :class:`~redkit_starlette.IdempotencyMiddleware`."""
        rule = web.IdempotentRule.build(
            required, methods, scope, store_server_errors, allow_headers
        )

        def change(rules: web.ViewRules) -> None:
            rules.idempotent = rule

        return _put(change)
