"""View decorators: ``@ratelimit``, ``@ratelimit_exempt``, ``@idempotent`` and ``@cached_view``,
and mixins for class-based views (Django's and Django REST framework's).

Each decorator works on its own, without any middleware: it puts :class:`redkit.web` rules on
the view and runs them around it, in the order of the Flask adapter whatever the order of the
decorators (rate limits, the cache, the idempotency key). On a coroutine view every step
awaits :func:`~redkit_django.get_async_kit`. For a class-based view decorate its
``as_view()``, use ``method_decorator`` (on ``dispatch`` or on one method), or a mixin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from redkit import web
from redkit.errors import RedkitConnectionError

from . import _views, _web

__all__ = [
    "CachedViewMixin",
    "IdempotentMixin",
    "RateLimitMixin",
    "cached_view",
    "idempotent",
    "ratelimit",
    "ratelimit_exempt",
]

V = TypeVar("V", bound=Callable[..., Any])
_GUARD = "_redkit_guard"


BY_USER = _web.Dual(lambda r: _user_pk(getattr(r, "user", None)), lambda r: _auser_pk(r))


def _user_pk(user: Any) -> object:
    return user.pk if user is not None and user.is_authenticated else None


async def _auser_pk(request: Any) -> object:
    auser = getattr(request, "auser", None)
    return None if auser is None else _user_pk(await auser())


def _key_hook(key: Any) -> Callable[..., Any] | None:
    """``"ip"`` (``None``: the client address), ``"user"`` (the user's primary key, else the
    address), ``"header:<name>"`` (its value, else the address), or a callable given the
    request."""
    if key is None or key == "ip":
        return None
    if key == "user":
        return BY_USER
    if isinstance(key, str) and key.startswith("header:") and key[7:].strip():
        name = key[7:].strip()
        return lambda r: r.headers.get(name) or None
    if callable(key):
        return key  # type: ignore[no-any-return]
    raise ValueError(f'key must be "ip", "user", "header:<name>" or a callable, not {key!r}')


def _run(fn: Any, rules: web.ViewRules, request: Any, args: Any, kwargs: Any) -> Any:
    flows = _web.rules().get("views")
    endpoint = _views.endpoint_of(request, fn)
    req, got = _views.begin(flows, request, endpoint, rules, True)
    if not isinstance(got, web.Pending):
        return got
    held = (flows, req, got, dict(kwargs))
    try:
        response = fn(request, *args, **kwargs)
    except RedkitConnectionError:
        _views.abort(held)
        return _web.unavailable()
    except BaseException:
        _views.abort(held)
        raise
    return _views.finish(held, request, response)


async def _arun(fn: Any, rules: web.ViewRules, request: Any, args: Any, kwargs: Any) -> Any:
    flows = _web.rules().get("views")
    endpoint = _views.endpoint_of(request, fn)
    req, got = await _views.abegin(flows, request, endpoint, rules, True)
    if not isinstance(got, web.Pending):
        return got
    held = (flows, req, got, dict(kwargs))
    try:
        response = await fn(request, *args, **kwargs)
    except RedkitConnectionError:
        await _views.aabort(held)
        return _web.unavailable()
    except BaseException:
        await _views.aabort(held)
        raise
    return await _views.afinish(held, request, response)


def _guard(fn: Any) -> tuple[Any, web.ViewRules]:
    """The view wrapped once, whatever the number of decorators, and its rules."""
    if getattr(fn, "__dict__", {}).get(_GUARD):
        return fn, fn.__dict__[_views.RULES]
    if not callable(fn):
        raise TypeError(f"decorate a view, not {fn!r}")
    rules = web.ViewRules()
    wrapper: Any
    if iscoroutinefunction(fn):

        async def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return await _arun(fn, rules, request, args, kwargs)

    else:

        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return _run(fn, rules, request, args, kwargs)

    functools.update_wrapper(wrapper, fn)
    wrapper.__dict__[_views.RULES] = rules
    wrapper.__dict__[_GUARD] = True
    return wrapper, rules


def ratelimit(
    limits: Any,
    *,
    key: Any = "ip",
    scope: str | None = None,
    methods: Iterable[str] | None = None,
    cost: int | Callable[..., int] = 1,
    exempt_when: Callable[..., bool] | None = None,
    deduct_when: Callable[[Any], bool] | None = None,
    algorithm: str | None = None,
) -> Callable[[V], V]:
    """Limit a view: ``@ratelimit("10/minute")``, ``@ratelimit("5/minute;100/day", key="user")``.

    ``key``: who is counted: ``"ip"`` (the client address through ``TRUSTED_PROXIES``, IPv6 by
    /64), ``"user"`` (the authenticated user, else the address), ``"header:X-Api-Key"`` (that
    header, else the address), or a callable given the request (``None``: the address).
    ``scope`` names the counter (default: the view's URL name, so views naming one scope share
    it); ``methods`` counts only those; ``cost`` (or a callable given the request) is what a
    request takes; ``exempt_when(request)`` true skips the limit; ``deduct_when(response)``
    false gives back what the request took (count failed logins only). Over the limit:
    ``429`` with ``Retry-After`` and the rate-limit headers, the view not run. Stack
    decorators for separate limits; a view with limits of its own is not counted by
    ``RATELIMIT_DEFAULT``."""
    rule = web.LimitRule.build(
        limits, _key_hook(key), scope, methods, cost, exempt_when, algorithm, deduct_when
    )

    def decorate(view: V) -> V:
        wrapped, rules = _guard(view)
        rules.limits.append(rule)
        return wrapped  # type: ignore[no-any-return]

    return decorate


def ratelimit_exempt(view: V) -> V:
    """Exempt a view from ``RATELIMIT_DEFAULT`` and ``RATELIMIT_APPLICATION`` (and from its own
    limits)."""
    wrapped, rules = _guard(view)
    rules.exempt = True
    return wrapped  # type: ignore[no-any-return]


def idempotent(
    *,
    required: bool = False,
    methods: Iterable[str] = ("POST", "PUT", "PATCH", "DELETE"),
    scope: Callable[..., object] | None = None,
    store_server_errors: bool | None = None,
    allow_headers: Iterable[str] = (),
) -> Callable[[V], V]:
    """Honour ``Idempotency-Key`` (``REDKIT["IDEMPOTENCY_HEADER"]``) on a view: the first
    request with a key runs; a retry gets the stored response again with
    ``Idempotent-Replayed: true``; ``409`` while the first still runs, ``422`` when the key
    was used with another request (method, path, query, body, content type), ``400`` for a
    malformed key (or none, when ``required``), ``503`` when Redis is unreachable. A key
    belongs to ``scope(request)`` if given, else to the authenticated user, else to the
    session, else to a hash of the request's credentials, else to the client's address.
    Streamed responses, 5xx (unless ``store_server_errors``) and responses setting a cookie
    or a new session are not stored: the key is released, so a retry runs again."""
    rule = web.IdempotentRule.build(required, methods, scope, store_server_errors, allow_headers)

    def decorate(view: V) -> V:
        wrapped, rules = _guard(view)
        rules.idempotent = rule
        return wrapped  # type: ignore[no-any-return]

    return decorate


def cached_view(
    ttl: float | None = None,
    *,
    tags: Any = None,
    query: bool | Iterable[str] = True,
    statuses: Iterable[int] = (200,),
    cookies: bool = False,
    vary: Iterable[str] = (),
    unless: Callable[..., bool] | None = None,
    per_credential: bool = False,
    credentials: Iterable[str] = (),
) -> Callable[[V], V]:
    """Cache a view's response in Redis for ``ttl`` seconds (default ``REDKIT["CACHE_TTL"]``),
    with ``tags`` (templates over the URL's arguments, ``"product:{pk}"``, or a callable
    taking them), so ``kit.cache.invalidate(tags=...)`` drops it.

    The key is the host, path and query arguments (``query=False``: none; a list: those),
    plus the request headers the response's ``Vary`` names and those in ``vary``, plus the
    session when the view read it. Only ``GET`` responses with a status in ``statuses`` are
    stored (``HEAD`` is answered from them), never one that sets a cookie (unless
    ``cookies``), changes the session or the CSRF cookie, is ``Cache-Control: private``,
    ``no-store`` or ``no-cache``, or varies on ``*``; nothing while a database transaction
    is open. A request with credentials (``Authorization``, ``CACHE_CREDENTIAL_HEADERS``,
    ``credentials``) bypasses the cache unless ``per_credential`` keys on them;
    ``unless(request)`` true bypasses it too. Not ``django.views.decorators.cache.cache_page``,
    which stores in a ``CACHES`` backend and caches per ``Cookie``."""
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

    def decorate(view: V) -> V:
        wrapped, rules = _guard(view)
        rules.cache = rule
        return wrapped  # type: ignore[no-any-return]

    return decorate


class _AsViewMixin:
    """Decorates what ``as_view()`` returns (Django's views, REST framework's APIView and
    ViewSets alike)."""

    @classmethod
    def redkit_decorator(cls) -> Callable[[Any], Any]:  # pragma: no cover - each mixin's
        raise NotImplementedError

    @classmethod
    def as_view(cls, *args: Any, **initkwargs: Any) -> Any:
        view = super().as_view(*args, **initkwargs)  # type: ignore[misc]
        return cls.redkit_decorator()(view)


class RateLimitMixin(_AsViewMixin):
    """``class Search(RateLimitMixin, View): ratelimit = "30/minute"`` (and ``ratelimit_key``,
    ``ratelimit_methods``, ``ratelimit_scope``: :func:`ratelimit`'s arguments)."""

    ratelimit: Any = None
    ratelimit_key: Any = "ip"
    ratelimit_methods: Iterable[str] | None = None
    ratelimit_scope: str | None = None

    @classmethod
    def redkit_decorator(cls) -> Callable[[Any], Any]:
        if cls.ratelimit is None:
            raise TypeError(f"{cls.__name__} sets no ratelimit (like ratelimit = '10/minute')")
        return ratelimit(
            cls.ratelimit,
            key=cls.ratelimit_key,
            methods=cls.ratelimit_methods,
            scope=cls.ratelimit_scope,
        )


class IdempotentMixin(_AsViewMixin):
    """``class Payments(IdempotentMixin, APIView)``: :func:`idempotent` on every unsafe method
    (``idempotency_required = True`` to require the key)."""

    idempotency_required = False

    @classmethod
    def redkit_decorator(cls) -> Callable[[Any], Any]:
        return idempotent(required=cls.idempotency_required)


class CachedViewMixin(_AsViewMixin):
    """``class Catalog(CachedViewMixin, ListView): cache_ttl = 60`` (and ``cache_tags``,
    ``cache_vary``: :func:`cached_view`'s arguments)."""

    cache_ttl: float | None = None
    cache_tags: Any = None
    cache_vary: Iterable[str] = ()

    @classmethod
    def redkit_decorator(cls) -> Callable[[Any], Any]:
        return cached_view(cls.cache_ttl, tags=cls.cache_tags, vary=cls.cache_vary)
