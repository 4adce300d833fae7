"""@kit.cached on views and plain functions, and idempotency keys (@kit.idempotent and app-wide),
driven through app.test_client() on real Redis and memory://."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from flask import Flask, Response, jsonify, make_response, request, session
from redkit_flask import Redkit
from tests.flask.conftest import make_app


# -- view caching ----------------------------------------------------------------------------------
def cache_app(url: str, apps: list[Flask], **config: Any) -> tuple[Flask, Redkit, dict[str, int]]:
    app = make_app(url, SECRET_KEY="k", **config)
    apps.append(app)
    ext = Redkit(app)
    calls: dict[str, int] = {}

    def count(name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]

    @app.get("/users/<int:user_id>")
    @ext.cached(ttl=60, tags=["user:{user_id}"])
    def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "n": count("user"), "q": request.args.get("q")}

    @app.get("/only-page")
    @ext.cached(query=["page"])
    def only_page() -> str:
        return f"{count('only')}:{request.args.get('page')}:{request.args.get('utm')}"

    @app.get("/lang")
    @ext.cached()
    def lang() -> Response:
        response = make_response(f"{count('lang')}:{request.headers.get('Accept-Language')}")
        response.headers["Vary"] = "Accept-Language"
        return response

    @app.get("/missing")
    @ext.cached()
    def missing() -> tuple[str, int]:
        return f"nope {count('missing')}", 404

    @app.get("/missing-cached")
    @ext.cached(statuses=(200, 404))
    def missing_cached() -> tuple[str, int]:
        return f"nope {count('missing_cached')}", 404

    @app.get("/sets-cookie")
    @ext.cached()
    def sets_cookie() -> Response:
        response = make_response(f"c {count('cookie')}")
        response.set_cookie("tracking", "1")
        return response

    @app.get("/private")
    @ext.cached()
    def private() -> Response:
        response = make_response(f"p {count('private')}")
        response.headers["Cache-Control"] = "private"
        return response

    @app.get("/me")
    @ext.cached()
    def me() -> str:
        return f"{count('me')}:{session.get('user')}"

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        return "ok"

    @app.route("/both", methods=["GET", "POST"])
    @ext.cached()
    def both() -> str:
        return f"{request.method} {count('both')}"

    return app, ext, calls


def test_view_cached_by_path_and_query_and_invalidated_by_tag(url: str, apps: list[Flask]) -> None:
    app, ext, calls = cache_app(url, apps)
    c = app.test_client()
    first = c.get("/users/7?q=a&x=1")
    assert first.get_json() == {"id": 7, "n": 1, "q": "a"}
    again = c.get("/users/7?x=1&q=a")  # same arguments in another order: same entry
    assert again.get_json() == first.get_json()
    assert again.headers["Content-Type"] == "application/json"
    assert c.get("/users/7?q=b").get_json()["n"] == 2
    assert c.get("/users/8").get_json()["n"] == 3
    head = c.head("/users/7?q=a&x=1")  # HEAD answered from the GET entry
    assert head.status_code == 200
    assert calls["user"] == 3
    with app.app_context():
        ext.cache.invalidate(["user:7"])
    assert c.get("/users/7?q=a&x=1").get_json()["n"] == 4
    assert c.get("/users/8").get_json()["n"] == 3  # another tag: still cached


def test_query_filter_vary_and_what_is_never_stored(url: str, apps: list[Flask]) -> None:
    app, _, calls = cache_app(url, apps)
    c = app.test_client()
    assert c.get("/only-page?page=2&utm=x").get_data(as_text=True) == "1:2:x"
    assert c.get("/only-page?page=2&utm=y").get_data(as_text=True) == "1:2:x"  # utm ignored
    assert c.get("/only-page?page=3").get_data(as_text=True) == "2:3:None"
    en = c.get("/lang", headers={"Accept-Language": "en"}).get_data(as_text=True)
    fr = c.get("/lang", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert (en, fr) == ("1:en", "2:fr")
    assert c.get("/lang", headers={"Accept-Language": "fr"}).get_data(as_text=True) == "2:fr"
    assert c.get("/lang", headers={"Accept-Language": "en"}).get_data(as_text=True) == "1:en"
    for path, name in (
        ("/missing", "missing"),
        ("/sets-cookie", "cookie"),
        ("/private", "private"),
    ):
        c.get(path)
        c.get(path)
        assert calls[name] == 2, path  # never stored
    c.get("/missing-cached")
    assert c.get("/missing-cached").status_code == 404
    assert calls["missing_cached"] == 1
    c.post("/both")
    c.post("/both")
    assert calls["both"] == 2  # only GET is cached
    c.get("/both")
    assert c.get("/both").get_data(as_text=True) == "GET 3"


def test_a_view_reading_the_session_is_cached_per_session(url: str, apps: list[Flask]) -> None:
    app, _, calls = cache_app(url, apps, REDKIT_SESSIONS=True)
    alice, bob = app.test_client(), app.test_client()
    alice.get("/login/alice")
    bob.get("/login/bob")
    assert alice.get("/me").get_data(as_text=True) == "1:alice"
    assert bob.get("/me").get_data(as_text=True) == "2:bob"  # not alice's page
    assert alice.get("/me").get_data(as_text=True) == "1:alice"
    assert calls["me"] == 2


def test_cached_plain_function(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    runs: list[int] = []

    @ext.cached(ttl=30, tags=["report:{year}"])
    def report(year: int) -> dict[str, int]:
        runs.append(year)
        return {"year": year, "total": len(runs)}

    @app.get("/report/<int:year>")
    def view(year: int) -> dict[str, int]:
        return report(year)  # a plain function called from a view is cached as a function

    with app.app_context():
        assert report(2024) == {"year": 2024, "total": 1}
        assert report(2024) == {"year": 2024, "total": 1}
        ext.cache.invalidate(["report:2024"])
        assert report(2024) == {"year": 2024, "total": 2}
    assert app.test_client().get("/report/2024").get_json() == {"year": 2024, "total": 2}
    assert runs == [2024, 2024]

    @ext.cached()
    async def later() -> int:
        return 1

    with app.app_context(), pytest.raises(TypeError, match="async"):
        asyncio.run(later())  # not a view: refused, not silently uncached
    with pytest.raises(ValueError, match="statuses"):
        ext.cached(statuses=(99,))


def test_async_view_is_cached(url: str, apps: list[Flask]) -> None:
    pytest.importorskip("asgiref")
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    runs: list[int] = []

    @app.get("/a")
    @ext.cached()
    async def a() -> str:
        runs.append(1)
        return f"async {len(runs)}"

    c = app.test_client()
    assert c.get("/a").get_data(as_text=True) == "async 1"
    assert c.get("/a").get_data(as_text=True) == "async 1"


# -- idempotency -----------------------------------------------------------------------------------
def idem_app(url: str, apps: list[Flask], **config: Any) -> tuple[Flask, Redkit, list[Any]]:
    app = make_app(url, **config)
    apps.append(app)
    ext = Redkit(app)
    charges: list[Any] = []
    gate, entered = threading.Event(), threading.Event()
    app.config["GATE"] = gate
    app.config["ENTERED"] = entered

    @app.post("/payments")
    @ext.idempotent()
    def pay() -> tuple[Response, int]:
        if request.args.get("wait"):
            entered.set()
            gate.wait(10)
        if request.args.get("fail"):
            raise RuntimeError("card declined by a bug")
        charges.append(request.get_json())
        response = jsonify(id=len(charges), amount=request.get_json()["amount"])
        response.headers["Location"] = f"/payments/{len(charges)}"
        response.headers["X-Internal"] = "not replayed"
        return response, 201

    @app.post("/required")
    @ext.idempotent(required=True)
    def required() -> str:
        return "ran"

    @app.post("/plain")
    def plain() -> str:
        charges.append("plain")
        return "plain"

    return app, ext, charges


def test_replay_mismatch_and_malformed(url: str, apps: list[Flask]) -> None:
    app, _, charges = idem_app(url, apps)
    c = app.test_client()
    key = {"Idempotency-Key": "pay-123"}
    first = c.post("/payments", json={"amount": 10}, headers=key)
    assert first.status_code == 201
    assert first.get_json() == {"id": 1, "amount": 10}
    assert "Idempotent-Replayed" not in first.headers
    replay = c.post("/payments", json={"amount": 10}, headers=key)
    assert replay.status_code == 201
    assert replay.get_data() == first.get_data()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == "/payments/1"
    assert "X-Internal" not in replay.headers
    assert len(charges) == 1
    mismatch = c.post("/payments", json={"amount": 99}, headers=key)
    assert mismatch.status_code == 422
    assert mismatch.get_json()["status"] == 422
    other_path = c.post("/payments?x=1", json={"amount": 10}, headers=key)
    assert other_path.status_code == 422
    for bad in ("", "é", "x" * 256, '"unterminated'):
        response = c.post("/payments", json={"amount": 1}, headers={"Idempotency-Key": bad})
        assert response.status_code == 400, bad
    assert len(charges) == 1
    # without a key the view simply runs; with required=True it is a 400
    assert c.post("/payments", json={"amount": 5}).status_code == 201
    assert c.post("/required").status_code == 400
    assert c.post("/required", headers={"Idempotency-Key": "r1"}).get_data() == b"ran"
    assert len(charges) == 2


def test_in_progress_is_409_and_failures_release_the_key(url: str, apps: list[Flask]) -> None:
    app, _, charges = idem_app(url, apps)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    key = {"Idempotency-Key": "slow-1"}
    results: list[int] = []

    def slow() -> None:
        results.append(
            app.test_client().post("/payments?wait=1", json={"amount": 1}, headers=key).status_code
        )

    thread = threading.Thread(target=slow)
    thread.start()
    c = app.test_client()
    assert app.config["ENTERED"].wait(10)  # the first request holds the key and runs
    conflict = c.post("/payments?wait=1", json={"amount": 1}, headers=key)
    assert conflict.status_code == 409
    assert int(conflict.headers["Retry-After"]) >= 1
    app.config["GATE"].set()
    thread.join(10)
    assert results == [201]
    assert len(charges) == 1
    # a request that fails with 500 is not stored: the client may retry and it runs again
    failing = {"Idempotency-Key": "fail-1"}
    assert c.post("/payments?fail=1", json={"amount": 2}, headers=failing).status_code == 500
    assert c.post("/payments?fail=1", json={"amount": 2}, headers=failing).status_code == 500
    retried = c.post("/payments?fail=1", json={"amount": 2}, headers=failing)
    assert retried.status_code == 500
    assert "Idempotent-Replayed" not in retried.headers


def test_keys_are_scoped_per_user(url: str, apps: list[Flask]) -> None:
    app, ext, charges = idem_app(url, apps)
    ext.user_loader(lambda: request.headers.get("X-User"))
    c = app.test_client()
    for user in ("alice", "bob"):
        response = c.post(
            "/payments", json={"amount": 3}, headers={"Idempotency-Key": "k", "X-User": user}
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response.headers
    again = c.post(
        "/payments", json={"amount": 3}, headers={"Idempotency-Key": "k", "X-User": "bob"}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(charges) == 2


def test_app_wide_idempotency_for_post_and_patch(url: str, apps: list[Flask]) -> None:
    app, _, charges = idem_app(url, apps, REDKIT_IDEMPOTENCY_METHODS="POST, PATCH")
    c = app.test_client()
    key = {"Idempotency-Key": "plain-1"}
    assert c.post("/plain", headers=key).get_data() == b"plain"
    replay = c.post("/plain", headers=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert charges == ["plain"]
    assert c.post("/plain", headers={"Idempotency-Key": "\x01"}).status_code == 400
    assert c.post("/plain").status_code == 200
    assert charges == ["plain", "plain"]


def test_lease_of_a_long_request_is_renewed(url: str, apps: list[Flask]) -> None:
    app, _, charges = idem_app(url, apps, REDKIT_IDEMPOTENCY_LEASE=0.6)
    key = {"Idempotency-Key": "long-1"}
    results: list[int] = []

    def slow() -> None:
        client = app.test_client()
        results.append(client.post("/payments?wait=1", json={"amount": 1}, headers=key).status_code)

    thread = threading.Thread(target=slow)
    thread.start()
    assert app.config["ENTERED"].wait(10)
    time.sleep(1.5)  # well past the first lease: only renewals keep the key held
    c = app.test_client()
    assert c.post("/payments?wait=1", json={"amount": 1}, headers=key).status_code == 409
    app.config["GATE"].set()
    thread.join(10)
    assert results == [201]
    assert len(charges) == 1
    assert c.post("/payments", json={"amount": 1}, headers=key).status_code == 422  # other query
    replay = c.post("/payments?wait=1", json={"amount": 1}, headers=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
