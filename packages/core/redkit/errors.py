"""The exceptions redkit raises.

Errors coming from Redis or redis-py are wrapped in :class:`RedkitError` subclasses, the original
kept as ``__cause__``, so callers never need to import redis-py's exception types. Misuse of an API
(a negative TTL, a tag list that is a string) raises the usual ``ValueError`` / ``TypeError``;
redkit's own validation errors subclass those too (``InvalidKeyError`` is a ``ValueError``).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CircuitOpenError",
    "ClientClosedError",
    "ConfigurationError",
    "IdempotencyKeyError",
    "InvalidKeyError",
    "InvalidRateLimit",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "MissingDependencyError",
    "PayloadTooLarge",
    "PoolExhaustedError",
    "RedkitConnectionError",
    "RedkitError",
    "RedkitTimeoutError",
    "ResponseError",
    "ResponseTooLarge",
    "SerializationError",
    "SessionTooLarge",
    "SignatureError",
    "Unrecoverable",
    "UnsupportedServerError",
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
    """A user-supplied key part is unusable: of the wrong type, or empty. (Long parts are not
    rejected: they are hashed.)"""


class SerializationError(RedkitError, TypeError):
    """A value could not be serialized or a stored payload could not be decoded."""


class SignatureError(SerializationError):
    """A signed payload (opt-in pickle) failed HMAC verification and was not unpickled."""


class RedkitConnectionError(RedkitError, ConnectionError):
    """Redis could not be reached (refused, reset, DNS, TLS handshake, ...)."""


class RedkitTimeoutError(RedkitConnectionError, TimeoutError):
    """A Redis call timed out. Treated like a connection failure by failure policies."""


class ClientClosedError(RedkitError):
    """The client was closed (``close()``, ``aclose()`` or the end of its ``with`` block): it
    and every object it handed out (cache, queues, locks, limiter, pub/sub, streams, sessions,
    idempotency) refuse to be used instead of connecting again. Not a connection error, so no
    failure policy fails open on it. Make a new client instead."""


class CircuitOpenError(RedkitConnectionError):
    """The circuit breaker is open: Redis failed repeatedly and calls fail fast until a probe
    succeeds. ``retry_after`` is the number of seconds until the next probe is allowed."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Redis is unavailable (circuit open; next probe in {retry_after:.2f}s)")
        self.retry_after = retry_after


class PoolExhaustedError(RedkitConnectionError):
    """No pooled connection became free in time (``max_connections`` busy). Not an outage: it
    does not open the circuit breaker, but failure policies treat it like one (the cache fails
    open)."""


class AuthenticationError(RedkitError):
    """Redis refused the credentials (wrong password, unknown or disabled ACL user). A
    configuration problem, not an outage: the cache does not fail open on it and the circuit
    breaker ignores it."""


class UnsupportedServerError(RedkitError):
    """The Redis server is older than the oldest version redkit supports (Redis 7.0: its
    scripts use ``PEXPIRE ... GT`` and ``SET ... NX GET``). Raised at a connection's first
    handshake, before any command of redkit's reaches the server; the message names the
    server's version and the minimum. Not an outage: the circuit breaker ignores it."""


class ResponseError(RedkitError):
    """Redis answered with an error (wrong type, script error, ACL denial, OOM, ...)."""


class IdempotencyKeyError(InvalidKeyError):
    """An ``Idempotency-Key`` is malformed: empty, longer than 255 characters, or holding
    control characters or non-ASCII bytes. Adapters answer 400."""


class ResponseTooLarge(RedkitError, ValueError):
    """A response to store for idempotent replay exceeds ``idempotency_max_bytes``."""


class SessionTooLarge(RedkitError, ValueError):
    """A session save would exceed ``session_max_bytes``; nothing was written."""


class InvalidRateLimit(RedkitError, ValueError):
    """A rate limit string (``"100/minute"``) or its numbers could not be understood."""


class LockError(RedkitError):
    """Base class of the lock errors."""


class LockNotAcquired(LockError):
    """A lock was held by someone else for longer than ``timeout`` (or at once, when
    not blocking)."""


class LockLost(LockError):
    """The lock is no longer ours: it expired (and maybe someone else took it) before we released
    or extended it. Work done under it may have overlapped another holder's."""


class PayloadTooLarge(RedkitError, ValueError):
    """A job's data, result or progress value is larger than ``queue_max_bytes``."""


class JobError(RedkitError):
    """Base class of the job queue's errors about one job."""


class JobNotFound(JobError, LookupError):
    """No job with this id exists in the queue (never added, or deleted by retention)."""


class JobFailed(JobError):
    """``job.wait()``: the job ended in ``failed``; ``reason`` is its last error."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class JobCancelled(JobFailed):
    """``job.wait()``: the job was cancelled (``job.cancel()``); ``reason`` is the cancel's."""


class JobTimeout(JobError, TimeoutError):
    """A task ran longer than its job's ``timeout``, or ``job.wait()`` gave up waiting."""


class Unrecoverable(Exception):
    """Raise it from a task to fail the job at once, with no retry left (it is not a
    ``RedkitError``: task code raises it, redkit does not)."""
