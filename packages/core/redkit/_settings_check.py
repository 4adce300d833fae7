"""Checks behind :class:`~redkit.settings.Settings`: strings coerced to each field's type, every
field's type, range and text, and the URL's shape.

Every wrong value raises :class:`~redkit.errors.ConfigurationError` naming the setting; a secret
is described by its type only and a URL is shown with its credentials replaced by ``***``.
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import re
import typing
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import _durations as durations
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .settings import Settings

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "memory")
NETWORK_SCHEMES = frozenset({"redis", "rediss", "redis+sentinel", "redis+cluster"})
SERIALIZERS = ("json", "msgpack", "pickle")
SSL_CERT_REQS = ("required", "optional", "none")
RATELIMIT_ALGORITHMS = (
    "fixed_window",
    "sliding_window_log",
    "sliding_window_counter",
    "token_bucket",
    "gcra",
)
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

INT64_MAX = 2**63 - 1
"""The largest integer Redis takes (a signed 64-bit number)."""
MAX_VALUE_BYTES = 512 * 1024 * 1024
"""The largest string Redis stores (512 MiB): no size setting can usefully exceed it."""
_MAX_QUEUE_EVENTS = 10**9  # as kit.queue(events=) takes
_MAX_KEPT_JOBS = 2**40  # as Keep(completed=, failed=) takes

INT_RANGES: dict[str, tuple[int, int]] = {
    "max_connections": (1, INT64_MAX),
    "retry_attempts": (0, INT64_MAX),
    "breaker_threshold": (0, INT64_MAX),
    "max_key_length": (64, MAX_VALUE_BYTES),
    "session_max_bytes": (1024, MAX_VALUE_BYTES),
    "idempotency_max_bytes": (1024, MAX_VALUE_BYTES),
    "idempotency_max_body": (1024, MAX_VALUE_BYTES),
    "stream_maxlen": (1, INT64_MAX),
    "queue_max_bytes": (1024, MAX_VALUE_BYTES),
    "queue_max_stalled": (0, _MAX_QUEUE_EVENTS),
    "queue_max_logs": (1, 10**6),
    "queue_metrics_minutes": (0, 10 * 366 * 1440),
    "queue_events_maxlen": (0, _MAX_QUEUE_EVENTS),
    "queue_keep_completed": (0, _MAX_KEPT_JOBS),
    "queue_keep_failed": (0, _MAX_KEPT_JOBS),
}
"""Every int setting with its smallest and largest value."""

_FORBIDDEN_QUERY = {"decode_responses", "encoding", "encoding_errors", "protocol"}
_SECRET_QUERY = re.compile(  # a parameter naming a secret, its "?", "&" and "=" maybe %-escaped
    r"(?i)((?:[?&]|%3F|%26)[^=&#]*?(?:password|passwd|secret|token|user|auth)[^=&#]*?(?:=|%3D))"
    r"[^&#]*"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?://)?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_INT_TEXT = 30  # digits in a string for an int setting: 2**63 has 19
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs, reprs and errors).

    Works on the raw text, so that a password holding unencoded ``/``, ``?``, ``#`` or ``@`` is
    hidden too: everything between the scheme (``redis://``) and the last ``@`` is credentials,
    of which only a plain user name is kept.
    """
    scheme = _SCHEME.match(url)
    head, rest = (scheme.group(), url[scheme.end() :]) if scheme else ("", url)
    if "@" in rest:
        userinfo, _, hostinfo = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        shown_user = user if colon and not any(c in user for c in "/?#@") else ""
        rest = f"{shown_user}:***@{hostinfo}"
    return head + _SECRET_QUERY.sub(r"\1***", rest)


def shown(name: str, value: object) -> str:
    """``value`` as an error message may show it: never a secret (only its type), a URL with
    its password hidden, a huge number by its size, anything else shortened."""
    kind = type(value).__name__
    if name in SECRETS:
        return f"{kind} (value hidden)"
    if name == "url":
        if not isinstance(value, str):
            return f"{kind} (value hidden: it may hold a password)"
        value = redact_url(value)
    return f"{kind} {brief(value)}"


