"""One application's web flows in the order a request meets them: rate limits (application,
then the view's), the view cache, then the idempotency key; after the view: charges that
wait for the response, the cache store and the stored response for replay.

An adapter calls :meth:`WebRules.before` when the framework has routed a request, sends the
answer it returns instead of running the view (or keeps the :class:`Pending`), adds
:meth:`WebRules.headers` to the response, and calls :meth:`WebRules.finish` with the response
as it will be sent (after its session and cookies were written), or :meth:`WebRules.abort`
when the request failed without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._clientip import ClientIP
from ._http import Answer, Request, Response, WebFlow
from ._idempotency import Held, IdempotentRequests, IdempotentRule
from ._ratelimit import Counted, LimitRule, RateLimits
from ._viewcache import CacheRule, CacheTicket, ViewCache

__all__ = ["Pending", "ViewRules", "WebRules"]


@dataclass(slots=True)
class ViewRules:
    """What the adapters' decorators put on a view (or on a group of views: a blueprint, a
    router): rate limits, an exemption from the default and application limits, a cache
    rule, an idempotency rule."""

    limits: list[LimitRule] = field(default_factory=list)
    exempt: bool = False
    cache: CacheRule | None = None
    idempotent: IdempotentRule | None = None


@dataclass(slots=True)
class Pending:
    """What a request that runs its view still owes after it: see :meth:`WebRules.finish`."""

    counted: Counted | None = None
    ticket: CacheTicket | None = None
    held: Held | None = None

    @property
    def owes(self) -> bool:
        """Whether :meth:`WebRules.finish` has anything to do (else an adapter may skip it)."""
        counted = self.counted
        return (
            self.ticket is not None
            or self.held is not None
            or (counted is not None and bool(counted.deferred))
        )

    @property
    def holds_key(self) -> bool:
        """Whether the request holds an idempotency key (to release if it fails)."""
        return self.held is not None


class WebRules:
    """The web flows of one application, built from its settings. ``keeper`` renews the
    idempotency leases of running requests (a :class:`redkit.idempotency.LeaseKeeper` for
    sync adapters)."""

    def __init__(self, settings: Any, keeper: Any = None) -> None:
        self.settings = settings
        resolver = ClientIP(settings.trusted_proxies, header=settings.client_ip_header)
        self.limits = RateLimits(settings, resolver)
        self.cache = ViewCache(settings)
        self.idempotency = IdempotentRequests(settings, self.limits, keeper)
        limits = self.limits
        self.everywhere = bool(self.idempotency.methods) or (
            limits.enabled and (limits.default is not None or limits.application is not None)
        )
        """Whether views without rules of their own are concerned (default or application
        limits, application-wide idempotency): else an adapter may skip them at once."""

    def before(
        self,
        req: Request,
        endpoint: str,
        view: ViewRules | None,
        groups: Sequence[ViewRules] = (),
        limited: bool = True,
    ) -> WebFlow[Answer | Pending]:
        """Flow: the answer to send instead of running the view (a 429, a cached page, a
        replay, a 400/409/422/503), or what the request owes after it runs. ``limited=False``
        skips rate limits (static files)."""
        pending = Pending()
        exempt = (view is not None and view.exempt) or any(g.exempt for g in groups)
        if limited and not exempt:
            rules = self.limits.rules_for(view.limits if view else (), [g.limits for g in groups])
            counted = yield from self.limits.check(req, endpoint, rules)
            if isinstance(counted, Answer):
                return counted
            pending.counted = counted
        if view is not None and view.cache is not None:
            found = yield from self.cache.lookup(req, view.cache)
            if isinstance(found, Answer):
                return self._with_limits(found, pending)
            pending.ticket = found
        rule = self.idempotency.rule_for(req, view.idempotent if view else None)
        if rule is not None:
            held = yield from self.idempotency.begin(req, rule)
            if isinstance(held, Answer):
                return self._with_limits(held, pending)
            pending.held = held
        return pending

    def _with_limits(self, answer: Answer, pending: Pending) -> Answer:
        shown = self.headers(pending)
        if not shown:
            return answer
        present = {n.lower() for n, _ in answer.headers}
        extra = tuple((n, v) for n, v in shown.items() if n.lower() not in present)
        return replace(answer, headers=answer.headers + extra)

    def headers(self, pending: Pending | None) -> dict[str, str]:
        """The rate-limit headers to add to the response of a request that ran its view."""
        if pending is None or pending.counted is None:
            return {}
        return self.limits.shown(pending.counted)

    def finish(
        self,
        req: Request,
        pending: Pending,
        response: Response,
        native: Any = None,
        args: Mapping[str, Any] | None = None,
        session: tuple[bool, bool] = (False, False),
        uncommitted: bool = False,
    ) -> WebFlow[None]:
        """Flow: after the view, with ``response`` as it is sent (``native``: the framework's
        response, given to ``deduct_when`` hooks; ``args``: the view's arguments, for cache
        tags; ``session``: ``(used, changed)``; ``uncommitted``: the request's transaction
        has writes not yet committed). The idempotent response is stored even when a step
        before it fails (a ``deduct_when`` hook raising): the key is never left held."""
        try:
            if pending.counted is not None and pending.counted.deferred:
                yield from self.limits.settle(pending.counted, native)
            if pending.ticket is not None:
                ticket, pending.ticket = pending.ticket, None
                yield from self.cache.store(req, ticket, response, args, session, uncommitted)
        finally:
            if pending.held is not None:
                held, pending.held = pending.held, None
                yield from self.idempotency.finish(held, response, req.cookies)

    def abort(self, pending: Pending) -> WebFlow[None]:
        """Flow: the request failed before a response was made (its key is released)."""
        if pending.held is not None:
            held, pending.held = pending.held, None
            yield from self.idempotency.abort(held)
