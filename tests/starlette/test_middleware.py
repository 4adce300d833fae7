"""The pure-ASGI middleware, hostile input first: malformed cookies, keys and huge bodies get
clean answers, a cached response never reaches another user; then the behaviour of sessions,
rate limits, idempotency keys and the cache, the order check, and Redis unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from redkit import web
from redkit_starlette import CacheMiddleware, Redkit, SessionMiddleware, regenerate_session

from .conftest import serve

COUNT = {"n": 0}


def build(rk: Redkit, **middleware: Any) -> Starlette:
    async def counter(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse({"n": request.session["n"]})

    async def login(request: Request) -> JSONResponse:
        request.session["user"] = "ada"
        regenerate_session(request)
        return JSONResponse({"ok": True})

    async def anonymous(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    @rk.rate_limit("2/minute")
    async def limited(request: Request) -> PlainTextResponse:
        return PlainTextResponse("limited")

    @rk.exempt
    async def free(request: Request) -> PlainTextResponse:
        return PlainTextResponse("free")

    async def pay(request: Request) -> JSONResponse:
        COUNT["n"] += 1
        return JSONResponse({"paid": COUNT["n"], "body": (await request.body()).decode()})

    async def stream(request: Request) -> StreamingResponse:
        COUNT["n"] += 1
        n = COUNT["n"]

        size = int(request.query_params.get("size", "1"))

        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"a" * size, b"b" * size, str(n).encode()):
                yield part

        return StreamingResponse(chunks())

    @rk.cached(ttl=60)
    async def page(request: Request) -> PlainTextResponse:
        COUNT["n"] += 1
        who = request.headers.get("authorization", "nobody")
        return PlainTextResponse(f"page {COUNT['n']} for {who}")

    @rk.cached(ttl=60)
    async def cookie_page(request: Request) -> PlainTextResponse:
        COUNT["n"] += 1
        response = PlainTextResponse(f"cookie page {COUNT['n']}")
        response.set_cookie("theme", f"dark-{COUNT['n']}")
        return response

    @rk.cached(ttl=60)
    async def session_page(request: Request) -> PlainTextResponse:
        COUNT["n"] += 1
        return PlainTextResponse(f"{request.session.get('user')} {COUNT['n']}")

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    routes = [
        Route("/counter", counter),
        Route("/login", login, methods=["POST"]),
        Route("/anonymous", anonymous),
        Route("/limited", limited),
        Route("/free", free),
        Route("/pay", pay, methods=["POST"]),
        Route("/stream", stream, methods=["POST"]),
        Route("/page", page),
        Route("/cookie-page", cookie_page),
        Route("/session-page", session_page),
        WebSocketRoute("/ws", echo),
    ]
    return Starlette(routes=routes, lifespan=rk.lifespan, middleware=rk.middleware())


@pytest.fixture
def rk(make_rk: Callable[..., Redkit]) -> Redkit:
    return make_rk(sessions=True, ratelimit_default="100/minute")


# -- hostile input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cookie",
    [
        "session=",
        "session=garbage",
        "session=" + "x" * 5000,
        'session="\\\\\\"',
        "session=abc.def; session=ghi",
        "=;;;===",
        "session=\xff\xfe.\x00",
    ],
)
async def test_a_malformed_session_cookie_gives_a_new_session(rk: Redkit, cookie: str) -> None:
    async with serve(build(rk)) as http:
        got = await http.get("/counter", headers={"cookie": cookie.encode("latin-1")})
        assert got.status_code == 200
        assert got.json() == {"n": 1}
        assert "session=" in got.headers["set-cookie"]


@pytest.mark.parametrize("key", ["", " ", "x" * 10_000, "é", "a\tb", '"quoted"'])
async def test_a_malformed_idempotency_key_is_a_400(rk: Redkit, key: str) -> None:
    async with serve(build(rk)) as http:
        got = await http.post("/pay", headers={"idempotency-key": key.encode("utf-8")})
        assert got.status_code in (200, 400), got.text
        if got.status_code == 400:
            assert got.headers["content-type"] == "application/problem+json"


async def test_a_huge_body_with_a_key_is_a_413_not_a_500(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        got = await http.post(
            "/pay", content=b"x" * (2 * 1024 * 1024), headers={"idempotency-key": "k1"}
        )
        assert got.status_code == 413
        assert got.json()["status"] == 413


async def test_the_body_cap_is_the_idempotency_max_body_setting(
    make_rk: Callable[..., Redkit],
) -> None:
    small = make_rk(idempotency_max_body=2048)
    async with serve(build(small)) as http:
        key = {"idempotency-key": "cap-1"}
        assert (await http.post("/pay", content=b"x" * 2049, headers=key)).status_code == 413
        fits = await http.post("/pay", content=b"x" * 2048, headers=key)  # the key was not taken
        assert fits.status_code == 200, fits.text
        again = await http.post("/pay", content=b"x" * 2048, headers=key)
        assert again.headers["idempotent-replayed"] == "true"
    with pytest.raises(ValueError, match="idempotency_max_body"):
        make_rk(idempotency_max_body=10)


async def test_a_cached_page_is_never_served_to_another_user(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        first = await http.get("/page", headers={"authorization": "Bearer alice"})
        second = await http.get("/page", headers={"authorization": "Bearer bob"})
        assert first.text.endswith("for Bearer alice")
        assert second.text.endswith("for Bearer bob")
        anon = await http.get("/page")
        assert anon.text.endswith("for nobody")
        assert (await http.get("/page")).text == anon.text  # anonymous pages are cached


async def test_a_page_setting_a_cookie_or_reading_a_session_is_not_shared(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        one = await http.get("/cookie-page")
        two = await http.get("/cookie-page")
        assert one.text != two.text
        assert two.cookies.get("theme") == two.text.replace("cookie page ", "dark-")
        await http.post("/login")
        ada = (await http.get("/session-page")).text
        assert ada.startswith("ada ")
        http.cookies.clear()
        assert (await http.get("/session-page")).text.startswith("None ")


# -- behaviour --------------------------------------------------------------------------------
async def test_sessions_persist_and_login_regenerates_the_id(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        assert (await http.get("/counter")).json() == {"n": 1}
        before = http.cookies["session"]
        assert (await http.get("/counter")).json() == {"n": 2}
        got = await http.post("/login")
        assert got.headers["vary"] == "Cookie"
        assert http.cookies["session"] != before
        assert (await http.get("/counter")).json() == {"n": 3}


async def test_the_cookie_attributes_are_those_given(rk: Redkit) -> None:
    attributes = web.CookieAttributes(
        name="sid", path="/app", secure=True, samesite="None", partitioned=True
    )
    app = build(rk)
    app.user_middleware = [
        *rk.middleware()[:-1],
        Middleware(SessionMiddleware, redkit=rk, cookie=attributes),
    ]
    async with serve(app) as http:
        made = (await http.get("/counter")).headers["set-cookie"]
        fields = [f.strip().lower() for f in made.split(";")]
        assert fields[0].startswith("sid=")
        for wanted in ("path=/app", "secure", "httponly", "samesite=none", "partitioned"):
            assert wanted in fields, made


async def test_a_path_rewritten_between_the_middleware_is_matched_again(rk: Redkit) -> None:
    class Alias:  # an application's middleware between the rate limit and the cache
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope.get("path") == "/alias":
                scope = {**scope, "path": "/page"}
            await self.app(scope, receive, send)

    app = build(rk)
    made = rk.middleware()
    app.user_middleware = [made[0], Middleware(Alias), *made[1:]]
    async with serve(app) as http:
        first = await http.get("/alias")
        assert first.text.startswith("page ")
        assert (await http.get("/alias")).text == first.text  # the cache found /page


async def test_rate_limits_answer_429_with_headers_and_exempt_routes_pass(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        assert (await http.get("/limited")).headers["x-ratelimit-limit"] == "2"
        await http.get("/limited")
        denied = await http.get("/limited")
        assert denied.status_code == 429
        assert int(denied.headers["retry-after"]) >= 1
        assert denied.json()["title"] == "Too Many Requests"
        assert "x-ratelimit-limit" not in (await http.get("/free")).headers
        assert (await http.get("/anonymous")).headers["x-ratelimit-limit"] == "100"


async def test_idempotent_requests_replay_and_refuse_reuse(rk: Redkit) -> None:
    async with serve(build(rk)) as http:
        first = await http.post("/pay", content=b"order-1", headers={"idempotency-key": "k-1"})
        again = await http.post("/pay", content=b"order-1", headers={"idempotency-key": "k-1"})
        assert again.json() == first.json() == {"paid": first.json()["paid"], "body": "order-1"}
        assert again.headers["idempotent-replayed"] == "true"
        other = await http.post("/pay", content=b"order-2", headers={"idempotency-key": "k-1"})
        assert other.status_code == 422


async def test_a_streamed_response_is_stored_up_to_the_cap(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    async with serve(build(rk)) as http:
        first = await http.post("/stream", headers={"idempotency-key": "s-1"})
        again = await http.post("/stream", headers={"idempotency-key": "s-1"})
        assert first.text == again.text
        assert again.headers["idempotent-replayed"] == "true"
    small = make_rk(idempotency_max_bytes=1024)
    async with serve(build(small)) as http:
        big = {"size": 600}  # 1,200 bytes and more: past the cap
        first = await http.post("/stream", params=big, headers={"idempotency-key": "s-2"})
        again = await http.post("/stream", params=big, headers={"idempotency-key": "s-2"})
        assert first.text != again.text  # too large: released, the retry ran again
        assert "idempotent-replayed" not in again.headers


async def test_websockets_pass_straight_through(rk: Redkit) -> None:
    app = build(rk)
    async with serve(app):
        incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "ping"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "websocket.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "websocket",
            "path": "/ws",
            "headers": [],
            "query_string": b"",
            "root_path": "",
            "scheme": "ws",
            "server": ("t", 80),
            "subprotocols": [],
        }
        await app(scope, receive, send)
        assert [m["type"] for m in sent] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert sent[1]["text"] == "ping"
        assert "session" not in scope  # no session middleware ran


async def test_a_wrong_middleware_order_raises_at_start_up(rk: Redkit) -> None:
    app = Starlette(
        lifespan=rk.lifespan,
        middleware=[
            Middleware(SessionMiddleware, redkit=rk),
            Middleware(CacheMiddleware, redkit=rk),
        ],
    )
    with pytest.raises(
        RuntimeError, match="out of order: CacheMiddleware is inside SessionMiddleware"
    ):
        app.build_middleware_stack()  # what Starlette does when the application starts


# -- Redis unreachable, and no blocking call ----------------------------------------------------
async def test_redis_unreachable_sessions_and_keys_503_limits_open_cache_runs() -> None:
    rk = Redkit(
        "redis://127.0.0.1:1/0",
        sessions=True,
        session_secret="s",
        ratelimit_default="5/minute",
        socket_connect_timeout=0.2,
        retry_attempts=0,
    )
    async with serve(build(rk)) as http:
        assert (await http.get("/counter")).status_code == 503
        assert (await http.post("/pay", headers={"idempotency-key": "k"})).status_code == 503
        assert (await http.get("/anonymous")).text == "hello"  # limits fail open
        assert (await http.get("/page")).text.startswith("page ")  # the cached route runs
        assert (await http.get("/counter", headers={"cookie": "session=bad"})).status_code == 503


async def test_the_middleware_never_calls_a_blocking_client(
    rk: Redkit, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a blocking Redis call on the event loop")

    async with serve(build(rk)) as http:
        monkeypatch.setattr(redis.Redis, "execute_command", refuse)
        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", refuse)
        assert (await http.get("/counter")).status_code == 200
        assert (await http.get("/limited")).status_code == 200
        assert (await http.post("/pay", headers={"idempotency-key": "nb"})).status_code == 200
        assert (await http.get("/page")).status_code == 200
        monkeypatch.undo()
