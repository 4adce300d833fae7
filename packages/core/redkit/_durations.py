"""Durations: the one validator every duration parameter and setting goes through.

A duration is a number of seconds (``int`` or ``float``, any real number but ``bool``) or a
:class:`datetime.timedelta`. NaN, infinities, negative durations, durations longer than
:data:`MAX_SECONDS` and bools raise ``ValueError``; zero does too where zero would mean nothing
(a key living 0 seconds). Any other type raises ``TypeError``. Every message names the parameter.

Rounding: Redis takes whole milliseconds, and seconds become milliseconds by rounding **up** to the
next whole millisecond (float noise below a nanosecond is dropped first, so ``0.3`` is 300 ms, not
301). A positive duration therefore never becomes 0 ms, and nothing expires or gives up earlier
than it was asked to: ``0.0001`` is 1 ms, ``1.0005`` is 1001 ms, ``timedelta(microseconds=1)`` is
1 ms. Zero, where it is allowed, stays 0.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from datetime import timedelta
from typing import Any, TypeAlias

__all__ = [
    "MAX_SECONDS",
    "NOT_GIVEN",
    "Duration",
    "optional_seconds",
    "renamed",
    "seconds",
    "to_ms",
    "warn_deprecated",
]

Duration: TypeAlias = "float | timedelta"
"""What a duration parameter accepts: seconds (int or float) or a ``timedelta``."""

MAX_SECONDS = 100 * 365 * 86400
"""The longest duration accepted (100 years): longer ones are mistakes, and Redis refuses
expiry times past its 64-bit millisecond range."""


class _NotGiven:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()
"""Default of a deprecated parameter: tells "not passed" from any value, None included."""

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_WHAT = "a number of seconds or a timedelta"


def seconds(name: str, value: object, *, zero: bool = False, maximum: float = MAX_SECONDS) -> float:
    """``value`` as seconds (a float), validated as described in the module docstring.

    ``name`` is the parameter named in errors; ``zero`` allows 0; ``maximum`` lowers the bound.
    """
    if isinstance(value, timedelta):
        number: Any = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{name} must be {_WHAT}, not a bool ({value!r})")
    elif isinstance(value, numbers.Real):
        number = value
    else:
        raise TypeError(f"{name} must be {_WHAT}, not {type(value).__name__}")
    if number != number:  # NaN, of any real type
        raise ValueError(f"{name} must be {_WHAT}, got NaN")
    if number in (math.inf, -math.inf):
        raise ValueError(f"{name} must be a finite duration, got {_show(value)}")
    if number < 0 or (number == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a duration {bound}, got {_show(value)}")
    if number > maximum:  # compared before float(): an int too large for a float is fine here
        raise ValueError(
            f"{name} must be at most {maximum:g} seconds ({_human(maximum)}), got {_show(value)}"
        )
    return float(number)


def optional_seconds(
    name: str, value: object, *, zero: bool = False, maximum: float = MAX_SECONDS
) -> float | None:
    """Like :func:`seconds`, with ``None`` passed through (a default, or "no limit")."""
    if value is None:
        return None
    return seconds(name, value, zero=zero, maximum=maximum)


def to_ms(secs: float) -> int:
    """Whole milliseconds of ``secs`` (already validated), rounded up: see the module docstring."""
    return math.ceil(round(secs * 1000, 6))


def renamed(
    where: str,
    new: str,
    new_value: Any,
    old: str,
    old_value: Any,
    *,
    default: Any = None,
) -> Any:
    """The value of parameter ``new`` of ``where`` when its deprecated name ``old`` may have
    been used: ``old_value`` (with a ``DeprecationWarning`` naming ``new``) when it was passed,
    ``new_value`` otherwise. Passing both (``new_value`` is not its ``default``) is a
    ``TypeError``."""
    if old_value is NOT_GIVEN:
        return new_value
    if new_value is not default:
        raise TypeError(f"{where} got both {new}= and its deprecated name {old}=; pass {new}= only")
    warn_deprecated(f"{where}: {old}= is deprecated, use {new}= (same meaning)")
    return old_value


def warn_deprecated(message: str) -> None:
    """A ``DeprecationWarning`` pointing at the first caller outside redkit."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 1 is this function, 2 the frame above it
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def _show(value: object) -> str:
    if isinstance(value, int) and abs(value) > 10**40:  # repr() of 4,300+ digits raises
        return "a number of more than 40 digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _human(secs: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600)):
        if secs >= size:
            return f"{secs / size:g} {unit}"
    return f"{secs:g} s"
