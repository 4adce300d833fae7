"""redkit's settings of a Django project, and the process's clients.

Everything is configured by one dict in the project's settings::

    REDKIT = {
        "URL": "redis://127.0.0.1:6379/0",
        "PREFIX": "shop",
        "CACHE_TTL": 300,
    }

Its keys are the names of redkit's settings (upper or lower case, see
:class:`redkit.settings.Settings`), plus the adapter's own keys listed in :data:`ADAPTER_KEYS`.
The dict is read when a client is first needed and again whenever ``REDKIT`` or ``SECRET_KEY``
changes (``override_settings`` in tests): :func:`get_kit` then gives a new client.

- The URL: ``REDKIT["URL"]``, else the ``REDKIT_URL`` environment variable, else ``memory://``
  with a warning (a store inside one process: the web server's workers and
  ``manage.py redkit_worker`` would each see their own).
- ``secret_key`` (which signs pickled values) defaults to a key derived from Django's
  ``SECRET_KEY``, never ``SECRET_KEY`` itself.
- A wrong setting is an ``ImproperlyConfigured`` naming it (its value is never echoed).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

import redkit
import redkit.asyncio
from redkit import web
from redkit.errors import ConfigurationError
from redkit.settings import Settings

__all__ = [
    "ADAPTER_KEYS",
    "adapter_option",
    "get_async_kit",
    "get_kit",
    "get_settings",
    "redkit_options",
    "reset",
]

log = logging.getLogger("redkit.django")

ADAPTER_KEYS: frozenset[str] = frozenset(
    {
        "INVALIDATE",  # model -> cache tags rules (redkit_django.invalidation)
        "OUTBOX",  # enqueue_on_commit writes to the outbox table (redkit_django.outbox)
    }
)
"""Keys of ``REDKIT`` that belong to the Django adapter rather than to redkit's core settings."""

WATCHED = frozenset({"REDKIT", "SECRET_KEY"})
"""Django settings whose change (``override_settings``, ``setting_changed``) resets the clients."""

_lock = threading.RLock()
_settings: Settings | None = None
_kit: redkit.Redkit | None = None
_other_kits: dict[Settings, redkit.Redkit] = {}
"""Clients of settings other than ``REDKIT``'s (a cache backend's own ``LOCATION``/``OPTIONS``)."""
_AsyncKey = tuple[asyncio.AbstractEventLoop, Settings | None]
_async_kits: dict[_AsyncKey, tuple[redkit.asyncio.Redkit, AsyncGenerator[None, None]]] = {}
"""The asyncio client of each running loop (and settings, None for ``REDKIT``'s), and the
generator that closes it with the loop."""


def redkit_options() -> dict[str, Any]:
    """The project's ``REDKIT`` dict with its keys upper-cased (``{}`` when it has none)."""
    raw = getattr(django_settings, "REDKIT", None)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.REDKIT must be a dict, not {type(raw).__name__}")
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise ImproperlyConfigured(f"settings.REDKIT keys must be strings, not {key!r}")
        name = key.upper()
        if name in options:
            raise ImproperlyConfigured(f"settings.REDKIT names {name!r} twice")
        options[name] = value
    return options


def adapter_option(name: str, default: Any = None) -> Any:
    """The value of the adapter's own ``REDKIT`` key ``name`` (one of :data:`ADAPTER_KEYS`)."""
    if name not in ADAPTER_KEYS:
        raise KeyError(f"{name!r} is not one of the adapter's REDKIT keys")
    return redkit_options().get(name, default)


def _derived_secret() -> str | None:
    secret = getattr(django_settings, "SECRET_KEY", None)
    if not secret:
        return None
    from django.utils.crypto import salted_hmac

    digest = salted_hmac("redkit_django.serializer", "pickle", secret=secret, algorithm="sha256")
    return str(digest.hexdigest())


def _build_settings() -> Settings:
    options = {k: v for k, v in redkit_options().items() if k not in ADAPTER_KEYS}
    extra: dict[str, Any] = {}
    if "URL" not in options:
        try:
            url = web.url_from_environment('REDKIT["URL"]', "manage.py redkit_worker", logger=log)
        except ConfigurationError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        if url:
            extra["url"] = url
    if "SECRET_KEY" not in options:
        secret = _derived_secret()
        if secret is not None:
            extra["secret_key"] = secret
    try:
        return Settings.from_config(options, prefix="", **extra)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"settings.REDKIT: {exc}") from exc


def get_settings() -> Settings:
    """redkit's :class:`~redkit.settings.Settings` of the project (read once, and again after
    ``REDKIT`` or ``SECRET_KEY`` changes)."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = _build_settings()
        return _settings


def get_kit(settings: Settings | None = None) -> redkit.Redkit:
    """The process's :class:`redkit.Redkit`, built from ``settings.REDKIT`` when first asked
    for, and closed when the process exits. With ``settings``: the process's client of those
    settings (one per distinct settings), closed with the others."""
    global _kit
    if settings is not None:
        with _lock:
            other = _other_kits.get(settings)
            if other is None or other.closed:
                other = _other_kits[settings] = redkit.Redkit(settings)
            return other
    kit = _kit
    if kit is not None:
        return kit
    with _lock:
        if _kit is None:
            _kit = redkit.Redkit(get_settings())
        return _kit


async def _close_with_loop(
    key: _AsyncKey, kit: redkit.asyncio.Redkit
) -> AsyncGenerator[None, None]:
    """An async generator left suspended at its ``yield``: ``asyncio.run``, asgiref and ASGI
    servers finalize a loop's live generators before closing it (``shutdown_asyncgens``), and
    a generator dropped by :func:`reset` is finalized in its loop too; either way the loop's
    client is closed while its connections can still be closed cleanly."""
    try:
        yield
    finally:
        with _lock:
            if _async_kits.get(key, (None,))[0] is kit:
                del _async_kits[key]
        await kit.aclose()


def get_async_kit(settings: Settings | None = None) -> redkit.asyncio.Redkit:
    """The :class:`redkit.AsyncRedkit` of the running event loop (one per loop, since an
    asyncio connection belongs to the loop that opened it), closed when the loop shuts down.
    Call it from a coroutine. With ``settings``: the loop's client of those settings."""
    key = (asyncio.get_running_loop(), settings)
    entry = _async_kits.get(key)
    if entry is not None and not entry[0].closed:
        return entry[0]
    with _lock:
        entry = _async_kits.get(key)
        if entry is None or entry[0].closed:
            kit = redkit.asyncio.Redkit(settings or get_settings())
            closer = _close_with_loop(key, kit)
            with contextlib.suppress(StopIteration):  # run it to its yield now, which
                closer.asend(None).send(None)  # registers it with the running loop
            entry = _async_kits[key] = (kit, closer)
        return entry[0]


def reset() -> None:
    """Forget the settings and close the process's clients: the next :func:`get_kit` reads
    ``settings.REDKIT`` again. The asyncio clients are dropped (each closes with its loop)."""
    global _settings, _kit
    with _lock:
        kits = [k for k in (_kit, *_other_kits.values()) if k is not None]
        _kit, _settings = None, None
        _other_kits.clear()
        _async_kits.clear()
    for kit in kits:
        kit.close()


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: a change of ``REDKIT`` or ``SECRET_KEY`` resets the clients."""
    if setting in WATCHED:
        reset()


atexit.register(reset)
