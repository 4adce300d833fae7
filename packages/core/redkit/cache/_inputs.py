"""Checks of the cache's arguments, made before anything is sent (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .. import _durations as durations
from .._checks import shown
from .._keys import _to_bytes
from ..errors import InvalidKeyError

__all__ = ["key_list", "seconds", "show", "strength", "tags"]


def seconds(name: str, value: object, default: float, allow_zero: bool = False) -> float:
    if value is None:  # settings were validated once, at construction
        return default
    if type(value) is float or type(value) is int:  # the common case, without the general path
        number: float = value
        if 0 < number <= durations.MAX_SECONDS:  # NaN fails
            return float(number)
    return durations.seconds(name, value, zero=allow_zero)


def strength(value: object, default: float) -> float:
    """``early_refresh``: XFetch's ``beta``, a finite number >= 0 (not a duration)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"early_refresh must be a number, not {type(value).__name__}")
    try:
        beta = float(value)
    except OverflowError:  # an int past the float range
        beta = math.inf
    if not 0 <= beta < math.inf:  # NaN fails both comparisons
        raise ValueError(f"early_refresh must be a finite number >= 0, got {show(value)}")
    return beta


def tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """``tags`` checked before anything is sent: a list (any iterable but a bare string) of
    non-empty str that UTF-8 can encode (a lone surrogate cannot be stored in an entry)."""
    if tags is None:
        return ()
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be a list of strings, not a single string")
    try:
        out = tuple(dict.fromkeys(tags))
    except TypeError:
        raise TypeError(f"tags must be a list of strings, not {type(tags).__name__}") from None
    for t in out:
        if not isinstance(t, str) or not t:
            raise InvalidKeyError(f"tags must be non-empty strings, got {show(t)}")
        try:
            t.encode()
        except UnicodeEncodeError:
            raise InvalidKeyError(
                f"tags must be valid text: {show(t)} holds a lone surrogate"
            ) from None
    return out


def show(value: object) -> str:
    """``value`` for a message (cut short; an int too long to print is described)."""
    return shown(value)


def key_list(keys: Iterable[object]) -> list[object]:
    """``keys`` as a list, each key checked (a list as a key is an ``InvalidKeyError``, not
    "unhashable type")."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be a list of keys, not a single key")
    try:
        out = list(keys)
    except TypeError:
        raise TypeError(f"keys must be a list of keys, not {type(keys).__name__}") from None
    for key in out:
        if type(key) is not str:  # a str is always a key (empty ones are refused when escaped)
            _to_bytes(key)  # raises InvalidKeyError for what cannot be a key
    return list(dict.fromkeys(out))
