"""What ``bind`` listens to, for sync sessions and for SQLAlchemy's asyncio extension.

SQLAlchemy fires its session events on the sync ``Session`` an ``AsyncSession`` wraps, inside
the greenlet that runs each awaited call; it takes no listeners on the async objects
themselves. So an async target is resolved to the sync objects underneath it, and each binding
only handles the sessions of its own kind: an async binding those an ``AsyncSession`` wraps
(whose commits run in that greenlet, where a coroutine can be awaited), a sync one the others.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

try:
    from sqlalchemy.ext.asyncio import (
        AsyncEngine,
        AsyncSession,
        async_scoped_session,
        async_session,
        async_sessionmaker,
    )
except ImportError:  # pragma: no cover - an SQLAlchemy built without its asyncio extension
    AsyncEngine = AsyncSession = async_scoped_session = async_sessionmaker = None  # type: ignore[assignment,misc]
    async_session = None  # type: ignore[assignment]

T = TypeVar("T")

# SQLAlchemy 2.1 renamed await_only to await_ (the old name goes in 2.2)
await_greenlet: Any = getattr(util, "await_", None) or util.await_only


@dataclass
class Target:
    """What to listen to: ``listen`` (a ``Session`` class or instance), the ``engine`` whose
    sessions count (``None``: all of them), and for an async target the ``AsyncSession`` class
    that wraps them."""

    listen: Any
    engine: Engine | None
    async_class: type | None


def is_async_kit(kit: Any) -> bool:
    """Whether ``kit`` is an async client (``redkit.AsyncRedkit``, or one shaped like it)."""
    return inspect.iscoroutinefunction(getattr(getattr(kit, "cache", None), "invalidate", None))


def resolve(target: Any) -> Target:
    """The sync objects under ``target``. An ``async_sessionmaker`` is given a ``Session``
    subclass of its own, as a ``sessionmaker`` makes for itself, so that listening to it hears
    only its sessions."""
    if AsyncEngine is not None:
        if isinstance(target, async_scoped_session):
            target = target.session_factory
        if isinstance(target, AsyncEngine):
            return Target(Session, target.sync_engine, AsyncSession)
        if isinstance(target, async_sessionmaker):
            base = target.kw.get("sync_session_class") or target.class_.sync_session_class
            own = type(base.__name__, (base,), {})
            target.configure(sync_session_class=own)
            return Target(own, None, target.class_)
        if isinstance(target, AsyncSession):
            return Target(target.sync_session, None, type(target))
        if isinstance(target, type) and issubclass(target, AsyncSession):
            return Target(target.sync_session_class, None, target)
    if isinstance(target, Engine):
        return Target(Session, target, None)
    if hasattr(target, "session_factory"):  # scoped_session
        target = target.session_factory
    return Target(target, None, None)


def proxy_of(session: Session) -> Any:
    """The ``AsyncSession`` wrapping ``session``, or ``None``."""
    return None if async_session is None else async_session(session)


def sync_session_of(session: Any) -> Any:
    """The ``Session`` under an ``AsyncSession`` (or the session of this scope of an
    ``async_scoped_session`` or a ``scoped_session``); a ``Session`` as it is."""
    registry = getattr(session, "registry", None)
    if registry is not None and callable(registry):  # a scoped session: this scope's session
        session = registry()
    return getattr(session, "sync_session", session)


def run_in_greenlet(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from a session event: SQLAlchemy's greenlet hands it to the event
    loop and resumes the event once it is done, so the awaited call (``commit()``) returns only
    after it."""
    try:
        return await_greenlet(awaitable)  # type: ignore[no-any-return]
    except BaseException:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # never awaited: say nothing more of it
        raise
