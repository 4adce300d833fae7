"""One frozen settings object holding every redkit option, with its documented default.

Settings come from keyword arguments (:meth:`Settings.from_url`), a mapping such as a framework's
config (:meth:`Settings.from_mapping`, case-insensitive keys, string values coerced), or the
environment (:meth:`Settings.from_env`). Invalid values raise
:class:`~redkit.errors.ConfigurationError` at construction, so a typo never surfaces as a failure in
the middle of a request.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from . import _settings_check as check
from ._settings_check import DURATIONS as DURATIONS
from ._settings_check import MIN_SECRET_KEY_LENGTH as MIN_SECRET_KEY_LENGTH
from ._settings_check import RATELIMIT_ALGORITHMS as RATELIMIT_ALGORITHMS
from ._settings_check import SCHEMES as SCHEMES
from ._settings_check import SECRETS as SECRETS
from ._settings_check import SERIALIZERS as SERIALIZERS
from ._settings_check import SSL_CERT_REQS as SSL_CERT_REQS
from ._settings_check import redact_url as redact_url
from .errors import ConfigurationError

__all__ = ["DEFAULT_URL", "SCHEMES", "Settings", "redact_url"]

DEFAULT_URL = "memory://"

RENAMED = {"cache_lock_wait": "cache_lock_timeout", "idempotency_wait": "idempotency_timeout"}
"""Deprecated setting names and their new names: still accepted, with a ``DeprecationWarning``."""


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
    username: str | None = field(default=None, repr=False)
    """ACL user name (overrides one given in the URL). Never shown in ``repr`` or errors."""
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
    idempotency_max_body: int = 1024 * 1024
    """Largest request body the Starlette adapter reads for an idempotency key's fingerprint
    (a larger one is answered ``413``); Flask and Django apply their own request limits."""
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
    """Lifetime of an active job's lock. The worker renews it every sixth of this; a job whose
    lock expires (its worker died or froze) is stalled and goes back to the queue."""
    queue_max_logs: int = 1_000
    """How many lines of ``current_job().log(...)`` a job keeps (the latest ones)."""
    queue_metrics_minutes: int = 1_440
    """Minutes of per-minute job counts each queue keeps in Redis for ``q.metrics()`` (a day;
    0: the workers keep no metrics). Wait and run time histograms cover the last 60 minutes."""
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
        check.check(self)

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
        """Return a copy with ``changes`` applied (validated like the original).
        ``dataclasses.replace`` works too, deprecated names included."""
        changes = _renamed(changes, "replace()", TypeError)
        return Settings.from_mapping({**_as_dict(self), **changes})

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **options: Any) -> Settings:
        """Settings for ``url``; query parameters naming a setting (``?prefix=shop``) apply too,
        and keyword ``options`` win over both."""
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url must be a non-empty string")
        query, clean = check.split_query(url, _names(cls))
        return cls.from_mapping(
            {**_source(query, "the URL query"), **_source(options, "options"), "url": clean}
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Settings from a mapping with case-insensitive keys (``{"URL": ..., "PREFIX": ...}``);
        string values are coerced to each field's type. Unknown keys are an error."""
        hints = check.hints(cls)
        values: dict[str, Any] = {}
        for key, raw in _source(mapping, "settings").items():
            if key not in hints:
                raise ConfigurationError(
                    f"unknown redkit setting {key!r}; known settings: {', '.join(sorted(hints))}"
                )
            values[key] = check.coerce(key, hints[key], raw)
        return cls(**values)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], prefix: str = "REDKIT_", **options: Any
    ) -> Settings:
        """Settings from a framework's flat config (Flask's ``app.config``): every
        ``<prefix><SETTING>`` key (``REDKIT_URL``, ``REDKIT_CACHE_TTL``, ...), then ``options``
        over them. Other keys are ignored; an unknown ``<prefix>`` key or option is a
        ``ConfigurationError`` (a typo would otherwise pass unnoticed)."""
        names = _names(cls)
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
        merged = {**_source(values, "the config"), **_source(options, "options")}
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
        names = _names(cls) - {"url"}
        from_env = {
            k[len("REDKIT_") :].lower(): v
            for k, v in env.items()
            if k.startswith("REDKIT_") and k[len("REDKIT_") :].lower() in names
        }
        merged = {**_source(from_env, "the environment"), **_source(options, "options")}
        return cls.from_url(url, **merged)


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def _names(cls: type[Settings]) -> set[str]:
    return {f.name for f in fields(cls)} | set(RENAMED)


# frames a warning is not attributed to: redkit's own, and the standard library's replace()
_INTERNAL = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    dataclasses.__file__,
    copy.__file__,
)


def _warn_renamed(old: str) -> None:
    new = RENAMED[old]
    frame, level = sys._getframe(1), 2  # stacklevel 2 is the frame that called this function
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(
        f"setting {old!r} (REDKIT_{old.upper()}) is deprecated, use {new!r} "
        f"(REDKIT_{new.upper()}): same meaning",
        DeprecationWarning,
        stacklevel=level,
    )


def _renamed(
    values: dict[str, Any], where: str, error: type[Exception], *, replacing: bool = False
) -> dict[str, Any]:
    """``values`` with deprecated setting names replaced by the new ones (warning once per
    name); both names at once raise ``error``, unless ``replacing`` (``dataclasses.replace``
    passes every field: the old name is then the change asked for)."""
    if not any(old in values for old in RENAMED):
        return values
    out = dict(values)
    for old, new in RENAMED.items():
        if old in out:
            if new in out and not replacing:
                raise error(f"{where}: got both {new!r} and its deprecated name {old!r}")
            _warn_renamed(old)
            out[new] = out.pop(old)
    return out


def _source(values: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """The settings given by one source (the environment, a config, a URL's query, keyword
    options), keys lower-cased and deprecated names replaced: both names in one source are an
    error, while a higher source's new name simply wins over a lower one's old name."""
    return _renamed({str(k).lower(): v for k, v in values.items()}, where, ConfigurationError)


_dataclass_init = Settings.__init__


@functools.wraps(_dataclass_init)
def _init(self: Settings, *args: Any, **kwargs: Any) -> None:
    caller = sys._getframe(1).f_code.co_filename
    replacing = caller == dataclasses.__file__  # replace() fills in every other field
    _dataclass_init(self, *args, **_renamed(kwargs, "Settings()", TypeError, replacing=replacing))


Settings.__init__ = _init  # type: ignore[method-assign]  # old names still accepted
