"""Flask's ``session`` kept server-side in Redis (``REDKIT_SESSIONS = True``), over
:class:`redkit.web.SessionCookies`.

The cookie carries only the session id, signed with the application's ``SECRET_KEY`` (older
keys in ``SECRET_KEY_FALLBACKS`` are still accepted, and such a cookie is re-signed with the
current key). Its name, domain, path, ``HttpOnly``, ``Secure``, ``SameSite`` and
``Partitioned`` come from Flask's ``SESSION_COOKIE_*`` settings (``SameSite`` is ``Lax`` when
Flask's is unset). A cookie the server did not sign, or whose session is gone, is never
adopted: the request gets a new, empty session.
"""

from __future__ import annotations

from typing import Any

from flask.sessions import SessionInterface, SessionMixin

from flask import Flask, Request, Response, request
from redkit import web
from redkit.errors import RedkitConnectionError

__all__ = ["SESSION_STATE", "RedkitSession", "RedkitSessionInterface"]

SESSION_STATE = "redkit.session_state"
"""Where ``save_session`` leaves ``(used, changed)`` of the request's session, for the view
cache."""


class RedkitSession(web.LazySession, SessionMixin):  # type: ignore[override]
    """Flask's ``session`` when redkit keeps it: a dict whose changes are written key by key
    (two concurrent requests changing different keys both keep their change), read from Redis
    when the request first uses it.

    ``session.regenerate()`` moves it to a new id at the end of the request (call it at login);
    ``session.permanent = True`` gives the cookie an expiry (the session's remaining lifetime),
    otherwise it lasts as long as the browser session. The idle timeout and the absolute
    lifetime are enforced by Redis either way."""


class RedkitSessionInterface(SessionInterface):
    """The ``app.session_interface`` installed by the extension when ``REDKIT_SESSIONS`` is on."""

    def __init__(self, ext: Any) -> None:
        self.ext = ext
        self._cookies: dict[tuple[Any, ...], web.SessionCookies] = {}

    def cookies(self, app: Flask) -> web.SessionCookies | None:
        """The session cookie of ``app`` (``None`` when it has no secret key)."""
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        attributes = web.CookieAttributes(
            self.get_cookie_name(app),
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
            self.get_cookie_secure(app),
            self.get_cookie_httponly(app),
            self.get_cookie_samesite(app) or "Lax",
            bool(getattr(self, "get_cookie_partitioned", lambda app: False)(app)),
        )
        refresh = bool(app.config.get("SESSION_REFRESH_EACH_REQUEST", True))
        ident = (*keys, attributes, refresh)
        found = self._cookies.get(ident)
        if found is None:
            found = self._cookies[ident] = web.SessionCookies(
                web.CookieSigner(keys), attributes, refresh
            )
        return found

    def open_session(self, app: Flask, request: Request) -> RedkitSession | None:
        cookies = self.cookies(app)
        if cookies is None:
            return None  # Flask then uses a null session that explains SECRET_KEY is missing
        kit = self.ext.state(app).kit
        cookie = request.cookies.get(cookies.attributes.name)
        found = cookies.open(cookie, kit.sessions.open, RedkitSession)
        assert isinstance(found, RedkitSession)
        return found

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        cookies = self.cookies(app)
        if not isinstance(session, RedkitSession) or cookies is None:  # pragma: no cover
            return
        if session.touched:
            response.vary.add("Cookie")
        # as the request leaves it, before the commit makes it look unchanged
        request.environ[SESSION_STATE] = web.session_state(session)
        state = self.ext.state(app)
        try:
            change = web.run(cookies.save(session), state.kit)
        except RedkitConnectionError as exc:  # the session's changes are lost: say so
            app.logger.warning("redkit: session not saved, Redis is unreachable: %s", exc)
            answer = web.unavailable(state.hooks.web.limits.retry_after, "the session")
            response.status_code = answer.status
            response.headers.clear()
            response.headers.update(list(answer.headers))
            response.set_data(answer.body)
            return
        if change is None:
            return
        a = cookies.attributes
        options: dict[str, Any] = {
            "domain": a.domain,
            "path": a.path,
            "secure": a.secure,
            "httponly": a.httponly,
            "samesite": a.samesite,
        }
        if a.partitioned:
            options["partitioned"] = True
        if change.action == "delete":
            response.delete_cookie(a.name, **options)
        else:
            age = None if change.max_age is None else max(0, int(change.max_age))
            response.set_cookie(a.name, change.value, max_age=age, **options)
