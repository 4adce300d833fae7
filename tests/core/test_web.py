"""``redkit.web`` without any web framework: the request description, the cookie signer and the
session cookie. The flows run with the sync driver (``web.run``) and the asyncio one
(``web.arun``), against real Redis and ``memory://``.

The application fixture (:class:`App`) and the request builders here serve the other
``test_web_*`` modules too (view cache, rate limits, idempotent requests)."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import web
from redkit.errors import RedkitConnectionError
from tests.conftest import Kits, new_prefix

DOWN = "redis://127.0.0.1:1"
"""Where no Redis listens: a kit on it fails every call at once."""
CLIENT = "203.0.113.10"
HOST = "shop.example"


class App:
    """One application as an adapter sees it: a kit of the test's backend and mode, the web rules
    built from its settings, and the driver of that mode (``drive(flow)``)."""

    def __init__(self, kit: Any, mode: str, keeper: Any = None) -> None:
        self.kit = kit
        self.mode = mode
        self.rules = web.WebRules(kit.settings, keeper)
        self.twin: redkit.Redkit | None = None

    async def drive(self, flow: web.WebFlow[Any]) -> Any:
        """Run ``flow`` with this application's kit, by the driver of its mode."""
        if self.mode == "sync":
            return web.run(flow, self.kit)
        return await web.arun(flow, self.kit)

    def body(self, data: bytes) -> Callable[[], bytes | Awaitable[bytes]]:
        """A request body reader as the mode's frameworks give one (awaitable under asyncio)."""
        if self.mode == "sync":
            return lambda: data

        async def read() -> bytes:
            return data

        return read

    @property
    def loader(self) -> Callable[..., Any]:
        """What :class:`web.LazySession` reads a session with: ``sessions.open`` of a sync kit
        (its loader is called, not awaited): the kit itself, or under asyncio a sync kit of
        the same settings, so on the same data."""
        if self.mode == "sync":
            return self.kit.sessions.open  # type: ignore[no-any-return]
        if self.twin is None:
            self.twin = redkit.Redkit(self.kit.settings)
        return self.twin.sessions.open

    async def before(
        self,
        req: web.Request,
        view: web.ViewRules | None = None,
        endpoint: str = "view",
        groups: Iterable[web.ViewRules] = (),
    ) -> web.Answer | web.Pending:
        return await self.drive(self.rules.before(req, endpoint, view, list(groups)))  # type: ignore[no-any-return]

    async def finish(
        self, req: web.Request, pending: web.Pending, response: web.Response, **extra: Any
    ) -> web.Response:
        """Finish ``req`` with ``response`` as an adapter sends it (rate-limit headers added);
        return what was sent."""
        sent = web.Response(
            response.status,
            [*response.headers, *self.rules.headers(pending).items()],
            response.body,
        )
        await self.drive(self.rules.finish(req, pending, sent, **extra))
        return sent

    async def exchange(
        self,
        req: web.Request,
        view: web.ViewRules | None = None,
        response: web.Response | None = None,
        endpoint: str = "view",
        **extra: Any,
    ) -> web.Answer | web.Response:
        """One request: the answer given instead of the view, or the view's response (default
        :func:`page`) as sent after ``finish``."""
        got = await self.before(req, view, endpoint)
        if isinstance(got, web.Answer):
            return got
        return await self.finish(req, got, response or page(), **extra)


def down_kit(mode: str, **settings: Any) -> Any:
    """A kit of ``mode`` on an address where no Redis listens (fails fast, no retry)."""
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    options = {"socket_connect_timeout": 0.2, "retry_attempts": 0, **settings}
    return cls.from_url(DOWN, prefix=new_prefix(), **options)


async def close(kit: Any) -> None:
    if isinstance(kit, redkit.Redkit):
        kit.close()
    else:
        await kit.aclose()


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest) -> str:
    """Real Redis and ``memory://`` (the cluster adds nothing to the web rules)."""
    return str(request.param)


@pytest.fixture
async def app(make_kit: Kits, mode: str) -> AsyncIterator[Callable[..., App]]:
    """``app(**settings)``: an application on the test's backend, in the test's mode (its
    ``drive(flow)`` runs a flow with the mode's driver); with ``down=True`` its kit points
    where no Redis listens."""
    made: list[App] = []

    def build(down: bool = False, keeper: Any = None, **settings: Any) -> App:
        kit = down_kit(mode, **settings) if down else make_kit(**settings)
        made.append(App(kit, mode, keeper))
        return made[-1]

    yield build
    for one in made:
        if one.twin is not None:
            one.twin.close()
        if one.kit.settings.url == DOWN:
            await close(one.kit)


