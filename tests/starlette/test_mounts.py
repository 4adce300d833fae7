"""Rate limits on a ``Mount`` (every route under it), exemptions of a mount, and
``deduct_when``: a limit that counts only the responses its hook accepts (failed logins).
Real Redis and the cluster, through the middleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from redkit_starlette import Redkit

from .conftest import serve


def ok(text: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(text)

    endpoint.__name__ = endpoint.__qualname__ = f"endpoint_{text}"
    return endpoint


async def statuses(http: Any, path: str, n: int) -> list[int]:
    return [(await http.get(path)).status_code for _ in range(n)]


async def test_a_mount_limit_covers_each_route_under_it(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    own = rk.rate_limit("1/minute")(ok("own"))
    api = rk.rate_limit("2/minute")(
        Mount("/api", routes=[Route("/a", ok("a")), Route("/b", ok("b")), Route("/own", own)])
    )
    app = Starlette(
        routes=[api, Route("/free", ok("free"))], lifespan=rk.lifespan, middleware=rk.middleware()
    )
    async with serve(app) as http:
        assert await statuses(http, "/api/a", 3) == [200, 200, 429]
        assert await statuses(http, "/api/b", 3) == [200, 200, 429]  # one counter per route
        assert await statuses(http, "/api/own", 2) == [200, 429]  # its own limit wins
        assert await statuses(http, "/free", 5) == [200] * 5  # outside the mount
        assert await statuses(http, "/api/nowhere", 5) == [404] * 5  # not a route: not counted
        limited = await http.get("/api/b")
        assert limited.headers["retry-after"]
        assert limited.headers["content-type"] == "application/problem+json"


async def test_a_shared_scope_makes_one_counter_for_the_mount(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    api = rk.rate_limit("3/minute", scope="api")(
        Mount("/api", routes=[Route("/a", ok("a")), Route("/b", ok("b"))])
    )
    app = Starlette(routes=[api], lifespan=rk.lifespan, middleware=rk.middleware())
    async with serve(app) as http:
        got = [(await http.get(p)).status_code for p in ("/api/a", "/api/b", "/api/a", "/api/b")]
        assert got == [200, 200, 200, 429]


async def test_nested_mounts_and_mounted_applications(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    inner = rk.rate_limit("1/minute")(Mount("/inner", routes=[Route("/x", ok("x"))]))
    outer = rk.rate_limit("3/minute")(Mount("/outer", routes=[inner, Route("/y", ok("y"))]))
    sub = Starlette(routes=[Route("/z", ok("z"))])
    mounted = rk.rate_limit("2/minute")(Mount("/sub", app=sub))
    app = Starlette(routes=[outer, mounted], lifespan=rk.lifespan, middleware=rk.middleware())
    async with serve(app) as http:
        # both mounts' limits count a route under both (each one per route)
        assert await statuses(http, "/outer/inner/x", 2) == [200, 429]
        assert await statuses(http, "/outer/y", 4) == [200, 200, 200, 429]
        assert await statuses(http, "/sub/z", 3) == [200, 200, 429]


async def test_an_exempt_mount_escapes_the_default_and_application_limits(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk(ratelimit_default="1/minute", ratelimit_application="3/minute")
    health = rk.exempt(Mount("/health", routes=[Route("/live", ok("live"))]))
    app = Starlette(
        routes=[health, Route("/page", ok("page"))],
        lifespan=rk.lifespan,
        middleware=rk.middleware(),
    )
    async with serve(app) as http:
        assert await statuses(http, "/health/live", 6) == [200] * 6
        assert "x-ratelimit-limit" not in (await http.get("/health/live")).headers
        assert await statuses(http, "/page", 2) == [200, 429]


def test_only_limits_and_exemptions_apply_to_a_mount(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    mount = Mount("/api", routes=[Route("/a", ok("a"))])
    with pytest.raises(TypeError, match="Mount"):
        rk.cached(ttl=60)(mount)
    with pytest.raises(TypeError, match="Mount"):
        rk.idempotent()(mount)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_deduct_when_counts_only_the_responses_it_accepts(
    make_rk: Callable[..., Redkit], asynchronous: bool
) -> None:
    rk = make_rk()
    seen: list[tuple[int, str]] = []

    def failed(response: Any) -> bool:
        seen.append((response.status_code, response.headers["x-outcome"]))
        return bool(response.status_code == 401)

    async def failed_async(response: Any) -> bool:
        return failed(response)

    @rk.rate_limit("2/minute", deduct_when=failed_async if asynchronous else failed)
    async def login(request: Request) -> PlainTextResponse:
        right = (await request.body()) == b"right"
        outcome = "ok" if right else "wrong"
        return PlainTextResponse(outcome, 200 if right else 401, {"x-outcome": outcome})

    app = Starlette(
        routes=[Route("/login", login, methods=["POST"])],
        lifespan=rk.lifespan,
        middleware=rk.middleware(),
    )
    async with serve(app) as http:

        async def attempt(password: bytes) -> int:
            return (await http.post("/login", content=password)).status_code

        assert [await attempt(b"right") for _ in range(4)] == [200] * 4  # never counted
        assert [await attempt(b"bad"), await attempt(b"bad")] == [401, 401]
        denied = await http.post("/login", content=b"right")
        assert denied.status_code == 429  # two failures used the limit up
        assert int(denied.headers["retry-after"]) >= 1
    assert seen[:5] == [(200, "ok")] * 4 + [(401, "wrong")]
