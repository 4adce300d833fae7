"""What pub/sub and streams share: the logger, channel names, JSON payloads."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions as rex

from ..errors import SerializationError
from ..serializers import JsonSerializer, find_unserializable

log = logging.getLogger("redkit.messaging")

Channel = str | bytes | int
"""A channel name or pattern as given by the caller."""

_JSON = JsonSerializer()
_IO_ERRORS = (rex.RedisError, OSError)


def _encode(value: Any, what: str) -> bytes:
    """Strict JSON, with an error naming the offending part (``message['at'] is a datetime``)."""
    try:
        return _JSON.dumps(value)
    except SerializationError:
        where = find_unserializable(value, what) or f"{what} could not be encoded as JSON"
        raise SerializationError(
            f"cannot send the {what}: {where}. Messages are JSON: dicts with str keys, lists, "
            "str, int, float, bool and None"
        ) from None


def _decode(payload: bytes) -> tuple[Any, bool]:
    """``(value, False)``, or ``(payload, True)`` when the payload is not JSON."""
    try:
        return _JSON.loads(payload), False
    except SerializationError:
        return payload, True