def op(fn: Callable[[Any], Any]) -> web.WebFlow[Any]:
    """A flow of one operation (``drive(op(lambda kit: ...))``)."""
    return (yield fn)  # type: ignore[misc]


def request(
    method: str = "GET",
    path: str = "/page",
    query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    client: str | None = CLIENT,
    **extra: Any,
) -> web.Request:
    return web.Request(method, path, query, web.Headers(headers), client, HOST, **extra)


def page(
    body: bytes | None = b"<p>page</p>",
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (("Content-Type", "text/html"),),
) -> web.Response:
    return web.Response(status, list(headers), body)


# -- Headers and Request ---------------------------------------------------------------------------
def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    h = web.Headers([("Accept", "a"), ("X-Tag", "1"), ("x-tag", "2"), (b"X-Raw", b"caf\xe9")])
    assert h.get("accept") == h.get("ACCEPT") == "a"
    assert h.get_all("X-TAG") == ["1", "2"]
    assert h.get("x-tag") == "1"
    assert h.get("x-raw") == "café"  # bytes are Latin-1, as HTTP fields travel
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert h.get_all("missing") == []
    assert "X-Raw" in h
    assert "x-raw" in h
    assert 42 not in h
    assert None not in h
    assert h.items()[1:3] == [("X-Tag", "1"), ("x-tag", "2")]
    assert list(h) == h.items()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("b=2&a=1&b=3", [("b", "2"), ("a", "1"), ("b", "3")]),
        ("empty=&flag", [("empty", ""), ("flag", "")]),
        ("q=%zz&r=%", [("q", "%zz"), ("r", "%")]),
        ("q=%e9", [("q", "\udce9")]),  # Latin-1, not UTF-8: kept as it came
        ("q=%ff%fe%00", [("q", "\udcff\udcfe\x00")]),
        ("q=caf%C3%A9+au+lait", [("q", "café au lait")]),
        ("&&=&x=1", [("", ""), ("x", "1")]),
    ],
)
def test_request_args_never_fail(query: str, expected: list[tuple[str, str]]) -> None:
    req = request(query=query)
    assert req.args == expected
    assert req.args is req.args  # parsed once


