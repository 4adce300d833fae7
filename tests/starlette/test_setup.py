"""Set-up: one object wires redkit into Starlette and FastAPI; each application started gets
its own kit, reachable from ``app.state`` and ``get_kit``, closed when the application stops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import redkit_starlette
from redkit.asyncio import Redkit as AsyncRedkit
from redkit.errors import ClientClosedError, ConfigurationError
from redkit_starlette import Redkit, get_kit

from .conftest import serve


async def kit_info(request: Request) -> JSONResponse:
    kit = get_kit(request)
    assert kit is request.app.state.redkit
    await kit.cache.set("hello", request.url.path)
    return JSONResponse({"prefix": kit.settings.prefix, "stored": await kit.cache.get("hello")})


def app_of(rk: Redkit, **options: Any) -> Starlette:
    return Starlette(routes=[Route("/kit", kit_info)], lifespan=rk.lifespan, **options)


async def test_the_kit_is_open_while_the_app_runs_and_closed_after(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    app = app_of(rk)
    async with serve(app) as http:
        got = (await http.get("/kit")).json()
        kit = app.state.redkit
        assert isinstance(kit, AsyncRedkit)
        assert got == {"prefix": rk.settings.prefix, "stored": "/kit"}
    assert kit.closed
    assert not hasattr(app.state, "redkit")
    with pytest.raises(ClientClosedError):
        await kit.cache.get("hello")


async def test_two_apps_in_one_process_have_their_own_kits(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    first, second = app_of(rk), app_of(rk)
    async with serve(first) as one, serve(second) as two:
        assert (await one.get("/kit")).status_code == 200
        assert (await two.get("/kit")).status_code == 200
        assert first.state.redkit is not second.state.redkit
        kit_one, kit_two = first.state.redkit, second.state.redkit
    assert kit_one.closed
    assert kit_two.closed


async def test_two_redkit_objects_keep_their_own_settings(make_rk: Callable[..., Redkit]) -> None:
    one, two = make_rk(prefix="rktest-one"), make_rk(prefix="rktest-two")
    async with serve(app_of(one)) as a, serve(app_of(two)) as b:
        assert (await a.get("/kit")).json()["prefix"] == "rktest-one"
        assert (await b.get("/kit")).json()["prefix"] == "rktest-two"


async def test_the_apps_own_lifespan_is_wrapped_and_its_state_passed_on(
    make_rk: Callable[..., Redkit],
) -> None:
    rk = make_rk()
    seen: list[str] = []

    @asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        kit = app.state.redkit  # open before the application's own start-up
        await kit.cache.set("boot", "yes")
        seen.append("start")
        yield {"answer": 42}
        assert not kit.closed  # still open during the application's own shutdown
        seen.append("stop")

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(
            {"answer": request.state.answer, "boot": await get_kit(request).cache.get("boot")}
        )

    app = Starlette(routes=[Route("/", state)], lifespan=rk.lifespan(own))
    async with serve(app) as http:
        assert (await http.get("/")).json() == {"answer": 42, "boot": "yes"}
    assert seen == ["start", "stop"]


async def test_fastapi_takes_the_same_lifespan(make_rk: Callable[..., Redkit]) -> None:
    fastapi = pytest.importorskip("fastapi")
    rk = make_rk()
    api = fastapi.FastAPI(lifespan=rk.lifespan)

    @api.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> dict[str, Any]:
        await get_kit(request).cache.set(f"item:{item_id}", item_id)
        return {"id": await get_kit(request).cache.get(f"item:{item_id}")}

    async with serve(api) as http:
        assert (await http.get("/items/7")).json() == {"id": 7}
        assert (await http.get("/items/x")).status_code == 422  # FastAPI still checks the path


async def test_without_the_lifespan_the_error_says_what_to_do(
    make_rk: Callable[..., Redkit],
) -> None:
    app = Starlette(routes=[Route("/kit", kit_info)])  # no lifespan=rk.lifespan
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with pytest.raises(RuntimeError, match=r"lifespan=rk\.lifespan"):
            await http.get("/kit")


def test_settings_come_from_the_environment() -> None:
    env = {
        "REDKIT_URL": "memory://env",
        "REDKIT_PREFIX": "fromenv",
        "REDKIT_CACHE_TTL": "12",
        "REDKIT_SESSION_SECRET": "s3cret",
    }
    rk = Redkit(environ=env, cache_ttl=30)
    assert rk.settings.url == "memory://env"
    assert rk.settings.prefix == "fromenv"
    assert rk.settings.cache_ttl == 30  # a keyword wins over the environment
    assert rk.session_secrets == ("s3cret",)


def test_bad_settings_fail_when_the_object_is_made() -> None:
    with pytest.raises(ConfigurationError, match="unknown redkit setting"):
        Redkit("memory://", cache_tll=3)
    with pytest.raises(ValueError, match="session_secret"):
        Redkit("memory://", sessions=True, environ={})
    with pytest.raises(TypeError, match="user_loader"):
        Redkit("memory://", user_loader="me")
    with pytest.raises(TypeError, match="lifespan"):
        Redkit("memory://").lifespan(42)


async def test_an_app_started_twice_is_refused(make_rk: Callable[..., Redkit]) -> None:
    rk = make_rk()
    app = app_of(rk)
    async with LifespanManager(app):
        with pytest.raises(RuntimeError, match="started already"):
            await rk.start(app)


def test_the_package_names_its_public_names() -> None:
    assert set(redkit_starlette.__all__) >= {"Redkit", "STATE_NAME", "get_kit"}
    assert redkit_starlette.STATE_NAME == "redkit"


async def test_bind_sqlalchemy_binds_each_running_app_and_refuses_sync_targets(
    make_rk: Callable[..., Redkit],
) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import sessionmaker

    from redkit import sqlalchemy as rksa
    from tests.core.test_sqlalchemy import Base, User

    rk = make_rk()
    with pytest.raises(TypeError, match="async_sessionmaker"):
        rk.bind_sqlalchemy(sessionmaker(), {User: ["user:{id}"]})
    engine = create_async_engine("sqlite+aiosqlite://")
    Sessions = async_sessionmaker(engine, expire_on_commit=False)
    rk.bind_sqlalchemy(Sessions, {User: ["user:{id}"]})
    app = Starlette(lifespan=rk.lifespan)
    try:
        async with serve(app):
            kit = app.state.redkit
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            await kit.cache.set("profile", "cached", tags=["user:1"])
            async with Sessions() as db:
                db.add(User(id=1, name="Ada"))
                await db.rollback()  # nothing written: nothing invalidated
            assert await kit.cache.get("profile") == "cached"
            async with Sessions() as db:
                db.add(User(id=1, name="Ada"))
                await db.commit()  # returns once "user:1" is invalidated
            assert await kit.cache.get("profile") is None
            with pytest.raises(RuntimeError, match="before an application"):
                rk.bind_sqlalchemy(Sessions, {User: ["user:{id}"]})
        # the application stopped: its binding is gone with its kit
        async with Sessions() as db:
            with pytest.raises(RuntimeError, match="not bound"):
                rksa.enqueue_after_commit(db, object())
    finally:
        await engine.dispose()
