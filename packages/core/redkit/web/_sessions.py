"""The session cookie: signing, reading a cookie a client sent (whatever it holds), the cookie's
attributes, and what to do with it at the end of a request.

The cookie carries only the session id, signed with HMAC-SHA256; the data stays in Redis
(``kit.sessions``). A cookie that is missing, malformed, of any size or bytes, or signed by
another key yields no id, so the request gets a new, empty session; it never fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RedkitConnectionError
from ..sessions import SessionData, valid_sid
from ._http import WebFlow

__all__ = [
    "CookieAttributes",
    "CookieChange",
    "CookieSigner",
    "LazySession",
    "SessionCookies",
    "session_state",
]

MAX_COOKIE = 512
"""Longest cookie value looked at; a longer one is not a session cookie of ours."""


class CookieSigner:
    """Signs a cookie value (a session id) with HMAC-SHA256: ``<value>.<signature>``.

    ``keys``: the current secret first, then older ones still accepted (key rotation: values
    signed with an old key keep working until it is dropped; new ones use the first). ``salt``
    keeps signatures made for one purpose from being accepted for another."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str | bytes], salt: str = "redkit.session") -> None:
        derived = []
        for key in keys:
            raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
            if not raw:
                continue
            derived.append(
                hmac.new(raw, b"redkit-cookie:" + salt.encode(), hashlib.sha256).digest()
            )
        if not derived:
            raise ValueError("signing a cookie needs a non-empty secret key")
        self._keys = tuple(derived)

    @staticmethod
    def _mac(key: bytes, value: bytes) -> bytes:
        digest = hmac.new(key, value, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def sign(self, value: str) -> str:
        """``value`` with its signature appended (by the current key)."""
        return f"{value}.{self._mac(self._keys[0], value.encode('utf-8')).decode('ascii')}"

    def verifies(self, signed: object) -> bool:
        """Whether ``signed`` carries a signature of one of the keys."""
        return self.unsign(signed) is not None

    def unsign(self, signed: object) -> str | None:
        """The value of a signed cookie, or ``None`` when it is missing, not ASCII, too long,
        malformed or signed by none of the keys (compared in constant time). Never raises."""
        if isinstance(signed, (bytes, bytearray)):
            raw = bytes(signed)
        elif isinstance(signed, str):
            try:
                raw = signed.encode("ascii")
            except UnicodeEncodeError:
                return None
        else:
            return None
        if not raw or len(raw) > MAX_COOKIE or not raw.isascii():
            return None
        value, dot, mac = raw.rpartition(b".")
        if not dot or not value or not mac:
            return None
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(self._mac(key, value), mac)
        return value.decode("ascii") if ok else None

    def session_id(self, cookie: object) -> str | None:
        """The session id a cookie carries: signed by one of the keys and well formed."""
        return valid_sid(self.unsign(cookie))


@dataclass(frozen=True, slots=True)
class CookieAttributes:
    """The attributes of the session cookie (``SameSite=Lax`` and ``HttpOnly`` unless told)."""

    name: str = "session"
    domain: str | None = None
    path: str = "/"
    secure: bool = False
    httponly: bool = True
    samesite: str | None = "Lax"
    partitioned: bool = False


@dataclass(frozen=True, slots=True)
class CookieChange:
    """What to do with the session cookie: ``set`` it to ``value`` (for ``max_age`` seconds;
    ``None``: until the browser closes) or ``delete`` it."""

    action: str
    value: str = ""
    max_age: float | None = None


class LazySession(SessionData):
    """A session read from Redis when the request first uses it (``loader(sid, SessionData)``
    is ``kit.sessions.open``), so a request that never touches it costs no round trip and
    works while Redis is down. Changes are written key by key at the end of the request."""

    cookie: str | None = None
    """The cookie value the request carried (``None``: no cookie)."""
    _pending_sid: str | None = None
    _loader: Any = None
    _touched = False
    _sealed = False
    failure: BaseException | None = None
    """Why the session could not be read (Redis unreachable), or ``None``."""

    def defer(self, sid: str, loader: Callable[[str, type[SessionData]], SessionData]) -> None:
        """Read session ``sid`` with ``loader`` when it is first used."""
        self._pending_sid = sid
        self._loader = loader

    @property
    def touched(self) -> bool:
        """Whether the request used the session (read, wrote or regenerated it): the response
        may depend on it. Only a touched session is saved."""
        return self._touched

    def seal(self) -> None:
        """The response is made: from now on a read that fails finds an empty session instead
        of raising (hooks that run after the view, like Flask-Login's, then do not turn the
        answer into a crash); saving the session raises the failure."""
        self._sealed = True

    def _load(self) -> None:
        self._touched = True
        loader, sid = self._loader, self._pending_sid
        if loader is None:
            return
        if self.failure is not None:
            if self._sealed:
                return
            raise self.failure
        try:
            found: SessionData = loader(sid, SessionData)
        except RedkitConnectionError as exc:
            self.failure = exc
            if self._sealed:
                return
            raise
        self._loader = self._pending_sid = None
        self._sid = found._sid
        self._stored = found._stored
        self._data.update(found._data)
        self.expires_in = found.expires_in

    @property
    def sid(self) -> str | None:
        self._load()
        return self._sid

    @property
    def new(self) -> bool:
        self._load()
        return self._sid is None

    @property
    def modified(self) -> bool:
        if self._loader is not None:
            return self._regenerate
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        """Accepted for code written for cookie sessions (``session.modified = True`` after
        changing a value in place): changes are found by comparing values, so it only marks
        the session as used."""
        if value:
            self._load()

    def regenerate(self) -> None:
        self._load()
        super().regenerate()

    def _encoded_diff(self) -> tuple[dict[str, bytes], list[str]]:
        self._load()
        return super()._encoded_diff()

    def __getitem__(self, key: str) -> Any:
        self._load()
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._load()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._load()
        super().__delitem__(key)

    def __iter__(self) -> Any:
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def clear(self) -> None:
        self._load()
        super().clear()

    def digest(self) -> str:
        """Who this session is, for a cache: ``anonymous`` when it does not exist, else its id
        and a hash of its stored contents (read from Redis when not read yet)."""
        self._load()
        if self._sid is None:
            return "anonymous"
        contents = hashlib.sha256()
        for key in sorted(self._stored):
            contents.update(
                key.encode("utf-8", "surrogatepass") + b"\0" + self._stored[key] + b"\0"
            )
        return f"{self._sid}:{contents.hexdigest()}"

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (kept in the session itself)."""
        self._load()
        return bool(self._data.get("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)


def session_state(session: Any) -> tuple[bool, bool]:
    """``(used, changed)`` of a request's session, read without touching it: ``used`` when the
    response may depend on it (it was read), ``changed`` when it was created, changed or
    regenerated. Works for :class:`LazySession` and any object with ``accessed``/``modified``
    flags (Flask's cookie session); ``None`` (no session) is ``(False, False)``."""
    if session is None:
        return False, False
    if isinstance(session, LazySession):
        if not session.touched:
            return False, False
        return True, bool(session.modified or (session.new and len(session) > 0))
    used = bool(getattr(session, "accessed", False))
    changed = bool(getattr(session, "modified", False))
    return used or changed, changed


class SessionCookies:
    """The session cookie of one application: reading it, and deciding at the end of a request
    (with ``kit.sessions``) whether to set, refresh or delete it."""

    def __init__(
        self,
        signer: CookieSigner,
        attributes: CookieAttributes = CookieAttributes(),
        refresh_each_request: bool = True,
    ) -> None:
        self.signer = signer
        self.attributes = attributes
        self.refresh_each_request = refresh_each_request

    def open(
        self,
        cookie: str | None,
        loader: Callable[[str, type[SessionData]], SessionData],
        session_class: type[LazySession] = LazySession,
    ) -> LazySession:
        """The session of a request carrying ``cookie``, read by ``loader`` when first used.
        An unsigned, tampered or malformed cookie gives a new session (never an error)."""
        session = session_class()
        session.cookie = cookie if isinstance(cookie, str) else None
        sid = self.signer.session_id(cookie)
        if sid is not None:
            session.defer(sid, loader)
        return session

    def save(self, session: LazySession) -> WebFlow[CookieChange | None]:
        """Flow: store the session's changes and say what to do with the cookie. A session
        never used changes nothing; an emptied one is destroyed (cookie deleted); a session
        that expired meanwhile loses its cookie. The cookie is set when its value changes, and
        on every request for a permanent session when ``refresh_each_request``."""
        if session.failure is not None:
            raise session.failure  # its changes cannot be kept: say so (503), never drop them
        if not session.touched:
            return None
        delete = CookieChange("delete") if session.cookie is not None else None
        if not session.new and not session._data:
            yield lambda kit: kit.sessions.destroy(session.sid)
            return delete
        sid = yield lambda kit: kit.sessions.commit(session)
        if sid is None:
            return delete
        value = self.signer.sign(sid)
        permanent = session.permanent
        if value == session.cookie and not (permanent and self.refresh_each_request):
            return None
        max_age = session.expires_in if permanent else None
        return CookieChange("set", value, max_age)
