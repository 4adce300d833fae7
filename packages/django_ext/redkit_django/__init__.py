"""redkit for Django: ``pip install "redkit[django]"``, then ``"redkit_django"`` in
``INSTALLED_APPS`` and one ``REDKIT = {...}`` dict in the settings.

The adapter is glue: it reads Django's settings, gives redkit's cache, sessions, rate limits,
idempotency keys and job queue Django's own interfaces (a ``CACHES`` backend, a session engine,
middleware and view decorators, a ``django.tasks`` backend, management commands), and runs every
rule through :mod:`redkit.web` and redkit's core.
"""

from __future__ import annotations

from redkit.web import require

require("django", "django")

from typing import Any  # noqa: E402

from .conf import get_async_kit, get_kit, get_settings  # noqa: E402
from .decorators import cached_view, idempotent, ratelimit, ratelimit_exempt  # noqa: E402
from .invalidation import invalidate_on_commit, invalidates  # noqa: E402
from .jobs import DjangoTask, task  # noqa: E402

__all__ = [
    "DjangoTask",
    "cached_view",
    "get_async_kit",
    "get_kit",
    "get_redis_connection",
    "get_settings",
    "idempotent",
    "invalidate_on_commit",
    "invalidates",
    "ratelimit",
    "ratelimit_exempt",
    "task",
]


def get_redis_connection(alias: str = "default", write: bool = True) -> Any:
    """The redis-py client under the ``CACHES`` entry ``alias`` (a ``RedkitCache``), like
    ``django_redis.get_redis_connection``: for commands redkit does not wrap. Its keys are
    yours to name; redkit's own live under ``REDKIT["PREFIX"]``."""
    from django.core.cache import caches

    from .cache import RedkitCache

    backend = caches[alias]
    if not isinstance(backend, RedkitCache):
        raise TypeError(
            f"CACHES[{alias!r}] is a {type(backend).__name__}, not redkit_django.cache.RedkitCache"
        )
    return backend.kit.client
