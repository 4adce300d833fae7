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


async def test_redis_down_fails_open_or_closed_as_configured() -> None:
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


# -- Depends(rk.idempotency()) and Depends(rk.session) ------------------------------------------


def _shop(rk: Redkit, **rule: Any) -> tuple[FastAPI, list[str | None]]:
    app = FastAPI(lifespan=rk.lifespan, middleware=rk.middleware())
    ran: list[str | None] = []

    @app.post("/orders")
    async def order(
        item: dict[str, Any], key: str | None = Depends(rk.idempotency(**rule))
    ) -> dict[str, Any]:
        ran.append(key)
        return {"order": len(ran), "item": item, "key": key}

    router = APIRouter(dependencies=[Depends(rk.idempotency(required=True))])

    @router.post("/api/pay")
    async def pay(amount: int) -> dict[str, int]:
        ran.append(None)
        return {"paid": amount}

    app.include_router(router)
    return app, ran


async def test_an_idempotency_dependency_replays_and_hands_the_endpoint_its_key(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app, ran = _shop(rk)
    async with serve(app) as http:
        first = await http.post("/orders", json={"sku": "tea"}, headers={"idempotency-key": "o-1"})
        again = await http.post("/orders", json={"sku": "tea"}, headers={"idempotency-key": "o-1"})
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() == {"order": 1, "item": {"sku": "tea"}, "key": "o-1"}
        assert again.headers["idempotent-replayed"] == "true"
        assert ran == ["o-1"]
        other = await http.post("/orders", json={"sku": "cake"}, headers={"idempotency-key": "o-1"})
        assert other.status_code == 422  # the key was used for another request
        # without a key (not required here) the endpoint runs each time, key None
        assert (await http.post("/orders", json={"sku": "tea"})).json()["key"] is None
        assert (await http.post("/orders", json={"sku": "tea"})).json()["order"] == 3
        # a router's dependency: the key is required on every route of it
        missing = await http.post("/api/pay", params={"amount": 5})
        assert missing.status_code == 400, missing.text
        paid = await http.post("/api/pay", params={"amount": 5}, headers={"idempotency-key": "p"})
        replay = await http.post("/api/pay", params={"amount": 5}, headers={"idempotency-key": "p"})
        assert paid.json() == replay.json() == {"paid": 5}
        assert replay.headers["idempotent-replayed"] == "true"
        assert ran.count(None) == 3  # two keyless orders and one payment


@pytest.mark.parametrize(
    "key", ["", " ", "x" * 10_000, "caf\u00e9", "a\u0000b", "\ud800", "k\r\nset-cookie: a=b"]
)
async def test_hostile_keys_through_the_dependency_get_a_400_never_a_500(
    make_rk: Callable[..., Redkit], key: str
) -> None:
    rk = make_rk()
    app, ran = _shop(rk)
    raw = key.encode("utf-8", "surrogatepass")
    async with serve(app) as http:
        got = await http.post("/orders", json={}, headers=[(b"idempotency-key", raw)])
        assert got.status_code in (400, 200), got.text
        if got.status_code == 200:  # an empty or blank field is no key at all
            assert got.json()["key"] in (None, "")
        else:
            assert ran == []  # refused before the endpoint
            assert got.headers["content-type"] == "application/problem+json"
        assert "set-cookie" not in got.headers


async def test_the_idempotency_dependency_documents_its_header_in_openapi(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app, _ = _shop(rk, required=False)
    schema = app.openapi()
    params = {p["name"]: p for p in schema["paths"]["/orders"]["post"].get("parameters", [])}
    assert params["Idempotency-Key"]["in"] == "header"
    assert params["Idempotency-Key"].get("required", False) is False
    pay = {p["name"]: p for p in schema["paths"]["/api/pay"]["post"]["parameters"]}
    assert pay["Idempotency-Key"]["required"] is True
    assert pay["amount"]["in"] == "query"  # the endpoint's own parameters are kept


async def test_dependencies_without_their_middleware_say_what_is_missing(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = FastAPI(lifespan=rk.lifespan)  # no middleware

    @app.post("/orders", dependencies=[Depends(rk.idempotency())])
    async def order() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(session: Any = Depends(rk.session)) -> dict[str, Any]:
        return dict(session)

    async with serve(app) as http:
        with pytest.raises(RuntimeError, match="IdempotencyMiddleware"):
            await http.post("/orders")
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            await http.get("/me")


async def test_a_session_dependency_reads_and_writes_the_server_side_session(
    make_rk: Callable[..., Redkit],
) -> None:
    from redkit.web import LazySession

    rk = make_rk(sessions=True)
    app = FastAPI(lifespan=rk.lifespan, middleware=rk.middleware())

    @app.post("/cart/{sku}")
    async def add(sku: str, session: LazySession = Depends(rk.session)) -> dict[str, Any]:
        session["cart"] = [*session.get("cart", []), sku]
        return {"cart": session["cart"]}

    @app.get("/cart")
    async def cart(session: LazySession = Depends(rk.session)) -> dict[str, Any]:
        return {"cart": session.get("cart", [])}

    async with serve(app) as http:
        assert (await http.post("/cart/tea")).json() == {"cart": ["tea"]}
        assert (await http.post("/cart/cake")).json() == {"cart": ["tea", "cake"]}
        assert (await http.get("/cart")).json() == {"cart": ["tea", "cake"]}
        cookie = http.cookies.get("session")
        assert cookie is not None
        assert "tea" not in cookie  # only the signed id travels
        http.cookies.clear()
        http.cookies.set("session", cookie[:-3] + "AAA")  # tampered: a new, empty session
        assert (await http.get("/cart")).json() == {"cart": []}
    schema = app.openapi()  # the dependency adds no parameter
    assert "parameters" not in schema["paths"]["/cart"]["get"]


async def test_decorated_endpoints_of_included_routers_keep_their_rules(
    make_rk: Callable[..., Redkit],
) -> None:
    # FastAPI includes routers lazily: the middleware must still find the endpoint reached
    rk = make_rk()
    app = FastAPI(lifespan=rk.lifespan, middleware=rk.middleware())
    outer, inner = APIRouter(prefix="/v1"), APIRouter(prefix="/admin")

    @outer.get("/search")
    @rk.rate_limit("1/minute")
    async def search() -> dict[str, bool]:
        return {"ok": True}

    @inner.get("/report/{n}")
    @rk.rate_limit("1/minute")
    async def report(n: int) -> dict[str, int]:
        return {"n": n}

    @inner.get("/free")
    @rk.exempt
    async def free() -> dict[str, bool]:
        return {"free": True}

    outer.include_router(inner)
    app.include_router(outer)
    async with serve(app) as http:
        assert (await http.get("/v1/admin/report/x")).status_code == 422  # counted, validated
        assert (await http.get("/v1/admin/report/3")).status_code == 429
        assert (await http.get("/v1/search")).status_code == 200
        assert (await http.get("/v1/search")).status_code == 429
        assert (await http.get("/v1/nothing")).status_code == 404
        for _ in range(3):
            assert (await http.get("/v1/admin/free")).status_code == 200
