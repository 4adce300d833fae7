"""The view decorators of the Flask extension: ``@kit.rate_limit``, ``@kit.exempt``,
``@kit.cached``, ``@kit.idempotent`` and ``@kit.user_loader``.

They only put :class:`redkit.web` rules on the view function (an attribute, so they work above
or below ``@app.route``) or on a blueprint; the request hooks apply them.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Flask, current_app, has_request_context
from flask import request as flask_request
from redkit import web

from .hooks import rules_of

__all__ = ["ViewDecorators"]

P = ParamSpec("P")
R = TypeVar("R")
V = TypeVar("V")


class ViewDecorators:
    """The decorators of :class:`redkit_flask.Redkit`."""

    _groups: dict[str, web.ViewRules]
    _user_loader: Callable[[], object] | None

    def state(self, app: Flask | None = None) -> Any:  # pragma: no cover - the extension's
        raise NotImplementedError

    def _rules(self, target: Any) -> web.ViewRules:
        if isinstance(target, Blueprint):
            return self._groups.setdefault(target.name, web.ViewRules())
        if not callable(target):
            raise TypeError(f"decorate a view function or a Blueprint, not {target!r}")
        rules = rules_of(target, create=True)
        assert rules is not None
        return rules

    def rate_limit(
        self,
        limits: Any,
        *,
        key: Callable[[], object] | None = None,
        scope: str | None = None,
        methods: Iterable[str] | None = None,
        cost: int | Callable[[], int] = 1,
        exempt_when: Callable[[], bool] | None = None,
        deduct_when: Callable[[Any], bool] | None = None,
        algorithm: str | None = None,
    ) -> Callable[[V], V]:
        """Limit a view (or every view of a blueprint): ``@kit.rate_limit("10/second;100/minute")``.

        ``key()`` returns who is counted (default: the client address, resolved through
        ``REDKIT_TRUSTED_PROXIES``, IPv6 by /64); ``scope`` names the counter (default: the
        endpoint, so views with one ``scope`` share it); ``methods`` limits only those;
        ``cost`` (or a callable returning it) is the units a request takes; ``exempt_when()``
        returning true skips the limit; ``deduct_when(response)`` counts only the responses it
        accepts (failed logins, say: the request is checked before the view, charged after).
        Over the limit the request gets ``429`` with ``Retry-After`` and the rate-limit
        headers (:class:`RateLimitExceeded`). Stack decorators for separate limits."""
        rule = web.LimitRule.build(
            limits, key, scope, methods, cost, exempt_when, algorithm, deduct_when
        )

        def decorate(target: V) -> V:
            self._rules(target).limits.append(rule)
            return target

        return decorate

    def exempt(self, target: V) -> V:
        """Exempt a view (or a blueprint) from every rate limit: its own,
        ``REDKIT_RATELIMIT_DEFAULT``, ``REDKIT_RATELIMIT_APPLICATION`` and any blueprint limit."""
        self._rules(target).exempt = True
        return target

    def cached(
        self,
        ttl: float | None = None,
        *,
        tags: Any = None,
        key: Any = None,
        query: bool | Iterable[str] = True,
        statuses: Iterable[int] = (200,),
        cookies: bool = False,
        vary: Iterable[str] = (),
        unless: Callable[[], bool] | None = None,
        per_credential: bool = False,
        credentials: Iterable[str] = (),
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Cache a view's response, or a plain function's result, for ``ttl`` seconds (default
        ``REDKIT_CACHE_TTL``) with ``tags`` (templates over the view's URL arguments or the
        function's parameters, like ``"user:{user_id}"``, or a callable).

        On a view, the key is the host, path and query arguments (``query=False`` ignores them,
        a list keeps only those), plus the request headers the response's ``Vary`` names (and
        ``Cookie`` when the view used the session) and those in ``vary``. Only GET responses
        with a status in ``statuses`` (200) are stored, never one that sets a cookie (unless
        ``cookies``), creates or changes the session, is ``Cache-Control: private``,
        ``no-store`` or ``no-cache`` or varies on ``*``; HEAD is answered from the GET entry.
        A request with credentials (``Authorization``, ``REDKIT_CACHE_CREDENTIAL_HEADERS``,
        ``credentials``) bypasses the cache unless ``per_credential``, which keys on them.
        ``unless()`` returning true bypasses it too. Nothing is stored while a database
        transaction of the request has uncommitted writes (see ``redkit.sqlalchemy``).

        On any other function it is ``kit.cache.cached(ttl, key, tags)`` of the current
        application (``key`` as there). ``REDKIT_CACHE_ENABLED = False`` turns both off."""
        rule = web.CacheRule.build(
            ttl,
            tags,
            unless,
            query=query,
            statuses=statuses,
            cookies=cookies,
            vary=vary,
            per_credential=per_credential,
            credentials=credentials,
        )
        ext = self

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            per_app: weakref.WeakKeyDictionary[Flask, Any] = weakref.WeakKeyDictionary()
            is_async = inspect.iscoroutinefunction(fn)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if has_request_context() and _is_view(wrapper):
                    return fn(*args, **kwargs)  # the response is cached by the request hooks
                state = ext.state()
                if not state.kit.settings.cache_enabled:
                    return fn(*args, **kwargs)
                cached = per_app.get(state.app)
                if cached is None:
                    cached = per_app[state.app] = state.kit.cache.cached(ttl, key, tags)(fn)
                return cached(*args, **kwargs)

            chosen: Any = wrapper
            if is_async:

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    if has_request_context() and _is_view(async_wrapper):
                        return await fn(*args, **kwargs)  # type: ignore[misc]
                    raise TypeError(
                        f"{fn.__qualname__} is async: @kit.cached caches it only as a view"
                    )

                chosen = async_wrapper
            self._rules(chosen).cache = rule
            return chosen  # type: ignore[no-any-return]

        return decorate

    def idempotent(
        self,
        *,
        required: bool = False,
        methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
        scope: Callable[[], object] | None = None,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> Callable[[V], V]:
        """Make a view honour ``Idempotency-Key`` (``REDKIT_IDEMPOTENCY_HEADER``): the first
        request with a key runs, a retry gets the stored response again with
        ``Idempotent-Replayed: true``; ``409`` while the first still runs, ``422`` when the key
        was used for a different request (method, path, query, body, content type), ``400``
        for a malformed key (or a missing one when ``required``), ``503`` when Redis is down.
        Keys belong to the user (``scope()``, else :meth:`user_loader`), else to a hash of the
        request's credentials, else to the client's address. 5xx responses and responses
        setting a cookie are not stored (the key is released, so the client may retry)."""
        rule = web.IdempotentRule.build(
            required, methods, scope, store_server_errors, allow_headers
        )

        def decorate(target: V) -> V:
            self._rules(target).idempotent = rule
            return target

        return decorate

    def user_loader(self, fn: Callable[[], object]) -> Callable[[], object]:
        """Register the function returning the current user's id (or ``None`` when anonymous):
        idempotency keys are kept apart per user. With Flask-Login, for example::

            @kit.user_loader
            def current_user_id():
                return current_user.get_id() if current_user.is_authenticated else None
        """
        if not callable(fn):
            raise TypeError(f"user_loader decorates a function, not {fn!r}")
        self._user_loader = fn
        return fn


def _is_view(fn: Any) -> bool:
    endpoint = flask_request.endpoint
    if endpoint is None:
        return False
    probe, depth = current_app.view_functions.get(endpoint), 0
    while probe is not None and depth < 16:
        if probe is fn:
            return True
        probe, depth = getattr(probe, "__wrapped__", None), depth + 1
    return False
