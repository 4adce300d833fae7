"""redkit's settings of a Flask application: ``REDKIT_*`` keys of ``app.config``, the
extension's keyword options over them, and what Flask itself says about sessions.

- The URL: ``REDKIT_URL`` (config or option), else the ``REDKIT_URL`` environment variable,
  else ``memory://`` with a warning: that store lives inside one process, so several workers
  of a server (or a separate ``flask redkit worker``) would each see their own.
- ``PERMANENT_SESSION_LIFETIME`` is the sessions' idle timeout (``session_ttl``) unless
  ``REDKIT_SESSION_TTL`` is set, and raises ``session_max_age`` to at least that much unless
  ``REDKIT_SESSION_MAX_AGE`` is set.
- Keys of Flask-Caching, Flask-Limiter and Flask-Session are not read: each one found is
  answered with a warning naming the redkit key to use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from redkit import web
from redkit.settings import Settings

__all__ = ["FOREIGN_KEYS", "settings_from_config"]

log = logging.getLogger("redkit.flask")

FLASK_SESSION_LIFETIME = timedelta(days=31)
"""Flask's default ``PERMANENT_SESSION_LIFETIME``."""

FOREIGN_KEYS: dict[str, str] = {
    "CACHE_TYPE": "REDKIT_URL (the cache lives in redkit's Redis), or REDKIT_CACHE_ENABLED = False",
    "CACHE_REDIS_URL": "REDKIT_URL",
    "CACHE_REDIS_HOST": "REDKIT_URL",
    "CACHE_DEFAULT_TIMEOUT": "REDKIT_CACHE_TTL",
    "CACHE_KEY_PREFIX": "REDKIT_PREFIX",
    "CACHE_NO_NULL_WARNING": "REDKIT_CACHE_ENABLED",
    "RATELIMIT_STORAGE_URI": "REDKIT_URL",
    "RATELIMIT_STORAGE_URL": "REDKIT_URL",
    "RATELIMIT_DEFAULT": "REDKIT_RATELIMIT_DEFAULT",
    "RATELIMIT_DEFAULTS_PER_METHOD": "REDKIT_RATELIMIT_DEFAULT",
    "RATELIMIT_APPLICATION": "REDKIT_RATELIMIT_APPLICATION",
    "RATELIMIT_ENABLED": "REDKIT_RATELIMIT_ENABLED",
    "RATELIMIT_HEADERS_ENABLED": "REDKIT_RATELIMIT_HEADERS",
    "RATELIMIT_STRATEGY": "REDKIT_RATELIMIT_ALGORITHM",
    "RATELIMIT_KEY_PREFIX": "REDKIT_PREFIX",
    "RATELIMIT_SWALLOW_ERRORS": "REDKIT_RATELIMIT_FAIL_OPEN",
    "SESSION_TYPE": "REDKIT_SESSIONS",
    "SESSION_REDIS": "REDKIT_URL",
    "SESSION_KEY_PREFIX": "REDKIT_PREFIX",
    "SESSION_USE_SIGNER": "REDKIT_SESSIONS (the id cookie is always signed)",
    "SESSION_PERMANENT": "session.permanent",
}
"""Config keys of Flask-Caching, Flask-Limiter and Flask-Session, and the redkit key to use."""


def settings_from_config(config: Mapping[str, Any], **options: Any) -> Settings:
    """redkit's settings of an application config: every ``REDKIT_<SETTING>`` key
    (``REDKIT_URL``, ``REDKIT_PREFIX``, ``REDKIT_CACHE_TTL``, ...), then ``options`` over them;
    an unknown ``REDKIT_`` key is a :class:`~redkit.errors.ConfigurationError`."""
    extra: dict[str, Any] = {}
    given = {k[len("REDKIT_") :].lower() for k in config if isinstance(k, str)}
    given |= set(options)
    if "url" not in given:
        url = web.url_from_environment("REDKIT_URL", "flask redkit worker", logger=log)
        if url:
            extra["url"] = url
    lifetime = config.get("PERMANENT_SESSION_LIFETIME")
    if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool):
        lifetime = timedelta(seconds=lifetime)
    if isinstance(lifetime, timedelta) and lifetime.total_seconds() > 0:
        seconds = lifetime.total_seconds()
        if "session_ttl" not in given:
            extra["session_ttl"] = seconds
            if "session_max_age" not in given:
                extra["session_max_age"] = max(seconds, Settings.session_max_age)
        elif lifetime != FLASK_SESSION_LIFETIME:
            log.warning(
                "redkit: PERMANENT_SESSION_LIFETIME is not used for sessions because "
                "REDKIT_SESSION_TTL is set (it wins)"
            )
    for key, ours in FOREIGN_KEYS.items():
        if key in config:
            log.warning("redkit: %s is not a redkit setting and is ignored: use %s", key, ours)
    return Settings.from_config(config, **{**extra, **options})
