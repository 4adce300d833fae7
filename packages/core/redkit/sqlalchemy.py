"""Cache invalidation and jobs tied to SQLAlchemy transactions (``redkit[sqlalchemy]``).

``bind(sessionmaker, kit, rules)`` listens to the sessions it makes: at each flush it records the
cache tags of the objects inserted, updated and deleted (``rules`` map a model to its tags), and
after the outermost ``COMMIT`` it invalidates them with one call. A ``ROLLBACK`` invalidates
nothing; a savepoint rolled back drops what was recorded inside it, one released passes it on to
the transaction around it. ORM ``update()`` and ``delete()`` statements record the tags of their
table. ``enqueue_after_commit(session, task, ...)`` sends a job only once the transaction commits,
and not at all when it rolls back.

Tags come from the mapped objects, so only changes made through the ORM are seen; a statement
sent as plain SQL text invalidates nothing.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._optional import require
from .cache._core import Uncommitted, uncommitted

require("sqlalchemy", "sqlalchemy")

from sqlalchemy import event, inspect  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction  # noqa: E402

__all__ = ["Binding", "bind", "enqueue_after_commit"]

log = logging.getLogger("redkit.sqlalchemy")

Rule = Callable[[Any], Iterable[str]] | Iterable[str]
"""A model's tags: a function of the object, or templates such as ``"user:{id}"`` filled from
its attributes. An object whose columns changed gets the tags of its old values too."""

_PENDING = "redkit_pending"  # session.info: {transaction: _Pending}
_OUTCOME = "redkit_outcome"  # session.info: how the transaction ending now ended
_SCOPE = "redkit_scope"  # session.info: the Uncommitted its writes were reported to


class _Pending:
    __slots__ = ("jobs", "tags")

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.jobs: list[tuple[Any, str, tuple[Any, ...], dict[str, Any]]] = []

    def merge(self, other: _Pending) -> None:
        self.tags |= other.tags
        self.jobs += other.jobs


class _Attributes(dict[str, Any]):
    """A template's fields: the object's attributes, read when a template names them."""

    def __init__(self, obj: Any) -> None:
        super().__init__()
        self.obj = obj

    def __missing__(self, name: str) -> Any:
        return getattr(self.obj, name)


class _Before:
    """An object as it was before this flush: changed columns read their old values."""

    def __init__(self, obj: Any, previous: Mapping[str, Any]) -> None:
        self.__dict__["_obj"] = obj
        self.__dict__["_previous"] = previous

    def __getattr__(self, name: str) -> Any:
        previous = self.__dict__["_previous"]
        if name in previous:
            return previous[name]
        return getattr(self.__dict__["_obj"], name)


def _previous_values(obj: Any) -> dict[str, Any]:
    """The old values of the columns this flush changes."""
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if history.deleted and history.deleted[0] is not None:
            out[attr.key] = history.deleted[0]
    return out


class Binding:
    """What :func:`bind` set up; :meth:`unbind` removes its listeners."""

    def __init__(
        self,
        target: Any,
        kit: Any,
        rules: Mapping[type, Rule],
        tables: Mapping[Any, Iterable[str]],
        engine: Engine | None,
    ) -> None:
        self.kit = kit
        # held weakly: SQLAlchemy keeps a class's listeners for as long as the class lives, so
        # listeners holding their sessionmaker would keep it (and this binding) alive forever
        self._target = weakref.ref(target)
        self.engine = engine
        self.rules: dict[type, Callable[[Any], Iterable[str]]] = {}
        for model, rule in rules.items():
            if not isinstance(model, type):
                raise TypeError(f"rules are keyed by mapped classes, not {model!r}")
            self.rules[model] = rule if callable(rule) else _templates(model, rule)
        self.tables: dict[str, set[str]] = {}
        for model, rule in self.rules.items():
            constant = getattr(rule, "constant", None)
            name = _table_name(model)
            if constant and name:
                self.tables.setdefault(name, set()).update(constant)
        for key, tags in tables.items():
            name = key if isinstance(key, str) else _table_name(key)
            if not name:
                raise TypeError(f"tables are keyed by table names or mapped classes, not {key!r}")
            if isinstance(tags, str):
                raise TypeError(f"the tags of table {name!r} are a list of tags, not a string")
            self.tables.setdefault(name, set()).update(tags)
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_transaction_create", self._transaction_create),
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._orm_execute),
            ("after_commit", self._after_commit),
            ("after_rollback", self._after_rollback),
            ("after_transaction_end", self._transaction_end),
        ]
        for name, fn in self._listeners:
            event.listen(target, name, fn)
        self._bound = True

    def unbind(self) -> None:
        """Stop listening: commits invalidate nothing more, and :func:`enqueue_after_commit`
        refuses this binding's sessions. Jobs asked for in a transaction still open are not
        sent. Idempotent."""
        if self._bound:
            self._bound = False
            _unregister(self)
            target = self.target
            if target is not None:
                for name, fn in self._listeners:
                    event.remove(target, name, fn)

    @property
    def target(self) -> Any:
        """What :func:`bind` listens to (``None`` once it was garbage-collected)."""
        return self._target()

    # -- recording ------------------------------------------------------------------------------
    def _mine(self, session: Session) -> bool:
        return self.engine is None or session.get_bind() is self.engine

    def _pending(self, session: Session) -> _Pending:
        return _pending_of(session)

    def tags_of(self, obj: Any) -> set[str]:
        """The tags ``rules`` give an object (the rule of its class, or of a base class); for
        an object whose columns changed, its tags before the change as well."""
        for cls in type(obj).__mro__:
            rule = self.rules.get(cls)
            if rule is not None:
                tags = {str(tag) for tag in rule(obj)}
                previous = _previous_values(obj)
                if previous:
                    tags |= {str(tag) for tag in rule(_Before(obj, previous))}
                return tags
        return set()

    def _after_flush(self, session: Session, _context: Any) -> None:
        if not self._mine(session):
            return
        tags: set[str] = set()
        wrote = False
        for obj in (*session.new, *session.dirty, *session.deleted):
            if obj in session.dirty and not session.is_modified(obj):
                continue
            wrote = True
            tags |= self.tags_of(obj)
        if wrote:
            self._pending(session).tags |= tags
            _writing(session, tags)

    def _orm_execute(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or not self._mine(state.session):
            return
        table = getattr(state.statement, "table", None)
        tags = self.tables.get(getattr(table, "name", ""), set())
        self._pending(state.session).tags |= tags
        _writing(state.session, tags)

    def add_job(self, session: Session, task: Any, job_id: str, args: Any, kwargs: Any) -> None:
        self._pending(session).jobs.append((task, job_id, args, kwargs))

    # -- transactions ending --------------------------------------------------------------------
    def _after_commit(self, session: Session) -> None:
        session.info[_OUTCOME] = True

    def _after_rollback(self, session: Session) -> None:
        session.info[_OUTCOME] = False

    def _transaction_create(self, session: Session, transaction: SessionTransaction) -> None:
        table: dict[Any, _Pending] | None = session.info.get(_PENDING)
        if table and transaction.parent is None and None in table:
            table[transaction] = table.pop(None)  # jobs asked for before the session began

    def _transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if not (transaction.nested or transaction.parent is None):
            return  # a flush's own subtransaction
        if transaction.parent is None and not transaction.nested:
            scope = session.info.pop(_SCOPE, None)
            if scope is not None:
                scope.pending.pop(id(session), None)  # the cache may be filled again
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
        if committed:
            self._apply(pending)

    def _apply(self, pending: _Pending) -> None:
        errors: list[BaseException] = []
        if pending.tags:
            try:
                self.kit.cache.invalidate(sorted(pending.tags))
            except Exception as exc:  # the commit stands: report, then still send the jobs
                log.error("redkit: invalidating %s after a commit failed: %s", pending.tags, exc)
                errors.append(exc)
        for task, job_id, args, kwargs in pending.jobs:
            try:
                task.options(job_id=job_id).enqueue(*args, **kwargs)
            except Exception as exc:
                log.error(
                    "redkit: job %s (%s) committed but could not be sent: %s",
                    job_id,
                    task.name,
                    exc,
                )
                errors.append(exc)
        if errors:
            raise errors[0]


def _writing(session: Session, tags: set[str]) -> None:
    """Tell the cache, for the code running here, that ``session`` wrote (``tags``) and has not
    committed: ``get_or_set`` and ``@cached`` stop filling the cache until the transaction ends,
    and calls carrying one of ``tags`` read past it."""
    scope = session.info.get(_SCOPE)
    if scope is None:
        scope = uncommitted.get()
        if scope is None:
            scope = Uncommitted()
            uncommitted.set(scope)
        session.info[_SCOPE] = scope
    scope.pending.setdefault(id(session), set()).update(tags)


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


def _table_name(model: Any) -> str | None:
    table = getattr(model, "__table__", None)
    name = getattr(table, "name", None)
    return name if isinstance(name, str) else None


def _templates(model: type, templates: Iterable[str]) -> Callable[[Any], Iterable[str]]:
    if isinstance(templates, str):
        raise TypeError(f"the tags of {model.__name__} are a list of tags, not a string")
    items = [str(t) for t in templates]

    def tags(obj: Any) -> Iterable[str]:
        return {t.format_map(_Attributes(obj)) for t in items}

    tags.constant = [t for t in items if "{" not in t]  # type: ignore[attr-defined]
    return tags


def bind(
    target: Any,
    kit: Any,
    rules: Mapping[type, Rule] | None = None,
    *,
    tables: Mapping[Any, Iterable[str]] | None = None,
) -> Binding:
    """Invalidate cache tags after commit for the sessions of ``target``: a ``sessionmaker``, a
    ``Session`` class or instance, a ``scoped_session`` (Flask-SQLAlchemy's ``db.session``), or
    an ``Engine`` (every session bound to it). ``kit`` is a sync :class:`~redkit.Redkit`.
    ``rules`` map mapped classes to tags; ``tables`` add tags for ORM ``update()``/``delete()``
    statements on a table (keyed by table name or mapped class); a rule's tags without a field
    apply to its table already."""
    if not hasattr(getattr(kit, "cache", None), "invalidate"):
        raise TypeError("kit must be a redkit.Redkit")
    engine = None
    if isinstance(target, Engine):
        engine, target = target, Session
    elif hasattr(target, "session_factory"):  # scoped_session
        target = target.session_factory
    binding = Binding(target, kit, rules or {}, tables or {}, engine)
    _bindings.append(weakref.ref(binding))
    return binding


# The bindings in force, oldest first, held weakly: a binding lives as long as its listeners
# (as long as its target, or until it is unbound), and the registry never keeps a client alive.
_bindings: list[weakref.ref[Binding]] = []


def _unregister(binding: Binding) -> None:
    _bindings[:] = [ref for ref in _bindings if ref() not in (None, binding)]


def _binding_of(session: Session) -> Binding | None:
    for ref in reversed(_bindings):
        binding = ref()
        if binding is not None and _covers(binding, session):
            return binding
    return None


def enqueue_after_commit(session: Session, task: Any, /, *args: Any, **kwargs: Any) -> str:
    """Send ``task.enqueue(*args, **kwargs)`` when ``session``'s transaction commits (nothing on
    rollback). Returns the job's id now, so a response can name the job before it exists."""
    scoped = getattr(session, "registry", None)
    if scoped is not None and callable(scoped):  # a scoped_session: the session of this scope
        session = scoped()
    binding = _binding_of(session)
    if binding is None:
        raise RuntimeError(
            "this session's sessionmaker (or engine) is not bound: call "
            "redkit.sqlalchemy.bind(...) first"
        )
    if not hasattr(task, "options") or not hasattr(task, "enqueue"):
        raise TypeError(f"task must be a redkit task (from @queue.task), not {task!r}")
    job_id = uuid.uuid4().hex
    binding.add_job(session, task, job_id, args, kwargs)
    return job_id


def _covers(binding: Binding, session: Session) -> bool:
    if binding.engine is not None:
        return isinstance(session, Session) and session.get_bind() is binding.engine
    target = binding.target
    if target is None:
        return False
    if target is session:
        return True
    # a sessionmaker makes its sessions from a Session subclass of its own
    cls = target if isinstance(target, type) else getattr(target, "class_", None)
    return isinstance(cls, type) and isinstance(session, cls)
