"""Hooks of the outer middleware (the idempotency scope's ``user_loader``, a rate limit's
``key``) may read ``request.session``, though ``SessionMiddleware`` runs inside them: the
session is opened once, by whichever needs it first. Logged-in users sharing one address
(an office behind NAT) never share idempotency keys or limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from redkit import web
from redkit_starlette import Redkit, regenerate_session

from .conftest import serve


def shop(rk: Redkit) -> Starlette:
    paid = {"n": 0}

    async def login(request: Request) -> JSONResponse:
        request.session["user"] = (await request.body()).decode()
        regenerate_session(request)
        return JSONResponse({"ok": True})

    async def pay(request: Request) -> JSONResponse:
        paid["n"] += 1
        request.session["last_payment"] = paid["n"]
        return JSONResponse({"payment": paid["n"], "by": request.session.get("user")})

    @rk.rate_limit("1/minute", key=lambda request: request.session.get("user"))
    async def report(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"report for {request.session.get('user')}")

    async def me(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.session))

    routes = [
        Route("/me", me),
        Route("/login", login, methods=["POST"]),
        Route("/pay", pay, methods=["POST"]),
        Route("/report", report),
    ]
    return Starlette(routes=routes, lifespan=rk.lifespan, middleware=rk.middleware())


async def _login(http: Any, user: str) -> str:
    http.cookies.clear()
    answer = await http.post("/login", content=user.encode())
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"].split(";", 1)[0]
    http.cookies.clear()
    return cookie


def _user(request: Request) -> Any:
    return request.session.get("user")


async def _async_user(request: Request) -> Any:
    return request.session.get("user")


async def test_logged_in_users_on_one_address_never_share_a_key(
    make_rk: Callable[..., Redkit],
) -> None:
    for loader in (_user, _async_user):
        rk = make_rk(sessions=True, user_loader=loader)
        async with serve(shop(rk)) as http:
            ada, bob = await _login(http, "ada"), await _login(http, "bob")
            key = {"idempotency-key": "order-1"}
            first = await http.post("/pay", headers={**key, "cookie": ada})
            assert first.status_code == 200, first.text
            assert first.json()["by"] == "ada"
            other = await http.post("/pay", headers={**key, "cookie": bob})
            assert other.status_code == 200
            assert other.json()["by"] == "bob"  # never ada's stored answer
            assert "idempotent-replayed" not in other.headers
            # the same user from another session (another device) gets the replay
            again = await http.post("/pay", headers={**key, "cookie": await _login(http, "ada")})
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == first.json()


async def test_a_limit_keyed_on_the_session_user_counts_each_user(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk(sessions=True)
    async with serve(shop(rk)) as http:
        ada, bob = await _login(http, "ada"), await _login(http, "bob")
        assert (await http.get("/report", headers={"cookie": ada})).text == "report for ada"
        assert (await http.get("/report", headers={"cookie": bob})).text == "report for bob"
        assert (await http.get("/report", headers={"cookie": ada})).status_code == 429


async def test_the_session_opened_early_is_read_once_and_saved(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk(sessions=True, user_loader=_user)
    app = shop(rk)
    async with serve(app) as http:
        ada = await _login(http, "ada")
        kit = app.state.redkit
        reads = {"n": 0}
        opened = kit.sessions.open

        async def counted(*args: Any, **kwargs: Any) -> Any:
            reads["n"] += 1
            return await opened(*args, **kwargs)

        kit.sessions.open = counted
        try:
            answer = await http.post("/pay", headers={"idempotency-key": "k", "cookie": ada})
        finally:
            del kit.sessions.open
        assert answer.json()["by"] == "ada"
        assert reads["n"] == 1
        # what the endpoint wrote in the session opened early is saved, as without the early read
        assert answer.headers["vary"] == "Cookie"
        mine = await http.get("/me", headers={"cookie": ada})
        assert mine.json() == {"user": "ada", "last_payment": answer.json()["payment"]}


async def test_redis_down_with_a_session_hook_is_a_503_not_a_500() -> None:
    rk = Redkit(
        "redis://127.0.0.1:1/0",
        sessions=True,
        session_secret="s",
        user_loader=_user,
        socket_connect_timeout=0.2,
        retry_attempts=0,
    )
    valid = "session=" + web.CookieSigner(["s"]).sign("a" * 32)
    async with serve(shop(rk)) as http:
        # a valid cookie: the hook needs the session, Redis is down: 503, never a 500
        for cookie in (valid, "session=garbage", None):
            headers = {"idempotency-key": "k"}
            if cookie is not None:
                headers["cookie"] = cookie
            answer = await http.post("/pay", headers=headers)
            assert answer.status_code == 503, (cookie, answer.status_code, answer.text)
            assert answer.headers["retry-after"].isdigit()
        # a limit keyed on the session: fails open or closed, never a 500
        for cookie in (valid, "session=garbage"):
            status = (await http.get("/report", headers={"cookie": cookie})).status_code
            assert status in (200, 503), (cookie, status)


async def test_a_cache_unless_hook_may_read_the_session(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk(sessions=True)
    runs = {"n": 0}

    @rk.cached(ttl=60, unless=lambda request: "user" in request.session)
    async def news(request: Request) -> PlainTextResponse:
        runs["n"] += 1
        return PlainTextResponse(f"news #{runs['n']}")

    app = shop(rk)
    app.router.routes.append(Route("/news", news))
    async with serve(app) as http:
        ada = await _login(http, "ada")
        assert (await http.get("/news")).text == "news #1"
        assert (await http.get("/news")).text == "news #1"  # anonymous: from the cache
        assert (await http.get("/news", headers={"cookie": ada})).text == "news #2"
        assert (await http.get("/news", headers={"cookie": ada})).text == "news #3"
        assert (await http.get("/news")).text == "news #1"
