"""Flask rate limits: @kit.rate_limit on views and blueprints, the app-wide default and the
application-wide limit, exemptions, 429 with Retry-After and the rate-limit headers, keys
through trusted proxies. Driven through app.test_client() on real Redis and memory://."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from flask import Blueprint, Flask, request
from redkit_flask import RateLimitExceeded, Redkit
from tests.flask.conftest import make_app


def limited_app(url: str, apps: list[Flask], **config: Any) -> tuple[Flask, Redkit]:
    app = make_app(url, **config)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/five")
    @ext.rate_limit("5/minute")
    def five() -> str:
        return "ok"

    @ext.rate_limit("3/minute;10/hour")  # above @app.route works too
    @app.get("/three")
    def three() -> str:
        return "ok"

    @app.get("/free")
    def free() -> str:
        return "free"

    @app.get("/exempt")
    @ext.exempt
    def exempt() -> str:
        return "exempt"

    return app, ext


def test_429_after_exactly_n_with_headers(url: str, apps: list[Flask]) -> None:
    app, _ = limited_app(url, apps)
    client = app.test_client()
    for i in range(5):
        response = client.get("/five")
        assert response.status_code == 200, i
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(4 - i)
        reset = int(response.headers["X-RateLimit-Reset"])
        assert time.time() - 5 < reset <= math.ceil(time.time()) + 121  # up to two windows
        assert response.headers["RateLimit-Policy"] == '"5/minute";q=5;w=60'
        assert response.headers["RateLimit"].startswith(f'"5/minute";r={4 - i};t=')
        assert "Retry-After" not in response.headers
    denied = client.get("/five")
    assert denied.status_code == 429
    assert 1 <= int(denied.headers["Retry-After"]) <= 120
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert denied.headers["Content-Type"] == "application/problem+json"
    assert denied.get_json()["status"] == 429
    # views are counted apart; an unlimited view has no headers
    assert client.get("/three").status_code == 200
    free = client.get("/free")
    assert free.status_code == 200
    assert "X-RateLimit-Limit" not in free.headers


def test_multiple_limits_report_the_binding_one(url: str, apps: list[Flask]) -> None:
    app, _ = limited_app(url, apps)
    client = app.test_client()
    codes = [client.get("/three").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    denied = client.get("/three")
    assert denied.headers["X-RateLimit-Limit"] == "3"
    assert denied.headers["RateLimit-Policy"] == '"3/minute";q=3;w=60, "10/hour";q=10;w=3600'


def test_default_limit_applies_per_view_and_exemptions(url: str, apps: list[Flask]) -> None:
    app, _ext = limited_app(url, apps, REDKIT_RATELIMIT_DEFAULT="2/minute")
    bp = Blueprint("api", __name__)

    @bp.get("/a")
    def a() -> str:
        return "a"

    app.register_blueprint(bp, url_prefix="/api")
    client = app.test_client()
    assert [client.get("/free").status_code for _ in range(3)] == [200, 200, 429]
    # the default is per view: another view has its own counter
    assert [client.get("/api/a").status_code for _ in range(3)] == [200, 200, 429]
    # a view's own limit replaces the default; exempt views have none
    assert [client.get("/five").status_code for _ in range(5)] == [200] * 5
    assert all(client.get("/exempt").status_code == 200 for _ in range(5))
    assert "X-RateLimit-Limit" not in client.get("/exempt").headers
    # the static endpoint is never limited (a missing file stays a 404, never a 429)
    assert all(client.get("/static/none.css").status_code == 404 for _ in range(4))
    # 404s are not counted against anything
    assert all(client.get("/nowhere").status_code == 404 for _ in range(5))


def test_application_limit_is_shared_by_all_views(url: str, apps: list[Flask]) -> None:
    app, _ = limited_app(url, apps, REDKIT_RATELIMIT_APPLICATION="4/minute")
    client = app.test_client()
    codes = [client.get(path).status_code for path in ("/free", "/five", "/three", "/free")]
    assert codes == [200] * 4
    assert client.get("/five").status_code == 429
    assert client.get("/exempt").status_code == 200  # exempt from it too


def test_blueprint_limits_and_blueprint_exemption(url: str, apps: list[Flask]) -> None:
    app, ext = limited_app(url, apps, REDKIT_RATELIMIT_DEFAULT="1/minute")
    api = Blueprint("api", __name__)
    ext.rate_limit("2/minute")(api)
    health = Blueprint("health", __name__)
    ext.exempt(health)

    @api.get("/x")
    def x() -> str:
        return "x"

    @health.get("/ping")
    def ping() -> str:
        return "pong"

    app.register_blueprint(api, url_prefix="/api")
    app.register_blueprint(health)
    client = app.test_client()
    assert [client.get("/api/x").status_code for _ in range(3)] == [200, 200, 429]
    assert all(client.get("/ping").status_code == 200 for _ in range(4))


def test_keys_scopes_methods_cost_and_exempt_when(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.route("/user", methods=["GET", "POST"])
    @ext.rate_limit("2/minute", key=lambda: request.headers.get("X-User", "anon"))
    def per_user() -> str:
        return "ok"

    @app.get("/login-a")
    @ext.rate_limit("3/minute", scope="login")
    def login_a() -> str:
        return "a"

    @app.get("/login-b")
    @ext.rate_limit("3/minute", scope="login")
    def login_b() -> str:
        return "b"

    @app.route("/writes", methods=["GET", "POST"])
    @ext.rate_limit("1/minute", methods=["POST"])
    def writes() -> str:
        return "w"

    @app.get("/heavy")
    @ext.rate_limit("10/minute", cost=lambda: int(request.args.get("n", "1")))
    def heavy() -> str:
        return "h"

    @app.get("/vip")
    @ext.rate_limit("1/minute", exempt_when=lambda: request.args.get("vip") == "1")
    def vip() -> str:
        return "v"

    c = app.test_client()
    alice = [c.get("/user", headers={"X-User": "alice"}).status_code for _ in range(3)]
    bob = [c.get("/user", headers={"X-User": "bob"}).status_code for _ in range(2)]
    assert alice == [200, 200, 429]
    assert bob == [200, 200]
    assert [c.get(p).status_code for p in ("/login-a", "/login-b", "/login-a", "/login-b")] == [
        200,
        200,
        200,
        429,
    ]
    assert [c.get("/writes").status_code for _ in range(3)] == [200, 200, 200]
    assert [c.post("/writes").status_code for _ in range(2)] == [200, 429]
    assert c.get("/heavy?n=7").status_code == 200
    assert c.get("/heavy?n=4").status_code == 429  # 7 + 4 > 10
    assert c.get("/heavy?n=3").status_code == 200
    assert [c.get("/vip").status_code for _ in range(2)] == [200, 429]
    assert c.get("/vip?vip=1").status_code == 200
    with pytest.raises(Exception, match="unit"):
        ext.rate_limit("3/fortnight")
    with pytest.raises(ValueError, match="cost"):
        ext.rate_limit("3/minute", cost=0)


def test_client_address_through_trusted_proxies(url: str, apps: list[Flask]) -> None:
    app, _ = limited_app(url, apps, REDKIT_TRUSTED_PROXIES="10.0.0.0/8")
    c = app.test_client()

    def get(peer: str, forwarded: str | None = None) -> int:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return c.get("/three", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code

    # behind the trusted proxy, each forwarded client has its own counter
    assert [get("10.0.0.5", "203.0.113.7") for _ in range(4)] == [200, 200, 200, 429]
    assert get("10.0.0.6", "203.0.113.8") == 200
    # a client that is not a proxy cannot pick its address by sending the header
    assert [get("198.51.100.1", f"192.0.2.{i}") for i in range(4)] == [200, 200, 200, 429]
    # IPv6 clients are counted by their /64
    assert [get(f"2001:db8::{i}") for i in range(1, 5)] == [200, 200, 200, 429]


def test_custom_429_handler_gets_the_decision(url: str, apps: list[Flask]) -> None:
    app, _ = limited_app(url, apps)

    @app.errorhandler(429)
    def too_many(error: RateLimitExceeded) -> tuple[dict[str, Any], int, dict[str, str]]:
        return (
            {"error": "slow down", "limit": str(error.decision.limit)},
            429,
            error.decision.headers(),
        )

    c = app.test_client()
    for _ in range(3):
        c.get("/three")
    denied = c.get("/three")
    assert denied.status_code == 429
    assert denied.get_json() == {"error": "slow down", "limit": "3/minute"}
    assert "Retry-After" in denied.headers


def test_redis_down_fails_open_by_default(apps: list[Flask]) -> None:
    app = make_app(
        "redis://127.0.0.1:1", REDKIT_SOCKET_CONNECT_TIMEOUT=0.2, REDKIT_RETRY_ATTEMPTS=0
    )
    ext = Redkit(app)

    @app.get("/x")
    @ext.rate_limit("1/minute")
    def x() -> str:
        return "x"

    c = app.test_client()
    assert [c.get("/x").status_code for _ in range(3)] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in c.get("/x").headers
    app.extensions["redkit"].kit.close()
