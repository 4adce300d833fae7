"""What a client must never get from a Flask app using redkit, tried as an attacker would:
another user's cached page, another visitor's session or CSRF token, a 500 for a malformed
cookie, another client's idempotent response. Each through a real Flask app on real Redis and
memory://."""

from __future__ import annotations

import itertools
import random
import secrets
from typing import Any

import pytest

from flask import Flask, Response, make_response, request, session
from redkit_flask import Redkit
from tests.flask.conftest import make_app


def counter() -> Any:
    return itertools.count(1).__next__


# -- credentials ----------------------------------------------------------------------------------
def test_a_request_with_credentials_is_never_served_or_stored(url: str, apps: list[Flask]) -> None:
    app = make_app(url, REDKIT_CACHE_CREDENTIAL_HEADERS=("Authorization", "X-Api-Key"))
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/me")
    @ext.cached(ttl=60)
    def me() -> str:
        who = request.headers.get("Authorization") or request.headers.get("X-Api-Key")
        return f"{n()}:{who}"

    c = app.test_client()
    alice = c.get("/me", headers={"Authorization": "Bearer alice"}).get_data(as_text=True)
    bob = c.get("/me", headers={"Authorization": "Bearer bob"}).get_data(as_text=True)
    assert alice == "1:Bearer alice"
    assert bob == "2:Bearer bob"  # never alice's page
    assert c.get("/me", headers={"X-Api-Key": "k1"}).get_data(as_text=True) == "3:k1"
    assert c.get("/me", headers={"X-Api-Key": "k2"}).get_data(as_text=True) == "4:k2"
    # the anonymous page is cached, and a credentialed request does not get it either
    assert c.get("/me").get_data(as_text=True) == "5:None"
    assert c.get("/me").get_data(as_text=True) == "5:None"
    got = c.get("/me", headers={"Authorization": "Bearer carol"}).get_data(as_text=True)
    assert got == "6:Bearer carol"


def test_per_credential_views_key_on_the_credential(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/me")
    @ext.cached(ttl=60, per_credential=True)
    def me() -> str:
        return f"{n()}:{request.headers.get('Authorization')}"

    c = app.test_client()
    for _ in range(2):
        assert c.get("/me", headers={"Authorization": "Bearer alice"}).text == "1:Bearer alice"
        assert c.get("/me", headers={"Authorization": "Bearer bob"}).text == "2:Bearer bob"


# -- sessions and cookies -------------------------------------------------------------------------
@pytest.mark.parametrize("server_side", [True, False], ids=["redkit-sessions", "flask-sessions"])
def test_a_view_writing_the_session_is_never_stored(
    url: str, apps: list[Flask], server_side: bool
) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=server_side)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/form")
    @ext.cached(ttl=60)
    def form() -> str:
        token = session.setdefault("csrf", secrets.token_hex(8))
        return f"<input name=csrf value={token}>"

    a, b = app.test_client(), app.test_client()
    page_a = a.get("/form")
    assert "Set-Cookie" in page_a.headers
    page_b = b.get("/form")
    assert page_b.text != page_a.text  # B never gets A's token
    assert "Set-Cookie" in page_b.headers  # and gets its own session
    again_a = a.get("/form")
    assert again_a.text == page_a.text  # A's own token, from A's session


def test_a_cookie_set_after_redkit_hooks_still_prevents_storing(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    ext = Redkit(app)
    apps.append(app)
    n = counter()

    @app.after_request  # registered after the extension: runs before its after_request hook
    def remember(response: Response) -> Response:
        if request.args.get("remember"):
            response.set_cookie("remember_token", secrets.token_hex(8))
        return response

    @app.get("/page")
    @ext.cached(ttl=60, query=False)
    def page() -> str:
        return f"page {n()}"

    c = app.test_client()
    assert c.get("/page?remember=1").text == "page 1"
    assert c.get("/page").text == "page 2"  # the first one set a cookie: not stored
    assert c.get("/page").text == "page 2"


@pytest.mark.parametrize("server_side", [True, False], ids=["redkit-sessions", "flask-sessions"])
def test_a_view_not_touching_the_session_is_stored_once_for_everyone(
    url: str, apps: list[Flask], server_side: bool
) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=server_side)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "in"

    @app.get("/news")
    @ext.cached(ttl=60)
    def news() -> str:
        return f"news {n()}"

    anonymous, member = app.test_client(), app.test_client()
    member.get("/login")
    first = anonymous.get("/news")
    assert "Cookie" not in first.headers.get("Vary", "")
    assert member.get("/news").text == first.text == "news 1"
    assert app.test_client().get("/news").text == "news 1"


