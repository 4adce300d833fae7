"""Rate limits as values: :class:`Limit` and the parser of ``"100/minute;10/second"``."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .. import _durations as durations
from .._checks import shown
from .._durations import to_ms
from ..errors import InvalidRateLimit

__all__ = ["Limit", "LimitsSpec", "check_cost", "parse_limits"]

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("ms", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 7 * 86400.0),
    (("month", "months"), 30 * 86400.0),
    (("y", "year", "years"), 365 * 86400.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_ONE = re.compile(
    r"""\s*(?P<amount>\d+)\s*(?:/|\bper\b)\s*
        (?P<multiple>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*\Z""",
    re.IGNORECASE | re.VERBOSE,
)
_MAX_AMOUNT = 10**12
_MAX_DIGITS = 13


def _show_int(value: int) -> str:
    # str() of an int of more than 4,300 digits raises ValueError
    return str(value) if abs(value) <= _MAX_AMOUNT else "a number of more than 13 digits"


def check_cost(cost: object) -> int:
    """``cost`` of a hit, test or refund: an int from 1 to 10**12."""
    if cost.__class__ is not int:
        raise InvalidRateLimit(f"cost must be an int >= 1, not {type(cost).__name__}")
    if not 1 <= cost <= _MAX_AMOUNT:
        raise InvalidRateLimit(f"cost must be an int from 1 to 10**12, got {_show_int(cost)}")
    return cost


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:30] + "..." + text[-20:]


@dataclass(frozen=True, slots=True)
class Limit:
    """``amount`` requests (or units of cost) per ``period`` seconds.

    ``Limit(100, 60)`` is ``"100/minute"``; :func:`parse_limits` builds them from strings.
    """

    amount: int
    period: float
    text: str = ""
    """The limit as written (``"100/minute"``), used as its policy name in headers."""

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidRateLimit(f"a limit's amount must be an int, not {shown(self.amount)}")
        if not 1 <= self.amount <= _MAX_AMOUNT:
            raise InvalidRateLimit(
                f"a limit's amount must be 1 to 10**12, got {_show_int(self.amount)}"
            )
        try:
            period = durations.seconds("a limit's period", self.period)
        except (TypeError, ValueError) as exc:
            raise InvalidRateLimit(str(exc)) from None
        if period < 0.001:
            raise InvalidRateLimit(f"a limit's period must be at least 1 ms, got {period!r}")
        object.__setattr__(self, "period", period)  # a timedelta is held as seconds
        if not self.text:
            object.__setattr__(self, "text", f"{self.amount}/{_format_period(period)}")

    @property
    def period_ms(self) -> int:
        """The period in whole milliseconds (what the scripts use), rounded up."""
        return to_ms(self.period)

    def __str__(self) -> str:
        return self.text


def _format_period(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds == size:
            return unit
        if seconds % size == 0:
            return f"{int(seconds // size)} {unit}s"
    return f"{seconds:g} seconds"


LimitsSpec = str | Limit | Iterable[str | Limit]
"""What the limiter accepts as limits: ``"10/second;1000/day"``, a :class:`Limit`, or a list of
either."""


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> tuple[Limit, ...]:
    out = []
    for piece in re.split(r"[;,]", text):
        if not piece.strip():
            continue
        match = _ONE.match(piece)
        if not match:
            raise InvalidRateLimit(
                f"cannot read rate limit {_short(piece.strip())!r}: write it like '100/minute', "
                "'10 per second' or '5/30 seconds'"
            )
        unit = match["unit"].lower()
        if unit not in _UNITS:
            raise InvalidRateLimit(
                f"unknown time unit {match['unit']!r} in {_short(piece.strip())!r}; use one of "
                "second, minute, hour, day, week, month (30 days), year (365 days) or ms"
            )
        multiple = float(match["multiple"]) if match["multiple"] else 1.0
        if multiple <= 0:
            raise InvalidRateLimit(f"the period of {_short(piece.strip())!r} must be > 0")
        digits = match["amount"]
        if len(digits) > _MAX_DIGITS:  # int() of thousands of digits raises a bare ValueError
            raise InvalidRateLimit(
                f"the amount of {_short(piece.strip())!r} is too large: at most 10**12"
            )
        out.append(Limit(int(digits), multiple * _UNITS[unit], " ".join(piece.split())))
    if not out:
        raise InvalidRateLimit(f"no rate limit in {_short(text)!r}")
    return tuple(out)


def parse_limits(limits: LimitsSpec) -> tuple[Limit, ...]:
    """``"10/second;1000/day"`` (``;`` or ``,`` between limits), a :class:`Limit`, or a list of
    either, as a tuple of :class:`Limit`. Raises :class:`~redkit.errors.InvalidRateLimit`."""
    if isinstance(limits, Limit):
        return (limits,)
    if isinstance(limits, str):
        return _parse_text(limits)
    if isinstance(limits, (bytes, bytearray)):  # type: ignore[unreachable]
        raise InvalidRateLimit("rate limits are str, not bytes")
    out: list[Limit] = []
    try:
        items = list(limits)
    except TypeError:
        raise InvalidRateLimit(
            f"rate limits are a string, a Limit or a list of them, not {type(limits).__name__}"
        ) from None
    for item in items:
        if isinstance(item, Limit):
            out.append(item)
        elif isinstance(item, str):
            out.extend(_parse_text(item))
        else:
            raise InvalidRateLimit(f"not a rate limit: {shown(item)}")
    if not out:
        raise InvalidRateLimit("no rate limit given")
    return tuple(out)
