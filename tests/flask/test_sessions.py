"""Flask sessions kept by redkit (REDKIT_SESSIONS): signed id-only cookie with Flask's cookie
settings, fixation and tampering defences, regeneration at login, no lost updates between
concurrent requests, logout. Driven through app.test_client() on real Redis and memory://."""

from __future__ import annotations

import threading
from http.cookies import SimpleCookie
from typing import Any

import pytest

from flask import Flask, session
from redkit.sessions import valid_sid
from redkit_flask import Redkit, RedkitSession, regenerate_session
from tests.flask.conftest import make_app


def session_app(url: str, apps: list[Flask], **config: Any) -> tuple[Flask, Redkit]:
    app = make_app(url, REDKIT_SESSIONS=True, SECRET_KEY="s3cret", **config)
    apps.append(app)
    ext = Redkit(app)

    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/get")
    def get_all() -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    @app.get("/plain")
    def plain() -> str:
        return "nothing read"

    @app.post("/login/<user>")
    def login(user: str) -> str:
        regenerate_session()
        session["user"] = user
        return "in"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "out"

    @app.get("/permanent")
    def permanent() -> str:
        session.permanent = True
        session["p"] = 1
        return "ok"

    return app, ext


def cookie_header(response: Any, name: str = "session") -> SimpleCookie | None:
    for value in response.headers.getlist("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(value)
        if name in jar:
            return jar
    return None


def sid_of(client: Any, app: Flask, name: str = "session") -> str | None:
    cookie = client.get_cookie(name)
    if cookie is None:
        return None
    return app.session_interface.cookies(app).signer.unsign(cookie.value)  # type: ignore[attr-defined]


def test_cookie_holds_only_a_signed_id_with_flask_cookie_settings(
    url: str, apps: list[Flask]
) -> None:
    app, ext = session_app(url, apps, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict")
    client = app.test_client()
    response = client.get("/set/cart/tea")
    jar = cookie_header(response)
    assert jar is not None
    morsel = jar["session"]
    sid, _, signature = morsel.value.rpartition(".")
    assert valid_sid(sid) == sid
    assert len(signature) == 43
    assert "tea" not in morsel.value
    assert morsel["httponly"]
    assert morsel["secure"]
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert not morsel["expires"]
    assert "Cookie" in response.headers["Vary"]
    with app.app_context():
        assert ext.sessions.load(sid) == {"cart": "tea"}
    # a request that neither reads nor writes the session sends no cookie and no Vary
    plain = client.get("/plain")
    assert cookie_header(plain) is None
    assert "Vary" not in plain.headers
    # SameSite is Lax when Flask's setting is unset
    app2, _ = session_app(url, apps)
    assert cookie_header(app2.test_client().get("/set/a/b"))["session"]["samesite"] == "Lax"  # type: ignore[index]


def test_unknown_sid_is_never_adopted(url: str, apps: list[Flask]) -> None:
    app, ext = session_app(url, apps)
    attacker = "AB" + "x" * 42 + "A"  # well-formed, correctly signed, but never issued
    assert valid_sid(attacker) == attacker
    signed = app.session_interface.cookies(app).signer.sign(attacker)  # type: ignore[attr-defined]
    client = app.test_client()
    client.set_cookie("session", signed)
    assert client.get("/get").get_json() == {}
    client.get("/set/user/victim")
    issued = sid_of(client, app)
    assert issued is not None
    assert issued != attacker
    with app.app_context():
        assert ext.sessions.load(attacker) is None
        assert ext.sessions.load(issued) == {"user": "victim"}


def test_tampered_cookie_gets_a_new_session(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps)
    client = app.test_client()
    client.get("/set/user/alice")
    good = client.get_cookie("session").value  # type: ignore[union-attr]
    sid, _, mac = good.rpartition(".")
    for bad in (
        sid + "." + ("A" if mac[0] != "A" else "B") + mac[1:],  # signature changed
        sid[:-1] + ("A" if sid[-1] != "A" else "E") + "." + mac,  # id changed
        sid,  # no signature
        "garbage",
        "",
    ):
        other = app.test_client()
        other.set_cookie("session", bad)
        response = other.get("/get")
        assert response.get_json() == {}, bad
        if bad:  # the bad cookie is removed
            jar = cookie_header(response)
            assert jar is not None
            assert jar["session"].value == ""
    # the same cookie signed with another secret is not accepted either
    app_other, _ = session_app(url, apps)
    app_other.secret_key = "another"
    stranger = app_other.test_client()
    stranger.set_cookie("session", good)
    assert stranger.get("/get").get_json() == {}
    assert client.get("/get").get_json() == {"user": "alice"}


def test_secret_key_rotation_keeps_sessions_and_resigns(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps)
    client = app.test_client()
    client.get("/set/user/alice")
    old_cookie = client.get_cookie("session").value  # type: ignore[union-attr]
    app.secret_key = "new-secret"
    app.config["SECRET_KEY_FALLBACKS"] = ["s3cret"]
    response = client.get("/get")
    assert response.get_json() == {"user": "alice"}
    jar = cookie_header(response)
    assert jar is not None
    assert jar["session"].value != old_cookie
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/get").get_json() == {"user": "alice"}


def test_login_regenerates_the_id_and_keeps_the_data(url: str, apps: list[Flask]) -> None:
    app, ext = session_app(url, apps)
    client = app.test_client()
    client.get("/set/cart/tea")
    before = sid_of(client, app)
    client.post("/login/alice")
    after = sid_of(client, app)
    assert before
    assert after
    assert before != after
    assert client.get("/get").get_json() == {"cart": "tea", "user": "alice"}
    with app.app_context():
        assert ext.sessions.load(before) is None  # the pre-login id is dead
    # logout removes the session and the cookie
    response = client.post("/logout")
    jar = cookie_header(response)
    assert jar is not None
    assert jar["session"].value == ""
    with app.app_context():
        assert ext.sessions.load(after) is None
    assert client.get("/get").get_json() == {}


def test_flask_login_login_and_logout_regenerate(url: str, apps: list[Flask]) -> None:
    flask_login = pytest.importorskip("flask_login")
    app, ext = session_app(url, apps)
    manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):  # type: ignore[misc]
        def __init__(self, uid: str) -> None:
            self.id = uid

    manager.user_loader(User)

    @app.post("/fl-login")
    def fl_login() -> str:
        flask_login.login_user(User("7"))
        return "ok"

    @app.get("/me")
    def me() -> str:
        return str(flask_login.current_user.get_id())

    client = app.test_client()
    client.get("/set/cart/tea")
    anonymous = sid_of(client, app)
    client.post("/fl-login")
    logged_in = sid_of(client, app)
    assert anonymous
    assert logged_in
    assert anonymous != logged_in
    assert client.get("/me").get_data(as_text=True) == "7"
    with app.app_context():
        assert ext.sessions.load(anonymous) is None


def test_concurrent_requests_of_one_session_lose_no_update(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps)
    entered, release = threading.Barrier(2), threading.Event()

    @app.get("/slow/<key>")
    def slow(key: str) -> str:
        session[key] = key.upper()
        entered.wait(5)  # both requests loaded the session before either saves
        release.wait(5)
        return "ok"

    client = app.test_client()
    client.get("/set/base/1")
    cookie = client.get_cookie("session").value  # type: ignore[union-attr]
    results: list[int] = []

    def run(key: str) -> None:
        other = app.test_client()
        other.set_cookie("session", cookie)
        results.append(other.get(f"/slow/{key}").status_code)

    threads = [threading.Thread(target=run, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert results == [200, 200]
    assert client.get("/get").get_json() == {"base": "1", "a": "A", "b": "B"}


def test_permanent_session_gets_a_sliding_cookie_expiry(url: str, apps: list[Flask]) -> None:
    app, ext = session_app(url, apps, REDKIT_SESSION_TTL=3600)
    client = app.test_client()
    first = cookie_header(client.get("/permanent"))
    assert first is not None
    assert first["session"]["expires"]
    # each request of a permanent session refreshes the cookie (SESSION_REFRESH_EACH_REQUEST)
    again = cookie_header(client.get("/get"))
    assert again is not None
    assert again["session"]["expires"]
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    assert cookie_header(client.get("/get")) is None
    sid = sid_of(client, app)
    with app.app_context():
        ttl = ext.kit.client.pttl(ext.sessions._core.key(sid))
    assert 3_500_000 < ttl <= 3_600_000


def test_session_object_and_missing_secret(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps)
    seen: list[Any] = []

    @app.get("/kind")
    def kind() -> str:
        seen.append(type(session._get_current_object()))  # type: ignore[attr-defined]
        return "ok"

    app.test_client().get("/kind")
    assert seen == [RedkitSession]
    app.secret_key = None
    response = app.test_client().get("/set/a/b")  # Flask's null session refuses the write
    assert response.status_code == 500
    app.secret_key = "x"

    plain = Flask("plain")
    plain.secret_key = "k"

    @plain.get("/")
    def index() -> str:
        regenerate_session()
        return "ok"

    plain.config["TESTING"] = False
    assert plain.test_client().get("/").status_code == 500  # RuntimeError: not redkit's


def test_session_too_large_is_a_clear_error(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps, REDKIT_SESSION_MAX_BYTES=1024)
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/big")
    def big() -> str:
        session["blob"] = "x" * 5000
        return "ok"

    from redkit.errors import SessionTooLarge

    with pytest.raises(SessionTooLarge):
        app.test_client().get("/big")


def test_session_is_read_only_when_the_view_uses_it(url: str, apps: list[Flask]) -> None:
    app, _ = session_app(url, apps)
    client = app.test_client()
    client.get("/set/user/alice")
    stats = app.extensions["redkit"].kit.stats
    before = stats.get("round_trips")
    plain = client.get("/plain")  # carries the cookie, never touches the session
    assert plain.status_code == 200
    assert stats.get("round_trips") == before  # no read, no write, no cookie refresh
    assert cookie_header(plain) is None
    assert client.get("/get").get_json() == {"user": "alice"}
    assert stats.get("round_trips") == before + 1  # one read; nothing changed, nothing written


def test_views_without_the_session_work_while_redis_is_down(apps: list[Flask]) -> None:
    app = make_app(
        "redis://127.0.0.1:1",
        REDKIT_SESSIONS=True,
        SECRET_KEY="k",
        REDKIT_SOCKET_CONNECT_TIMEOUT=0.2,
        REDKIT_RETRY_ATTEMPTS=0,
    )
    Redkit(app)

    @app.get("/plain")
    def plain() -> str:
        return "up"

    @app.get("/uses")
    def uses() -> str:
        return str(session.get("user"))

    client = app.test_client()
    sid = "AB" + "x" * 42 + "A"
    signer = app.session_interface.cookies(app).signer  # type: ignore[attr-defined]
    client.set_cookie("session", signer.sign(sid))
    assert client.get("/plain").get_data() == b"up"
    down = client.get("/uses")  # the session store fails closed: 503, never a silent logout
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) >= 1
    assert down.get_json()["status"] == 503
    app.extensions["redkit"].kit.close()
