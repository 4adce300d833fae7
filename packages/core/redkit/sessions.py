"""Server-side sessions: ``kit.sessions``, the primitives that framework session adapters wrap.

A session is one Redis hash, ``<prefix>:session:{<shard>}:<rest of the id>``: each key the
application stores is a field ``u:<key>`` holding its JSON value, so two requests that change
different keys of one session both keep their change. Reserved fields (``m:c`` the creation time
on Redis' clock, ``m:s`` the stored size) cannot collide with user fields.

Session ids are 45 URL-safe characters: a 2-character shard (the cluster hash tag) followed by
``secrets.token_urlsafe(32)`` (256 random bits). A regenerated id keeps the shard of the old one,
so the old and the new key live in one hash slot and a single script moves the data, on Redis
Cluster too; the random part, and so the id's 256 bits of entropy, is new.

Every state change is one Lua script (``session_create``, ``session_load``, ``session_save``):
expiry (sliding ``session_ttl``, capped by the absolute ``session_max_age``), the size limit and
the "never resurrect" rule are decided inside Redis. The logic lives once in :class:`SessionCore`
as flows; :class:`Sessions` and :class:`AsyncSessions` only hand them to their executor.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

from ._checks import shown
from ._durations import to_ms
from ._executor import AsyncExecutor, SyncExecutor
from ._keys import Keyspace
from ._ops import Batch, Flow, Script, command, script
from ._stats import Stats
from .errors import InvalidKeyError, SerializationError, SessionTooLarge
from .serializers import JsonSerializer, find_unserializable
from .settings import Settings

__all__ = ["SID_LENGTH", "AsyncSessions", "SessionCore", "SessionData", "Sessions", "valid_sid"]

CREATE = Script.load("session_create")
LOAD = Script.load("session_load")
SAVE = Script.load("session_save")

SID_LENGTH = 45
"""Length of a session id: a 2-character shard plus 43 characters carrying 256 random bits."""
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# 43 base64url characters hold 258 bits: in the canonical encoding of 32 bytes the last one carries
# 4 bits and 2 zero bits, so only these 16 characters can end an id
_SID = re.compile(r"[A-Za-z0-9_-]{44}[AEIMQUYcgkosw048]")
_FIELD = "u:"  # prefix of the fields holding the application's keys
_FIELD_BYTES = _FIELD.encode()
_json = JsonSerializer()
S = TypeVar("S", bound="SessionData")


def valid_sid(sid: object) -> str | None:
    """``sid`` as a ``str`` when it is a well-formed session id (exactly 45 characters of the
    base64url alphabet, in canonical form), else ``None``. Accepts ``str`` and ASCII ``bytes``;
    anything else, of any type, is ``None``: a cookie value is never trusted to build a key."""
    if isinstance(sid, (bytes, bytearray)):
        if len(sid) != SID_LENGTH:
            return None
        try:
            sid = bytes(sid).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(sid, str) or len(sid) != SID_LENGTH or _SID.fullmatch(sid) is None:
        return None
    return str(sid)


def _new_sid(shard: str | None = None) -> str:
    if shard is None:
        shard = _ALPHABET[secrets.randbelow(64)] + _ALPHABET[secrets.randbelow(64)]
    return shard + secrets.token_urlsafe(32)


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidKeyError(f"session keys must be str, not {type(key).__name__} ({shown(key)})")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f"session key {shown(key)} is not valid Unicode (lone surrogate)"
        ) from None
    return key


def _dumps(key: str, value: Any) -> bytes:
    """The JSON of one session value; a value JSON cannot hold raises ``SerializationError``
    naming where it is (``session["cart"][1] is a set``)."""
    try:
        return _json.dumps(value)
    except SerializationError:
        where = find_unserializable(value, f"session[{key!r}]")
        if where is None:
            raise
        raise SerializationError(
            f"session values must be JSON: {where}. Store JSON types (dict with str keys, list, "
            "str, int, float, bool, None) or convert the value first."
        ) from None


def _loads(raw: bytes) -> Any:
    return _json.loads(raw)


def _field_size(key: str, raw: bytes) -> int:
    return len(_FIELD_BYTES) + len(key.encode("utf-8")) + len(raw)


def _too_large(size: int, limit: int) -> SessionTooLarge:
    return SessionTooLarge(
        f"the session would take {size} bytes, more than session_max_bytes ({limit}); "
        "nothing was written"
    )


class SessionData(MutableMapping[str, Any]):
    """A session's data as a dict that knows what changed since it was loaded or committed.

    Returned by ``kit.sessions.open(sid)`` and written back by ``kit.sessions.commit(session)``.
    Changes are found by comparing each value's JSON with the JSON last read from or written to
    Redis, so a value changed in place (``session["cart"].append(3)``) is saved too, and a key set
    to the value it already had is not rewritten. Not thread-safe: one per request.

    ``SessionData()`` is a new, empty session; ``SessionData(data=...)`` a new one with data.
    """

    __slots__ = ("_data", "_regenerate", "_sid", "_stored", "accessed", "expires_in")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._sid: str | None = None
        self._data: dict[str, Any] = {}
        self._stored: dict[str, bytes] = {}  # key -> JSON as last read from / written to Redis
        self._regenerate = False
        self.accessed = False
        """True once the data was read or written (adapters send ``Vary: Cookie`` then)."""
        self.expires_in: float | None = None
        """Seconds the session had left in Redis when it was last loaded or committed (idle
        timeout capped by the absolute lifetime): a cookie's ``Max-Age``. ``None`` when new."""
        if data is not None:
            self.update(data)
        self.accessed = False

    @classmethod
    def _from_store(cls: type[S], sid: str, stored: dict[str, bytes], ttl_ms: int) -> S:
        session = cls()
        session._sid = sid
        session._stored = stored
        session._data = {k: _loads(v) for k, v in stored.items()}
        session.expires_in = ttl_ms / 1000
        return session

    # -- state -----------------------------------------------------------------------------------
    @property
    def sid(self) -> str | None:
        """The session id, or ``None`` while the session is new (not yet created in Redis)."""
        return self._sid

    @property
    def new(self) -> bool:
        """True when the session does not exist in Redis yet: ``commit`` will create it."""
        return self._sid is None

    @property
    def modified(self) -> bool:
        """True when ``commit`` has something to write (a key set, changed or deleted, or a new id
        asked for). A value JSON cannot hold counts as a change (``commit`` will raise)."""
        if self._regenerate:
            return True
        try:
            changed, removed = self._encoded_diff()
        except SerializationError:
            return True
        return bool(changed or removed)

    def diff(self) -> tuple[dict[str, Any], set[str]]:
        """What changed since the last load or commit: ``(changes, removed)``, ready for
        ``kit.sessions.save(sid, changes, removed)``."""
        changed, removed = self._encoded_diff()
        return {k: self._data[k] for k in changed}, set(removed)

    def regenerate(self) -> None:
        """Ask ``commit`` to move the session to a new id, keeping its data (do it when the user
        logs in or gains privileges, against session fixation). No effect on a new session."""
        self._regenerate = True

    def _encoded_diff(self) -> tuple[dict[str, bytes], list[str]]:
        stored = self._stored
        changed: dict[str, bytes] = {}
        for key, value in self._data.items():
            raw = _dumps(key, value)
            if stored.get(key) != raw:
                changed[key] = raw
        removed = [k for k in stored if k not in self._data]
        return changed, removed

    def _committed(
        self, sid: str, changed: Mapping[str, bytes], removed: Iterable[str], ttl_ms: int
    ) -> None:
        self._sid = sid
        self._stored.update(changed)
        for key in removed:
            self._stored.pop(key, None)
        self._regenerate = False
        self.expires_in = ttl_ms / 1000

    def _gone(self) -> None:
        """The session no longer exists in Redis: become a new, empty session, so that a later
        commit cannot bring its old data back under a new id."""
        self._sid = None
        self._data.clear()
        self._stored.clear()
        self._regenerate = False
        self.expires_in = None

    # -- mapping protocol ------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self._data[_check_key(key)] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self._data)

    def __len__(self) -> int:
        self.accessed = True
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self._data

    def clear(self) -> None:
        """Remove every key (``commit`` deletes them in Redis; the session itself stays)."""
        self.accessed = True
        self._data.clear()

    def __repr__(self) -> str:
        # never the whole id: reprs end up in logs, and the id is a bearer credential
        shown = "new" if self._sid is None else f"sid={self._sid[:2]}..."
        return f"<SessionData {shown} keys={sorted(self._data)!r}>"