def brief(value: object) -> str:
    """``repr(value)`` cut to 80 characters; a huge number by its size."""
    if isinstance(value, str):  # a mistyped URL query ("?ttl=1?password=...") may end up here
        value = _SECRET_QUERY.sub(r"\1***", value)
    if isinstance(value, int) and abs(value) > 10**40:  # repr() of 4,300+ digits raises
        return "of more than 40 digits"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__, or a container holding a huge int
        return "(value not shown)"
    return text if len(text) <= 80 else text[:77] + "..."


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """The type of every field of ``cls`` (evaluated once: it costs more than a whole check)."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def _target(hint: Any) -> tuple[Any, bool]:
    """The type a field holds and whether it may be ``None``."""
    args = typing.get_args(hint)
    target = next((a for a in args if a is not type(None)), hint) if args else hint
    return target, type(None) in args


def coerce(name: str, hint: Any, value: Any) -> Any:
    """``value`` (from a mapping, the environment or a URL) as the type of setting ``name``:
    strings are parsed; anything else is left to :func:`check`."""
    if typing.get_origin(hint) is tuple:  # a list of strings: "a, b" or any iterable of str
        if isinstance(value, str):
            items: list[Any] = value.split(",")
        elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray, Mapping)):
            items = list(value)
        else:
            raise ConfigurationError(
                f"setting {name!r} expects a list of strings, got {shown(name, value)}"
            )
        if any(not isinstance(item, str) for item in items):
            raise ConfigurationError(f"setting {name!r} expects a list of strings")
        return tuple(item.strip() for item in items if item.strip())
    target, optional = _target(hint)
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"setting {name!r} cannot be None")
    if isinstance(value, str) and optional and value.strip().lower() in {"", "none", "null"}:
        return None
    try:
        return _parse(name, target, value)
    except OverflowError:
        raise ConfigurationError(
            f"setting {name!r} is out of range: {shown(name, value)}"
        ) from None
    except (TypeError, ValueError):
        type_name = getattr(target, "__name__", str(target))
        raise ConfigurationError(
            f"setting {name!r} expects {type_name}, got {shown(name, value)}"
        ) from None


def _parse(name: str, target: Any, value: Any) -> Any:
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = value.strip().lower() if isinstance(value, str) else ""
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(name)
    if target is int:
        if isinstance(value, bool):
            raise ValueError(name)
        if isinstance(value, str):
            if len(value.strip()) > _MAX_INT_TEXT:
                raise OverflowError(name)  # int() of 4,300+ digits would raise a ValueError
            return int(value)
        if isinstance(value, float) and value.is_integer():  # NaN and infinities are not
            return int(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        raise ValueError(name)
    if target is float:
        if isinstance(value, bool):
            raise ValueError(name)
        if name in DURATIONS and isinstance(value, timedelta):
            return value  # converted to seconds, and checked, by Settings itself
        return float(value)
    if target is str and not isinstance(value, str):
        raise ValueError(name)
    return value


def check(s: Settings) -> None:
    """Check every field of ``s`` (``Settings(...)`` may be given anything) and hold its
    durations as seconds."""
    for name, hint in hints(type(s)).items():
        _check_type(name, hint, getattr(s, name))
    for name, zero in DURATIONS.items():
        value = getattr(s, name)
        if value is None and name == "cache_negative_ttl":
            continue
        try:
            secs = durations.seconds(f"setting {name!r}", value, zero=zero)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        object.__setattr__(s, name, secs)  # a timedelta is held as seconds
    for name, (low, high) in INT_RANGES.items():
        value = getattr(s, name)
        if not low <= value <= high:
            raise ConfigurationError(
                f"setting {name!r} must be at least {low} and at most {high}, "
                f"got {shown(name, value)}"
            )
    for name in ("cache_jitter", "cache_early_refresh"):  # numbers, not durations
        value = getattr(s, name)
        if not 0 <= value < math.inf:  # NaN fails both comparisons
            raise ConfigurationError(
                f"setting {name!r} must be a finite number >= 0, got {shown(name, value)}"
            )
        try:
            object.__setattr__(s, name, float(value))
        except OverflowError:
            raise ConfigurationError(
                f"setting {name!r} is too large: {shown(name, value)}"
            ) from None
    check_url(s.url)
    _check_choices(s)
    _check_web(s)


def _check_type(name: str, hint: Any, value: object) -> None:
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(
                f"setting {name!r} expects a tuple of strings, got {type(value).__name__}"
            )
        for item in value:
            check_text(name, item)
        return
    target, optional = _target(hint)
    if value is None and optional:
        return
    if target is bool:
        ok = isinstance(value, bool)
    elif target is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif target is float:
        ok = name in DURATIONS or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    else:
        ok = isinstance(value, str)
    if not ok:
        type_name = getattr(target, "__name__", str(target))
        raise ConfigurationError(f"setting {name!r} expects {type_name}, got {shown(name, value)}")
    if isinstance(value, str):
        check_text(name, value)


def check_text(name: str, value: str) -> None:
    """``value`` of setting ``name`` can be sent to Redis: it encodes as UTF-8 (a lone
    surrogate, from a badly decoded file name or environment, does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        detail = "" if name in SECRETS else f": {shown(name, value)}"
        raise ConfigurationError(
            f"setting {name!r} holds a lone surrogate, which cannot be encoded as UTF-8{detail}"
        ) from None


def check_url(url: str) -> None:
    """The URL parses, its scheme is known, its ports are numbers and its query sets nothing
    that would break decoding."""
    try:
        parts = urlsplit(url)
    except ValueError:  # urllib's message may quote a piece of the password
        raise ConfigurationError(
            f"setting 'url' is not a valid URL (unbalanced '[' or ']'?): {brief(redact_url(url))}; "
            "percent-encode any such character in the password"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"unsupported URL scheme {scheme!r} in {brief(redact_url(url))}; "
            f"use one of {', '.join(x + '://' for x in SCHEMES)}"
        )
    if scheme in NETWORK_SCHEMES:
        _check_hosts(scheme, url)
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _FORBIDDEN_QUERY:
            raise ConfigurationError(
                f"URL parameter {brief(key)} is not supported: redkit reads raw bytes from Redis"
            )


def _check_hosts(scheme: str, url: str) -> None:
    # the hosts as the raw text has them: the credentials end at the last "@"
    _, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"setting 'url' must start with '{scheme}://': {brief(redact_url(url))}"
        )
    hostinfo = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    for host in hostinfo.split(","):
        name, port = host, ""
        if host.startswith("["):
            name, bracket, port = host.partition("]")
            if not bracket or (port and not port.startswith(":")):
                raise ConfigurationError(
                    f"setting 'url' has a malformed host: {brief(redact_url(url))}"
                )
            port = port[1:]
        elif ":" in host:
            name, _, port = host.rpartition(":")
        if "[" in name[1:] or "]" in name:
            raise ConfigurationError(
                f"setting 'url' has a malformed host: {brief(redact_url(url))}"
            )
        if port and not (_PORT.fullmatch(port) and 0 < int(port) <= 65535):
            raise ConfigurationError(
                f"setting 'url' needs a port from 1 to 65535: {brief(redact_url(url))}"
            )


