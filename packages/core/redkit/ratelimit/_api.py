"""``kit.limiter``: the sync :class:`Limiter` and the async :class:`AsyncLimiter`."""

from __future__ import annotations

from typing import Any

from .._executor import AsyncExecutor, SyncExecutor
from ..errors import RedkitConnectionError
from ._core import Decision, LimiterCore
from ._limits import LimitsSpec

__all__ = ["AsyncLimiter", "Limiter"]


def _core(kit: Any, core: LimiterCore | None) -> LimiterCore:
    if core is not None:
        return core
    s = kit.settings
    return LimiterCore(kit.keyspace, kit.stats, s.ratelimit_algorithm, s.ratelimit_fail_open)


class Limiter:
    """Rate limits checked atomically in Redis, by Redis' clock, one round trip per check.

    Reached as ``kit.limiter``. ``key`` is whatever identifies the caller (a user id, an IP,
    ``f"login:{ip}"``); ``limits`` are strings such as ``"10/second;1000/day"``. Algorithms:
    ``fixed_window``, ``sliding_window_log``, ``sliding_window_counter`` (the default),
    ``token_bucket`` and ``gcra`` (see ``docs/ratelimit.md``).
    """

    def __init__(self, kit: Any, core: LimiterCore | None = None) -> None:
        self._kit = kit
        self._core = _core(kit, core)
        self._x: SyncExecutor = kit._executor

    @property
    def algorithm(self) -> str:
        """The algorithm used when a call does not name one."""
        return self._core.algorithm

    @property
    def fail_open(self) -> bool:
        """Whether a check allows the request when Redis is unreachable."""
        return self._core.fail_open

    def configure(self, *, algorithm: str | None = None, fail_open: bool | None = None) -> Limiter:
        """A limiter like this one with another default algorithm or failure policy (this one
        is unchanged): ``strict = kit.limiter.configure(fail_open=False)``."""
        return Limiter(self._kit, self._core.configure(algorithm, fail_open))

    def hit(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> Decision:
        """Count a request of ``cost`` units against every limit if all of them admit it;
        otherwise count nothing. Returns the :class:`~redkit.ratelimit.Decision`."""
        batch = self._core.check(key, limits, cost, algorithm, "hit")
        try:
            return self._x.run(batch)
        except RedkitConnectionError as exc:
            return self._core.failed(exc, key, limits)

    def test(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> Decision:
        """Whether a request of ``cost`` units would be admitted now, counting nothing."""
        batch = self._core.check(key, limits, cost, algorithm, "test")
        try:
            return self._x.run(batch)
        except RedkitConnectionError as exc:
            return self._core.failed(exc, key, limits)

    def refund(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> None:
        """Give back ``cost`` units that :meth:`hit` charged (same key, limits and algorithm):
        for limits that count only some outcomes, charged before the work and refunded when it
        did not count (a successful login). Raises when Redis is unreachable."""
        self._x.run(self._core.refund(key, limits, cost, algorithm))

    def reset(self, key: object) -> int:
        """Forget everything counted for ``key`` (every limit and algorithm); returns the number
        of state keys deleted. Raises when Redis is unreachable."""
        return self._x.drive(self._core.reset(key))


class AsyncLimiter:
    """The asyncio twin of :class:`Limiter`: same methods, awaited. Reached as ``kit.limiter``
    on ``redkit.asyncio.Redkit``."""

    def __init__(self, kit: Any, core: LimiterCore | None = None) -> None:
        self._kit = kit
        self._core = _core(kit, core)
        self._x: AsyncExecutor = kit._executor

    @property
    def algorithm(self) -> str:
        """The algorithm used when a call does not name one."""
        return self._core.algorithm

    @property
    def fail_open(self) -> bool:
        """Whether a check allows the request when Redis is unreachable."""
        return self._core.fail_open

    def configure(
        self, *, algorithm: str | None = None, fail_open: bool | None = None
    ) -> AsyncLimiter:
        """A limiter like this one with another default algorithm or failure policy (this one
        is unchanged): ``strict = kit.limiter.configure(fail_open=False)``."""
        return AsyncLimiter(self._kit, self._core.configure(algorithm, fail_open))

    async def hit(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> Decision:
        """Count a request of ``cost`` units against every limit if all of them admit it;
        otherwise count nothing. Returns the :class:`~redkit.ratelimit.Decision`."""
        batch = self._core.check(key, limits, cost, algorithm, "hit")
        try:
            return await self._x.run(batch)
        except RedkitConnectionError as exc:
            return self._core.failed(exc, key, limits)

    async def test(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> Decision:
        """Whether a request of ``cost`` units would be admitted now, counting nothing."""
        batch = self._core.check(key, limits, cost, algorithm, "test")
        try:
            return await self._x.run(batch)
        except RedkitConnectionError as exc:
            return self._core.failed(exc, key, limits)

    async def refund(
        self, key: object, limits: LimitsSpec, cost: int = 1, *, algorithm: str | None = None
    ) -> None:
        """Give back ``cost`` units that :meth:`hit` charged (same key, limits and algorithm):
        for limits that count only some outcomes, charged before the work and refunded when it
        did not count (a successful login). Raises when Redis is unreachable."""
        await self._x.run(self._core.refund(key, limits, cost, algorithm))

    async def reset(self, key: object) -> int:
        """Forget everything counted for ``key`` (every limit and algorithm); returns the number
        of state keys deleted. Raises when Redis is unreachable."""
        return await self._x.drive(self._core.reset(key))