class SessionCore:
    """The flows of ``kit.sessions``, shared by :class:`Sessions` and :class:`AsyncSessions`:
    input validation, encoding and key building, no I/O."""

    def __init__(self, settings: Settings, keyspace: Keyspace, stats: Stats) -> None:
        self.settings = settings
        self.keys = keyspace
        self.stats = stats
        self.idle_ms = to_ms(settings.session_ttl)
        self.max_age_ms = to_ms(settings.session_max_age)
        self.max_bytes = settings.session_max_bytes

    def key(self, sid: str) -> str:
        """The Redis key of a *validated* session id: ``<prefix>:session:{<shard>}:<rest>``."""
        return self.keys.tagged("session", sid[:2], sid[2:])

    def _valid(self, sid: object) -> str | None:
        valid = valid_sid(sid)
        if valid is None and sid is not None:
            self.stats.incr("session_invalid_ids")
        return valid

    # -- encoding --------------------------------------------------------------------------------
    def _encode(self, data: Mapping[str, Any], what: str = "data") -> dict[str, bytes]:
        """JSON of every value, after checking its key; then the cheap size check."""
        if not isinstance(data, Mapping):
            raise TypeError(f"session {what} must be a mapping, not {type(data).__name__}")
        out = {key: _dumps(_check_key(key), value) for key, value in data.items()}
        self._check_size(out)
        return out

    def _check_size(self, encoded: Mapping[str, bytes]) -> None:
        """Raise ``SessionTooLarge`` before any I/O when the fields being written already exceed
        the limit on their own: the stored session would then too (the script checks the rest)."""
        size = sum(_field_size(k, v) for k, v in encoded.items())
        if size > self.max_bytes:
            self.stats.incr("session_too_large")
            raise _too_large(size, self.max_bytes)

    @staticmethod
    def _removed(removed: Iterable[str], changes: Mapping[str, bytes]) -> list[str]:
        if isinstance(removed, (str, bytes)):
            raise TypeError("removed must be a list of keys, not a single string")
        try:
            keys = list(removed)
        except TypeError:
            raise TypeError(
                f"removed must be a list of keys, not {type(removed).__name__}"
            ) from None
        out = list(dict.fromkeys(_check_key(k) for k in keys))
        both = [k for k in out if k in changes]
        if both:
            raise ValueError(f"keys both changed and removed: {both!r}")
        return out

    def _pairs(self, encoded: Mapping[str, bytes]) -> list[str | bytes]:
        argv: list[str | bytes] = []
        for key, raw in encoded.items():
            argv += (_FIELD + key, raw)
        return argv

    def _limits(self) -> list[int]:
        return [self.idle_ms, self.max_age_ms, self.max_bytes]

    def _status(self, reply: list[Any]) -> tuple[int, int]:
        status, value = int(reply[0]), int(reply[1])
        if status == -1:
            self.stats.incr("session_too_large")
            raise _too_large(value, self.max_bytes)
        return status, value

    # -- batches ---------------------------------------------------------------------------------
    def _create(self, encoded: Mapping[str, bytes]) -> Batch[tuple[str, int]]:
        sid = _new_sid()
        # safe to re-send (idempotent, the default): the script creates only if the fresh random
        # key is absent, and answers success when it finds it (its own earlier run)
        call = script(CREATE, [self.key(sid)], [*self._limits(), *self._pairs(encoded)])

        def parse(reply: list[Any]) -> tuple[str, int]:
            _, ttl = self._status(reply)
            self.stats.incr("session_creates")
            return sid, ttl

        return Batch.one(call, parse)

    def _save(
        self,
        sid: str,
        encoded: Mapping[str, bytes],
        removed: list[str],
        new_sid: str | None = None,
    ) -> Batch[tuple[int, int]]:
        keys = [self.key(sid)] if new_sid is None else [self.key(sid), self.key(new_sid)]
        argv: list[Any] = [*self._limits(), len(encoded), *self._pairs(encoded)]
        argv += [_FIELD + k for k in removed]
        # safe to re-send: absolute values, the size recomputed from what is stored, and a move
        # whose reply was lost finds its fresh new key on the second run
        return Batch.one(script(SAVE, keys, argv), self._status)

    def _fetch(self, sid: str, with_data: bool) -> Batch[tuple[dict[str, bytes], int] | None]:
        call = script(LOAD, [self.key(sid)], [self.idle_ms, self.max_age_ms, int(with_data)])

        def parse(reply: list[Any]) -> tuple[dict[str, bytes], int] | None:
            if int(reply[0]) != 1:
                return None
            stored: dict[str, bytes] = {}
            if with_data:
                fields = reply[2]
                for i in range(0, len(fields), 2):
                    name = fields[i]
                    if name.startswith(_FIELD_BYTES):
                        stored[name[len(_FIELD_BYTES) :].decode("utf-8")] = fields[i + 1]
            return stored, int(reply[1])

        return Batch.one(call, parse)

    # -- flows -----------------------------------------------------------------------------------
    def create(self, data: Mapping[str, Any] | None) -> Flow[str]:
        """Flow of ``create``: a new session holding ``data``; returns its id."""
        encoded = self._encode({} if data is None else data)
        created: tuple[str, int] = yield self._create(encoded)
        return created[0]

    def load(self, sid: object) -> Flow[dict[str, Any] | None]:
        """Flow of ``load``: the data of a live session (its expiry slid), else ``None``."""
        valid = self._valid(sid)
        found = None if valid is None else (yield self._fetch(valid, True))
        if found is None:
            if sid is not None:
                self.stats.incr("session_misses")
            return None
        self.stats.incr("session_hits")
        return {k: _loads(v) for k, v in found[0].items()}

    def open(self, sid: object, session_class: type[S] = SessionData) -> Flow[S]:  # type: ignore[assignment]
        """Flow of ``open``: a ``session_class`` (:class:`SessionData` or a subclass) of the
        live session ``sid``, or a new one."""
        if not (isinstance(session_class, type) and issubclass(session_class, SessionData)):
            raise TypeError(
                f"session_class must be a SessionData subclass, not {shown(session_class)}"
            )
        valid = self._valid(sid)
        found = None if valid is None else (yield self._fetch(valid, True))
        if found is None:
            if sid is not None:
                self.stats.incr("session_misses")
            return session_class()
        self.stats.incr("session_hits")
        return session_class._from_store(str(valid), *found)

    def save(self, sid: object, changes: Mapping[str, Any], removed: Iterable[str]) -> Flow[bool]:
        """Flow of ``save``: write ``changes``, delete ``removed``; False when the session is
        gone (nothing is written then, and nothing created)."""
        encoded = self._encode(changes, "changes")
        gone = self._removed(removed, encoded)
        valid = self._valid(sid)
        if valid is None:
            self.stats.incr("session_write_misses")
            return False
        status, _ = yield self._save(valid, encoded, gone)
        return self._written(status == 1)

    def _written(self, ok: bool) -> bool:
        self.stats.incr("session_saves" if ok else "session_write_misses")
        return ok

    def regenerate(self, sid: object) -> Flow[str | None]:
        """Flow of ``regenerate``: move the session to a new id in one script."""
        valid = self._valid(sid)
        if valid is None:
            self.stats.incr("session_write_misses")
            return None
        new_sid = _new_sid(valid[:2])
        status, _ = yield self._save(valid, {}, [], new_sid)
        if status != 1:
            self.stats.incr("session_write_misses")
            return None
        self.stats.incr("session_regenerations")
        return new_sid

    def touch(self, sid: object) -> Flow[bool]:
        """Flow of ``touch``: slide the expiry of a live session."""
        valid = self._valid(sid)
        found = None if valid is None else (yield self._fetch(valid, False))
        return found is not None

    def destroy(self, sid: object) -> Flow[bool]:
        """Flow of ``destroy``: delete the session; True if it existed."""
        valid = self._valid(sid)
        if valid is None:
            return False
        # re-sent after a lost reply, UNLINK would answer 0 for the key the first send removed:
        # the session is gone either way, which is what matters (logout must not fail on a blip)
        removed = yield Batch.one(command("UNLINK", self.key(valid)))
        if removed:
            self.stats.incr("session_destroys")
        return bool(removed)

    def commit(self, session: SessionData) -> Flow[str | None]:
        """Flow of ``commit``: create a new session that holds data, or write what changed (and
        move it to a new id when asked); returns the id the client should hold, or ``None``."""
        if not isinstance(session, SessionData):
            raise TypeError(f"session must be a SessionData, not {type(session).__name__}")
        changed, removed = session._encoded_diff()
        self._check_size(changed)
        sid = session.sid
        if sid is None:
            if not changed:
                return None  # nothing stored: no session to create, no cookie to send
            created: tuple[str, int] = yield self._create(changed)
            session._committed(created[0], changed, (), created[1])
            return created[0]
        if not changed and not removed and not session._regenerate:
            return sid  # nothing to write (the load already slid the expiry)
        target = _new_sid(sid[:2]) if session._regenerate else None
        status, ttl = yield self._save(sid, changed, removed, target)
        if not self._written(status == 1):
            session._gone()
            return None
        if target is not None:
            self.stats.incr("session_regenerations")
        session._committed(target or sid, changed, removed, ttl)
        return target or sid


