"""Django overhead benchmark: the cache backend against django-redis and Django's RedisCache.

Run ``python bench/django_overhead.py`` (``--url``, or ``REDIS_URL``; default
``redis://127.0.0.1:6379/15``) with a Python where Django is installed, and django-redis to
compare (install it next to redkit in a separate environment, outside the repository)::

    python -m venv ../benchenv
    ../benchenv/bin/pip install -e ".[django]" django-redis hiredis orjson
    ../benchenv/bin/python bench/django_overhead.py

Each row is one operation (``CACHE_ROWS``) run by
every contender on the same Redis, in alternating slices (``bench/harness.py``); the first
contender, ``RedkitCache``, is the baseline, and ``ratio`` is a contender's median time per call
over the baseline's: above 1, the contender is slower than redkit. Every backend pickles (redkit's
pickle is signed); keys live under a fresh ``KEY_PREFIX`` and are deleted at the end by
``SCAN`` + ``UNLINK`` (never ``clear()``: Django's ``RedisCache.clear`` flushes the database).
Then the per-request rows of ``bench/django_middleware.py`` run in the same process (Django is
configured once with the settings of both), and their table is printed after this one;
``--no-middleware`` leaves them out.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for sub in ("packages/core", "packages/django_ext", ""):
    sys.path.insert(0, str(ROOT / sub))

from bench import django_middleware  # noqa: E402
from bench.harness import DEFAULT_URL, Contender, Scenario, run_sync  # noqa: E402

Backend = Any
RowOp = Callable[[Backend, Sequence[str]], Any]

VALUE = {"id": 42, "name": "Ada Lovelace", "tags": ["a", "b", "c"], "score": 3.5}


def _set(c: Backend, keys: Sequence[str]) -> None:
    for k in keys:
        c.set(k, VALUE, 300)


def _get_hit(c: Backend, keys: Sequence[str]) -> None:
    for _ in keys:
        c.get("hit")


def _get_miss(c: Backend, keys: Sequence[str]) -> None:
    for k in keys:
        c.get(k)


def _get_many(c: Backend, keys: Sequence[str]) -> None:
    c.get_many(["hit", *keys[:9]])


def _set_many(c: Backend, keys: Sequence[str]) -> None:
    c.set_many(dict.fromkeys(keys[:10], VALUE), 300)


def _incr(c: Backend, keys: Sequence[str]) -> None:
    for _ in keys:
        c.incr("counter")


CACHE_ROWS: dict[str, RowOp] = {
    "cache get hit": _get_hit,
    "cache get miss": _get_miss,
    "cache set": _set,
    "cache get_many (10)": _get_many,
    "cache set_many (10)": _set_many,
    "cache incr": _incr,
}
ROWS: dict[str, RowOp] = {**CACHE_ROWS}
"""Every cache row measured."""


def backends(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    out = {
        "RedkitCache": {
            "BACKEND": "redkit_django.cache.RedkitCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        },
        "Django RedisCache": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix + "-dj",
        },
    }
    try:
        import django_redis  # noqa: F401
    except ImportError:
        print("django-redis is not installed: its rows are left out", file=sys.stderr)
    else:
        out["django-redis"] = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix + "-dr",
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", DEFAULT_URL))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--middleware-ops", type=int, default=1000)
    parser.add_argument("--no-middleware", action="store_true", help="only the cache rows")
    args = parser.parse_args(argv)

    import django
    from django.conf import settings

    prefix = f"rkbench-{uuid.uuid4().hex[:8]}"
    caches_conf = backends(args.url, prefix)
    web = django_middleware.settings_for(args.url, prefix)
    settings.configure(
        **(web | {"CACHES": web["CACHES"] | caches_conf}),
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghij",
    )
    django.setup()
    try:
        run_cache_rows(caches_conf, args.rounds, args.ops)
        if not args.no_middleware:
            django_middleware.run_rows(args.rounds, args.middleware_ops)
    finally:
        # never clear(): Django's RedisCache.clear() is FLUSHDB, which would wipe the database
        django_middleware.cleanup(args.url, prefix)
    return 0


def run_cache_rows(caches_conf: dict[str, dict[str, Any]], rounds: int, ops: int) -> None:
    """Measure and print :data:`ROWS` for every backend of ``caches_conf``."""
    from django.core.cache import caches

    def keys(label: str, n: int) -> list[str]:
        return [f"{label}-{i}" for i in range(n)]

    print(f"{'row':<22} " + " ".join(f"{name:>20}" for name in caches_conf))
    for row, op in ROWS.items():
        contenders = []
        for name in caches_conf:
            backend = caches[name]
            backend.set("hit", VALUE, 300)
            backend.set("counter", 1, 300)
            contenders.append(
                Contender(name, lambda ks, b=backend, o=op: o(b, ks), keys, round_trips=None)
            )
        results = run_sync(Scenario(row, "sync", contenders), rounds, ops, 200, 200)
        base = results[0].median_us
        cells = [f"{r.median_us:8.1f}us x{r.median_us / base:5.2f}" for r in results]
        print(f"{row:<22} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    raise SystemExit(main())
