"""redkit: a Redis toolkit for Flask, Django and Starlette/FastAPI.

``from redkit import Redkit`` for blocking code, ``from redkit.asyncio import Redkit`` for asyncio.
"""

from __future__ import annotations

from .client import Redkit
from .errors import (
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    InvalidKeyError,
    MissingDependencyError,
    PoolExhaustedError,
    RedkitConnectionError,
    RedkitError,
    RedkitTimeoutError,
    ResponseError,
    SerializationError,
    SignatureError,
)
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CircuitOpenError",
    "ConfigurationError",
    "InvalidKeyError",
    "MissingDependencyError",
    "PoolExhaustedError",
    "Redkit",
    "RedkitConnectionError",
    "RedkitError",
    "RedkitTimeoutError",
    "ResponseError",
    "SerializationError",
    "Settings",
    "SignatureError",
    "__version__",
]
