"""redkit: a Redis toolkit for Flask, Django and Starlette/FastAPI.

``from redkit import Redkit`` for blocking code, ``from redkit.asyncio import Redkit`` for asyncio.
"""

from __future__ import annotations

from .client import Redkit
from .errors import (
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    IdempotencyKeyError,
    InvalidKeyError,
    InvalidRateLimit,
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
)
from .queue import Backoff, Keep
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Backoff",
    "CircuitOpenError",
    "ConfigurationError",
    "IdempotencyKeyError",
    "InvalidKeyError",
    "InvalidRateLimit",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "Keep",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "MissingDependencyError",
    "PayloadTooLarge",
    "PoolExhaustedError",
    "Redkit",
    "RedkitConnectionError",
    "RedkitError",
    "RedkitTimeoutError",
    "ResponseError",
    "ResponseTooLarge",
    "SerializationError",
    "SessionTooLarge",
    "Settings",
    "SignatureError",
    "Unrecoverable",
    "__version__",
]