def test_request_args_survive_random_bytes() -> None:
    rng = random.Random(7)
    alphabet = "%&=+;?#/a0\x00é\udcff"
    for _ in range(2000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert isinstance(request(query=query).args, list)


def test_request_method_is_upper_case_and_hooks_run_the_framework_way() -> None:
    req = request("post")
    assert req.method == "POST"
    assert req.invoke(lambda: "flask") == "flask"
    starlette = request(call=lambda fn: fn("the request"))
    assert starlette.invoke(lambda r: r) == "the request"


# -- CookieSigner ----------------------------------------------------------------------------------
SID = "AB" + "c" * 42 + "A"  # a well-formed session id (45 characters, canonical last one)


def test_sign_unsign_roundtrip() -> None:
    signer = web.CookieSigner(["current"])
    signed = signer.sign(SID)
    assert signed.startswith(SID + ".")
    assert signer.unsign(signed) == SID
    assert signer.unsign(signed.encode()) == SID
    assert signer.verifies(signed)
    assert signer.session_id(signed) == SID
    assert signer.sign("a.b.c").count(".") == 3
    assert signer.unsign(signer.sign("a.b.c")) == "a.b.c"


def test_key_rotation() -> None:
    old = web.CookieSigner(["old"])
    rotated = web.CookieSigner(["new", "old"])
    assert rotated.unsign(old.sign(SID)) == SID  # still accepted
    assert rotated.sign(SID) == web.CookieSigner(["new"]).sign(SID)  # the new key signs
    assert rotated.sign(SID) != old.sign(SID)
    assert old.unsign(rotated.sign(SID)) is None  # a dropped key no longer verifies
    assert web.CookieSigner(["", b"bytes-key"]).unsign(web.CookieSigner([b"bytes-key"]).sign(SID))
    with pytest.raises(ValueError):
        web.CookieSigner([])
    with pytest.raises(ValueError):
        web.CookieSigner(["", b""])


def test_a_signature_for_another_salt_is_refused() -> None:
    session = web.CookieSigner(["k"])
    other = web.CookieSigner(["k"], salt="password-reset")
    assert session.unsign(other.sign(SID)) is None
    assert other.unsign(session.sign(SID)) is None


def test_every_single_character_change_is_refused() -> None:
    signer = web.CookieSigner(["k"])
    signed = signer.sign(SID)
    for i, ch in enumerate(signed):
        for other in {"A", "B", "-", "_", ".", "="} - {ch}:
            forged = signed[:i] + other + signed[i + 1 :]
            assert signer.unsign(forged) is None, forged
    assert signer.unsign(signed + "A") is None
    assert signer.unsign(signed[:-1]) is None
    assert signer.unsign(signed + "=") is None  # padding is not part of the signature


HOSTILE: list[object] = [
    None,
    0,
    42,
    1.5,
    True,
    ["a.b"],
    {"a": "b"},
    object(),
    "",
    ".",
    "..",
    "." * 600,
    "." * 100,
    "a.",
    ".a",
    "a..",
    "..a",
    "a.b.c.d.e.f.g",
    ".".join(["x"] * 200),
    "x.é",
    "é.x",
    "x.\udcff",
    "\ud800.\udfff",
    "x\x00.y",
    "x" * 100_000,
    "x." + "A" * 100_000,
    b"",
    b".",
    b"\xff\xfe.\x80",
    b"x.\xe9",
    bytes(range(256)),
    b"a" * 100_000,
    bytearray(b"x.y"),
    memoryview(b"x.y"),
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_unsign_refuses_hostile_values(value: object) -> None:
    signer = web.CookieSigner(["k"])
    assert signer.unsign(value) is None
    assert signer.session_id(value) is None
    assert signer.verifies(value) is False


def test_unsign_never_raises_on_random_values() -> None:
    """A seeded fuzz (``hypothesis`` is not a dependency): text over a hostile alphabet and raw
    bytes, alone and appended to a valid cookie."""
    signer = web.CookieSigner(["k"])
    valid = signer.sign(SID)
    rng = random.Random(1234)
    alphabet = string.ascii_letters + string.digits + "._-=.." + "é€\x00\x7f\udcff\ud800 "
    for _ in range(3000):
        size = rng.choice([0, 1, 2, 5, 44, 45, 90, 600])
        text = "".join(rng.choice(alphabet) for _ in range(size))
        raw = bytes(rng.randrange(256) for _ in range(size))
        for value in (text, raw, valid + text, valid.encode() + raw, text + valid):
            got = signer.unsign(value)
            assert got is None or got == signer.unsign(valid), value


def test_unsign_never_raises_on_signed_non_ascii_bytes() -> None:
    """A value signed as UTF-8 text and sent back as bytes: not ASCII, so no id (not an
    exception in the middle of a request)."""
    signer = web.CookieSigner(["k"])
    signed = signer.sign("é")
    assert signer.unsign(signed) is None  # as text: refused, not ASCII
    assert signer.unsign(signed.encode("utf-8")) is None


@pytest.mark.parametrize(
    "value",
    ["x" * 45, SID[:-1] + "B", SID[:-1], SID + "A", "../../etc/passwd", "", "a:b" * 15, "é"],
)
def test_session_id_refuses_a_signed_but_malformed_id(value: str) -> None:
    signer = web.CookieSigner(["k"])
    signed = signer.sign(value)
    assert signer.session_id(signed) is None


# -- the session cookie ----------------------------------------------------------------------------
COOKIES = web.SessionCookies(web.CookieSigner(["secret", "older"]))


class Loader:
    """Counts the sessions :class:`web.LazySession` reads."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, sid: str, cls: type[Any]) -> Any:
        self.calls += 1
        return self.inner(sid, cls)


async def stored_session(
    a: App, data: dict[str, Any], cookies: web.SessionCookies = COOKIES
) -> str:
    """The cookie of a new session holding ``data`` (one request that writes it)."""
    session = cookies.open(None, a.loader)
    session.update(data)
    change = await a.drive(cookies.save(session))
    assert isinstance(change, web.CookieChange)
    assert change.action == "set"
    return change.value


async def test_an_untouched_session_changes_nothing_and_costs_no_round_trip(
    app: Callable[..., App],
) -> None:
    a = app()
    cookie = await stored_session(a, {"cart": [1]})
    for sent in (cookie, None, "forged.value"):
        loader = Loader(a.loader)
        session = COOKIES.open(sent, loader)
        assert web.session_state(session) == (False, False)
        offline = app(down=True)  # any command would fail: none is sent
        assert await offline.drive(COOKIES.save(session)) is None
        assert loader.calls == 0


async def test_a_new_session_with_data_sets_the_cookie(app: Callable[..., App]) -> None:
    a = app()
    session = COOKIES.open(None, a.loader)
    assert session.cookie is None
    session["user"] = "alice"
    assert web.session_state(session) == (True, True)
    change = await a.drive(COOKIES.save(session))
    assert change.action == "set"
    assert change.max_age is None  # until the browser closes
    sid = COOKIES.signer.session_id(change.value)
    assert sid is not None
    assert sid == session.sid
    assert await a.drive(op(lambda kit: kit.sessions.load(sid))) == {"user": "alice"}


async def test_a_new_session_left_empty_sets_no_cookie(app: Callable[..., App]) -> None:
    a = app()
    session = COOKIES.open(None, a.loader)
    assert "user" not in session  # read: touched, but nothing to store
    assert web.session_state(session) == (True, False)
    assert await a.drive(COOKIES.save(session)) is None


async def test_the_same_cookie_unchanged_is_not_sent_again(app: Callable[..., App]) -> None:
    a = app()
    cookie = await stored_session(a, {"user": "alice"})
    loader = Loader(a.loader)
    session = COOKIES.open(cookie, loader)
    assert session["user"] == "alice"
    assert loader.calls == 1
    assert web.session_state(session) == (True, False)
    assert await a.drive(COOKIES.save(session)) is None


async def test_a_cookie_signed_by_an_older_key_is_signed_again(app: Callable[..., App]) -> None:
    a = app()
    older = web.SessionCookies(web.CookieSigner(["older"]))
    cookie = await stored_session(a, {"user": "alice"}, older)
    session = COOKIES.open(cookie, a.loader)
    assert session["user"] == "alice"
    change = await a.drive(COOKIES.save(session))
    assert change.action == "set"
    assert change.value == COOKIES.signer.sign(str(older.signer.session_id(cookie)))


async def test_a_permanent_session_is_refreshed_each_request(app: Callable[..., App]) -> None:
    a = app(session_ttl=600)
    session = COOKIES.open(None, a.loader)
    session.permanent = True
    session["user"] = "alice"
    change = await a.drive(COOKIES.save(session))
    assert change.action == "set"
    assert 590 < change.max_age <= 600
    again = COOKIES.open(change.value, a.loader)
    assert again.permanent
    refreshed = await a.drive(COOKIES.save(again))
    assert refreshed.action == "set"
    assert refreshed.value == change.value
    assert 590 < refreshed.max_age <= 600
    no_refresh = web.SessionCookies(COOKIES.signer, refresh_each_request=False)
    third = no_refresh.open(change.value, a.loader)
    assert third["user"] == "alice"
    assert await a.drive(no_refresh.save(third)) is None


async def test_an_emptied_session_is_destroyed_and_its_cookie_deleted(
    app: Callable[..., App],
) -> None:
    a = app()
    cookie = await stored_session(a, {"user": "alice", "cart": [1, 2]})
    sid = COOKIES.signer.session_id(cookie)
    session = COOKIES.open(cookie, a.loader)
    session.clear()
    assert web.session_state(session) == (True, True)
    assert await a.drive(COOKIES.save(session)) == web.CookieChange("delete")
    assert await a.drive(op(lambda kit: kit.sessions.load(sid))) is None


async def test_a_session_gone_meanwhile_loses_its_cookie(app: Callable[..., App]) -> None:
    a = app()
    cookie = await stored_session(a, {"user": "alice"})
    await a.drive(op(lambda kit: kit.sessions.destroy(COOKIES.signer.session_id(cookie))))
    session = COOKIES.open(cookie, a.loader)
    assert session.new
    assert "user" not in session
    assert await a.drive(COOKIES.save(session)) == web.CookieChange("delete")


async def test_regenerate_moves_the_session_to_a_new_id(app: Callable[..., App]) -> None:
    a = app()
    cookie = await stored_session(a, {"user": "alice"})
    old = COOKIES.signer.session_id(cookie)
    session = COOKIES.open(cookie, a.loader)
    session.regenerate()
    session["role"] = "admin"
    assert web.session_state(session) == (True, True)
    change = await a.drive(COOKIES.save(session))
    assert change.action == "set"
    assert change.value != cookie
    new = COOKIES.signer.session_id(change.value)
    assert new is not None
    assert new != old
    assert await a.drive(op(lambda kit: kit.sessions.load(old))) is None
    loaded = await a.drive(op(lambda kit: kit.sessions.load(new)))
    assert loaded == {"user": "alice", "role": "admin"}


def tampered(cookie: str) -> list[str]:
    sid, _, mac = cookie.rpartition(".")
    flip = "B" if sid[5] == "A" else "A"
    return [
        sid[:5] + flip + sid[6:] + "." + mac,  # another id under the old signature
        sid + "." + mac[::-1],
        sid,
        sid + ".",
        cookie + "x",
        "x" * 600,
    ]


async def test_a_tampered_cookie_gets_a_new_session(app: Callable[..., App]) -> None:
    a = app()
    cookie = await stored_session(a, {"user": "alice"})
    for forged in tampered(cookie):
        loader = Loader(a.loader)
        session = COOKIES.open(forged, loader)
        assert session.cookie == forged
        assert session.new
        assert "user" not in session
        assert loader.calls == 0  # never used to build a key
        session["user"] = "mallory"
        change = await a.drive(COOKIES.save(session))
        assert change.action == "set"
        assert COOKIES.signer.session_id(change.value) not in (
            None,
            COOKIES.signer.session_id(cookie),
        )
    mine = COOKIES.open(cookie, a.loader)
    assert dict(mine) == {"user": "alice"}


def test_session_state_of_a_lazy_session() -> None:
    calls: list[str] = []

    def loader(sid: str, cls: type[Any]) -> Any:
        calls.append(sid)
        return cls()

    cookie = COOKIES.signer.sign(SID)
    untouched = COOKIES.open(cookie, loader)
    assert web.session_state(untouched) == (False, False)
    assert not untouched.touched
    assert calls == []  # reading the state does not load it
    read = COOKIES.open(cookie, loader)
    assert read.get("x") is None
    assert web.session_state(read) == (True, False)
    changed = COOKIES.open(cookie, loader)
    changed["x"] = 1
    assert web.session_state(changed) == (True, True)
    regenerated = COOKIES.open(None, loader)
    regenerated.regenerate()
    assert web.session_state(regenerated) == (True, True)
    assert calls == [SID, SID]


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        ({}, (False, False)),
        ({"accessed": True}, (True, False)),
        ({"modified": True}, (True, True)),
        ({"accessed": True, "modified": True}, (True, True)),
        ({"accessed": False, "modified": False}, (False, False)),
    ],
)
def test_session_state_of_a_session_with_flags(
    flags: dict[str, bool], state: tuple[bool, bool]
) -> None:
    assert web.session_state(SimpleNamespace(**flags)) == state


def test_session_state_of_no_session() -> None:
    assert web.session_state(None) == (False, False)


async def test_a_session_read_while_redis_is_down_fails_closed(app: Callable[..., App]) -> None:
    offline = app(down=True)
    twin = redkit.Redkit.from_url(DOWN, socket_connect_timeout=0.2, retry_attempts=0)
    try:
        session = COOKIES.open(COOKIES.signer.sign(SID), twin.sessions.open)
        with pytest.raises(RedkitConnectionError):
            session["user"]
        new = COOKIES.open(None, twin.sessions.open)
        new["user"] = "alice"
        with pytest.raises(RedkitConnectionError):
            await offline.drive(COOKIES.save(new))
    finally:
        twin.close()


def test_url_from_environment_prefers_the_variable_then_warns_of_memory(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import logging

    from redkit.errors import ConfigurationError
    from redkit.web import url_from_environment

    env = {"REDKIT_URL": "redis://127.0.0.1:6379/4"}
    assert url_from_environment("MY_URL", "my worker", env) == "redis://127.0.0.1:6379/4"
    assert caplog.records == []
    with caplog.at_level(logging.WARNING):
        assert url_from_environment("MY_URL", "my worker", {}) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "memory://" in warning
    assert "MY_URL" in warning
    assert "my worker" in warning
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fakeredis" else real(name)
    )
    with pytest.raises(ConfigurationError, match=r"set MY_URL .*redkit\[memory\]"):
        url_from_environment("MY_URL", "my worker", {})
