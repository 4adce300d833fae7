"""Rate limiting: ``kit.limiter`` (:class:`Limiter`, :class:`AsyncLimiter`), the
:class:`Decision` it returns, and :class:`Limit` / :func:`parse_limits` for limit strings."""

from __future__ import annotations

from ._api import AsyncLimiter, Limiter
from ._core import ALGORITHMS, Decision, LimitState
from ._limits import Limit, LimitsSpec, parse_limits

__all__ = [
    "ALGORITHMS",
    "AsyncLimiter",
    "Decision",
    "Limit",
    "LimitState",
    "Limiter",
    "LimitsSpec",
    "parse_limits",
]
