"""``ext.dashboard(app, auth=...)``: the dashboard as a blueprint of a Flask application, its
rule called in the request's context, its forms posted past Flask-WTF's CSRF protection with
their own token, its live stream served by Flask, on real Redis, memory:// and the cluster."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flask import request, session
from redkit.errors import ConfigurationError
from redkit_flask import Redkit
from tests.flask.conftest import make_app


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_blueprint_serves_the_dashboard_to_whom_the_rule_lets_in(
    url: str, apps: list[Any]
) -> None:
    app = make_app(url, SECRET_KEY="k" * 32)
    apps.append(app)
    ext = Redkit(app)
    seen: list[str] = []

    def auth() -> Any:
        seen.append(request.path)  # Flask's request, in its context
        return request.headers.get("X-Admin") or session.get("admin")

    blueprint = ext.dashboard(app, url_prefix="/ops/queues", auth=auth)
    assert blueprint.name == "redkit_dashboard"
    q = ext.queue("mail")
    job = q.add("send", {"to": "<b>ada</b>"}, delay=3600)
    client = app.test_client()
    assert client.get("/ops/queues/").status_code == 403
    assert client.get("/ops/queues").status_code in (301, 308)  # to the trailing slash
    page = client.get("/ops/queues/", headers={"X-Admin": "ada"})
    assert page.status_code == 200
    assert "Signed in as <strong>ada</strong>" in page.get_data(as_text=True)
    assert 'href="queue?name=mail"' in page.get_data(as_text=True)
    detail = client.get(f"/ops/queues/job?queue=mail&id={job.id}", headers={"X-Admin": "ada"})
    assert "&lt;b&gt;ada&lt;/b&gt;" in detail.get_data(as_text=True)
    done = client.post(
        "/ops/queues/action",
        data={
            "csrf": _csrf(detail.get_data(as_text=True)),
            "queue": "mail",
            "job": job.id,
            "do": "promote",
        },
        headers={"X-Admin": "ada"},
    )
    assert done.status_code == 303
    assert q.get_job(job.id).state == "waiting"
    assert seen[0] == "/ops/queues/"
    css = client.get("/ops/queues/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


def test_the_live_stream_is_served_by_flask(url: str, apps: list[Any]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    ext.dashboard(app, token="t" * 20)
    client = app.test_client()
    r = client.get(
        "/redkit/live?q=mail", headers={"Authorization": "Bearer " + "t" * 20}, buffered=False
    )
    try:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert next(iter(r.response)).startswith(b"retry: ")
    finally:
        r.close()


def test_flask_wtf_csrf_leaves_the_dashboards_forms_to_it(url: str, apps: list[Any]) -> None:
    flask_wtf = pytest.importorskip("flask_wtf.csrf")
    app = make_app(url, SECRET_KEY="k" * 32)
    apps.append(app)
    flask_wtf.CSRFProtect(app)
    ext = Redkit(app)
    ext.dashboard(app, auth=lambda: "ops")
    ext.queue("jobs").add("x", None)
    client = app.test_client()
    csrf = _csrf(client.get("/redkit/queue?name=jobs").get_data(as_text=True))
    paused = client.post("/redkit/action", data={"csrf": csrf, "queue": "jobs", "do": "pause"})
    assert paused.status_code == 303
    assert ext.queue("jobs").is_paused()
    forged = client.post("/redkit/action", data={"queue": "jobs", "do": "resume"})
    assert forged.status_code == 403  # the dashboard's own check still holds
    assert ext.queue("jobs").is_paused()


def test_no_rule_no_blueprint(url: str, apps: list[Any]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    with pytest.raises(ConfigurationError, match="refuses to serve without an auth rule"):
        ext.dashboard(app)
    assert "redkit_dashboard" not in app.blueprints
