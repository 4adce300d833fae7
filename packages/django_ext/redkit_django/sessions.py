"""Django sessions kept in Redis by ``kit.sessions``: ``SESSION_ENGINE = "redkit_django.sessions"``.

Each session is one Redis hash, one field per key, and a save writes only the keys the request
changed or removed: two requests changing different keys of one session both keep their change.
Session ids are made by redkit (256 random bits) and checked before any key is built from
them; an id a client invents, a malformed or oversized cookie, or an id of another prefix is
never adopted: the request gets a new, empty session.

How long a session lives: it ends at the first of

- Django's expiry, counted from the last save like Django's own backends: ``get_expiry_age()``
  (``SESSION_COOKIE_AGE``, or what ``set_expiry(seconds | timedelta | datetime)`` chose;
  ``set_expiry(0)`` makes the cookie a browser-session one and keeps ``SESSION_COOKIE_AGE``
  on the server). The deadline is stored with the session and checked at each load;
- redkit's idle timeout (``SESSION_TTL`` in ``REDKIT``), which every read and save slides;
- redkit's absolute lifetime (``SESSION_MAX_AGE``), counted from the session's creation.

``cycle_key()`` (called by ``django.contrib.auth.login``) moves the session to a new id in one
Lua script. ``clear_expired()`` has nothing to do: Redis expires the keys itself. Values are
stored as JSON whatever ``SESSION_SERIALIZER`` says (``SESSION_SERIALIZER`` is not used). The
async methods (``aload``, ``asave``, ``acycle_key``, ...) run on :func:`get_async_kit`.
Sessions fail closed: when Redis is unreachable, loading or saving raises
:class:`redkit.errors.RedkitConnectionError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from redkit import web
from redkit.errors import SerializationError
from redkit.serializers import JsonSerializer
from redkit.sessions import valid_sid

from .conf import get_async_kit, get_kit

__all__ = ["DEADLINE", "SessionStore"]

DEADLINE = "_redkit_expires_at"
"""The reserved session key holding Django's expiry (Unix seconds); never shown in the data."""

_json = JsonSerializer()
_NOT_LOADED = object()


def _encoded(value: Any) -> bytes | None:
    try:
        return _json.dumps(value)
    except SerializationError:
        return None  # counts as changed: the save raises the clear error


