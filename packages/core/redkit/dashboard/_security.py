"""Who may see the dashboard, and the headers every answer carries.

The dashboard is never open: :class:`Access` lets a request in when the application's rule
says so (``auth``, called the framework's way), when it carries the token (``Authorization:
Bearer``, or the cookie the login form sets), or, only when asked for, when it comes from a
loopback address. Every form posts a CSRF token that must equal the one in its cookie (HttpOnly,
``SameSite=Strict``), and a browser's ``Sec-Fetch-Site`` or ``Origin`` must not say another site.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigurationError
from ..web import Request

__all__ = ["CSP", "Access", "csrf_ok", "security_headers"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CSRF_COOKIE = "redkit_dashboard_csrf"
TOKEN_COOKIE = "redkit_dashboard_token"
_MIN_TOKEN = 16
SESSION_SECONDS = 12 * 3600
"""How long a sign-in with the token lasts (the server checks, whatever the cookie says)."""
_FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host", "via")


def security_headers() -> list[tuple[str, str]]:
    """What every answer carries: a strict Content-Security-Policy (no inline script or style,
    nothing from another origin), no framing, no sniffing, no referrer to other sites, no
    caching."""
    return [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Cache-Control", "no-store"),
    ]


def _loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Access:
    """The dashboard's rule of who gets in: ``auth`` (a callable of the request, the framework's
    way, that returns who it is, or something false to refuse), ``token`` (at least 16
    characters), or ``loopback_only`` (anyone on a loopback address: the ``redkit dashboard``
    command's ``--no-auth``). At least one is required."""

    def __init__(
        self,
        auth: Callable[..., Any] | None,
        token: str | None,
        loopback_only: bool,
    ) -> None:
        if auth is not None and not callable(auth):
            raise TypeError(f"auth must be a callable of the request, not {type(auth).__name__}")
        if token is not None and (not isinstance(token, str) or len(token) < _MIN_TOKEN):
            raise ValueError(
                f"the dashboard's token must be a str of at least {_MIN_TOKEN} characters"
            )
        if auth is None and token is None and not loopback_only:
            raise ConfigurationError(
                "the dashboard refuses to serve without an auth rule: pass auth= (a callable "
                "of the request that returns who it is), or token= (a secret of at least "
                f"{_MIN_TOKEN} characters); its data and actions are an admin's"
            )
        self.auth = auth
        self.token = token
        self.loopback_only = loopback_only
        self._key = None if token is None else token.encode("utf-8", "surrogateescape")

    @property
    def has_login(self) -> bool:
        """Whether a login form (for the token) is offered."""
        return self.token is not None

    def by_token(self, request: Request) -> str | None:
        """``"token"`` when the request carries the token (a bearer header or the cookie)."""
        if self.token is None:
            return None
        given = request.headers.get("authorization") or ""
        if given[:7].lower() == "bearer " and _same(given[7:].strip(), self.token):
            return "token"
        cookie = request.cookies.get(TOKEN_COOKIE) or ""
        issued, _, mac = cookie.partition(".")
        if not (issued.isascii() and issued.isdigit() and len(issued) <= 12) or not mac:
            return None
        age = time.time() - int(issued)
        if not -300 <= age <= SESSION_SECONDS or not _same(mac, self._mac(issued)):
            return None
        return "token"

    def _mac(self, issued: str) -> str:
        assert self._key is not None
        return hmac.new(
            self._key, f"redkit-dashboard:{issued}".encode(), hashlib.sha256
        ).hexdigest()

    def login(self, given: str) -> str | None:
        """The cookie value a right token gives at the login form (when it was issued, and
        its MAC: the server refuses it after :data:`SESSION_SECONDS`), else None."""
        if self.token is None or not _same(given, self.token):
            return None
        issued = str(int(time.time()))
        return f"{issued}.{self._mac(issued)}"

    def by_address(self, request: Request) -> str | None:
        """``"loopback"`` for a loopback peer when ``loopback_only`` is on, asking for a
        loopback host name, through no proxy: a forwarding header refuses it (a reverse proxy
        on the same host forwards anyone from loopback), and so does any other ``Host`` (a
        page of another site whose name was rebound to 127.0.0.1)."""
        if not self.loopback_only or not _loopback(request.client):
            return None
        if any(h in request.headers for h in _FORWARDED):
            return None
        if _host_name(request.host) not in ("localhost", "127.0.0.1", "::1"):
            return None
        return "loopback"


def _host_name(host: str) -> str:
    """The name part of a ``Host`` value (``[::1]:9181`` is ``::1``), lowercase."""
    host = (host or "").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """Whether a POST may act: its form's token equals its cookie's, and a browser that says
    where it comes from says this site."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    posted = form.get("csrf") or ""
    if len(cookie) < 20 or not _same(posted, cookie):
        return False
    site = (request.headers.get("sec-fetch-site") or "").lower()
    if site and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        host = origin.split("://", 1)[-1]
        if origin == "null" or host.lower() != (request.host or "").lower():
            return False
    return True