class Sessions:
    """Server-side sessions (``kit.sessions``): one Redis hash per session, JSON values, sliding
    expiry capped by an absolute lifetime, a size limit, atomic id regeneration.

    Ids are validated before any key is built from them: an unknown, expired or malformed id is
    never adopted (``load`` answers ``None``, ``save`` writes nothing and creates nothing).
    Fails closed: when Redis is unreachable every method raises ``RedkitConnectionError``.
    """

    def __init__(self, kit: Any) -> None:
        self._core = SessionCore(kit.settings, kit.keyspace, kit.stats)
        self._x: SyncExecutor = kit._executor

    def create(self, data: Mapping[str, Any] | None = None) -> str:
        """Create a session holding ``data`` (str keys, JSON values) and return its new id.
        Raises ``SessionTooLarge`` (nothing written) above ``session_max_bytes``."""
        return self._x.drive(self._core.create(data))

    def load(self, sid: object) -> dict[str, Any] | None:
        """The data of session ``sid``, sliding its expiry; ``None`` when the id is unknown,
        expired or malformed (any input is safe: a cookie's value as is)."""
        return self._x.drive(self._core.load(sid))

    def save(
        self, sid: object, changes: Mapping[str, Any] | None = None, removed: Iterable[str] = ()
    ) -> bool:
        """Write ``changes`` and delete the keys in ``removed``, atomically, leaving the other
        keys as they are; slides the expiry. Returns False, writing nothing, when the session no
        longer exists (it is never created again). Raises ``SessionTooLarge`` (nothing written)
        when the stored session would exceed ``session_max_bytes``."""
        return self._x.drive(self._core.save(sid, {} if changes is None else changes, removed))

    def regenerate(self, sid: object) -> str | None:
        """Move the session to a new id, keeping its data and creation time, and return the new
        id; the old id is unknown from then on. ``None`` when ``sid`` is not a live session."""
        return self._x.drive(self._core.regenerate(sid))

    def destroy(self, sid: object) -> bool:
        """Delete the session; True if it existed."""
        return self._x.drive(self._core.destroy(sid))

    def touch(self, sid: object) -> bool:
        """Slide the expiry of a live session without reading it; False when it is unknown."""
        return self._x.drive(self._core.touch(sid))

    def open(self, sid: object, session_class: type[S] = SessionData) -> S:  # type: ignore[assignment]
        """A :class:`SessionData` for ``sid`` (loaded, expiry slid), or a new empty one when
        ``sid`` is ``None``, unknown, expired or malformed."""
        return self._x.drive(self._core.open(sid, session_class))

    def commit(self, session: SessionData) -> str | None:
        """Write a :class:`SessionData` back: create it when new and not empty, else write only
        what changed (and move it to a new id after ``session.regenerate()``). Returns the id
        the client should now hold, or ``None`` (no session: new and empty, or destroyed or
        expired meanwhile, in which case ``session`` is emptied and nothing is written)."""
        return self._x.drive(self._core.commit(session))


