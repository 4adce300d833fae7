"""``kit.idempotency``: the sync and async shells over :class:`IdempotencyCore`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._durations import NOT_GIVEN, Duration, renamed
from .._executor import AsyncExecutor, SyncExecutor
from ._guards import AsyncGuard, Guard
from ._http import HeaderInput
from ._records import Begin, IdempotencyCore


# -- sync ------------------------------------------------------------------------------------------
class Idempotency:
    """Idempotency-Key records over Redis: begin, renew, complete, release (see the module doc).

    Reached as ``kit.idempotency``. Keys are 1 to 255 printable ASCII characters (str or bytes);
    ``scope`` (a user, tenant or API client id; ``None`` is one shared anonymous scope) keeps one
    client's keys apart from another's. Fails closed: when Redis is unreachable every method
    raises :class:`~redkit.errors.RedkitConnectionError`.
    """

    def __init__(self, kit: Any) -> None:
        self._core = IdempotencyCore(kit.settings, kit.keyspace, kit.stats)
        self._x: SyncExecutor = kit._executor

    def begin(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        timeout: Duration | None = None,
        token: str | None = None,
        wait: Any = NOT_GIVEN,
    ) -> Begin:
        """Start a request with ``key``: one atomic script returning a :class:`Begin` whose
        ``outcome`` is STARTED (run it; ``.token`` holds the lease), IN_PROGRESS, REPLAY or
        MISMATCH. ``timeout`` (seconds or a timedelta; default ``idempotency_timeout``) is how
        long to poll while another request holds the lease (``wait=`` is its deprecated name).
        ``token`` (default: a fresh random one) lets a caller repeat a begin whose reply was
        lost: with the same token it answers STARTED again."""
        timeout = renamed("begin()", "timeout", timeout, "wait", wait)
        return self._x.drive(self._core.begin(key, fingerprint, scope, timeout, token))

    def renew(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Extend the lease of a running request to ``idempotency_lease``; False when ``token``
        no longer holds it (it expired, or another request took over)."""
        return self._x.run(self._core.renew(key, token, scope))

    def complete(
        self,
        key: str | bytes,
        token: str,
        status: int,
        headers: HeaderInput,
        body: bytes,
        scope: str | int | None = None,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """Store the response for replay (status, the safe headers, body bytes) for
        ``idempotency_ttl``. 5xx responses (unless ``store_server_errors``, default the
        setting) and responses setting a cookie release the key instead. Raises
        ``ResponseTooLarge`` (after releasing) above ``idempotency_max_bytes``. Returns False
        when ``token`` no longer held the lease (nothing was written)."""
        return self._x.drive(
            self._core.complete(
                key, token, status, headers, body, scope, store_server_errors, allow_headers
            )
        )

    def release(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Drop a running request's record (the request failed) so a retry may run it again.
        False when ``token`` does not hold the lease; a stored response is never removed."""
        return self._x.run(self._core.release(key, token, scope))

    def guard(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        timeout: Duration | None = None,
        token: str | None = None,
        wait: Any = NOT_GIVEN,
    ) -> Guard:
        """Begin at once and return a :class:`Guard`: used as a context manager, it renews the
        lease from a daemon thread while the block runs and releases the key at the end unless
        ``guard.complete(...)`` stored a response."""
        timeout = renamed("guard()", "timeout", timeout, "wait", wait)
        return Guard(self, self.begin(key, fingerprint, scope, timeout=timeout, token=token))


# -- async -----------------------------------------------------------------------------------------
class AsyncIdempotency:
    """The asyncio twin of :class:`Idempotency` (``redkit.asyncio.Redkit().idempotency``); same
    methods, awaited."""

    def __init__(self, kit: Any) -> None:
        self._core = IdempotencyCore(kit.settings, kit.keyspace, kit.stats)
        self._x: AsyncExecutor = kit._executor

    async def begin(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        timeout: Duration | None = None,
        token: str | None = None,
        wait: Any = NOT_GIVEN,
    ) -> Begin:
        """Start a request with ``key``: STARTED, IN_PROGRESS, REPLAY or MISMATCH (see
        :meth:`Idempotency.begin`)."""
        timeout = renamed("begin()", "timeout", timeout, "wait", wait)
        return await self._x.drive(self._core.begin(key, fingerprint, scope, timeout, token))

    async def renew(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Extend the lease of a running request; False when ``token`` no longer holds it."""
        return await self._x.run(self._core.renew(key, token, scope))

    async def complete(
        self,
        key: str | bytes,
        token: str,
        status: int,
        headers: HeaderInput,
        body: bytes,
        scope: str | int | None = None,
        *,
        store_server_errors: bool | None = None,
        allow_headers: Iterable[str] = (),
    ) -> bool:
        """Store the response for replay, or release the key when it must not be replayed (see
        :meth:`Idempotency.complete`); False when ``token`` no longer held the lease."""
        return await self._x.drive(
            self._core.complete(
                key, token, status, headers, body, scope, store_server_errors, allow_headers
            )
        )

    async def release(self, key: str | bytes, token: str, scope: str | int | None = None) -> bool:
        """Drop a running request's record so a retry may run it again; False when ``token``
        does not hold the lease."""
        return await self._x.run(self._core.release(key, token, scope))

    def guard(
        self,
        key: str | bytes,
        fingerprint: str,
        scope: str | int | None = None,
        *,
        timeout: Duration | None = None,
        token: str | None = None,
        wait: Any = NOT_GIVEN,
    ) -> AsyncGuard:
        """An :class:`AsyncGuard` that begins when entered (``async with idem.guard(...) as g``)
        or awaited (``g = await idem.guard(...)``); while an ``async with`` block runs it renews
        the lease from a task, and at the end it releases the key unless ``await
        g.complete(...)`` stored a response."""
        timeout = renamed("guard()", "timeout", timeout, "wait", wait)
        return AsyncGuard(self, (key, fingerprint, scope, timeout, token))
