"""System checks of ``manage.py check``.

| id | what |
|---|---|
| ``redkit.E001`` | ``REDKIT`` is wrong (a URL of the wrong form, an unknown key, a bad value) |
| ``redkit.E002`` | a ``RedkitCache``'s ``LOCATION``, ``TIMEOUT`` or ``OPTIONS`` is wrong |
| ``redkit.E003`` | no ``SECRET_KEY`` to sign pickled cache values with |
| ``redkit.W001`` | a ``RedkitCache`` option of django-redis/Django that means nothing here |
| ``redkit.W002`` | ``TIMEOUT: None`` without ``FOREVER_TTL``: entries live 365 days, not for ever |
| ``redkit.W003`` | redkit's view cache or idempotency middleware below one that sets cookies |
| ``redkit.W004`` | (``--database``) Redis evicts keys while sessions or jobs are kept there |
| ``redkit.E301`` | an invalidation rule names no installed model, no column, or is malformed |

No check connects to Redis except ``redkit.W004``, which runs only with ``--database`` (its
tag), waits one second at most and stays silent when the server refuses ``CONFIG GET``.
A check never raises: what it cannot judge it leaves alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["register"]

BACKEND = "redkit_django.cache.RedkitCache"
EVICTING = {"allkeys-lru", "allkeys-lfu", "allkeys-random"}
"""``maxmemory-policy`` values that may remove keys that have no lifetime left to run out."""
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
COOKIE_SETTERS = (
    SESSIONS,
    "redkit_django.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)
"""Middleware that set cookies on the way out: the view cache and idempotency keys must see
the response after them (above them in ``MIDDLEWARE``), or they would store a page or a replay
without knowing it sets a cookie of its client (its messages, say)."""
SEES_COOKIES = (
    "redkit_django.middleware.CacheMiddleware",
    "redkit_django.middleware.IdempotencyMiddleware",
)


def _redkit_caches() -> dict[Any, Mapping[str, Any]]:
    caches = getattr(django_settings, "CACHES", None)
    if not isinstance(caches, Mapping):
        return {}  # Django's own checks judge that
    return {
        a: c for a, c in caches.items() if isinstance(c, Mapping) and c.get("BACKEND") == BACKEND
    }


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``REDKIT`` and each ``RedkitCache`` entry, without touching Redis."""
    from . import conf
    from ._cache_options import parse_options

    out: list[checks.CheckMessage] = []
    try:
        has_secret = bool(django_settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django refuses an empty SECRET_KEY when it is read
        has_secret = False
    try:
        if not has_secret and "SECRET_KEY" not in conf.redkit_options():
            return [_no_secret(alias) for alias in _pickling(parse_options)]
        base = conf.get_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="redkit.E001", hint="see docs/django.md, Settings")]
    for alias, entry in _redkit_caches().items():
        where = f"CACHES[{alias!r}]"
        try:
            options = parse_options(entry.get("LOCATION"), entry.get("OPTIONS"))
            resolved = options.settings(base) or base
            timeout = entry.get("TIMEOUT", 300)
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            ):
                raise ImproperlyConfigured(f"TIMEOUT must be a number or None, not {timeout!r}")
        except ImproperlyConfigured as exc:
            out.append(checks.Error(f"{where}: {exc}", id="redkit.E002"))
            continue
        except Exception as exc:  # a value of a type no option takes: still a wrong setting
            out.append(checks.Error(f"{where}: cannot be read ({exc!r})", id="redkit.E002"))
            continue
        if options.serializer == "pickle" and not resolved.secret_key:
            out.append(_no_secret(alias))
        for name in options.ignored:
            out.append(
                checks.Warning(
                    f"{where}: OPTIONS {name} has no meaning here and is ignored",
                    id="redkit.W001",
                    hint=_no_meaning(name),
                )
            )
        if entry.get("TIMEOUT", 300) is None and not options.forever_ttl_given:
            out.append(
                checks.Warning(
                    f"{where}: TIMEOUT None stores entries for FOREVER_TTL "
                    f"({options.forever_ttl / 86400:g} days): every redkit key has a lifetime",
                    id="redkit.W002",
                    hint="set OPTIONS FOREVER_TTL (seconds) to say how long 'for ever' is",
                )
            )
    return out


