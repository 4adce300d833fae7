"""What the sync and async methods of :class:`redkit_django.cache.RedkitCache` share: options,
keys, timeouts and the clients (pure apart from building a client; no Redis I/O)."""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    CacheKeyWarning,
    default_key_func,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

import redkit
import redkit.asyncio
from redkit.cache import AsyncCache, Cache
from redkit.errors import InvalidKeyError
from redkit.settings import Settings

from . import conf
from ._cache_codec import Codec
from ._cache_options import CacheOptions, parse_options

__all__ = ["BackendBase"]

_MEMCACHE_MAX = 250
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_generation = [0]


def _changed(*, setting: str, **kwargs: Any) -> None:
    if setting in conf.WATCHED:
        _generation[0] += 1


setting_changed.connect(_changed, dispatch_uid="redkit.cache.setting_changed")


class BackendBase(BaseCache):  # type: ignore[misc]
    """Options, keys, timeouts and clients of a ``RedkitCache``."""

    _made_prefix: Any = None  # the key_prefix and version of the key head made last
    _made_version: Any = None

    def __init__(self, server: object, params: Mapping[str, Any]) -> None:
        super().__init__(params)
        timeout = params.get("TIMEOUT", params.get("timeout", 300))
        self.default_timeout = timeout  # Django would truncate 0.5 to 0
        # a wrong setting raises when the cache is used, so that `manage.py check` (which
        # builds every backend) reports it instead of crashing
        self._options: CacheOptions | None = None
        self._error: ImproperlyConfigured | None = None
        try:
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            ):
                raise ImproperlyConfigured(
                    f"CACHES TIMEOUT must be a number or None, not {timeout!r}"
                )
            self._options = parse_options(server, params.get("OPTIONS"))
        except ImproperlyConfigured as exc:
            self._error = exc
        self._built = -1
        self._settings: Settings | None = None
        self._codec: Codec | None = None
        self._sync: Cache | None = None
        self._kit: redkit.Redkit | None = None
        self._async: dict[Any, tuple[redkit.asyncio.Redkit, AsyncCache]] = {}
        self._head = self._key_head()

    @property
    def options(self) -> CacheOptions:
        """The backend's checked ``OPTIONS``; raises ``ImproperlyConfigured`` if they are wrong."""
        if self._options is None:
            assert self._error is not None
            raise self._error
        return self._options

    # -- clients ------------------------------------------------------------------------------
    def _build(self) -> None:
        base = conf.get_settings()
        self._settings = self.options.settings(base)
        secret = (self._settings or base).secret_key
        self._codec = self.options.codec(secret)
        self._sync = None
        self._async = {}
        self._built = _generation[0]

    def _cache(self) -> Cache:
        """The sync ``kit.cache`` of this backend, with its codec."""
        cache = self._sync
        if cache is None or self._built != _generation[0] or self._kit is None or self._kit.closed:
            if self._built != _generation[0]:
                self._build()
            kit = self._kit = conf.get_kit(self._settings)
            assert self._codec is not None
            cache = self._sync = kit.cache.using(self._codec)
        return cache

    def _acache(self) -> AsyncCache:
        """The running loop's ``kit.cache`` of this backend, with its codec."""
        import asyncio

        loop = asyncio.get_running_loop()
        entry = self._async.get(loop) if self._built == _generation[0] else None
        if entry is None or entry[0].closed:
            if self._built != _generation[0]:
                self._build()
            kit = conf.get_async_kit(self._settings)
            assert self._codec is not None
            entry = self._async[loop] = (kit, kit.cache.using(self._codec))
        return entry[1]

    def _async_kit(self) -> redkit.asyncio.Redkit:
        import asyncio

        self._acache()
        return self._async[asyncio.get_running_loop()][0]

    @property
    def kit(self) -> redkit.Redkit:
        """The :class:`redkit.Redkit` this backend talks through."""
        self._cache()
        assert self._kit is not None
        return self._kit

    # -- keys ---------------------------------------------------------------------------------
    def validate_key(self, key: str) -> None:
        """Warn (``CacheKeyWarning``) about keys memcached would refuse, like every Django
        backend; redkit itself stores any key (long ones hashed)."""
        if len(key) > _MEMCACHE_MAX or _UNSAFE.search(key):
            for warning in memcache_key_warnings(key):
                warnings.warn(warning, CacheKeyWarning, stacklevel=3)

    def key(self, key: Any, version: int | None = None) -> str:
        head = self._head
        if head is not None and (
            self.key_prefix is not self._made_prefix or self.version != self._made_version
        ):
            head = self._head = self._key_head()  # key_prefix or version was changed
        if head is not None and version is None and type(key) is str:
            # Django's default make_key and this validate_key, inlined: the per-call hot path
            made: str = head + key
            if len(made) > _MEMCACHE_MAX or _UNSAFE.search(made):
                self.validate_key(made)
            return made
        made = self.make_key(key, version)
        if not isinstance(made, (str, bytes)):
            raise InvalidKeyError(f"KEY_FUNCTION must return a str, not {type(made).__name__}")
        self.validate_key(made)
        return made

    def _key_head(self) -> str | None:
        """``KEY_PREFIX:VERSION:`` when keys are made the default way (Django's
        ``default_key_func``, ``make_key`` and ``validate_key`` not overridden), else None."""
        cls = type(self)
        if (
            self.key_func is not default_key_func
            or cls.make_key is not BaseCache.make_key
            or cls.validate_key is not BackendBase.validate_key
        ):
            return None
        self._made_prefix, self._made_version = self.key_prefix, self.version
        return f"{self.key_prefix}:{self.version}:"

    def keys_of(self, keys: Iterable[Any], version: int | None) -> dict[str, Any]:
        if isinstance(keys, (str, bytes)):
            raise TypeError("keys must be a list of keys, not a single key")
        return {self.key(k, version): k for k in keys}

    def pattern(self, search: str, version: int | None) -> str:
        if not isinstance(search, str):
            raise TypeError(f"pattern must be a str, not {type(search).__name__}")
        return self.make_key(search, version)  # type: ignore[no-any-return]

    def original(self, stored: str | bytes) -> Any:
        """The caller's key of a stored key (``REVERSE_KEY_FUNCTION``, by default the part
        after ``KEY_PREFIX:VERSION:``)."""
        if isinstance(stored, bytes):
            return stored
        if self.options.reverse_key is not None:
            return self.options.reverse_key(stored)
        return stored.split(":", 2)[2] if stored.count(":") >= 2 else stored

    def clear_pattern(self) -> str | None:
        """The pattern of every key of this backend (any version), when KEY_FUNCTION is
        Django's default; None otherwise (then clear() empties the whole cache of the prefix)."""
        if self.options.reverse_key is not None or self.key_func.__name__ != "default_key_func":
            return None
        prefix = re.sub(r"([*?\[\]\\])", r"\\\1", str(self.key_prefix))
        return f"{prefix}:*"

    # -- timeouts -----------------------------------------------------------------------------
    def lifetime(self, timeout: Any) -> float | None:
        """Seconds to store for: the default, ``None`` (never expires) as ``FOREVER_TTL``;
        None when the entry must not be stored (0 or negative, as Django says)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return self.options.forever_ttl
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
        if math.isnan(timeout):
            raise ValueError("timeout must be a number of seconds, not NaN")
        if timeout <= 0:
            return None
        return min(float(timeout), self.options.forever_ttl)

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """The expiry time (Unix seconds) of an entry set now with ``timeout``; ``None`` never
        happens: an entry set with no timeout lives ``FOREVER_TTL``."""
        seconds = self.lifetime(timeout)
        return time.time() + (seconds if seconds is not None else -1)

    @staticmethod
    def until(when: datetime | float, per_second: int) -> float:
        """Seconds from now until ``when`` (a datetime, or a Unix time in 1/per_second units)."""
        if isinstance(when, datetime):
            at = when.timestamp()
        elif isinstance(when, bool) or not isinstance(when, (int, float)):
            raise TypeError(f"when must be a datetime or a Unix time, not {when!r}")
        else:
            at = when / per_second
        return at - time.time()

    @staticmethod
    def django_ttl(seconds: float | None, per_second: int) -> int | None:
        """django-redis' ``ttl``/``pttl`` answer: 0 for no entry, None for no expiry."""
        if seconds is None:
            return 0
        if math.isinf(seconds):
            return None
        return round(seconds * per_second)
