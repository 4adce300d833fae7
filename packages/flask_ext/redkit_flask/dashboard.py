"""redkit's dashboard mounted in a Flask application: ``ext.dashboard(app, auth=...)``.

A blueprint whose one view hands each request under its prefix to the dashboard, inside
Flask's request context: the ``auth`` rule is called with no argument, the Flask way, so it
reads ``flask.request``, ``flask.session`` or Flask-Login's ``current_user``. The dashboard's
forms carry their own CSRF token; Flask-WTF's ``CSRFProtect``, when registered, is told to
leave the blueprint to it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request
from redkit import web
from redkit.dashboard import Dashboard, make_wsgi_app

__all__ = ["mount_dashboard"]

MAX_FORM = 16 * 1024


def mount_dashboard(
    app: Flask,
    kit: Any,
    *,
    url_prefix: str = "/redkit",
    name: str = "redkit_dashboard",
    **options: Any,
) -> Blueprint:
    """Register the dashboard's blueprint on ``app``; ``options`` are the
    :class:`~redkit.dashboard.Dashboard`'s (see :meth:`redkit_flask.Redkit.dashboard`)."""
    server = make_wsgi_app(kit, Dashboard(**options))
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix.rstrip("/") or None)

    def view(rest: str = "") -> Response:
        r = request._get_current_object()  # type: ignore[attr-defined]

        def body() -> bytes:
            if (r.content_length or 0) > MAX_FORM:
                return b""
            data: bytes = r.stream.read(MAX_FORM + 1)  # a chunked body is bounded too
            return b"" if len(data) > MAX_FORM else data

        described = web.Request(
            r.method,
            "/" + rest,
            r.query_string.decode("latin-1"),
            web.Headers.of(r.headers, joined=True),
            r.remote_addr,
            r.host,
            dict(r.cookies),
            body=body,
            scheme=r.scheme,
            call=lambda fn: fn(),
        )
        answer, stream = server.respond(described)
        if stream is not None:
            return Response(stream, answer.status, list(answer.headers), direct_passthrough=True)
        return Response(answer.body, answer.status, list(answer.headers))

    methods = ["GET", "HEAD", "POST"]
    blueprint.add_url_rule("/", "index", view, methods=methods)
    blueprint.add_url_rule("/<path:rest>", "page", view, methods=methods)

    def exempt_from_flask_wtf() -> None:
        csrf = app.extensions.get("csrf")  # Flask-WTF's CSRFProtect, registered before or after
        if csrf is not None and hasattr(csrf, "exempt"):
            csrf.exempt(blueprint)

    exempt_from_flask_wtf()
    app.before_request_funcs.setdefault(None, []).insert(0, exempt_from_flask_wtf)
    app.register_blueprint(blueprint)
    kit.on_close(server.close)
    blueprint.server = server  # type: ignore[attr-defined]
    return blueprint