def _expired(deadline: object) -> bool:
    return isinstance(deadline, (int, float)) and deadline <= time.time()


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's session store over ``kit.sessions`` (see the module's description)."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._stored: dict[str, bytes | None] | None = {}
        """The JSON of each key as last read from or written to Redis; ``None`` when the
        session was cleared before being read (every stored key is then removed on save)."""

    def _validate_session_key(self, key: object) -> bool:
        return isinstance(key, str) and valid_sid(key) is not None

    # -- flows: each step an operation of the kit, run by the sync or the async driver ----------
    def _fetch(self, sid: str) -> web.WebFlow[dict[str, Any] | None]:
        """Flow: the live data of ``sid`` (without the deadline), or ``None``; a session past
        Django's expiry is deleted."""
        data = yield lambda kit: kit.sessions.load(sid)
        if data is None:
            return None
        if _expired(data.pop(DEADLINE, None)):
            yield lambda kit: kit.sessions.destroy(sid)
            return None
        return dict(data)

    def _load(self) -> web.WebFlow[dict[str, Any]]:
        sid = self.session_key
        data = None if sid is None else (yield from self._fetch(sid))
        if data is None:
            self._session_key = None
            data = {}
        self._stored = {k: _encoded(v) for k, v in data.items()}
        return data

    def _exists(self, sid: object) -> web.WebFlow[bool]:
        valid = valid_sid(sid)
        return valid is not None and (yield from self._fetch(valid)) is not None

    def _deadline(self, data: Mapping[str, Any]) -> int:
        age = self.get_expiry_age(expiry=data.get("_session_expiry"))
        return int(time.time()) + int(age)

    def _create(self) -> web.WebFlow[None]:
        data = self.__dict__.get("_session_cache")
        if data is None:
            data = {}
            self._session_cache = data
        sid = yield lambda kit: kit.sessions.create({**data, DEADLINE: self._deadline(data)})
        self._session_key = sid
        self._stored = {k: _encoded(v) for k, v in data.items()}
        self.modified = True

    def _save(self, must_create: bool) -> web.WebFlow[None]:
        sid = self.session_key
        if sid is None:
            return (yield from self._create())
        if must_create:
            if (yield from self._exists(sid)):
                raise CreateError
            self._session_key = None  # never a session under an id chosen outside redkit
            return (yield from self._create())
        data = self.__dict__.get("_session_cache", _NOT_LOADED)
        if data is _NOT_LOADED:
            data = self._session_cache = yield from self._load()
            if self.session_key is None:
                raise UpdateError
        assert isinstance(data, dict)
        if self._stored is None:  # cleared unread: remove whatever is stored
            found = yield from self._fetch(sid)
            if found is None:
                raise UpdateError
            self._stored = {k: _encoded(v) for k, v in found.items()}
        stored = self._stored
        changes = {k: v for k, v in data.items() if k not in stored or stored[k] != _encoded(v)}
        removed = [k for k in stored if k not in data]
        changes[DEADLINE] = self._deadline(data)
        ok = yield lambda kit: kit.sessions.save(sid, changes, removed)
        if not ok:
            raise UpdateError  # it vanished (a logout elsewhere): never brought back
        for key in removed:
            stored.pop(key, None)
        stored.update((k, _encoded(v)) for k, v in changes.items() if k != DEADLINE)

    def _cycle(self) -> web.WebFlow[None]:
        if "_session_cache" not in self.__dict__:
            self._session_cache = yield from self._load()
        sid = self.session_key
        if sid is not None:
            moved = yield lambda kit: kit.sessions.regenerate(sid)
            if moved is not None:
                self._session_key = moved
                self.modified = True
                return
            self._session_cache, self._stored = {}, {}  # gone meanwhile: start afresh
        yield from self._create()

    def _delete(self, session_key: str | None) -> web.WebFlow[None]:
        sid = self.session_key if session_key is None else session_key
        if sid is not None:
            yield lambda kit: kit.sessions.destroy(sid)

    def _forget(self) -> None:
        self._session_cache = {}
        self._stored = {}
        self.accessed = True
        self.modified = True

    # -- the SessionBase contract ---------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """The session's data (sliding its idle timeout); ``{}`` and no key when it is gone."""
        return web.run(self._load(), get_kit())

    async def aload(self) -> dict[str, Any]:
        return await web.arun(self._load(), get_async_kit())

    def exists(self, session_key: object) -> bool:
        """Whether ``session_key`` is a live session."""
        return web.run(self._exists(session_key), get_kit())

    async def aexists(self, session_key: object) -> bool:
        return await web.arun(self._exists(session_key), get_async_kit())

    def create(self) -> None:
        """Create a new session, with a new id, holding the current data."""
        web.run(self._create(), get_kit())

    async def acreate(self) -> None:
        await web.arun(self._create(), get_async_kit())

    def save(self, must_create: bool = False) -> None:
        """Write the keys changed or removed since the load; ``UpdateError`` when the session
        no longer exists, ``CreateError`` when ``must_create`` and it does."""
        web.run(self._save(must_create), get_kit())

    async def asave(self, must_create: bool = False) -> None:
        await web.arun(self._save(must_create), get_async_kit())

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session ``session_key`` (default: this one)."""
        web.run(self._delete(session_key), get_kit())

    async def adelete(self, session_key: str | None = None) -> None:
        await web.arun(self._delete(session_key), get_async_kit())

    def cycle_key(self) -> None:
        """Move the session to a new id, keeping its data, in one script (at login)."""
        web.run(self._cycle(), get_kit())

    async def acycle_key(self) -> None:
        await web.arun(self._cycle(), get_async_kit())

    def clear(self) -> None:
        """Remove every key; the save deletes them in Redis (nothing is read now)."""
        loaded = "_session_cache" in self.__dict__
        self._forget()
        if not loaded and self.session_key is not None:
            self._stored = None

    def flush(self) -> None:
        """Delete the session and start a new, empty one (at logout)."""
        self._forget()
        self.delete()
        self._session_key = None

    async def aflush(self) -> None:
        self._forget()
        await self.adelete()
        self._session_key = None

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis expires sessions by itself."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: Redis expires sessions by itself."""
