"""FastAPI dependencies: ``Depends(rk.limit(...))`` counts where it is declared, sets the
rate-limit headers through FastAPI's ``Response``, answers 429 (and 503 when Redis is down and
limits fail closed), keeps the endpoint's signature and OpenAPI schema, and is scoped per
client by default. On real Redis, memory:// and the cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi import APIRouter, Depends, FastAPI, Request

from redkit_starlette import Redkit, Refused
from tests.starlette.conftest import serve


def _app(rk: Redkit, limit: Any) -> FastAPI:
    app = FastAPI(lifespan=rk.lifespan)
    declared = [Depends(limit)] if limit is not None else []

    @app.get("/search", dependencies=declared)
    async def search(q: str, page: int = 1) -> dict[str, Any]:
        return {"q": q, "page": page}

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"free": True}

    router = APIRouter(dependencies=declared)

    @router.get("/api/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(router)
    return app


async def test_a_limit_dependency_counts_answers_429_and_sets_headers(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = _app(rk, rk.limit("2/minute"))
    async with serve(app) as http:
        first = await http.get("/search", params={"q": "tea"})
        assert first.status_code == 200
        assert first.json() == {"q": "tea", "page": 1}
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"  # set through FastAPI's Response
        assert (await http.get("/search", params={"q": "tea"})).status_code == 200
        over = await http.get("/search", params={"q": "tea"})
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) >= 1
        assert over.headers["x-ratelimit-remaining"] == "0"
        assert "detail" in over.json()  # FastAPI's own error body
        # another endpoint with the same dependency object counts on its own
        assert (await http.get("/api/items/1")).status_code == 200
        assert (await http.get("/free")).status_code == 200  # not declared there


async def test_the_limit_is_per_client_unless_a_key_says_otherwise(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = _app(rk, rk.limit("1/minute"))
    async with serve(app) as one:
        assert (await one.get("/search", params={"q": "a"})).status_code == 200
        assert (await one.get("/search", params={"q": "a"})).status_code == 429
        other = one.__class__(transport=_transport(app, "198.51.100.9"), base_url="http://t")
        async with other:
            assert (await other.get("/search", params={"q": "a"})).status_code == 200

    def by_team(request: Request) -> str:
        return request.headers.get("x-team", "none")

    rk2 = make_rk()
    app2 = _app(rk2, rk2.limit("1/minute", key=by_team))
    async with serve(app2) as http:
        assert (await http.get("/search?q=a", headers={"x-team": "red"})).status_code == 200
        assert (await http.get("/search?q=a", headers={"x-team": "red"})).status_code == 429
        assert (await http.get("/search?q=a", headers={"x-team": "blue"})).status_code == 200


def _transport(app: FastAPI, ip: str) -> Any:
    import httpx

    return httpx.ASGITransport(app=app, client=(ip, 4000))


async def test_validation_and_the_openapi_schema_are_those_of_the_plain_endpoint(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    limited = _app(rk, rk.limit("100/minute"))

    plain = _app(make_rk(), None)  # no dependency at all
    assert limited.openapi() == plain.openapi()
    async with serve(limited) as http:
        bad = await http.get("/search", params={"q": "tea", "page": "x"})
        assert bad.status_code == 422  # FastAPI still validates the endpoint's parameters
        assert (await http.get("/search")).status_code == 422


def test_bad_limits_fail_when_the_dependency_is_made(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    with pytest.raises((ValueError, TypeError)):
        rk.limit("ten per minute")
    with pytest.raises((ValueError, TypeError)):
        rk.limit("10/minute", cost=0)


async def test_redis_down_fails_open_or_closed_as_configured(
    make_rk: Callable[..., Redkit],
) -> None:
    for fail_open, expected in ((True, 200), (False, 503)):
        rk = Redkit(
            "redis://127.0.0.1:1/0",  # nothing listens there
            ratelimit_fail_open=fail_open,
            socket_connect_timeout=0.2,
            retry_attempts=0,
        )
        app = _app(rk, rk.limit("5/minute"))
        async with serve(app) as http:
            got = await http.get("/search", params={"q": "a"})
            assert got.status_code == expected, got.text
            if expected == 503:
                assert "retry-after" in got.headers


def test_refused_carries_the_answer() -> None:
    from redkit import web

    answer = web.problem(429, "Too Many Requests", "slow down", [("Retry-After", "3")])
    exc = Refused(answer)
    assert exc.status_code == 429
    assert exc.detail == "slow down"
    assert exc.headers == {"Retry-After": "3"}
    assert exc.answer is answer
