"""System checks of ``manage.py check``.

| id | what |
|---|---|
| ``redkit.E001`` | ``REDKIT`` is wrong (a URL of the wrong form, an unknown key, a bad value) |
| ``redkit.E002`` | a ``RedkitCache``'s ``LOCATION``, ``TIMEOUT`` or ``OPTIONS`` is wrong |
| ``redkit.E003`` | no ``SECRET_KEY`` to sign pickled cache values with |
| ``redkit.W001`` | a ``RedkitCache`` option of django-redis/Django that means nothing here |
| ``redkit.W002`` | ``TIMEOUT: None`` without ``FOREVER_TTL``: entries live 365 days, not for ever |
| ``redkit.W003`` | redkit middleware in an order that defeats it |
| ``redkit.W004`` | (``--database``) Redis evicts keys while sessions or jobs are kept there |

No check connects to Redis except ``redkit.W004``, which runs only with ``--database`` (its
tag), waits one second at most and stays silent when the server refuses ``CONFIG GET``.
A check never raises: what it cannot judge it leaves alone.
"""

from __future__ import annotations

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
_ORDER = (  # (word in a redkit middleware's class name, what must come before it, why)
    ("session", (), ""),
    ("ratelimit", (AUTH,), "a limit keyed by user needs request.user"),
    ("cache", (SESSIONS, AUTH), "a cached page must not be served before the session is seen"),
    ("idempotency", (AUTH,), "idempotency keys are scoped by user"),
)


def _redkit_caches() -> dict[str, dict[str, Any]]:
    caches = getattr(django_settings, "CACHES", {}) or {}
    return {a: c for a, c in caches.items() if isinstance(c, dict) and c.get("BACKEND") == BACKEND}


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``REDKIT`` and each ``RedkitCache`` entry, without touching Redis."""
    from . import conf
    from ._cache_options import parse_options

    out: list[checks.CheckMessage] = []
    try:
        has_secret = bool(django_settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django refuses an empty SECRET_KEY when it is read
        has_secret = False
    if not has_secret and "SECRET_KEY" not in conf.redkit_options():
        return [_no_secret(alias) for alias in _pickling(parse_options)]
    try:
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
        except ImproperlyConfigured:
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
    """redkit's middleware after what it relies on."""
    middleware = list(getattr(django_settings, "MIDDLEWARE", None) or [])
    out: list[checks.CheckMessage] = []
    for index, path in enumerate(middleware):
        if not isinstance(path, str) or not path.startswith("redkit_django.middleware."):
            continue
        name = path.rsplit(".", 1)[-1].lower()
        for word, before, why in _ORDER:
            if word not in name:
                continue
            for needed in before:
                if needed in middleware and middleware.index(needed) > index:
                    out.append(
                        checks.Warning(
                            f"{path} comes before {needed}: {why}",
                            id="redkit.W003",
                            hint=f"move {path} below {needed} in MIDDLEWARE",
                        )
                    )
            if word == "session" and AUTH in middleware and middleware.index(AUTH) < index:
                out.append(
                    checks.Warning(
                        f"{path} comes after {AUTH}, which reads the session",
                        id="redkit.W003",
                        hint=f"move {path} above {AUTH} in MIDDLEWARE",
                    )
                )
            break
    return out


def _keeps_state() -> bool:
    engine = str(getattr(django_settings, "SESSION_ENGINE", ""))
    tasks = getattr(django_settings, "TASKS", {}) or {}
    backends = [str(t.get("BACKEND", "")) for t in tasks.values() if isinstance(t, dict)]
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
