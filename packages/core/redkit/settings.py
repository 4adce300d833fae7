"""One frozen settings object holding every redkit option, with its documented default.

Settings come from keyword arguments (:meth:`Settings.from_url`), a mapping such as a framework's
config (:meth:`Settings.from_mapping`, case-insensitive keys, string values coerced), or the
environment (:meth:`Settings.from_env`). Invalid values raise
:class:`~redkit.errors.ConfigurationError` at construction, so a typo never surfaces as a failure in
the middle of a request.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import numbers
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import _durations as durations
from .errors import ConfigurationError

__all__ = ["DEFAULT_URL", "SCHEMES", "Settings", "redact_url"]

DEFAULT_URL = "memory://"
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "memory")
SERIALIZERS = ("json", "msgpack", "pickle")
SSL_CERT_REQS = ("required", "optional", "none")
RATELIMIT_ALGORITHMS = (
    "fixed_window",
    "sliding_window_log",
    "sliding_window_counter",
    "token_bucket",
    "gcra",
)
_FORBIDDEN_QUERY = {"decode_responses", "encoding", "encoding_errors", "protocol"}


_SECRET_QUERY = re.compile(r"(?i)([?&][^=&#]*(?:password|passwd|secret|token)[^=&#]*=)[^&#]*")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

SECRETS = frozenset({"password", "sentinel_password", "secret_key", "username"})
"""Settings whose values are never shown: not in ``repr``, not in any error message."""
MIN_SECRET_KEY_LENGTH = 16
"""Shortest ``secret_key`` accepted (in characters): a short HMAC key can be guessed."""

DURATIONS: dict[str, bool] = {
    "socket_timeout": False,
    "socket_connect_timeout": False,
    "health_check_interval": True,
    "pool_timeout": False,
    "retry_backoff_base": True,
    "retry_backoff_cap": False,
    "breaker_cooldown": True,
    "cache_ttl": False,
    "cache_negative_ttl": False,
    "cache_stale_ttl": True,
    "cache_lock_ttl": False,
    "cache_lock_timeout": True,
    "cache_tag_ttl": False,
    "session_ttl": False,
    "session_max_age": False,
    "idempotency_ttl": False,
    "idempotency_lease": False,
    "idempotency_timeout": True,
    "stream_ttl": False,
    "queue_lock_ttl": False,
    "queue_keep_completed_age": True,
    "queue_keep_failed_age": True,
}
"""The settings that are durations, each with whether 0 is allowed (0 disables or means "at
once"). They accept seconds or a ``timedelta`` and hold seconds as a float."""

RENAMED = {"cache_lock_wait": "cache_lock_timeout", "idempotency_wait": "idempotency_timeout"}
"""Deprecated setting names and their new names: still accepted, with a ``DeprecationWarning``."""


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs, reprs and errors).

    Works on the raw text, so that a password holding unencoded ``/``, ``?``, ``#`` or ``@`` is
    hidden too: everything between ``://`` and the last ``@`` is credentials.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_QUERY.sub(r"\1***", url)
    if "@" in rest:
        userinfo, _, hostinfo = rest.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        rest = f"{user}:***@{hostinfo}"
    return f"{scheme}://" + _SECRET_QUERY.sub(r"\1***", rest)


