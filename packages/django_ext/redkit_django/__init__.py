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

from .conf import get_async_kit, get_kit, get_settings  # noqa: E402

__all__ = ["get_async_kit", "get_kit", "get_settings"]
