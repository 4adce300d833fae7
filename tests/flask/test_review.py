"""The Flask extension's web layer driven as a hostile or unlucky client would: what a cached
page, a session, a rate limit or an idempotency key must never do. Tests marked ``xfail`` show
a defect that is still open (strict: they fail the suite once the defect is fixed, so the mark
must go)."""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import uuid
from typing import Any

import pytest

from flask import Flask, Response, flash, get_flashed_messages, make_response, request, session
from redkit_flask import Redkit
from tests.flask.conftest import make_app


def counter() -> Any:
    return itertools.count(1).__next__


# -- the view cache and the session ----------------------------------------------------------------
def test_a_view_changing_an_existing_session_is_not_stored(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    @app.get("/saved")
    def saved() -> str:
        flash("saved!")
        return "ok"

    @app.get("/home")
    @ext.cached(ttl=60)
    def home() -> str:
        return f"messages: {get_flashed_messages()}"

    browser = app.test_client()
    browser.get("/login")  # an existing session: its cookie does not change from here on
    browser.get("/saved")
    assert browser.get("/home").text == "messages: ['saved!']"
    assert browser.get("/home").text == "messages: []"  # a flashed message is shown once


def test_a_destroyed_session_does_not_keep_its_cached_page(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    @app.get("/account")
    @ext.cached(ttl=60)
    def account() -> str:
        return f"account of {session.get('user')}"

    browser = app.test_client()
    browser.get("/login")
    assert browser.get("/account").text == "account of ada"
    cookie = browser.get_cookie("session")
    assert cookie is not None
    sid = app.session_interface.cookies(app).signer.session_id(cookie.value)  # type: ignore[attr-defined]
    with app.app_context():
        assert ext.sessions.destroy(sid)  # "log out everywhere", or an expired session
    assert browser.get("/account").text == "account of None"  # the cookie is worthless now


def test_made_up_cookies_do_not_fill_the_cache(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/news")
    @ext.cached(ttl=60, query=False)
    def news() -> str:
        return f"news {n()} for {session.get('user')}"

    pages = set()
    for _ in range(5):
        client = app.test_client()
        client.set_cookie("tracker", uuid.uuid4().hex)  # no session cookie: an anonymous visitor
        pages.add(client.get("/news").text)
    assert pages == {"news 1 for None"}  # one anonymous page, not one per made-up cookie


def test_a_304_is_never_served_to_an_unconditional_request(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    with pytest.raises(ValueError, match="304"):
        ext.cached(ttl=60, statuses=(200, 304))

    @app.get("/doc")
    @ext.cached(ttl=60)
    def doc() -> Response:
        response = make_response("the document")
        response.set_etag("v1")
        return response.make_conditional(request)

    attacker, visitor = app.test_client(), app.test_client()
    assert attacker.get("/doc", headers={"If-None-Match": '"v1"'}).status_code == 304
    page = visitor.get("/doc")
    assert (page.status_code, page.text) == (200, "the document")


def test_cloaked_and_encoded_query_arguments_never_share_an_entry(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/search")
    @ext.cached(ttl=60)
    def search() -> str:
        return f"{n()}:{request.args.getlist('q')}"

    c = app.test_client()
    seen: dict[str, str] = {}
    for query in ["q=1;q=2", "q=1&q=2", "q=2&q=1", "q=1", "q=%31", "%71=1", "q=%ff", "q=%25ff"]:
        body = c.get(f"/search?{query}").text
        seen[query] = body.split(":", 1)[1]
    for query, shown in seen.items():  # what each got is what its own arguments give
        again = c.get(f"/search?{query}").text.split(":", 1)[1]
        assert again == shown
    assert seen["q=1;q=2"] == "['1;q=2']"
    assert seen["q=1&q=2"] == "['1', '2']"
    assert seen["q=2&q=1"] == "['2', '1']"


def test_head_never_fills_the_cache_and_a_stream_is_never_stored(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/page")
    @ext.cached(ttl=60)
    def page() -> str:
        return f"page {n()}"

    @app.get("/stream")
    @ext.cached(ttl=60)
    def stream() -> Response:
        number = n()
        return Response(f"part {number}" for _ in range(1))

    c = app.test_client()
    assert c.head("/page").status_code == 200
    assert c.get("/page").text == "page 2"  # the HEAD stored nothing
    assert c.head("/page").get_data() == b""  # answered from the GET entry, without a body
    assert c.get("/page").text == "page 2"
    assert c.get("/stream").text != c.get("/stream").text


# -- sessions when Redis is down -------------------------------------------------------------------
def test_a_hook_reading_the_session_while_redis_is_down_gets_a_503(apps: list[Flask]) -> None:
    app = make_app(
        "redis://127.0.0.1:1",
        REDKIT_SESSIONS=True,
        SECRET_KEY="k",
        REDKIT_SOCKET_CONNECT_TIMEOUT=0.2,
        REDKIT_RETRY_ATTEMPTS=0,
    )
    Redkit(app)

    @app.after_request
    def remember(response: Response) -> Response:  # what Flask-Login does after every request
        if "_remember" in session:
            response.set_cookie("remember_token", "x")
        return response

    @app.get("/plain")
    def plain() -> str:
        return "up"

    client = app.test_client()
    signer = app.session_interface.cookies(app).signer  # type: ignore[attr-defined]
    client.set_cookie("session", signer.sign("AB" + "x" * 42 + "A"))
    down = client.get("/plain")
    app.extensions["redkit"].kit.close()
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) >= 1


# -- rate limits -----------------------------------------------------------------------------------
def test_parallel_failed_logins_are_limited_too(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    together = threading.Barrier(6, timeout=2)

    @app.post("/login")
    @ext.rate_limit("3/minute", deduct_when=lambda r: r.status_code == 401)
    def login() -> tuple[str, int]:
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()  # the guesses are in flight at once, as an attacker sends them
        return "wrong password", 401

    answers: list[int] = []

    def guess() -> None:
        answers.append(app.test_client().post("/login", data={"pw": "guess"}).status_code)

    threads = [threading.Thread(target=guess) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count(401) <= 3


def test_spoofed_forwarding_headers_and_ipv6_forms_count_as_one_client(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/search")
    @ext.rate_limit("3/minute")
    def search() -> str:
        return "ok"

    c = app.test_client()
    forms = ["1.2.3.4", "::ffff:1.2.3.4", "::ffff:0102:0304", "1.2.3.4"]
    answers = []
    for i, peer in enumerate(forms):
        spoof = {"X-Forwarded-For": f"9.9.9.{i}", "Forwarded": f"for=9.9.8.{i}"}
        r = c.get("/search", headers=spoof, environ_base={"REMOTE_ADDR": peer})
        answers.append(r.status_code)
    assert answers == [200, 200, 200, 429]
    denied = c.get("/search", environ_base={"REMOTE_ADDR": "1.2.3.4"})
    assert int(denied.headers["Retry-After"]) >= 1
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert denied.get_json()["status"] == 429


def test_clients_behind_a_local_socket_proxy_are_counted_apart(url: str, apps: list[Flask]) -> None:
    app = make_app(url, REDKIT_TRUSTED_PROXIES="127.0.0.0/8, ::1, unix")
    apps.append(app)
    ext = Redkit(app)

    @app.post("/reset")
    @ext.rate_limit("2/minute")
    def reset() -> str:
        return "mail sent"

    c = app.test_client()
    unix_peer = {"REMOTE_ADDR": ""}  # what gunicorn bound to unix:/run/app.sock reports
    for _ in range(3):
        c.post("/reset", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=unix_peer)
    other = c.post("/reset", headers={"X-Forwarded-For": "198.51.100.7"}, environ_base=unix_peer)
    assert other.status_code == 200  # one client's flood does not lock the others out


# -- idempotency -----------------------------------------------------------------------------------
def test_one_key_from_different_clients_and_credentials_runs_for_each(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.post("/pay")
    @ext.idempotent()
    def pay() -> tuple[dict[str, Any], int]:
        return {"charge": n(), "auth": request.headers.get("Authorization")}, 201

    c = app.test_client()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    alice = {**key, "Authorization": "Bearer alice"}
    bob = {**key, "Authorization": "Bearer bob"}
    first = c.post("/pay", json={}, headers=alice)
    assert c.post("/pay", json={}, headers=bob).json == {"charge": 2, "auth": "Bearer bob"}
    assert c.post("/pay", json={}, headers=key).json["charge"] == 3  # no credentials
    far = c.post("/pay", json={}, headers=key, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert far.json["charge"] == 4  # another address
    replay = c.post("/pay", json={}, headers=alice)
    assert replay.json == first.json
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_response_setting_a_cookie_is_never_replayed(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.post("/signup")
    @ext.idempotent()
    def signup() -> Response:
        response = make_response({"account": n()}, 201)
        response.set_cookie("welcome", secrets.token_hex(4))
        return response

    c = app.test_client()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert c.post("/signup", headers=key).json == {"account": 1}
    again = c.post("/signup", headers=key)
    assert again.json == {"account": 2}  # ran again: nothing stored, so no cookie replayed
    assert "Idempotent-Replayed" not in again.headers


def test_a_failing_idempotent_request_releases_its_key(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    calls = counter()

    @app.post("/boom")
    @ext.idempotent()
    def boom() -> str:
        if calls() == 1:
            raise RuntimeError("boom")
        return "done"

    c = app.test_client()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert c.post("/boom", headers=key).status_code == 500
    retry = c.post("/boom", headers=key)
    assert (retry.status_code, retry.text) == (200, "done")