@dataclass(frozen=True)
class Settings:
    """Every redkit option. All fields have defaults; see ``docs/configuration.md``.

    Durations are in seconds (floats allowed); sizes in bytes.
    """

    # -- connection ---------------------------------------------------------------------------
    url: str = DEFAULT_URL
    """Where Redis is: ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
    ``redis+cluster://`` or ``memory://`` (embedded, in-process)."""
    prefix: str = "redkit"
    """First segment of every key redkit writes; lets many apps share one Redis database."""
    username: str | None = None
    """ACL user name (overrides one given in the URL)."""
    password: str | None = field(default=None, repr=False)
    """Password (overrides one given in the URL). Never shown in ``repr`` or errors."""
    socket_timeout: float = 5.0
    """Seconds to wait for a reply before the call fails with ``RedkitTimeoutError``."""
    socket_connect_timeout: float = 2.0
    """Seconds to wait for a TCP/TLS connection to open."""
    health_check_interval: float = 30.0
    """Idle pooled connections are PINGed before use when idle this long (0 disables)."""
    max_connections: int = 64
    """Upper bound of the connection pool (per process, per client)."""
    pool_timeout: float = 5.0
    """Seconds a caller waits for a free pooled connection when all ``max_connections`` are busy,
    before ``PoolExhaustedError``."""
    retry_attempts: int = 3
    """Retries of a call that failed on a connection error, with capped exponential backoff."""
    retry_backoff_base: float = 0.008
    """Base of the retry delay: retry ``n`` (from 1) waits ``min(cap, base * 2**n)``."""
    retry_backoff_cap: float = 0.25
    """Largest delay between two retries."""
    breaker_threshold: int = 3
    """Consecutive connection failures that open the circuit breaker (0 disables the breaker)."""
    breaker_cooldown: float = 5.0
    """Seconds the breaker stays open (calls fail fast) before one probe call is let through."""
    ssl_cert_reqs: str = "required"
    """TLS certificate checks for ``rediss://``: ``required`` (default), ``optional``, ``none``."""
    ssl_ca_certs: str | None = None
    """CA bundle used to verify the server certificate (system store when unset)."""
    ssl_certfile: str | None = None
    """Client certificate for mutual TLS."""
    ssl_keyfile: str | None = None
    """Private key of the client certificate."""
    ssl_check_hostname: bool = True
    """Check that the server certificate matches the host name (when certificates are required)."""
    sentinel_password: str | None = field(default=None, repr=False)
    """Password of the Sentinel processes themselves, when they require one."""

    # -- serialization ------------------------------------------------------------------------
    serializer: str = "json"
    """``json`` (orjson when installed), ``msgpack``, or ``pickle`` (needs ``secret_key``)."""
    secret_key: str | None = field(default=None, repr=False)
    """HMAC key signing pickled payloads; required by, and only used by, ``serializer="pickle"``."""
    max_key_length: int = 200
    """User-supplied key parts longer than this (in bytes, after escaping) are hashed."""

    # -- cache --------------------------------------------------------------------------------
    cache_ttl: float = 300.0
    """Default time to live of a cache entry. Every entry has one."""
    cache_jitter: float = 0.1
    """Fraction of the TTL added at random (0.1 = up to +10%) so entries written together expire
    apart."""
    cache_negative_ttl: float | None = None
    """When set, a loader result of ``None`` is cached for this long ("not found" caching)."""
    cache_stale_ttl: float = 0.0
    """Stale-while-revalidate window: an expired entry is still served for this long while one
    caller refreshes it (0 disables)."""
    cache_early_refresh: float = 0.0
    """Probabilistic early refresh (XFetch) strength ``beta``; 1.0 is usual, 0 disables."""
    cache_lock_ttl: float = 30.0
    """Lifetime of the stampede lock held by the one caller that runs a loader."""
    cache_lock_timeout: float = 10.0
    """How long other callers wait for that loader before running the loader themselves
    (formerly ``cache_lock_wait``)."""
    cache_tag_ttl: float = 30 * 24 * 3600.0
    """Lifetime of a tag version key when it is created or invalidated; every write of an entry
    carrying the tag extends it to outlive that entry."""
    cache_fail_open: bool = True
    """When Redis is unreachable: ``True`` calls the loader and returns its value (logged, counted);
    ``False`` raises ``RedkitConnectionError``."""

    # -- sessions -----------------------------------------------------------------------------
    session_ttl: float = 14 * 24 * 3600.0
    """Idle timeout of a server-side session: every load or save slides it."""
    session_max_age: float = 30 * 24 * 3600.0
    """Absolute lifetime of a session from its creation, however active it is."""
    session_max_bytes: int = 64 * 1024
    """Largest stored size of one session (field names plus JSON values); a save that would
    exceed it raises ``SessionTooLarge`` and writes nothing."""

    # -- idempotency keys ----------------------------------------------------------------------
    idempotency_ttl: float = 24 * 3600.0
    """How long a completed response is kept for replay."""
    idempotency_lease: float = 30.0
    """Lifetime of the lease of a request in progress; renewed while it runs, so a crashed
    request's key can be taken over by a retry once it expires."""
    idempotency_timeout: float = 0.0
    """How long ``begin`` waits for a request in progress with the same key before answering
    "in progress" (0 answers at once; formerly ``idempotency_wait``)."""
    idempotency_max_bytes: int = 256 * 1024
    """Largest stored response (status, headers and body); larger raises ``ResponseTooLarge``."""
    idempotency_store_server_errors: bool = False
    """Whether 5xx responses are stored for replay (by default the key is released instead, so
    the client may retry)."""

    # -- rate limiting -------------------------------------------------------------------------
    ratelimit_algorithm: str = "sliding_window_counter"
    """Default algorithm: ``fixed_window``, ``sliding_window_log``, ``sliding_window_counter``,
    ``token_bucket`` or ``gcra``."""
    ratelimit_fail_open: bool = True
    """When Redis is unreachable: ``True`` allows the request (logged, counted as
    ``ratelimit_fail_open``); ``False`` raises ``RedkitConnectionError``."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks (CIDR) of the reverse proxies in front of the app, whose
    ``X-Forwarded-For`` / ``Forwarded`` entries are believed; ``"unix"`` names a proxy that
    reaches the app over a unix socket (the request then has no peer address). Empty: the
    socket peer is the client."""

    # -- web adapters (Flask, Django, Starlette) -----------------------------------------------
    sessions: bool = False
    """Make redkit's server-side sessions the framework's session backend (a signed cookie
    carries only the session id)."""
    ratelimit_default: str | None = None
    """Limits (``"100/minute;1000/hour"``) applied to every view that has no limit of its own
    and is not exempt, counted per view and client. ``None``: no default."""
    ratelimit_application: str | None = None
    """Limits shared by all views (one counter per client across the application), checked
    before a view's own. ``None``: none."""
    ratelimit_headers: bool = True
    """Send ``X-RateLimit-*`` and ``RateLimit``/``RateLimit-Policy`` headers on limited views
    (``Retry-After`` is always sent with a 429)."""
    client_ip_header: str = "x-forwarded-for"
    """The header trusted proxies put the client address in: ``x-forwarded-for`` or
    ``forwarded`` (RFC 7239). Read only when the socket peer is a trusted proxy."""
    idempotency_methods: tuple[str, ...] = ()
    """Methods whose requests carrying an ``Idempotency-Key`` header are handled as idempotent
    on every view (``POST, PATCH``); empty: only views decorated as idempotent."""
    idempotency_header: str = "Idempotency-Key"
    """The request header carrying the idempotency key."""
    cache_enabled: bool = True
    """``False`` turns the adapters' cached views and cached functions off (they run every
    time and store nothing: for tests and local runs); ``kit.cache`` itself is unaffected."""
    ratelimit_enabled: bool = True
    """``False`` turns the adapters' rate limits off (nothing counted, no headers)."""
    cache_credential_headers: tuple[str, ...] = ("Authorization",)
    """Request headers that carry credentials: a request with any of them is neither answered
    from nor stored in the view cache unless the view opts in (``per_credential=True``), and
    without a user id its idempotency keys are scoped by a hash of them."""

    # -- streams -------------------------------------------------------------------------------
    stream_maxlen: int = 10_000
    """Default cap of a stream's length: ``add`` trims older entries (approximately) past it."""
    stream_ttl: float = 7 * 24 * 3600.0
    """Lifetime of a stream key, renewed by every ``add``: a stream nobody writes to expires."""

    # -- job queue -----------------------------------------------------------------------------
    queue_max_bytes: int = 512 * 1024
    """Largest encoded job payload, result or progress value; larger raises
    ``PayloadTooLarge`` before anything is sent. Stored tracebacks are cut to this size."""
    queue_lock_ttl: float = 30.0
    """Lifetime of an active job's lock. The worker renews it every third of this; a job whose
    lock expires (its worker died or froze) is stalled and goes back to the queue."""
    queue_max_stalled: int = 1
    """How many times a job may stall and be run again before it fails as stalled."""
    queue_events_maxlen: int = 10_000
    """Approximate cap of each queue's events stream (0: no events are written)."""
    queue_keep_completed: int = 1_000
    """Completed jobs kept per queue (the newest); older ones are deleted."""
    queue_keep_completed_age: float = 24 * 3600.0
    """Completed jobs older than this are deleted (0: no age limit)."""
    queue_keep_failed: int = 10_000
    """Failed jobs kept per queue (the newest)."""
    queue_keep_failed_age: float = 7 * 24 * 3600.0
    """Failed jobs older than this are deleted (0: no age limit)."""
    queue_eviction_policy: str = "warn"
    """What a worker does when Redis' ``maxmemory-policy`` may evict queue state (``allkeys-*``):
    ``warn`` (log an error and go on), ``refuse`` (raise ``ConfigurationError``) or ``ignore``."""

    def __post_init__(self) -> None:
        _check_types(self)
        for name, zero in DURATIONS.items():
            value = getattr(self, name)
            if value is None and name == "cache_negative_ttl":
                continue
            try:
                secs = durations.seconds(f"setting {name!r}", value, zero=zero)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(str(exc)) from None
            object.__setattr__(self, name, secs)  # a timedelta is held as seconds
        _validate(self)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={redact_url(self.url)!r}"
            if f.name == "url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.repr
        )
        return f"Settings({shown})"

    @property
    def scheme(self) -> str:
        """The URL scheme, lower-cased (``redis``, ``memory``, ...)."""
        return urlsplit(self.url).scheme.lower()

    @property
    def is_cluster(self) -> bool:
        """True when keys of one operation may live on different nodes (Redis Cluster)."""
        return self.scheme == "redis+cluster"

    @property
    def cache_lock_wait(self) -> float:
        """Deprecated name of :attr:`cache_lock_timeout`."""
        _warn_renamed("cache_lock_wait")
        return self.cache_lock_timeout

    @property
    def idempotency_wait(self) -> float:
        """Deprecated name of :attr:`idempotency_timeout`."""
        _warn_renamed("idempotency_wait")
        return self.idempotency_timeout

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated like the original)."""
        changes = _renamed(changes, "replace()", TypeError)
        return Settings.from_mapping({**_as_dict(self), **changes})

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **options: Any) -> Settings:
        """Settings for ``url``; query parameters naming a setting (``?prefix=shop``) apply too,
        and keyword ``options`` win over both."""
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url must be a non-empty string")
        # the query starts after the credentials: a password may hold an unencoded "?"
        at = url.rfind("@")
        qpos = url.find("?", at + 1)
        base, query = (url, "") if qpos < 0 else (url[:qpos], url[qpos + 1 :])
        query_opts: dict[str, Any] = {}
        kept: list[tuple[str, str]] = []
        names = {f.name for f in fields(cls)} | set(RENAMED)
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key.lower() in names and key.lower() != "url":
                query_opts[key.lower()] = value
            else:
                kept.append((key, value))
        clean = f"{base}?{urlencode(kept)}" if kept else base
        return cls.from_mapping({**query_opts, **options, "url": clean})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Settings from a mapping with case-insensitive keys (``{"URL": ..., "PREFIX": ...}``);
        string values are coerced to each field's type. Unknown keys are an error."""
        by_name = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for raw_key, raw in _renamed(
            {str(k).lower(): v for k, v in mapping.items()}, "settings", ConfigurationError
        ).items():
            key = raw_key
            if key not in by_name:
                raise ConfigurationError(
                    f"unknown redkit setting {raw_key!r}; "
                    f"known settings: {', '.join(sorted(by_name))}"
                )
            values[key] = _coerce(key, hints[key], raw)
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the loop above
            raise ConfigurationError(str(exc)) from None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], prefix: str = "REDKIT_", **options: Any
    ) -> Settings:
        """Settings from a framework's flat config (Flask's ``app.config``): every
        ``<prefix><SETTING>`` key (``REDKIT_URL``, ``REDKIT_CACHE_TTL``, ...), then ``options``
        over them. Other keys are ignored; an unknown ``<prefix>`` key or option is a
        ``ConfigurationError`` (a typo would otherwise pass unnoticed)."""
        names = {f.name for f in fields(cls)} | set(RENAMED)
        values: dict[str, Any] = {}
        for key, value in config.items():
            if not isinstance(key, str) or not key.startswith(prefix):
                continue
            name = key[len(prefix) :].lower()
            if name not in names:
                raise ConfigurationError(
                    f"unknown setting {key!r}; known: "
                    + ", ".join(f"{prefix}{n.upper()}" for n in sorted(names - set(RENAMED)))
                )
            values[name] = value
        for name in options:
            if name not in names:
                raise ConfigurationError(f"unknown redkit setting {name!r}")
        merged = {**values, **options}
        url = merged.pop("url", None)
        if isinstance(url, str) and url:  # settings in the URL's query apply, as in from_url
            return cls.from_url(url, **merged)
        return cls.from_mapping(merged if url is None else {**merged, "url": url})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Settings:
        """Settings from the environment: the URL from ``REDKIT_URL``, then ``REDIS_URL``
        (default ``memory://``), and any ``REDKIT_<SETTING>`` variable (``REDKIT_PREFIX=shop``)."""
        env = os.environ if environ is None else environ
        url = env.get("REDKIT_URL") or env.get("REDIS_URL") or DEFAULT_URL
        names = ({f.name for f in fields(cls)} | set(RENAMED)) - {"url"}
        from_env = {
            k[len("REDKIT_") :].lower(): v
            for k, v in env.items()
            if k.startswith("REDKIT_") and k[len("REDKIT_") :].lower() in names
        }
        return cls.from_url(url, **{**from_env, **options})


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def _warn_renamed(old: str) -> None:
    new = RENAMED[old]
    durations.warn_deprecated(
        f"setting {old!r} (REDKIT_{old.upper()}) is deprecated, use {new!r} "
        f"(REDKIT_{new.upper()}): same meaning"
    )


