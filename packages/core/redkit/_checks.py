"""Checks of arguments that go to Redis as they are: 64-bit ints, stream entry ids, text.

Redis reads an integer argument as a signed 64-bit number, and an entry id as two unsigned
64-bit numbers; a larger Python int is an error from Redis at best (and has crashed protocol
parsers), and one of more than 4,300 digits cannot even be turned into text. A str holding a
lone surrogate cannot be encoded as UTF-8. Each check raises ``TypeError`` or ``ValueError``
naming the parameter before anything is sent; :func:`shown` puts any value in a message safely.
"""

from __future__ import annotations

import re

__all__ = ["INT64_MAX", "INT64_MIN", "entry_id", "int64", "shown", "text"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?\Z")


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages. An int too long to print (or
    anything whose repr fails that way) is described instead of shown."""
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        return "an int wider than 64 bits"
    try:
        text = repr(value)
    except ValueError:  # a container holding an int of more than 4,300 digits
        return f"a {type(value).__name__} holding an int too long to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def int64(name: str, value: object, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """``value`` as an int from ``low`` to ``high`` (by default the signed 64-bit range); an int
    subclass (``IntEnum``) gives its plain value, a bool is refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(
            f"{name} must be an int from {_bound(low)} to {_bound(high)}, got {shown(number)}"
        )
    return number


def _bound(n: int) -> str:
    named = {INT64_MIN: "-2**63", INT64_MAX: "2**63 - 1"}
    return named.get(n, str(n))


def entry_id(name: str, value: object, *, special: tuple[str, ...] = ()) -> str:
    """A stream entry id (``"1700000000000-0"`` or ``"1700000000000"``), each part within
    Redis' unsigned 64-bit range, or one of ``special`` (``"$"``, ...)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a stream entry id (a str), not {type(value).__name__}")
    if value in special:
        return value
    match = _ID.match(value)
    if match is None or any(int(p) > _UINT64_MAX for p in match.groups("0")):
        raise ValueError(
            f"{name} must be a stream entry id (like '1700000000000-0', each part below 2**64)"
            f", got {shown(value)}"
        )
    return value


def text(name: str, value: object) -> str:
    """``value`` as a str that UTF-8 can encode (no lone surrogate)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid text (it holds a lone surrogate)") from None
    return value
