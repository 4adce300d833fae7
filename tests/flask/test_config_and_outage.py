"""The Flask extension when Redis goes away (a real server stopped by the test), and what it
reads from, or says about, an application's config."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from flask import Flask, request, session
from redkit_flask import Redkit
from tests.flask.conftest import make_app
from tests.servers import RedisProcess


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def outage_app(url: str, apps: list[Flask], **config: object) -> tuple[Flask, Redkit]:
    app = make_app(
        url,
        SECRET_KEY="s",
        REDKIT_SESSIONS=True,
        REDKIT_SOCKET_CONNECT_TIMEOUT=0.3,
        REDKIT_SOCKET_TIMEOUT=0.5,
        REDKIT_RETRY_ATTEMPTS=0,
        **config,
    )
    ext = Redkit(app)  # not in `apps`: its Redis is gone when the test ends
    apps.append(Flask("placeholder"))
    calls = {"cached": 0}

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    @app.get("/me")
    def me() -> str:
        return f"user={session.get('user')}"

    @app.post("/pay")
    @ext.idempotent()
    def pay() -> tuple[str, int]:
        return "paid", 201

    @app.get("/limited")
    @ext.rate_limit("100/minute")
    def limited() -> str:
        return "counted"

    @app.get("/page")
    @ext.cached(ttl=60)
    def page() -> str:
        calls["cached"] += 1
        return f"page {calls['cached']}"

    return app, ext


def test_redis_stopped_sessions_and_idempotency_answer_503_others_go_on(
    server: RedisProcess, apps: list[Flask]
) -> None:
    app, _ = outage_app(server.url, apps)
    c = app.test_client()
    assert c.get("/login").text == "in"
    assert c.get("/me").text == "user=ada"
    assert c.get("/page").text == "page 1"
    server.stop()
    me = c.get("/me")
    assert me.status_code == 503  # never a silent logout
    assert int(me.headers["Retry-After"]) >= 1
    assert me.headers["Content-Type"] == "application/problem+json"
    paid = c.post("/pay", json={}, headers={"Idempotency-Key": "k-1"})
    assert paid.status_code == 503  # never run twice
    assert int(paid.headers["Retry-After"]) >= 1
    assert c.get("/limited").text == "counted"  # rate limits fail open by default
    assert c.get("/page").text == "page 2"  # the cached view runs


def test_redis_stopped_rate_limits_that_fail_closed_answer_503(
    server: RedisProcess, apps: list[Flask]
) -> None:
    app, _ = outage_app(server.url, apps, REDKIT_RATELIMIT_FAIL_OPEN=False)
    c = app.test_client()
    assert c.get("/limited").status_code == 200
    server.stop()
    down = c.get("/limited")
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) >= 1


def test_redis_stopped_while_saving_a_session_is_a_503(
    server: RedisProcess, apps: list[Flask]
) -> None:
    app, _ = outage_app(server.url, apps)

    @app.get("/write-after-stop")
    def write() -> str:
        session["cart"] = ["tea"]  # read and changed while Redis is up
        server.stop()  # the save at the end of the request fails
        return "saved?"

    got = app.test_client().get("/write-after-stop")
    assert got.status_code == 503
    assert "Set-Cookie" not in got.headers


# -- configuration --------------------------------------------------------------------------------
def test_falling_back_to_memory_logs_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, apps: list[Flask]
) -> None:
    monkeypatch.delenv("REDKIT_URL", raising=False)
    app = Flask("fallback")
    apps.append(app)
    with caplog.at_level(logging.WARNING, logger="redkit.flask"):
        Redkit(app)
    warnings = [r.getMessage() for r in caplog.records if "memory://" in r.getMessage()]
    assert len(warnings) == 1
    assert "REDKIT_URL" in warnings[0]
    assert app.extensions["redkit"].kit.settings.url.startswith("memory://")


def test_the_environment_url_is_used_and_a_configured_url_is_quiet(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, apps: list[Flask]
) -> None:
    monkeypatch.setenv("REDKIT_URL", "memory://from-env")
    app = Flask("env")
    apps.append(app)
    with caplog.at_level(logging.WARNING, logger="redkit.flask"):
        Redkit(app)
        configured = make_app("memory://configured")
        apps.append(configured)
        Redkit(configured)
    assert app.extensions["redkit"].kit.settings.url == "memory://from-env"
    assert not [r for r in caplog.records if "memory://" in r.getMessage()]


def test_permanent_session_lifetime_is_the_session_lifetime(apps: list[Flask]) -> None:
    app = make_app("memory://life", PERMANENT_SESSION_LIFETIME=timedelta(hours=2))
    apps.append(app)
    Redkit(app)
    settings = app.extensions["redkit"].kit.settings
    assert settings.session_ttl == 7200
    long = make_app("memory://long", PERMANENT_SESSION_LIFETIME=timedelta(days=90))
    apps.append(long)
    Redkit(long)
    assert long.extensions["redkit"].kit.settings.session_ttl == 90 * 86400
    assert long.extensions["redkit"].kit.settings.session_max_age >= 90 * 86400


def test_redkit_session_ttl_wins_and_says_so(
    caplog: pytest.LogCaptureFixture, apps: list[Flask]
) -> None:
    app = make_app(
        "memory://wins", PERMANENT_SESSION_LIFETIME=timedelta(hours=2), REDKIT_SESSION_TTL=60
    )
    apps.append(app)
    with caplog.at_level(logging.WARNING, logger="redkit.flask"):
        Redkit(app)
    assert app.extensions["redkit"].kit.settings.session_ttl == 60
    assert any("REDKIT_SESSION_TTL" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        ("CACHE_REDIS_URL", "REDKIT_URL"),
        ("CACHE_DEFAULT_TIMEOUT", "REDKIT_CACHE_TTL"),
        ("RATELIMIT_STORAGE_URI", "REDKIT_URL"),
        ("RATELIMIT_DEFAULT", "REDKIT_RATELIMIT_DEFAULT"),
        ("RATELIMIT_ENABLED", "REDKIT_RATELIMIT_ENABLED"),
        ("SESSION_TYPE", "REDKIT_SESSIONS"),
    ],
)
def test_config_keys_of_other_extensions_are_answered_with_the_redkit_key(
    key: str, ours: str, caplog: pytest.LogCaptureFixture, apps: list[Flask]
) -> None:
    app = make_app("memory://foreign", **{key: "x"})
    apps.append(app)
    with caplog.at_level(logging.WARNING, logger="redkit.flask"):
        Redkit(app)
    said = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert len(said) == 1
    assert ours in said[0]


def test_request_with_session_used_only_in_a_hook_still_varies(apps: list[Flask]) -> None:
    app = make_app("memory://vary", SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    ext = Redkit(app)

    @app.before_request
    def who() -> None:
        request.environ["user"] = session.get("user")

    @app.get("/hello")
    @ext.cached(ttl=60)
    def hello() -> str:
        return f"hello {request.environ['user']}"

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    anon, ada = app.test_client(), app.test_client()
    ada.get("/login")
    assert anon.get("/hello").text == "hello None"
    assert "Cookie" in anon.get("/hello").headers["Vary"]
    assert ada.get("/hello").text == "hello ada"  # never the anonymous page


def test_closing_an_app_stops_its_lease_renewer(url: str) -> None:
    import threading
    import time

    def renewers() -> int:
        return sum(t.name == "redkit-idempotency-leases" for t in threading.enumerate())

    before = renewers()
    made = []
    for i in range(5):
        app = make_app(url, name=f"app{i}")
        ext = Redkit(app)

        @app.post("/pay")
        @ext.idempotent()
        def pay() -> str:
            return f"paid, renewers running: {renewers() - before}"

        got = app.test_client().post("/pay", headers={"Idempotency-Key": f"k{i}"})
        assert got.text.startswith("paid, renewers running:")
        assert int(got.text.rsplit(" ", 1)[1]) >= 1  # while a request holds its key
        made.append((app, ext))
    for app, ext in made:
        with app.app_context():
            ext.kit.clear()
        ext.close(app)
    deadline = time.monotonic() + 5
    while renewers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert renewers() == before


def test_no_url_and_no_memory_backend_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, apps: list[Flask]
) -> None:
    import importlib.util

    from redkit.errors import ConfigurationError

    real = importlib.util.find_spec
    monkeypatch.delenv("REDKIT_URL", raising=False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fakeredis" else real(name)
    )
    with pytest.raises(ConfigurationError, match="set REDKIT_URL"):
        Redkit(Flask("bare"))


def test_requests_without_a_peer_address_are_warned_about_once(
    caplog: pytest.LogCaptureFixture, url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/limited")
    @ext.rate_limit("100/minute")
    def limited() -> str:
        return "ok"

    c = app.test_client()
    with caplog.at_level(logging.WARNING, logger="redkit.web"):
        for _ in range(3):
            assert c.get("/limited", environ_base={"REMOTE_ADDR": ""}).status_code == 200
    said = [r.getMessage() for r in caplog.records if "without a client address" in r.getMessage()]
    assert len(said) == 1
    assert "'unix'" in said[0]


def test_settings_in_the_url_query_apply(apps: list[Flask]) -> None:
    app = make_app("memory://query?retry_attempts=0&cache_ttl=7")
    apps.append(app)
    Redkit(app)
    settings = app.extensions["redkit"].kit.settings
    assert (settings.retry_attempts, settings.cache_ttl) == (0, 7)
    assert settings.url == "memory://query"