def split_query(url: str, names: set[str]) -> tuple[dict[str, str], str]:
    """The settings named in ``url``'s query (keys lower-cased) and the URL without them."""
    check_text("url", url)  # before the rest of the query is encoded again
    # the query starts after the credentials: a password may hold an unencoded "?"
    qpos = url.find("?", url.rfind("@") + 1)
    base, query = (url, "") if qpos < 0 else (url[:qpos], url[qpos + 1 :])
    found: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:  # "%ff" would become U+FFFD: a password silently changed
        raise ConfigurationError(
            "setting 'url': its query holds a %-escape that is not UTF-8 (query not shown)"
        ) from None
    for key, value in pairs:
        if key.lower() in names and key.lower() != "url":
            found[key.lower()] = value
        else:
            kept.append((key, value))
    return found, f"{base}?{urlencode(kept)}" if kept else base


def _check_choices(s: Settings) -> None:
    if not s.prefix or any(c in s.prefix for c in "{}*?[]:\\ \n\r\t"):
        raise ConfigurationError(
            "prefix must be non-empty, without ':', braces, glob characters or spaces (with "
            f"'app' and 'app:cache' as prefixes, one app's clear() would reach the other's "
            f"keys): {brief(s.prefix)}; use '-' or '.' to structure it"
        )
    if s.queue_eviction_policy not in ("warn", "refuse", "ignore"):
        raise ConfigurationError(
            "setting 'queue_eviction_policy' must be 'warn', 'refuse' or 'ignore', "
            f"got {brief(s.queue_eviction_policy)}"
        )
    if s.ratelimit_algorithm not in RATELIMIT_ALGORITHMS:
        raise ConfigurationError(
            f"unknown ratelimit_algorithm {brief(s.ratelimit_algorithm)}; use one of "
            + ", ".join(RATELIMIT_ALGORITHMS)
        )
    if s.cache_jitter > 1:
        raise ConfigurationError("setting 'cache_jitter' is a fraction of the TTL: 0 to 1")
    if s.serializer not in SERIALIZERS:
        raise ConfigurationError(
            f"unknown serializer {brief(s.serializer)}; use one of {', '.join(SERIALIZERS)}"
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


def _check_web(s: Settings) -> None:
    for proxy in s.trusted_proxies:
        if proxy == "unix":
            continue
        try:
            ipaddress.ip_network(proxy, strict=False)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"trusted_proxies: {brief(proxy)} is not an IP address or CIDR network"
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
            f"got {brief(s.client_ip_header)}"
        )
    for method in s.idempotency_methods:
        if method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
            raise ConfigurationError(
                "setting 'idempotency_methods' takes POST, PUT, PATCH and DELETE, "
                f"got {brief(method)}"
            )
    for header in s.cache_credential_headers:
        if not _TOKEN.fullmatch(header):
            raise ConfigurationError(
                f"setting 'cache_credential_headers' takes header names, got {brief(header)}"
            )
    if not _TOKEN.fullmatch(s.idempotency_header):
        raise ConfigurationError(
            f"setting 'idempotency_header' is not a header name: {brief(s.idempotency_header)}"
        )