def _renamed(values: dict[str, Any], where: str, error: type[Exception]) -> dict[str, Any]:
    """``values`` with deprecated setting names replaced by the new ones (warning once per
    name); both names at once raise ``error``."""
    if not any(old in values for old in RENAMED):
        return values
    out = dict(values)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise error(f"{where}: got both {new!r} and its deprecated name {old!r}")
            _warn_renamed(old)
            out[new] = out.pop(old)
    return out


_dataclass_init = Settings.__init__


@functools.wraps(_dataclass_init)
def _init(self: Settings, *args: Any, **kwargs: Any) -> None:
    _dataclass_init(self, *args, **_renamed(kwargs, "Settings()", TypeError))


Settings.__init__ = _init  # type: ignore[method-assign]  # old names still accepted


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _shown(name: str, value: object) -> str:
    """``value`` as an error message may show it: never a secret (only its type), a URL with
    its password hidden, anything else shortened."""
    if name in SECRETS:
        return f"{type(value).__name__} (value hidden)"
    if name == "url":
        if not isinstance(value, str):
            return f"{type(value).__name__} (value hidden: it may hold a password)"
        text = repr(redact_url(value))
    else:
        text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{type(value).__name__} {text}"


def _coerce(name: str, hint: Any, value: Any) -> Any:
    if typing.get_origin(hint) is tuple:  # a list of strings: "a, b" or any iterable of str
        items = value.split(",") if isinstance(value, str) else value
        try:
            out = tuple(str(item).strip() for item in items if str(item).strip())
        except TypeError:
            raise ConfigurationError(
                f"setting {name!r} expects a list of strings, got {type(value).__name__}"
            ) from None
        if any(not isinstance(item, str) for item in items):
            raise ConfigurationError(f"setting {name!r} expects a list of strings")
        return out
    args = typing.get_args(hint)
    optional = type(None) in args
    target = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"setting {name!r} cannot be None")
    if isinstance(value, str) and optional and value.strip().lower() in {"", "none", "null"}:
        return None
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(name)
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(name)
            if isinstance(value, str) and len(value.strip()) > 30:
                raise ValueError(name)  # no setting needs more digits; int() of 5,000 would fail
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError(name)
            if name in DURATIONS and isinstance(value, timedelta):
                return value  # converted to seconds, and checked, by Settings itself
            return float(value)
        if target is str:
            if not isinstance(value, str):
                raise ValueError(name)
            return value
    except (TypeError, ValueError, OverflowError):
        type_name = getattr(target, "__name__", str(target))
        raise ConfigurationError(
            f"setting {name!r} expects {type_name}, got {_shown(name, value)}"
        ) from None
    return value


