"""Idempotency keys: ``kit.idempotency``, the records behind the ``Idempotency-Key`` header.

A client sends a non-idempotent request (``POST``, ``PATCH``) with a key it generated; when it
retries after a lost reply, the server must not run the request again but answer what the first
attempt answered. A record per key and scope does that:

1. :meth:`Idempotency.begin` atomically answers :attr:`Outcome.STARTED` (this request holds a
   *lease* on the key and runs), :attr:`Outcome.IN_PROGRESS` (another request holds it),
   :attr:`Outcome.REPLAY` (the stored response) or :attr:`Outcome.MISMATCH` (the key was used with
   another request fingerprint).
2. While the request runs its lease is renewed (:meth:`Idempotency.renew`); a request that dies
   stops renewing, and once the lease expires a retry gets ``STARTED`` and takes over.
3. :meth:`Idempotency.complete` stores status, safe headers and body for replay (or releases the
   key when the response must not be replayed); :meth:`Idempotency.release` drops the lease when
   the request failed.

:meth:`Idempotency.guard` wraps the three steps, renewing the lease from a thread (or a task).
The logic lives once, as batches and flows, in :class:`IdempotencyCore` and the guards' shared
base; the sync and async classes hand them to their executor. Every state change is one Lua script
(``idempotency_*.lua``).
"""

from __future__ import annotations

from ._api import AsyncIdempotency, Idempotency
from ._guards import AsyncGuard, Guard
from ._http import (
    NEVER_STORED,
    REPLAYED_HEADER,
    SAFE_HEADERS,
    check_key,
    fingerprint,
    parse_key_header,
)
from ._keeper import LeaseKeeper
from ._records import Begin, IdempotencyCore, Outcome

__all__ = [
    "NEVER_STORED",
    "REPLAYED_HEADER",
    "SAFE_HEADERS",
    "AsyncGuard",
    "AsyncIdempotency",
    "Begin",
    "Guard",
    "Idempotency",
    "IdempotencyCore",
    "LeaseKeeper",
    "Outcome",
    "check_key",
    "fingerprint",
    "parse_key_header",
]