def _pickling(parse: Any) -> list[str]:
    aliases = []
    for alias, entry in _redkit_caches().items():
        try:
            serializer = parse(entry.get("LOCATION"), entry.get("OPTIONS")).serializer
        except Exception:  # reported as redkit.E002 once there is a SECRET_KEY
            continue
        if serializer == "pickle":
            aliases.append(alias)
    return aliases


def _no_secret(alias: str) -> checks.CheckMessage:
    return checks.Error(
        f"CACHES[{alias!r}]: pickled values are signed, and there is no SECRET_KEY",
        id="redkit.E003",
        hint='set SECRET_KEY (or REDKIT["SECRET_KEY"]), or OPTIONS SERIALIZER "json"',
    )


def _no_meaning(name: str) -> str:
    from ._cache_options import NO_MEANING

    return NO_MEANING[name]


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """redkit's view cache and idempotency middleware above the middleware that set cookies,
    its session middleware above the authentication middleware (which reads the session). The
    rules run once Django has routed the request, so they see ``request.user`` wherever they
    are."""
    given = getattr(django_settings, "MIDDLEWARE", None)
    if not isinstance(given, (list, tuple)):
        return []  # Django's own checks judge that
    middleware = [m for m in given if isinstance(m, str)]
    out: list[checks.CheckMessage] = []
    for index, path in enumerate(middleware):
        if path in SEES_COOKIES:
            for setter in middleware[:index]:
                if setter in COOKIE_SETTERS:
                    out.append(_misplaced(path, setter, "it would not see the cookies it sets"))
        if path == "redkit_django.middleware.SessionMiddleware" and AUTH in middleware[:index]:
            out.append(_misplaced(path, AUTH, "which reads the session"))
    return out


def _misplaced(path: str, above: str, why: str) -> checks.CheckMessage:
    return checks.Warning(
        f"{path} comes after {above}: {why}",
        id="redkit.W003",
        hint=f"move {path} above {above} in MIDDLEWARE",
    )


def _keeps_state() -> bool:
    engine = str(getattr(django_settings, "SESSION_ENGINE", ""))
    tasks = getattr(django_settings, "TASKS", None)
    entries = tasks.values() if isinstance(tasks, Mapping) else ()
    backends = [str(t.get("BACKEND", "")) for t in entries if isinstance(t, Mapping)]
    return engine.startswith("redkit_django") or any(
        b.startswith("redkit_django") for b in backends
    )


def check_eviction(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """``--database``: an evicting ``maxmemory-policy`` where sessions or jobs live."""
    if not databases or not _keeps_state():
        return []
    import redkit

    from . import conf

    try:
        fast = conf.get_settings().replace(
            socket_timeout=1.0, socket_connect_timeout=1.0, retry_attempts=0
        )
        with redkit.Redkit(fast) as kit:
            reply = kit.client.config_get("maxmemory-policy")
    except Exception:  # unreachable, ACL without CONFIG, a cluster that refuses: no verdict
        return []
    policy = str((reply or {}).get("maxmemory-policy", ""))
    if policy not in EVICTING:
        return []
    return [
        checks.Warning(
            f"Redis evicts keys (maxmemory-policy {policy}) and keeps redkit's sessions or jobs",
            id="redkit.W004",
            hint="use volatile-lru/volatile-lfu/noeviction, or a separate Redis for the cache",
        )
    ]


def register() -> None:
    """Register redkit's checks with Django's check framework."""
    checks.register(check_settings, checks.Tags.caches)
    checks.register(check_middleware)
    checks.register(check_eviction, checks.Tags.database)
