"""The per-request overhead of redkit's Django middleware and decorators, against plain Django
and the peers a Django project would otherwise use (django-ratelimit, ``cache_page`` and the
cache session engine on Django's own ``RedisCache``), on the same Redis.

``bench/django_overhead.py`` runs these rows after its cache rows; alone::

    ../benchenv/bin/pip install -e ".[django]" django-redis django-ratelimit hiredis orjson
    ../benchenv/bin/python bench/django_middleware.py

Every contender is a ``WSGIHandler`` built with its own ``MIDDLEWARE`` (the settings overridden
while it loads them) serving one URL of :data:`urlpatterns`; a request is a call of the handler
with a prepared environ (``REMOTE_ADDR`` 127.0.0.1), the body read and closed: no server, no
socket, no test client. The baseline is plain Django serving ``"ok"``; ``ratio`` is a
contender's median time per request over the baseline's.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for sub in ("packages/core", "packages/django_ext", ""):
    sys.path.insert(0, str(ROOT / sub))

from bench.harness import DEFAULT_URL, Contender, Scenario, run_sync  # noqa: E402

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
REDKIT_SESSION = "redkit_django.middleware.SessionMiddleware"
urlpatterns: list[Any] = []


def _views() -> None:
    """Fill :data:`urlpatterns` (Django is configured by then)."""
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.cache import cache_page

    import redkit_django

    def ok(request: Any) -> Any:
        return HttpResponse("ok")

    def reads_session(request: Any) -> Any:
        return HttpResponse(str(request.session.get("n")))

    views: dict[str, Callable[..., Any]] = {
        "ok": ok,
        "session": reads_session,
        "rk-limit": redkit_django.ratelimit("1000000/minute")(ok),
        "rk-cached": redkit_django.cached_view(300)(ok),
        "rk-idem": redkit_django.idempotent()(ok),
        "dj-cached": cache_page(300, cache="peer")(ok),
    }
    if importlib.util.find_spec("django_ratelimit") is not None:
        from django_ratelimit.decorators import ratelimit

        views["dr-limit"] = ratelimit(key="ip", rate="1000000/m", block=True)(ok)
    urlpatterns.extend(path(f"{name}/", view) for name, view in views.items())


def _environ(path: str, method: str = "GET", cookie: str = "") -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "0",
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def _handler(middleware: list[str], session_engine: str | None = None) -> Any:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    extra = {"SESSION_ENGINE": session_engine} if session_engine else {}
    with override_settings(MIDDLEWARE=middleware, **extra):
        return WSGIHandler()


def _session_cookie(engine: str) -> str:
    from importlib import import_module

    store = import_module(engine).SessionStore()
    store["n"] = 1
    store.save()
    return f"sessionid={store.session_key}"


def _served(
    handler: Any, path: str, method: str = "GET", cookie: str = "", key: bool = False
) -> Callable[[Sequence[str]], None]:
    base = _environ(path, method, cookie)
    statuses: list[str] = []

    def start(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def op(keys: Sequence[str]) -> None:
        for k in keys:
            env = dict(base, **{"wsgi.input": io.BytesIO(b"")})
            if key:
                env["HTTP_IDEMPOTENCY_KEY"] = k
            body = handler(env, start)
            b"".join(body)
            body.close()
        if not statuses[-1].startswith(("200", "201")):
            raise RuntimeError(f"{path}: {statuses[-1]}")

    return op


def contenders() -> list[tuple[str, Callable[[Sequence[str]], None]]]:
    """(name, op) of every row, plain Django first."""
    rk_cookie = _session_cookie("redkit_django.sessions")
    peer_cookie = _session_cookie("django.contrib.sessions.backends.cache")
    rows = [
        ("django", _served(_handler([]), "/ok/")),
        (
            "session: django cache engine on RedisCache",
            _served(
                _handler([SESSION], "django.contrib.sessions.backends.cache"),
                "/session/",
                cookie=peer_cookie,
            ),
        ),
        (
            "session: redkit_django.sessions",
            _served(
                _handler([REDKIT_SESSION], "redkit_django.sessions"), "/session/", cookie=rk_cookie
            ),
        ),
        ("rate limit: @redkit_django.ratelimit", _served(_handler([]), "/rk-limit/")),
        (
            "rate limit: RateLimitMiddleware (default)",
            _served(_handler(["redkit_django.middleware.RateLimitMiddleware"]), "/ok/"),
        ),
        ("cached page hit: @cached_view", _served(_handler([]), "/rk-cached/")),
        ("cached page hit: Django cache_page, RedisCache", _served(_handler([]), "/dj-cached/")),
        (
            "idempotent POST: @idempotent, new key",
            _served(_handler([]), "/rk-idem/", method="POST", key=True),
        ),
    ]
    if any(str(p.pattern) == "dr-limit/" for p in urlpatterns):
        rows.insert(
            4, ("rate limit: django-ratelimit, RedisCache", _served(_handler([]), "/dr-limit/"))
        )
    return rows


def settings_for(url: str, prefix: str) -> dict[str, Any]:
    """What Django must be configured with for these rows."""
    return {
        "ROOT_URLCONF": "bench.django_middleware",
        "ALLOWED_HOSTS": ["testserver"],
        "INSTALLED_APPS": ["django.contrib.sessions", "redkit_django"],
        "MIDDLEWARE": [],
        "SESSION_ENGINE": "redkit_django.sessions",
        "REDKIT": {"URL": url, "PREFIX": prefix, "RATELIMIT_DEFAULT": "1000000/minute"},
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": prefix + "-dj",
            },
            "peer": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": prefix + "-dj",
            },
        },
    }


def run_rows(rounds: int, ops: int) -> None:
    """Measure and print the rows (Django configured with :func:`settings_for`)."""
    _views()

    def keys(label: str, n: int) -> list[str]:
        return [f"{label}-{uuid.uuid4().hex}" for _ in range(n)]

    rows = contenders()
    scenario = Scenario(
        "django middleware",
        "sync",
        [Contender(name, op, keys, round_trips=None) for name, op in rows],
    )
    results = run_sync(scenario, rounds, ops, 100, 100)
    base = results[0].median_us
    print(f"\n{'per request':<50} {'median':>10} {'ratio':>7}")
    for r in results:
        print(f"{r.contender:<50} {r.median_us:8.1f}us {r.median_us / base:6.2f}x")


def cleanup(url: str, prefix: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:  # never FLUSHDB: only this run's keys
        for key in list(client.scan_iter(match=f"*{prefix}*", count=1000)):
            client.unlink(key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", DEFAULT_URL))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=1000)
    args = parser.parse_args(argv)
    import django
    from django.conf import settings

    prefix = f"rkbench-{uuid.uuid4().hex[:8]}"
    settings.configure(
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghij", **settings_for(args.url, prefix)
    )
    django.setup()
    try:
        run_rows(args.rounds, args.ops)
    finally:
        cleanup(args.url, prefix)
    return 0


if __name__ == "__main__":
    sys.modules["bench.django_middleware"] = sys.modules[__name__]  # ROOT_URLCONF is this module
    raise SystemExit(main())
