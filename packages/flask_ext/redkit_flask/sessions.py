"""Flask's ``session`` kept server-side in Redis (``REDKIT_SESSIONS = True``).

The cookie carries only the session id, signed with the application's ``SECRET_KEY`` (older
keys in ``SECRET_KEY_FALLBACKS`` are still accepted, and such a cookie is re-signed with the
current key). The cookie's name, domain, path, ``HttpOnly``, ``Secure``, ``SameSite`` and
``Partitioned`` come from Flask's own ``SESSION_COOKIE_*`` settings (``SameSite`` is ``Lax``
when Flask's is unset). A cookie whose id the server does not know, or whose signature does
not verify, is never adopted: the request gets a new, empty session.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from flask.sessions import SessionInterface, SessionMixin

from flask import Flask, Request, Response
from redkit.sessions import SessionData
from redkit.web import CookieSigner

__all__ = ["RedkitSession", "RedkitSessionInterface"]


class RedkitSession(SessionData, SessionMixin):  # type: ignore[override, unused-ignore]
    """Flask's ``session`` when redkit keeps it: a dict whose changes are written key by key
    (two concurrent requests changing different keys both keep their change).

    It is read from Redis when the request first uses it, so a view that never touches the
    session costs no round trip (and does not fail when Redis is down).
    ``session.regenerate()`` moves it to a new id at the end of the request (call it at login);
    ``session.permanent = True`` gives the cookie an expiry (the session's remaining lifetime),
    otherwise it lasts as long as the browser session. The idle timeout (``session_ttl``) and
    absolute lifetime (``session_max_age``) are enforced by Redis either way."""

    cookie: str | None = None
    """The cookie value the request carried (``None``: no cookie)."""
    _pending_sid: str | None = None
    _loader: Any = None

    def _defer(self, sid: str, loader: Any) -> None:
        self._pending_sid = sid
        self._loader = loader

    @property
    def loaded(self) -> bool:
        """False until the session was read from Redis (a request that never used it)."""
        return self._loader is None

    def _load(self) -> None:
        loader, sid = self._loader, self._pending_sid
        if loader is None:
            return
        self._loader = self._pending_sid = None
        found: SessionData = loader(sid, SessionData)
        self._sid = found._sid
        self._stored = found._stored
        self._data.update(found._data)
        self.expires_in = found.expires_in

    @property
    def sid(self) -> str | None:
        self._load()
        return self._sid

    @property
    def new(self) -> bool:  # type: ignore[override]
        self._load()
        return self._sid is None

    @property
    def modified(self) -> bool:  # type: ignore[override]
        if self._loader is not None:
            return self._regenerate
        return super().modified

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

    def __iter__(self) -> Iterator[str]:
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

    @property
    def permanent(self) -> bool:
        self._load()
        return bool(self._data.get("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)


class RedkitSessionInterface(SessionInterface):
    """The ``app.session_interface`` installed by the extension when ``REDKIT_SESSIONS`` is on."""

    def __init__(self, ext: Any) -> None:
        self.ext = ext
        self._signers: dict[tuple[Any, ...], CookieSigner] = {}

    def signer(self, app: Flask) -> CookieSigner | None:
        """The cookie signer for ``app``'s secret keys, or ``None`` when it has no secret key."""
        if not app.secret_key:
            return None
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or ()
        keys = (app.secret_key, *fallbacks)
        signer = self._signers.get(keys)
        if signer is None:
            signer = self._signers[keys] = CookieSigner(keys)
        return signer

    def open_session(self, app: Flask, request: Request) -> RedkitSession | None:
        signer = self.signer(app)
        if signer is None:
            return None  # Flask then uses a null session that explains SECRET_KEY is missing
        cookie = request.cookies.get(self.get_cookie_name(app))
        sid = signer.unsign(cookie) if cookie else None
        session = RedkitSession()
        session.cookie = cookie
        if sid is not None:  # read from Redis when the request first uses it
            session._defer(sid, self.ext.state(app).kit.sessions.open)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, RedkitSession):  # pragma: no cover - Flask passes ours
            return
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        secure = self.get_cookie_secure(app)
        samesite = self.get_cookie_samesite(app) or "Lax"
        httponly = self.get_cookie_httponly(app)
        partitioned = getattr(self, "get_cookie_partitioned", lambda app: False)(app)
        if session.accessed:
            response.vary.add("Cookie")
        if not session.loaded:
            return  # never used: nothing changed, nothing to refresh (the expiry did not slide)
        sessions = self.ext.state(app).kit.sessions

        def forget() -> None:
            if session.cookie is not None:
                response.delete_cookie(
                    name,
                    domain=domain,
                    path=path,
                    secure=secure,
                    samesite=samesite,
                    httponly=httponly,
                    **({"partitioned": partitioned} if partitioned else {}),
                )

        if not session.new and not session._data:
            # emptied (logout, session.clear()): remove it, not keep an empty hash alive
            sessions.destroy(session.sid)
            forget()
            return
        sid = sessions.commit(session)
        if sid is None:  # nothing to store, or the session expired meanwhile
            forget()
            return
        signer = self.signer(app)
        assert signer is not None  # open_session returned a null session otherwise
        value = signer.sign(sid)
        refresh = session.permanent and app.config.get("SESSION_REFRESH_EACH_REQUEST", True)
        if value == session.cookie and not refresh:
            return
        expires: datetime | None = None
        if session.permanent and session.expires_in is not None:
            expires = datetime.now(timezone.utc) + timedelta(seconds=session.expires_in)
        response.set_cookie(
            name,
            value,
            expires=expires,
            httponly=httponly,
            domain=domain,
            path=path,
            secure=secure,
            samesite=samesite,
            **({"partitioned": partitioned} if partitioned else {}),
        )
