"""Writes of transactions not committed yet, per thread or asyncio task, so that the cache is
not filled with what may still roll back.

A scope belongs to the thread or task that made it. A context variable carries it, and a task
inherits its creator's context: a child task (or a thread run with a copied context) sees its
creator's pending writes, but what it writes goes into a scope of its own, chained to the
inherited one, so that sibling tasks never see each other's transactions.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence

__all__ = ["Uncommitted", "uncommitted", "uncommitted_scope", "writes_pending"]


class Uncommitted:
    """Tags of data written in transactions that have not committed yet, per transaction, for
    the code running in one thread or one asyncio task. While any is pending (here or in the
    scope of the code that started this task), ``get_or_set`` (and ``@cached``) stores nothing:
    what a loader reads may still roll back. A call whose tags are pending skips the cache
    altogether, so it sees its own writes.

    An ORM integration reports to the scope of the code that wrote
    (:func:`uncommitted_scope`): :meth:`record` when its transaction writes, :meth:`settle` when
    it commits or rolls back. Where a rollback cannot be observed, ``still_open`` tells whether
    the transaction is still running; a transaction found ended is forgotten."""

    __slots__ = ("owner", "parent", "pending", "probes")

    def __init__(self, owner: object = None, parent: Uncommitted | None = None) -> None:
        self.owner = owner
        self.parent = parent
        self.pending: dict[Hashable, set[str]] = {}
        self.probes: dict[Hashable, Callable[[], bool]] = {}

    def record(
        self,
        owner: Hashable,
        tags: Iterable[str] = (),
        still_open: Callable[[], bool] | None = None,
    ) -> None:
        """``owner``'s transaction (any hashable naming it) wrote data with ``tags``."""
        self.pending.setdefault(owner, set()).update(tags)
        if still_open is not None:
            self.probes[owner] = still_open

    def settle(self, owner: Hashable) -> None:
        """``owner``'s transaction ended: the cache may be filled again (idempotent)."""
        self.pending.pop(owner, None)
        self.probes.pop(owner, None)

    def active(self) -> bool:
        """Whether a transaction of this scope, or of the code that started it, has written and
        is still running."""
        scope: Uncommitted | None = self
        while scope is not None:
            if scope.probes:
                for owner, still_open in list(scope.probes.items()):
                    if not still_open():
                        scope.settle(owner)
            if scope.pending:
                return True
            scope = scope.parent
        return False

    def touches(self, tags: Sequence[str]) -> bool:
        """Whether one of ``tags`` was written by a transaction :meth:`active` counts."""
        scope: Uncommitted | None = self
        while scope is not None:
            if any(not pending.isdisjoint(tags) for pending in scope.pending.values()):
                return True
            scope = scope.parent
        return False


uncommitted: contextvars.ContextVar[Uncommitted | None] = contextvars.ContextVar(
    "redkit_uncommitted", default=None
)


def _running_here() -> object:
    """The asyncio task running this code, or else this thread's identity."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop runs in this thread
        task = None
    return task if task is not None else threading.get_ident()


def uncommitted_scope() -> Uncommitted:
    """The :class:`Uncommitted` of the code running here (this thread, or this asyncio task),
    made on first use. An ORM integration records its transactions' writes in it."""
    scope = uncommitted.get()
    here = _running_here()
    if scope is None or scope.owner != here:
        # none yet, or the one inherited from the code that started this task: a scope of its
        # own, which still sees what that code has pending
        scope = Uncommitted(here, scope)
        uncommitted.set(scope)
    return scope


def writes_pending() -> bool:
    """Whether the code running here (this thread, or this asyncio task) is inside a database
    transaction that has written and not committed yet (tracked by ``redkit.sqlalchemy`` and
    ``redkit_django``). While it is, nothing read in it may be stored in a shared cache: it may
    still roll back."""
    scope = uncommitted.get()
    return scope is not None and scope.active()
