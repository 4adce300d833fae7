"""redkit: a Redis toolkit for Flask, Django and Starlette/FastAPI.

``from redkit import Redkit`` for blocking code; ``from redkit import AsyncRedkit`` (the same
class as ``redkit.asyncio.Redkit``) for asyncio. Every public name lives in a module without a
leading underscore; modules and names with one are internals and may change in any release.
"""

from __future__ import annotations

from ._client import Redkit
from .asyncio import Redkit as AsyncRedkit
from .cache import AsyncCache, AsyncCachedFunction, Cache, CachedFunction
from .errors import (
    AuthenticationError,
    CircuitOpenError,
    ClientClosedError,
    ConfigurationError,
    IdempotencyKeyError,
    InvalidKeyError,
    InvalidRateLimit,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LockError,
    LockLost,
    LockNotAcquired,
    MissingDependencyError,
    PayloadTooLarge,
    PoolExhaustedError,
    RedkitConnectionError,
    RedkitError,
    RedkitTimeoutError,
    ResponseError,
    ResponseTooLarge,
    SerializationError,
    SessionTooLarge,
    SignatureError,
    Unrecoverable,
    UnsupportedServerError,
)
from .idempotency import AsyncIdempotency, Idempotency
from .lock import AsyncLock, Lock
from .messaging import AsyncPubSub, AsyncStream, PubSub, Stream
from .queue import (
    AsyncJob,
    AsyncQueue,
    AsyncTask,
    Backoff,
    Dedup,
    Job,
    Keep,
    Queue,
    Task,
    Worker,
)
from .ratelimit import AsyncLimiter, Limit, Limiter
from .sessions import AsyncSessions, Sessions
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AsyncCache",
    "AsyncCachedFunction",
    "AsyncIdempotency",
    "AsyncJob",
    "AsyncLimiter",
    "AsyncLock",
    "AsyncPubSub",
    "AsyncQueue",
    "AsyncRedkit",
    "AsyncSessions",
    "AsyncStream",
    "AsyncTask",
    "AuthenticationError",
    "Backoff",
    "Cache",
    "CachedFunction",
    "CircuitOpenError",
    "ClientClosedError",
    "ConfigurationError",
    "Dedup",
    "Idempotency",
    "IdempotencyKeyError",
    "InvalidKeyError",
    "InvalidRateLimit",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "Keep",
    "Limit",
    "Limiter",
    "Lock",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "MissingDependencyError",
    "PayloadTooLarge",
    "PoolExhaustedError",
    "PubSub",
    "Queue",
    "Redkit",
    "RedkitConnectionError",
    "RedkitError",
    "RedkitTimeoutError",
    "ResponseError",
    "ResponseTooLarge",
    "SerializationError",
    "SessionTooLarge",
    "Sessions",
    "Settings",
    "SignatureError",
    "Stream",
    "Task",
    "Unrecoverable",
    "UnsupportedServerError",
    "Worker",
    "__version__",
]
