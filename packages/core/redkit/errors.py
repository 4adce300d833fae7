"""The exceptions redkit raises.

Every error redkit raises is a :class:`RedkitError`. Errors coming from redis-py are wrapped, the
original kept as ``__cause__``, so callers never need to import redis-py's exception types.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "ConfigurationError",
    "InvalidKeyError",
    "MissingDependencyError",
    "RedkitConnectionError",
    "RedkitError",
    "RedkitTimeoutError",
    "ResponseError",
    "SerializationError",
    "SignatureError",
]


class RedkitError(Exception):
    """Base class of every error raised by redkit."""


class ConfigurationError(RedkitError, ValueError):
    """A setting or URL is invalid. Raised at construction time, never mid-request."""


class MissingDependencyError(RedkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f'{package} is required for this feature: pip install "redkit[{extra}]"')
        self.package = package
        self.extra = extra


class InvalidKeyError(RedkitError, ValueError):
    """A user-supplied key part is unusable (wrong type, empty, or over the length limit)."""


class SerializationError(RedkitError, TypeError):
    """A value could not be serialized or a stored payload could not be decoded."""


class SignatureError(SerializationError):
    """A signed payload (opt-in pickle) failed HMAC verification and was not unpickled."""


class RedkitConnectionError(RedkitError, ConnectionError):
    """Redis could not be reached (refused, reset, DNS, TLS handshake, ...)."""


class RedkitTimeoutError(RedkitConnectionError, TimeoutError):
    """A Redis call timed out. Treated like a connection failure by failure policies."""


class CircuitOpenError(RedkitConnectionError):
    """The circuit breaker is open: Redis failed repeatedly and calls fail fast until a probe
    succeeds. ``retry_after`` is the number of seconds until the next probe is allowed."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Redis is unavailable (circuit open; next probe in {retry_after:.2f}s)")
        self.retry_after = retry_after


class ResponseError(RedkitError):
    """Redis answered with an error (wrong type, script error, ACL denial, OOM, ...)."""
