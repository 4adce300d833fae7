"""Flask's ``session`` kept server-side in Redis (``REDKIT_SESSIONS = True``).

The cookie carries only the session id, signed with the application's ``SECRET_KEY`` (older
keys in ``SECRET_KEY_FALLBACKS`` are still accepted, and such a cookie is re-signed with the
current key). The cookie's name, domain, path, ``HttpOnly``, ``Secure``, ``SameSite`` and
``Partitioned`` come from Flask's own ``SESSION_COOKIE_*`` settings (``SameSite`` is ``Lax``
when Flask's is unset). A cookie whose id the server does not know, or whose signature does
not verify, is never adopted: the request gets a new, empty session.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask.sessions import SessionInterface, SessionMixin

from flask import Flask, Request, Response
from redkit.sessions import SessionData
from redkit.web import CookieSigner

__all__ = ["RedkitSession", "RedkitSessionInterface"]


class RedkitSession(SessionData, SessionMixin):  # type: ignore[override]
    """Flask's ``session`` when redkit keeps it: a dict whose changes are written key by key
    (two concurrent requests changing different keys both keep their change).

    ``session.regenerate()`` moves it to a new id at the end of the request (call it at login);
    ``session.permanent = True`` gives the cookie an expiry (the session's remaining lifetime),
    otherwise it lasts as long as the browser session. The idle timeout (``session_ttl``) and
    absolute lifetime (``session_max_age``) are enforced by Redis either way."""

    cookie: str | None = None
    """The cookie value the request carried (``None``: no cookie)."""

    @property
    def permanent(self) -> bool:
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
        session = self.ext.state(app).kit.sessions.open(sid, RedkitSession)
        session.cookie = cookie
        return session  # type: ignore[no-any-return]

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
