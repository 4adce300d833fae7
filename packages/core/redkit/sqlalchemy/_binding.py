"""A binding: the session listeners that record tags and jobs, and what runs after a commit."""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from ..cache import uncommitted_scope
from ._rules import Rule, Rules
from ._targets import Target, proxy_of, run_in_greenlet

log = logging.getLogger("redkit.sqlalchemy")

_PENDING = "redkit_pending"  # session.info: {transaction: _Pending}
_OUTCOME = "redkit_outcome"  # session.info: how the transaction ending now ended
_SCOPE = "redkit_scope"  # session.info: the Uncommitted its writes were reported to

Step = tuple[str, Callable[[], Any], bool]  # what, do it, whether its failure is raised


class _Pending:
    __slots__ = ("boxed", "jobs", "tags")

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.jobs: list[tuple[Any, str, tuple[Any, ...], dict[str, Any]]] = []
        self.boxed: list[tuple[Any, list[Any]]] = []  # (queue, add arguments) of outbox rows

    def merge(self, other: _Pending) -> None:
        self.tags |= other.tags
        self.jobs += other.jobs
        self.boxed += other.boxed


class Binding:
    """What :func:`~redkit.sqlalchemy.bind` set up; :meth:`unbind` removes its listeners."""

    def __init__(
        self,
        target: Target,
        kit: Any,
        rules: Mapping[type, Rule],
        tables: Mapping[Any, Iterable[str]],
        outbox: Any = None,
    ) -> None:
        self.kit = kit
        self.outbox = outbox
        """The :class:`~redkit.sqlalchemy.Outbox` jobs are written to first (``None``: none)."""
        # held weakly: SQLAlchemy keeps a class's listeners for as long as the class lives, so
        # listeners holding their sessionmaker would keep it (and this binding) alive forever
        self._target = weakref.ref(target.listen)
        self.engine = target.engine
        self.async_class = target.async_class
        self._rules = Rules(rules, tables)
        self.rules = self._rules.models
        self.tables = self._rules.tables
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_transaction_create", self._transaction_create),
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._orm_execute),
            ("after_commit", self._after_commit),
            ("after_rollback", self._after_rollback),
            ("after_transaction_end", self._transaction_end),
        ]
        for name, fn in self._listeners:
            event.listen(target.listen, name, fn)
        self._bound = True

    def unbind(self) -> None:
        """Stop listening: commits invalidate nothing more, and
        :func:`~redkit.sqlalchemy.enqueue_after_commit` refuses this binding's sessions. Jobs
        asked for in a transaction still open are not sent. Idempotent."""
        if self._bound:
            self._bound = False
            from . import _unregister

            _unregister(self)
            target = self.target
            if target is not None:
                for name, fn in self._listeners:
                    event.remove(target, name, fn)

    @property
    def target(self) -> Any:
        """What the binding listens to (``None`` once it was garbage-collected): for an async
        target, the sync ``Session`` (or ``Session`` class) under it."""
        return self._target()

    @property
    def is_async(self) -> bool:
        """Whether this binding serves ``AsyncSession``\\ s (with an async client)."""
        return self.async_class is not None

    def tags_of(self, obj: Any) -> set[str]:
        """The tags ``rules`` give an object (the rule of its class, or of a base class); for
        an object whose columns changed, its tags before the change as well."""
        return self._rules.tags_of(obj)

    # -- recording ------------------------------------------------------------------------------
    def mine(self, session: Session) -> bool:
        """Whether ``session`` is of this binding's engine and kind (async or sync)."""
        if self.engine is not None and session.get_bind() is not self.engine:
            return False
        proxy = proxy_of(session)
        if self.async_class is None:
            return proxy is None
        return isinstance(proxy, self.async_class)

    def _after_flush(self, session: Session, _context: Any) -> None:
        if not self.mine(session):
            return
        tags: set[str] = set()
        wrote = False
        for obj in (*session.new, *session.dirty, *session.deleted):
            if obj in session.dirty and not session.is_modified(obj):
                continue
            wrote = True
            tags |= self._rules.tags_of(obj)
        if wrote:
            _pending_of(session).tags |= tags
            _writing(session, tags)

    def _orm_execute(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or not self.mine(state.session):
            return
        tags = self._rules.table_tags(getattr(state.statement, "table", None))
        _pending_of(state.session).tags |= tags
        _writing(state.session, tags)

    def add_job(self, session: Session, task: Any, job_id: str, args: Any, kwargs: Any) -> None:
        if self.outbox is None:
            _pending_of(session).jobs.append((task, job_id, args, kwargs))
            return
        row = self.outbox.row(task, job_id, args, kwargs)  # checked before anything is written
        _, job = self.outbox.job_of(row)
        session.add(row)  # inserted by the session's flush, in its transaction
        _pending_of(session).boxed.append((task.queue, job))

    # -- transactions ending --------------------------------------------------------------------
    def _after_commit(self, session: Session) -> None:
        if self.mine(session):
            session.info[_OUTCOME] = True

    def _after_rollback(self, session: Session) -> None:
        if self.mine(session):
            session.info[_OUTCOME] = False

    def _transaction_create(self, session: Session, transaction: SessionTransaction) -> None:
        table: dict[Any, _Pending] | None = session.info.get(_PENDING)
        if table and transaction.parent is None and None in table:
            table[transaction] = table.pop(None)  # jobs asked for before the session began

    def _transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if not (transaction.nested or transaction.parent is None) or not self.mine(session):
            return  # a flush's own subtransaction, or another binding's session
        if transaction.parent is None and not transaction.nested:
            scope = session.info.pop(_SCOPE, None)
            if scope is not None:
                scope.settle(id(session))  # the cache may be filled again
        committed = bool(session.info.pop(_OUTCOME, False))
        table: dict[Any, _Pending] | None = session.info.get(_PENDING)
        pending = table.pop(transaction, None) if table else None
        if pending is None:
            return
        if transaction.nested:
            # a savepoint: released, its work joins the transaction around it; rolled back, gone
            if committed and transaction.parent is not None:
                assert table is not None
                table.setdefault(_outer(transaction.parent), _Pending()).merge(pending)
            return
        if not committed:
            return
        steps = self._steps(pending, session)
        if self.is_async:
            run_in_greenlet(_shielded(_run_async(steps)))
        else:
            _run(steps)

    def _steps(self, pending: _Pending, session: Session) -> list[Step]:
        """What a commit leaves to do: invalidate its tags in one call, then send its jobs (those
        of the outbox: add them, then delete their rows)."""
        steps: list[Step] = []
        if pending.tags:
            tags = sorted(pending.tags)
            invalidate = functools.partial(self.kit.cache.invalidate, tags)
            steps.append((f"invalidating {tags}", invalidate, False))
        for task, job_id, args, kwargs in pending.jobs:
            send = functools.partial(_send, task, job_id, args, kwargs)
            steps.append((f"sending job {job_id} ({task.name})", send, True))
        if pending.boxed:
            move = _move_async if self.is_async else _move
            what = f"moving {len(pending.boxed)} job(s) of the outbox to Redis (the relay will)"
            steps.append(
                (
                    what,
                    functools.partial(move, self.outbox, session.get_bind(), pending.boxed),
                    False,
                )
            )
        return steps


def _send(task: Any, job_id: str, args: Any, kwargs: Any) -> Any:
    return task.options(job_id=job_id).enqueue(*args, **kwargs)


def _by_queue(boxed: list[tuple[Any, list[Any]]]) -> list[tuple[Any, list[list[Any]]]]:
    groups: dict[int, tuple[Any, list[list[Any]]]] = {}
    for queue, job in boxed:
        groups.setdefault(id(queue), (queue, []))[1].append(job)
    return list(groups.values())


def _move(outbox: Any, engine: Any, boxed: list[tuple[Any, list[Any]]]) -> None:
    """Add the jobs of a commit's outbox rows, then delete the rows (a failure leaves them to
    the relay: nothing is lost, and a row added twice is one job)."""
    for queue, jobs in _by_queue(boxed):
        queue._x.run(queue._core.add(jobs))
    with engine.begin() as conn:
        conn.execute(outbox.delete(job[0] for _, job in boxed))


async def _move_async(outbox: Any, engine: Any, boxed: list[tuple[Any, list[Any]]]) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    for queue, jobs in _by_queue(boxed):
        await queue._x.run(queue._core.add(jobs))
    async with AsyncEngine(engine).begin() as conn:
        await conn.execute(outbox.delete(job[0] for _, job in boxed))


# The database commit has happened when these run. A failed invalidation is logged and the
# commit goes on (the cache fails open); a job that could not be sent is logged too, and the
# first such error is raised once every step was tried, so the caller learns it was lost.
def _failed(what: str, exc: Exception, raised: bool, errors: list[Exception]) -> None:
    log.error("redkit: %s after a commit failed: %s", what, exc)
    if raised:
        errors.append(exc)


def _run(steps: list[Step]) -> None:
    errors: list[Exception] = []
    for what, step, raised in steps:
        try:
            step()
        except Exception as exc:
            _failed(what, exc, raised, errors)
    if errors:
        raise errors[0]


async def _run_async(steps: list[Step]) -> None:
    errors: list[Exception] = []
    for what, step, raised in steps:
        try:
            await step()
        except Exception as exc:
            _failed(what, exc, raised, errors)
    if errors:
        raise errors[0]


async def _shielded(work: Any) -> None:
    # a commit cancelled while its invalidation runs still has its tags invalidated
    await asyncio.shield(work)


def _writing(session: Session, tags: set[str]) -> None:
    """Tell the cache, for the code running here, that ``session`` wrote (``tags``) and has not
    committed: ``get_or_set`` and ``@cached`` stop filling the cache until the transaction ends,
    and calls carrying one of ``tags`` read past it. For an ``AsyncSession`` the code running
    here is the asyncio task that awaits it: SQLAlchemy's greenlet runs in the task's context."""
    scope = session.info.get(_SCOPE)
    if scope is None:
        scope = session.info[_SCOPE] = uncommitted_scope()
    scope.record(id(session), tags, functools.partial(_still_open, weakref.ref(session)))


def _still_open(ref: weakref.ref[Session]) -> bool:
    """Whether a session that wrote is still in its transaction (a session dropped without
    being closed is not)."""
    session = ref()
    return session is not None and session.in_transaction()


def _pending_of(session: Session) -> _Pending:
    """What the innermost savepoint (or the transaction) of ``session`` has recorded; before the
    session began, what its next transaction will hold."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    table: dict[Any, _Pending] = session.info.setdefault(_PENDING, {})
    pending = table.get(transaction)
    if pending is None:
        pending = table[transaction] = _Pending()
    return pending


def _outer(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or root transaction that owns ``transaction`` (skipping subtransactions)."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction
