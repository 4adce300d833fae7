"""Distributed locks: ``kit.lock(name)``, the sync :class:`Lock` and the async :class:`AsyncLock`.

A lock is one Redis key holding the random token of its holder, with a TTL so a crashed holder
frees it. Taking, releasing and extending it are one Lua script each, and release and extend
compare the token, so a holder whose lock expired can never touch the next holder's. Every
acquisition also draws a fencing token: an integer larger than any drawn before for the same name,
to hand to the storage the lock protects.

The logic is written once: :class:`LockCore` builds the batches and the blocking-acquire flow, the
shared base class keeps the state of one acquisition, and the two classes only run them on their
executor (a renewal thread for :class:`Lock`, an asyncio task for :class:`AsyncLock`).
"""

from __future__ import annotations

from ._api import AsyncLock, Lock
from ._core import LockCore

__all__ = ["AsyncLock", "Lock", "LockCore"]
