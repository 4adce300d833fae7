"""Cache invalidation and jobs tied to SQLAlchemy transactions (``redkit[sqlalchemy]``).

``bind(sessionmaker, kit, rules)`` listens to the sessions it makes: at each flush it records the
cache tags of the objects inserted, updated and deleted (``rules`` map a model to its tags), and
after the outermost ``COMMIT`` it invalidates them with one call. A ``ROLLBACK`` invalidates
nothing; a savepoint rolled back drops what was recorded inside it, one released passes it on to
the transaction around it. ORM ``update()`` and ``delete()`` statements record the tags of their
table. ``enqueue_after_commit(session, task, ...)`` sends a job only once the transaction commits,
and not at all when it rolls back; with ``bind(..., outbox=Outbox(metadata))`` the job is also
written to a table in that transaction, so a process that dies between the commit and the send
loses nothing: :meth:`Outbox.relay` sends what is left.

The asyncio extension follows the same rules: ``bind(async_sessionmaker, async_kit, rules)``
(or an ``AsyncSession``, ``async_scoped_session`` or ``AsyncEngine``) with a
``redkit.AsyncRedkit``, and ``await session.commit()`` returns once the tags are invalidated and
the jobs sent.

Tags come from the mapped objects, so only changes made through the ORM are seen; a statement
sent as plain SQL text invalidates nothing.
"""

from __future__ import annotations

import inspect
import uuid
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from .._optional import require

require("sqlalchemy", "sqlalchemy")

from ._binding import Binding  # noqa: E402
from ._outbox import Outbox, OutboxRelay  # noqa: E402
from ._rules import Rule  # noqa: E402
from ._targets import is_async_kit, resolve, sync_session_of  # noqa: E402

__all__ = ["Binding", "Outbox", "OutboxRelay", "bind", "enqueue_after_commit"]


def bind(
    target: Any,
    kit: Any,
    rules: Mapping[type, Rule] | None = None,
    *,
    tables: Mapping[Any, Iterable[str]] | None = None,
    outbox: Outbox | None = None,
) -> Binding:
    """Invalidate cache tags after commit for the sessions of ``target``.

    With a sync :class:`~redkit.Redkit`, ``target`` is a ``sessionmaker``, a ``Session`` class or
    instance, a ``scoped_session`` (Flask-SQLAlchemy's ``db.session``), or an ``Engine`` (every
    session bound to it). With a :class:`redkit.AsyncRedkit`, it is an ``async_sessionmaker``,
    an ``AsyncSession`` class or instance, an ``async_scoped_session``, or an ``AsyncEngine``;
    a sync client is refused for those (it would block the event loop), and an async one for
    sync sessions. ``rules`` map mapped classes to tags; ``tables`` add tags for ORM
    ``update()``/``delete()`` statements on a table (keyed by table name or mapped class); a
    rule's tags without a field apply to its table already. ``outbox``: an :class:`Outbox`
    that :func:`enqueue_after_commit` writes each job to in the session's transaction, before
    it is sent after the commit."""
    invalidate = getattr(getattr(kit, "cache", None), "invalidate", None)
    if not callable(invalidate):
        raise TypeError("kit must be a redkit.Redkit or a redkit.AsyncRedkit")
    resolved = resolve(target)
    if resolved.async_class is not None and not is_async_kit(kit):
        raise TypeError(
            "an AsyncSession binds to a redkit.AsyncRedkit: a sync redkit.Redkit would block "
            "the event loop at each commit"
        )
    if resolved.async_class is None and is_async_kit(kit):
        raise TypeError(
            "a sync Session binds to a redkit.Redkit; for a redkit.AsyncRedkit, bind an "
            "async_sessionmaker, AsyncSession, async_scoped_session or AsyncEngine"
        )
    if outbox is not None and not isinstance(outbox, Outbox):
        raise TypeError(f"outbox must be a redkit.sqlalchemy.Outbox, not {type(outbox).__name__}")
    binding = Binding(resolved, kit, rules or {}, tables or {}, outbox)
    _bindings.append(weakref.ref(binding))
    return binding


# The bindings in force, oldest first, held weakly: a binding lives as long as its listeners
# (as long as its target, or until it is unbound), and the registry never keeps a client alive.
_bindings: list[weakref.ref[Binding]] = []


def _unregister(binding: Binding) -> None:
    _bindings[:] = [ref for ref in _bindings if ref() not in (None, binding)]


def _binding_of(session: Any) -> Binding | None:
    for ref in reversed(_bindings):
        binding = ref()
        if binding is not None and _covers(binding, session):
            return binding
    return None


def enqueue_after_commit(session: Any, task: Any, /, *args: Any, **kwargs: Any) -> str:
    """Send ``task.enqueue(*args, **kwargs)`` when ``session``'s transaction commits (nothing on
    rollback). Returns the job's id now, so a response can name the job before it exists. With
    the binding's ``outbox``, the job is checked and its row added to the session now: it is
    written by the transaction itself, sent after the commit, and by the outbox's relay if this
    process dies before that.

    ``session`` is a ``Session`` or ``scoped_session`` with a task of a sync queue, or an
    ``AsyncSession`` or ``async_scoped_session`` with a task of an async queue; this call is
    not awaited either way: the job is sent (and awaited) by ``commit()``."""
    session = sync_session_of(session)
    binding = _binding_of(session)
    if binding is None:
        raise RuntimeError(
            "this session's sessionmaker (or engine) is not bound: call "
            "redkit.sqlalchemy.bind(...) first"
        )
    enqueue = getattr(task, "enqueue", None)
    if not hasattr(task, "options") or not callable(enqueue):
        raise TypeError(f"task must be a redkit task (from @queue.task), not {task!r}")
    if inspect.iscoroutinefunction(enqueue) != binding.is_async:
        kind = "an async queue's" if binding.is_async else "a sync queue's"
        raise TypeError(f"task must be {kind} task for this session, not {task!r}")
    job_id = uuid.uuid4().hex
    binding.add_job(session, task, job_id, args, kwargs)
    return job_id


def _covers(binding: Binding, session: Any) -> bool:
    from sqlalchemy.orm import Session

    if not isinstance(session, Session) or not binding.mine(session):
        return False
    if binding.engine is not None:
        return True
    target = binding.target
    if target is None:
        return False
    if target is session:
        return True
    # a sessionmaker makes its sessions from a Session subclass of its own
    cls = target if isinstance(target, type) else getattr(target, "class_", None)
    return isinstance(cls, type) and isinstance(session, cls)
