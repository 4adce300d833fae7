"""redkit's dashboard: one web UI for the queues and their jobs (the ``dashboard`` extra:
Jinja2), mountable in any WSGI or ASGI application and in each framework adapter.

``Dashboard(auth=..., token=..., redact=...)`` holds the rules (it refuses to be made without
one that says who gets in); ``make_wsgi_app(kit, dashboard)`` and ``make_asgi_app(akit,
dashboard)`` serve it. Every page is server-rendered HTML with a strict Content-Security-Policy
and no asset from elsewhere; the small script only keeps what is on screen up to date.
"""

from ._app import Dashboard
from ._shells import ASGIDashboard, WSGIDashboard, make_asgi_app, make_wsgi_app, parse_cookies

__all__ = [
    "ASGIDashboard",
    "Dashboard",
    "WSGIDashboard",
    "make_asgi_app",
    "make_wsgi_app",
    "parse_cookies",
]