def _check_types(s: Settings) -> None:
    """Every field holds its declared type: ``Settings(...)`` may be given anything."""
    hints = typing.get_type_hints(Settings)
    for f in fields(s):
        value = getattr(s, f.name)
        hint = hints[f.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) is tuple:
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(
                    f"setting {f.name!r} expects a tuple of strings, got {type(value).__name__}"
                )
            continue
        if value is None and type(None) in args:
            continue
        target = next((a for a in args if a is not type(None)), hint) if args else hint
        if target is bool:
            ok = isinstance(value, bool)
        elif target is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif target is float:
            ok = f.name in DURATIONS or (
                isinstance(value, numbers.Real) and not isinstance(value, bool)
            )
        else:
            ok = isinstance(value, str)
        if not ok:
            type_name = getattr(target, "__name__", str(target))
            raise ConfigurationError(
                f"setting {f.name!r} expects {type_name}, got {_shown(f.name, value)}"
            )


def _validate(s: Settings) -> None:
    for name in ("cache_jitter", "cache_early_refresh"):  # numbers, not durations
        value = getattr(s, name)
        if not 0 <= value < math.inf:  # NaN fails both comparisons
            raise ConfigurationError(
                f"setting {name!r} must be a finite number >= 0, got {value!r}"
            )
    for key, _ in parse_qsl(urlsplit(s.url).query, keep_blank_values=True):
        if key.lower() in _FORBIDDEN_QUERY:
            raise ConfigurationError(
                f"URL parameter {key!r} is not supported: redkit reads raw bytes from Redis"
            )
    scheme = s.scheme
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"unsupported URL scheme {scheme!r} in {redact_url(s.url)!r}; "
            f"use one of {', '.join(x + '://' for x in SCHEMES)}"
        )
    if not s.prefix or any(c in s.prefix for c in "{}*?[]:\\ \n\r\t"):
        raise ConfigurationError(
            "prefix must be non-empty, without ':', braces, glob characters or spaces (with "
            f"'app' and 'app:cache' as prefixes, one app's clear() would reach the other's "
            f"keys): {s.prefix!r}; use '-' or '.' to structure it"
        )
    for name in (
        "queue_max_stalled",
        "queue_events_maxlen",
        "queue_keep_completed",
        "queue_keep_failed",
    ):
        if getattr(s, name) < 0:
            raise ConfigurationError(f"setting {name!r} must be >= 0")
    if s.queue_max_bytes < 1024:
        raise ConfigurationError("setting 'queue_max_bytes' must be >= 1024 bytes")
    if s.queue_eviction_policy not in ("warn", "refuse", "ignore"):
        raise ConfigurationError(
            "setting 'queue_eviction_policy' must be 'warn', 'refuse' or 'ignore', "
            f"got {s.queue_eviction_policy!r}"
        )
    if s.stream_maxlen < 1:
        raise ConfigurationError("setting 'stream_maxlen' must be >= 1")
    for name in ("session_max_bytes", "idempotency_max_bytes"):
        if getattr(s, name) < 1024:
            raise ConfigurationError(f"setting {name!r} must be >= 1024 bytes")
    proxies: object = s.trusted_proxies  # a direct Settings(...) call may pass anything
    if not isinstance(proxies, tuple):
        raise ConfigurationError("setting 'trusted_proxies' must be a tuple of addresses")
    for proxy in s.trusted_proxies:
        if proxy == "unix":
            continue
        try:
            ipaddress.ip_network(proxy, strict=False)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"trusted_proxies: {proxy!r} is not an IP address or CIDR network"
            ) from None
    for name in ("ratelimit_default", "ratelimit_application"):
        text = getattr(s, name)
        if text is not None:
            from .errors import InvalidRateLimit
            from .ratelimit._limits import parse_limits  # here: the limiter imports settings

            try:
                parse_limits(text)
            except (InvalidRateLimit, TypeError) as exc:
                raise ConfigurationError(f"setting {name!r}: {exc}") from None
    if s.client_ip_header.lower() not in ("x-forwarded-for", "forwarded"):
        raise ConfigurationError(
            "setting 'client_ip_header' must be 'x-forwarded-for' or 'forwarded', "
            f"got {s.client_ip_header!r}"
        )
    for method in s.idempotency_methods:
        if method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
            raise ConfigurationError(
                f"setting 'idempotency_methods' takes POST, PUT, PATCH and DELETE, got {method!r}"
            )
    for header in s.cache_credential_headers:
        if not isinstance(header, str) or not _TOKEN.fullmatch(header):
            raise ConfigurationError(
                f"setting 'cache_credential_headers' takes header names, got {header!r}"
            )
    if not _TOKEN.fullmatch(s.idempotency_header):
        raise ConfigurationError(
            f"setting 'idempotency_header' is not a header name: {s.idempotency_header!r}"
        )
    if s.ratelimit_algorithm not in RATELIMIT_ALGORITHMS:
        raise ConfigurationError(
            f"unknown ratelimit_algorithm {s.ratelimit_algorithm!r}; use one of "
            + ", ".join(RATELIMIT_ALGORITHMS)
        )
    for name in ("max_connections", "max_key_length"):
        if getattr(s, name) < 1:
            raise ConfigurationError(f"setting {name!r} must be >= 1")
    if s.max_key_length < 64:
        raise ConfigurationError("setting 'max_key_length' must be >= 64 (room for the hash)")
    for name in ("retry_attempts", "breaker_threshold"):
        if getattr(s, name) < 0:
            raise ConfigurationError(f"setting {name!r} must be >= 0")
    if s.cache_jitter > 1:
        raise ConfigurationError("setting 'cache_jitter' is a fraction of the TTL: 0 to 1")
    if s.serializer not in SERIALIZERS:
        raise ConfigurationError(
            f"unknown serializer {s.serializer!r}; use one of {', '.join(SERIALIZERS)}"
        )
    if s.secret_key is not None and len(s.secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigurationError(
            f"setting 'secret_key' is too short ({len(s.secret_key)} characters): use at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters, such as secrets.token_hex(32)"
        )
    if s.serializer == "pickle" and not s.secret_key:
        raise ConfigurationError(
            "serializer 'pickle' requires secret_key: pickled payloads are HMAC-signed so that "
            "whoever can write to Redis cannot run code in your processes"
        )
    if s.ssl_cert_reqs not in SSL_CERT_REQS:
        raise ConfigurationError(f"ssl_cert_reqs must be one of {', '.join(SSL_CERT_REQS)}")
