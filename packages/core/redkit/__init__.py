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
    LockError,
    LockLost,
    LockNotAcquired,
    MissingDependencyError,
    PoolExhaustedError,
    RedkitConnectionError,
    RedkitError,
    RedkitTimeoutError,
    ResponseError,
    ResponseTooLarge,
    SerializationError,
    SessionTooLarge,
    SignatureError,
)
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CircuitOpenError",
    "ConfigurationError",
    "IdempotencyKeyError",
    "InvalidKeyError",
    "InvalidRateLimit",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "MissingDependencyError",
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
    "__version__",
]