class AsyncSessions:
    """The asyncio twin of :class:`Sessions` (``redkit.asyncio.Redkit().sessions``); same methods,
    awaited."""

    def __init__(self, kit: Any) -> None:
        self._core = SessionCore(kit.settings, kit.keyspace, kit.stats)
        self._x: AsyncExecutor = kit._executor

    async def create(self, data: Mapping[str, Any] | None = None) -> str:
        """Create a session holding ``data`` and return its new id."""
        return await self._x.drive(self._core.create(data))

    async def load(self, sid: object) -> dict[str, Any] | None:
        """The data of session ``sid``, sliding its expiry; ``None`` when unknown."""
        return await self._x.drive(self._core.load(sid))

    async def save(
        self, sid: object, changes: Mapping[str, Any] | None = None, removed: Iterable[str] = ()
    ) -> bool:
        """Write ``changes`` and delete ``removed`` atomically; False when the session is gone."""
        return await self._x.drive(
            self._core.save(sid, {} if changes is None else changes, removed)
        )

    async def regenerate(self, sid: object) -> str | None:
        """Move the session to a new id, keeping its data; ``None`` when it is unknown."""
        return await self._x.drive(self._core.regenerate(sid))

    async def destroy(self, sid: object) -> bool:
        """Delete the session; True if it existed."""
        return await self._x.drive(self._core.destroy(sid))

    async def touch(self, sid: object) -> bool:
        """Slide the expiry of a live session; False when it is unknown."""
        return await self._x.drive(self._core.touch(sid))

    async def open(self, sid: object, session_class: type[S] = SessionData) -> S:  # type: ignore[assignment]
        """A :class:`SessionData` (or ``session_class``) for ``sid``, or a new empty one."""
        return await self._x.drive(self._core.open(sid, session_class))

    async def commit(self, session: SessionData) -> str | None:
        """Write a :class:`SessionData` back; returns the id the client should hold, or
        ``None``."""
        return await self._x.drive(self._core.commit(session))
