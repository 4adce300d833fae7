"""The ``OPTIONS`` of a ``RedkitCache`` (and its ``LOCATION``), read without touching Redis.

Three kinds of names are understood: django-redis' (``IGNORE_EXCEPTIONS``, ``SERIALIZER``, ...)
where they mean something here, the backend's own (``COMPRESS_MIN_SIZE``, ``FOREVER_TTL``,
``REVERSE_KEY_FUNCTION``), and redkit's settings by name (``CACHE_JITTER``, ``MAX_CONNECTIONS``,
...). Options of django-redis or of Django's ``RedisCache`` that have no meaning here are
listed in :data:`NO_MEANING` (ignored, and reported by ``manage.py check``); any other name is an
``ImproperlyConfigured``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from redkit.errors import ConfigurationError, MissingDependencyError, SerializationError
from redkit.settings import Settings

from ._cache_codec import COMPRESSORS, SERIALIZERS, Codec

__all__ = ["NO_MEANING", "CacheOptions", "parse_options"]

DEFAULT_FOREVER_TTL = 365 * 24 * 3600.0
"""What ``TIMEOUT: None`` (Django's "never expires") becomes unless ``FOREVER_TTL`` says: every
key redkit writes has a lifetime."""
DEFAULT_COMPRESS_MIN_SIZE = 1024

NO_MEANING: dict[str, str] = {
    "CLIENT_CLASS": "redkit has one client, chosen by the URL scheme of LOCATION",
    "CLIENT_KWARGS": "redkit has one client, chosen by the URL scheme of LOCATION",
    "CONNECTION_FACTORY": "connections are made by redkit from LOCATION",
    "CONNECTION_POOL_CLASS": "connections are pooled by redkit",
    "CONNECTION_POOL_CLASS_KWARGS": "connections are pooled by redkit",
    "PARSER_CLASS": "hiredis is used when installed",
    "PARSER_CLASS_KWARGS": "hiredis is used when installed",
    "REDIS_CLIENT_CLASS": "redkit builds the redis-py client",
    "REDIS_CLIENT_KWARGS": "redkit builds the redis-py client",
    "CLOSE_CONNECTION": "pools are kept for the process; close() has nothing to close",
    "LOG_IGNORED_EXCEPTIONS": "failures are always logged (logger redkit), once per outage",
    "MAX_ENTRIES": "Redis evicts by its maxmemory policy, not by an entry count",
    "CULL_FREQUENCY": "Redis evicts by its maxmemory policy, not by an entry count",
    "POOL_CLASS": "connections are pooled by redkit",
}
"""Options of django-redis or Django's ``RedisCache`` that are accepted and ignored."""

_SERIALIZER_PATHS = {
    "django_redis.serializers.pickle.PickleSerializer": "pickle",
    "django_redis.serializers.json.JSONSerializer": "json",
    "django_redis.serializers.msgpack.MSGPackSerializer": "msgpack",
}
_COMPRESSOR_PATHS = {
    "django_redis.compressors.identity.IdentityCompressor": None,
    "django_redis.compressors.zlib.ZlibCompressor": "zlib",
    "django_redis.compressors.zstd.ZStdCompressor": "zstd",
    "django_redis.compressors.lz4.Lz4Compressor": "lz4",
}
_SETTINGS = {f.name.upper() for f in dataclasses.fields(Settings)}
_RENAMED = {  # django-redis option -> redkit setting
    "IGNORE_EXCEPTIONS": "cache_fail_open",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
    "PASSWORD": "password",
}
_OWN = {"COMPRESS_MIN_SIZE", "FOREVER_TTL", "REVERSE_KEY_FUNCTION", "COMPRESSOR", "SERIALIZER"}


@dataclass(frozen=True)
class CacheOptions:
    """What a backend's ``LOCATION`` and ``OPTIONS`` ask for, checked but not yet applied to
    ``REDKIT``'s settings (:meth:`settings`)."""

    changes: dict[str, Any]
    serializer: str = "pickle"
    compressor: str | None = None
    compress_min_size: int = DEFAULT_COMPRESS_MIN_SIZE
    forever_ttl: float = DEFAULT_FOREVER_TTL
    forever_ttl_given: bool = False
    reverse_key: Callable[[str], str] | None = None
    ignored: tuple[str, ...] = field(default=())
    given: dict[str, str] = field(default_factory=dict)
    """The OPTIONS name each change came from (a setting's, or django-redis')."""

    def settings(self, base: Settings) -> Settings | None:
        """``base`` with this backend's changes (None when there are none: the backend then
        shares ``REDKIT``'s client)."""
        changes = {k: v for k, v in self.changes.items() if getattr(base, k, object()) != v}
        if not changes:
            return None
        try:
            return base.replace(**changes)
        except (ConfigurationError, TypeError) as exc:
            for name, value in changes.items():  # which option: name the one the user wrote
                try:
                    base.replace(**{name: value})
                except (ConfigurationError, TypeError) as one:
                    given = self.given.get(name, name.upper())
                    raise ImproperlyConfigured(f"CACHES OPTIONS {given}: {one}") from one
            raise ImproperlyConfigured(f"CACHES OPTIONS: {exc}") from exc

    def codec(self, secret_key: str | None) -> Codec:
        """The values' codec; signed pickle needs a secret (derived from ``SECRET_KEY``)."""
        try:
            return Codec(self.serializer, secret_key, self.compressor, self.compress_min_size)
        except (SerializationError, MissingDependencyError) as exc:
            raise ImproperlyConfigured(f"CACHES OPTIONS: {exc}") from exc


def _location(location: object) -> str | None:
    if location in (None, ""):
        return None
    if isinstance(location, (list, tuple)):
        if len(location) != 1:
            raise ImproperlyConfigured(
                "CACHES LOCATION: give one URL; for replicas and failover use a "
                "redis+sentinel:// URL, for a cluster redis+cluster://"
            )
        location = location[0]
    if not isinstance(location, str):
        raise ImproperlyConfigured(
            f"CACHES LOCATION must be a URL string, not {type(location).__name__}"
        )
    return location


def _choice(name: str, value: object, paths: Mapping[str, str | None], known: Any) -> str | None:
    if value is None or (isinstance(value, str) and value in known):
        return value
    if isinstance(value, str) and value in paths:
        return paths[value]
    raise ImproperlyConfigured(
        f"CACHES OPTIONS {name}: {value!r} is not understood; use one of "
        f"{', '.join(repr(k) for k in known)}"
    )


def _positive_number(name: str, value: object, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not 0 <= value < math.inf  # NaN fails both
    ):
        what = "a whole number" if integer else "a finite number of seconds"
        raise ImproperlyConfigured(f"CACHES OPTIONS {name} must be {what} >= 0, got {value!r}")
    return value


def parse_options(location: object, options: object) -> CacheOptions:
    """Check ``LOCATION`` and ``OPTIONS`` (no I/O); raises ``ImproperlyConfigured`` naming the
    first wrong one."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"CACHES OPTIONS must be a dict, not {type(options).__name__}")
    changes: dict[str, Any] = {}
    given: dict[str, str] = {}
    url = _location(location)
    if url is not None:
        changes["url"] = url
    own: dict[str, Any] = {}
    ignored: list[str] = []
    for raw_name, value in options.items():
        name = str(raw_name).upper()
        if name in NO_MEANING:
            ignored.append(name)
        elif name in _OWN:
            own[name] = value
        elif name in _RENAMED:
            changes[_RENAMED[name]] = value
            given[_RENAMED[name]] = name
        elif name == "CONNECTION_POOL_KWARGS":
            pool = _pool_kwargs(value)
            changes.update(pool)
            given.update({k: f"CONNECTION_POOL_KWARGS {k}" for k in pool})
        elif name == "DB":
            raise ImproperlyConfigured(
                "CACHES OPTIONS db: name the database in LOCATION (redis://host:6379/2)"
            )
        elif name in _SETTINGS and name not in {"URL", "SERIALIZER"}:
            changes[name.lower()] = value
        else:
            raise ImproperlyConfigured(
                f"CACHES OPTIONS {raw_name!r} is not an option of redkit_django.cache.RedkitCache "
                "(see docs/django.md, Cache backend)"
            )
    reverse = own.get("REVERSE_KEY_FUNCTION")
    if isinstance(reverse, str):
        try:
            reverse = import_string(reverse)
        except (ImportError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"CACHES OPTIONS REVERSE_KEY_FUNCTION: cannot import {reverse[:100]!r}: "
                f"{str(exc)[:200]}"
            ) from None
    if reverse is not None and not callable(reverse):
        raise ImproperlyConfigured("CACHES OPTIONS REVERSE_KEY_FUNCTION must be callable")
    forever = own.get("FOREVER_TTL", DEFAULT_FOREVER_TTL)
    return CacheOptions(
        changes=changes,
        serializer=_choice(
            "SERIALIZER", own.get("SERIALIZER", "pickle"), _SERIALIZER_PATHS, SERIALIZERS
        )
        or "pickle",
        compressor=_choice("COMPRESSOR", own.get("COMPRESSOR"), _COMPRESSOR_PATHS, COMPRESSORS),
        compress_min_size=_positive_number(
            "COMPRESS_MIN_SIZE", own.get("COMPRESS_MIN_SIZE", DEFAULT_COMPRESS_MIN_SIZE), True
        ),
        forever_ttl=float(_positive_number("FOREVER_TTL", forever)),
        forever_ttl_given="FOREVER_TTL" in own,
        reverse_key=reverse,
        ignored=tuple(ignored),
        given=given,
    )


def _pool_kwargs(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("CACHES OPTIONS CONNECTION_POOL_KWARGS must be a dict")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "max_connections":
            out["max_connections"] = item
        elif key in ("socket_timeout", "socket_connect_timeout", "health_check_interval"):
            out[key] = item
        else:
            raise ImproperlyConfigured(
                f"CACHES OPTIONS CONNECTION_POOL_KWARGS {key!r} is not understood (max_connections,"
                " socket_timeout, socket_connect_timeout and health_check_interval are)"
            )
    return out
