"""The rate limiter's logic: pure spec builders and flows, driven by the sync or async executor.

One check is one call of ``ratelimit.lua``, however many limits it carries. Every state key of
one rate-limit key shares its hash tag, so a multi-limit check is atomic on Redis Cluster too.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from .._checks import shown
from .._keys import Keyspace
from .._ops import Batch, Flow, Script, command, script
from .._stats import Stats
from ..errors import InvalidRateLimit, RedkitConnectionError
from ..settings import RATELIMIT_ALGORITHMS
from ._limits import Limit, LimitsSpec, check_cost, parse_limits

__all__ = ["ALGORITHMS", "Decision", "LimitState", "LimiterCore"]

log = logging.getLogger("redkit.ratelimit")

CHECK = Script.load("ratelimit")

ALGORITHMS = RATELIMIT_ALGORITHMS
LOG_MAX_AMOUNT = 100_000
"""Largest amount the sliding window log accepts: it stores one entry per admitted unit."""
_CODES = {
    "fixed_window": "fw",
    "sliding_window_log": "swl",
    "sliding_window_counter": "swc",
    "token_bucket": "tb",
    "gcra": "gcra",
}


@dataclass(slots=True)
class LimitState:
    """Where one limit stands after a check."""

    limit: Limit
    remaining: int
    """Requests (units of cost) still allowed now."""
    reset_after: float
    """Seconds until the limit is fully available again."""
    retry_after: float
    """Seconds until this request could pass (0 when it passes; ``inf`` when its cost exceeds
    the limit's amount, so it never will)."""

    @property
    def allowed(self) -> bool:
        """Whether this limit admits the request."""
        return self.retry_after == 0


@dataclass(slots=True)
class Decision:
    """The answer of :meth:`~redkit.ratelimit.Limiter.hit` / ``test``. True when allowed.

    ``limit``, ``remaining``, ``reset_after`` and ``retry_after`` describe the binding limit:
    when denied, the one that makes the caller wait longest; when allowed, the one with the
    fewest requests left. ``states`` has every limit.
    """

    allowed: bool
    limit: Limit
    remaining: int
    reset_after: float
    retry_after: float
    states: tuple[LimitState, ...] = field(default=())
    now: float = 0.0
    """Redis' clock (epoch seconds) when the check ran; the client's clock for the fixed window,
    which never reads Redis' clock."""
    degraded: bool = False
    """True when Redis was unreachable and the limiter failed open: nothing was counted."""

    def __bool__(self) -> bool:
        return self.allowed

    def headers(self, *, legacy: bool = True, draft: bool = True) -> dict[str, str]:
        """Response headers describing this decision.

        ``Retry-After`` (whole seconds, when denied); with ``legacy`` the common
        ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (``Reset`` as an epoch timestamp);
        with ``draft`` the IETF httpapi draft fields ``RateLimit-Policy`` and ``RateLimit`` with
        one item per limit. A degraded (fail-open) decision has no headers: nothing is known.
        """
        out: dict[str, str] = {}
        if self.degraded:
            return out
        if not self.allowed:
            out["Retry-After"] = str(_whole(self.retry_after))
        if legacy:
            out["X-RateLimit-Limit"] = str(self.limit.amount)
            out["X-RateLimit-Remaining"] = str(self.remaining)
            out["X-RateLimit-Reset"] = str(math.ceil(self.now + self.reset_after))
        if draft:
            out["RateLimit-Policy"] = ", ".join(
                f"{_sf_string(s.limit.text)};q={s.limit.amount};w={_whole(s.limit.period)}"
                for s in self.states
            )
            out["RateLimit"] = ", ".join(
                f"{_sf_string(s.limit.text)};r={s.remaining};t={_whole(s.reset_after)}"
                for s in self.states
            )
        return out


def _whole(seconds: float) -> int:
    if math.isinf(seconds):
        return 2**31 - 1
    return max(0, math.ceil(seconds - 1e-9))


def _sf_string(text: str) -> str:
    # a Structured Field string: printable ASCII, with '"' and '\' escaped
    clean = "".join(c for c in text if " " <= c <= "~")
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LimiterCore:
    """Builds the check and reset specs of one limiter configuration."""

    def __init__(
        self,
        keyspace: Keyspace,
        stats: Stats,
        algorithm: str,
        fail_open: bool,
    ) -> None:
        self.keys = keyspace
        self.stats = stats
        self.algorithm = _algorithm(algorithm)
        self.fail_open = fail_open
        self._plans: dict[tuple[str | Limit, str], _Plan] = {}

    def configure(self, algorithm: str | None, fail_open: bool | None) -> LimiterCore:
        return LimiterCore(
            self.keys,
            self.stats,
            self.algorithm if algorithm is None else algorithm,
            self.fail_open if fail_open is None else bool(fail_open),
        )

    def check(
        self,
        key: object,
        limits: LimitsSpec,
        cost: int,
        algorithm: str | None,
        mode: str,
    ) -> Batch[Decision]:
        """The one-round-trip check; run it, and on ``RedkitConnectionError`` ask
        :meth:`failed` what to answer."""
        plan = self._plan(limits, self.algorithm if algorithm is None else algorithm)
        check_cost(cost)
        base = self.keys.tagged("ratelimit", key)
        keys = [base + ":idx", *[base + suffix for suffix in plan.suffixes]]
        # a re-sent hit could charge twice: only a test may be retried after a lost reply
        call = script(
            CHECK, keys, (mode, plan.algorithm, cost, *plan.argv), idempotent=mode == "test"
        )
        return Batch.one(call, plan.decide)

    def failed(self, exc: RedkitConnectionError, key: object, limits: LimitsSpec) -> Decision:
        """The answer when Redis could not be reached: a degraded "allowed" (fail open, counted
        and logged), or ``exc`` raised again (fail closed)."""
        if not self.fail_open:
            raise exc
        self.stats.incr("ratelimit_fail_open")
        log.debug("rate limit %s not checked (Redis unreachable: %s); allowed", key, exc)
        return _degraded(_unique(parse_limits(limits)))

    def _plan(self, limits: LimitsSpec, algorithm: str) -> _Plan:
        if not isinstance(algorithm, str):  # a caller may pass anything
            _algorithm(algorithm)  # type: ignore[unreachable]
        if not isinstance(limits, (str, Limit)):  # a list: not hashable, not cached
            return _Plan(_unique(parse_limits(limits)), _algorithm(algorithm), self.stats)
        plan = self._plans.get((limits, algorithm))
        if plan is None:
            plan = _Plan(_unique(parse_limits(limits)), _algorithm(algorithm), self.stats)
            if len(self._plans) >= 1024:
                self._plans.clear()
            self._plans[(limits, algorithm)] = plan
        return plan

    def refund(
        self, key: object, limits: LimitsSpec, cost: int, algorithm: str | None
    ) -> Batch[None]:
        """The one-round-trip refund of ``cost`` units an earlier hit charged (never re-sent:
        a refund sent twice would give back twice)."""
        plan = self._plan(limits, self.algorithm if algorithm is None else algorithm)
        check_cost(cost)
        base = self.keys.tagged("ratelimit", key)
        keys = [base + ":idx", *[base + suffix for suffix in plan.suffixes]]
        call = script(CHECK, keys, ("refund", plan.algorithm, cost, *plan.argv), idempotent=False)
        return Batch.one(call, lambda reply: None)

    def reset(self, key: object) -> Flow[int]:
        # two round trips rather than a script reaching keys it was not given: read the index,
        # then unlink what it lists (every member shares the index's slot)
        index = self.keys.tagged("ratelimit", key, "idx")
        members = yield Batch.one(command("SMEMBERS", index))
        if not members:
            return 0
        unlink = (command("UNLINK", *sorted(members)), command("UNLINK", index))
        deleted: int = yield Batch(unlink, lambda replies: int(replies[0]))
        return deleted


class _Plan:
    """What a limit spec and an algorithm turn into, computed once per distinct spec: the
    deduplicated limits, the script arguments and key suffixes, and the reply parser."""

    __slots__ = ("algorithm", "argv", "limits", "stats", "suffixes")

    def __init__(self, limits: tuple[Limit, ...], algorithm: str, stats: Stats) -> None:
        code = _CODES[algorithm]
        for lim in limits:
            if algorithm == "sliding_window_log" and lim.amount > LOG_MAX_AMOUNT:
                raise InvalidRateLimit(
                    f"{lim}: the sliding window log keeps one entry per request and is limited "
                    f"to {LOG_MAX_AMOUNT:,} per period; use sliding_window_counter"
                )
            if algorithm in ("gcra", "token_bucket") and lim.period_ms < lim.amount / 1000:
                raise InvalidRateLimit(
                    f"{lim}: {algorithm} counts at most one unit per microsecond; "
                    "count in coarser units"
                )
        self.limits = limits
        self.algorithm = algorithm
        self.stats = stats
        self.suffixes = tuple(f":{code}:{lim.amount}:{lim.period_ms}" for lim in limits)
        self.argv = tuple(x for lim in limits for x in (lim.amount, lim.period_ms))

    def decide(self, reply: list[Any]) -> Decision:
        self.stats.incr("ratelimit_allowed" if reply[0] else "ratelimit_denied")
        return _decision(self.limits, reply)


def _algorithm(name: str) -> str:
    if not isinstance(name, str) or name not in _CODES:
        raise InvalidRateLimit(
            f"unknown rate-limit algorithm {shown(name)}; use one of {', '.join(ALGORITHMS)}"
        )
    return name


def _unique(limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
    seen: dict[tuple[int, int], Limit] = {}
    for lim in limits:
        seen.setdefault((lim.amount, lim.period_ms), lim)
    return tuple(seen.values())


def _decision(limits: tuple[Limit, ...], reply: list[Any]) -> Decision:
    allowed = reply[0] == 1
    now = reply[1] / 1000.0 or time.time()  # the fixed window does not read Redis' clock
    states = []
    for i, lim in enumerate(limits):
        reset, retry = reply[3 + 3 * i], reply[4 + 3 * i]
        states.append(
            LimitState(
                lim,
                reply[2 + 3 * i],
                reset / 1000.0,
                math.inf if retry < 0 else retry / 1000.0,
            )
        )
    if len(states) == 1:
        binding = states[0]
    elif allowed:
        binding = min(states, key=lambda s: (s.remaining, -s.reset_after))
    else:
        binding = max(states, key=lambda s: s.retry_after)
    return Decision(
        allowed,
        binding.limit,
        binding.remaining,
        binding.reset_after,
        0.0 if allowed else binding.retry_after,
        tuple(states),
        now,
    )


def _degraded(limits: tuple[Limit, ...]) -> Decision:
    states = tuple(LimitState(lim, lim.amount, 0.0, 0.0) for lim in limits)
    first = states[0]
    return Decision(True, first.limit, first.remaining, 0.0, 0.0, states, 0.0, degraded=True)