FUZZ = [
    "x.é",
    "é" * 20,
    "a.b.c.d.e.f",
    "." * 300,
    "....",
    "x" * 100_000,
    "\x00\x01.\x02",
    ".",
    "",
    "AB" + "x" * 42 + "A.bad",
    "%ff%fe.%00",
    '"quoted.value"',
]


def _fuzz_values() -> list[str]:
    rnd = random.Random(1234)
    alphabet = "abcAB01.-_=%é\\\"'; ,\t~" + "".join(chr(c) for c in range(0x80, 0x90))
    out = list(FUZZ)
    for _ in range(120):
        out.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 300))))
    return out


def test_any_session_cookie_gives_a_fresh_session_never_a_500(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    Redkit(app)

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    @app.get("/uses")
    def uses() -> str:
        return f"user={session.get('user')}"

    c = app.test_client()
    for value in _fuzz_values():
        cookie = {"HTTP_COOKIE": "session=" + value}  # as sent, bypassing the client's checks
        assert c.get("/plain", environ_overrides=cookie).status_code == 200, repr(value[:40])
        got = c.get("/uses", environ_overrides=cookie)
        assert (got.status_code, got.text) == (200, "user=None"), repr(value[:40])


def test_raw_cookie_header_bytes_never_give_a_500(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    Redkit(app)

    @app.get("/uses")
    def uses() -> str:
        return f"user={session.get('user')}"

    c = app.test_client()
    for raw in (b"session=x.\xc3\xa9", b"session=\xff\xfe.\x80", b"session=" + b"." * 5000):
        got = c.get("/uses", environ_overrides={"HTTP_COOKIE": raw.decode("latin-1")})
        assert (got.status_code, got.text) == (200, "user=None")


# -- idempotency scope ----------------------------------------------------------------------------
def test_idempotency_without_a_user_loader_is_scoped_to_the_client(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    charges: list[str | None] = []

    @app.post("/charge")
    @ext.idempotent()
    def charge() -> tuple[str, int]:
        charges.append(request.remote_addr)
        return f"charged {len(charges)} for {request.remote_addr}", 201

    key = {"Idempotency-Key": "same-key-1"}
    one = app.test_client()
    one.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    first = one.post("/charge", json={"amount": 5}, headers=key)
    stolen = other.post("/charge", json={"amount": 5}, headers=key)
    assert first.text == "charged 1 for 198.51.100.1"
    assert stolen.text == "charged 2 for 203.0.113.7"  # its own request ran
    assert "Idempotent-Replayed" not in stolen.headers
    retry = one.post("/charge", json={"amount": 5}, headers=key)
    assert retry.text == first.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    # credentials scope a key too: two tokens from one address do not share it
    bearer_a = one.post("/charge", json={"amount": 5}, headers={**key, "Authorization": "Bearer a"})
    bearer_b = one.post("/charge", json={"amount": 5}, headers={**key, "Authorization": "Bearer b"})
    assert "Idempotent-Replayed" not in bearer_a.headers
    assert "Idempotent-Replayed" not in bearer_b.headers
    assert len(charges) == 4


# -- switches and Flask-Limiter / Flask-Caching habits --------------------------------------------
def test_cache_and_rate_limits_can_be_switched_off(url: str, apps: list[Flask]) -> None:
    app = make_app(url, REDKIT_CACHE_ENABLED=False, REDKIT_RATELIMIT_ENABLED=False)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/page")
    @ext.cached(ttl=60)
    @ext.rate_limit("1/minute")
    def page() -> str:
        return f"page {n()}"

    calls: list[int] = []

    @ext.cached(ttl=60)
    def compute(x: int) -> int:
        calls.append(x)
        return x * 2

    c = app.test_client()
    got = [c.get("/page") for _ in range(3)]
    assert [g.text for g in got] == ["page 1", "page 2", "page 3"]
    assert all(g.status_code == 200 and "X-RateLimit-Limit" not in g.headers for g in got)
    with app.app_context():
        assert compute(2) == compute(2) == 4
    assert calls == [2, 2]


def test_deduct_when_counts_only_failed_logins(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.post("/login")
    @ext.rate_limit("2/minute", deduct_when=lambda response: response.status_code == 401)
    def login() -> tuple[str, int]:
        ok = request.form.get("password") == "right"
        return ("welcome", 200) if ok else ("wrong", 401)

    c = app.test_client()
    for _ in range(4):  # successful logins are never counted
        assert c.post("/login", data={"password": "right"}).status_code == 200
    assert c.post("/login", data={"password": "bad"}).status_code == 401
    assert c.post("/login", data={"password": "bad"}).status_code == 401
    denied = c.post("/login", data={"password": "right"})
    assert denied.status_code == 429
    assert int(denied.headers["Retry-After"]) >= 1


def test_unless_skips_the_cache(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    n = counter()

    @app.get("/page")
    @ext.cached(ttl=60, query=False, unless=lambda: request.args.get("fresh") == "1")
    def page() -> str:
        return f"page {n()}"

    c = app.test_client()
    assert c.get("/page").text == "page 1"
    assert c.get("/page?fresh=1").text == "page 2"  # neither read nor stored
    assert c.get("/page").text == "page 1"


def test_a_rate_limit_hook_with_a_bad_cost_fails_at_decoration() -> None:
    ext = Redkit()
    with pytest.raises(ValueError, match="cost"):
        ext.rate_limit("1/second", cost=0)
    with pytest.raises(ValueError, match="sliding_window_log"):
        ext.rate_limit("200000/second", algorithm="sliding_window_log")
    with pytest.raises(ValueError, match="algorithm"):
        ext.rate_limit("1/second", algorithm="leaky")
    with pytest.raises(ValueError, match="GET"):
        ext.idempotent(methods=["GET"])


def test_html_responses_keep_their_body_and_type(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/page")
    @ext.cached(ttl=60)
    def page() -> Response:
        response = make_response("<p>é</p>")
        response.headers["X-Custom"] = "1"
        return response

    c = app.test_client()
    first, second = c.get("/page"), c.get("/page")
    assert second.data == first.data == "<p>é</p>".encode()
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert second.headers["X-Custom"] == "1"


def test_host_and_scheme_are_part_of_the_key(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/link")
    @ext.cached(ttl=60)
    def link() -> str:
        return request.url_root  # absolute URLs differ by scheme and host

    c = app.test_client()
    assert c.get("/link", base_url="http://shop.example").text == "http://shop.example/"
    assert c.get("/link", base_url="https://shop.example").text == "https://shop.example/"
    assert c.get("/link", base_url="http://evil.example").text == "http://evil.example/"
    assert c.get("/link", base_url="http://shop.example").text == "http://shop.example/"


def test_setting_session_modified_is_accepted(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    Redkit(app)

    @app.get("/add")
    def add() -> str:
        cart = session.setdefault("cart", [])
        cart.append("tea")  # changed in place
        session.modified = True  # the cookie-session habit: harmless here
        return str(len(cart))

    c = app.test_client()
    assert [c.get("/add").text for _ in range(3)] == ["1", "2", "3"]


def test_a_permanent_session_refresh_does_not_stop_replays(url: str, apps: list[Flask]) -> None:
    app = make_app(url, SECRET_KEY="s", REDKIT_SESSIONS=True)
    apps.append(app)
    ext = Redkit(app)
    runs: list[int] = []

    @app.get("/login")
    def login() -> str:
        session.permanent = True
        session["user"] = "ada"
        return "in"

    @app.post("/order")
    @ext.idempotent()
    def order() -> tuple[str, int]:
        runs.append(1)
        return f"order {len(runs)} for {session['user']}", 201

    c = app.test_client()
    c.get("/login")
    key = {"Idempotency-Key": "perm-1"}
    first = c.post("/order", headers=key)
    assert "Set-Cookie" in first.headers  # the permanent cookie's expiry is refreshed
    retry = c.post("/order", headers=key)
    assert retry.text == first.text == "order 1 for ada"
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Set-Cookie" not in retry.headers or "session=" in retry.headers["Set-Cookie"]
    assert runs == [1]


def test_hooks_returning_nobody_fall_back_to_the_client(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    ext.user_loader(lambda: False)  # a loader answering False for anonymous visitors

    @app.get("/search")
    @ext.rate_limit("2/minute", key=lambda: None)  # None: nobody known, count the address
    def search() -> str:
        return "ok"

    @app.post("/pay")
    @ext.idempotent()
    def pay() -> str:
        return f"paid by {request.remote_addr}"

    one, two = app.test_client(), app.test_client()
    one.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    two.environ_base["REMOTE_ADDR"] = "198.51.100.2"
    assert [one.get("/search").status_code for _ in range(3)] == [200, 200, 429]
    assert two.get("/search").status_code == 200  # another client, its own counter
    key = {"Idempotency-Key": "anon-1"}
    assert one.post("/pay", headers=key).text == "paid by 198.51.100.1"
    assert two.post("/pay", headers=key).text == "paid by 198.51.100.2"  # no shared scope


def test_the_429_body_and_retry_after_agree(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/x")
    @ext.rate_limit("1/minute")
    def x() -> str:
        return "ok"

    c = app.test_client()
    c.get("/x")
    denied = c.get("/x")
    assert denied.status_code == 429
    wait = denied.headers["Retry-After"]
    assert f"retry in {wait} s" in denied.get_json()["detail"]
