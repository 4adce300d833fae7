"""An application served by a real uvicorn process while its Redis is stopped and started
again: a session counter, a limited route, a cached page and an idempotent payment."""

from __future__ import annotations

import os
from itertools import count

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from redkit_starlette import Redkit

rk = Redkit(
    os.environ["RKTEST_URL"],
    prefix=os.environ["RKTEST_PREFIX"],
    sessions=True,
    session_secret="served-web",
    ratelimit_default="1000/minute",
    socket_connect_timeout=0.3,
    socket_timeout=0.5,
    retry_attempts=0,
    breaker_threshold=0,
)
pages = count(1)
payments = count(1)


async def counter(request: Request) -> JSONResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse({"n": request.session["n"]})


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@rk.cached(ttl=60)
async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"page {next(pages)}")


async def pay(request: Request) -> JSONResponse:
    return JSONResponse({"payment": next(payments)})


app = Starlette(
    routes=[
        Route("/counter", counter),
        Route("/hello", hello),
        Route("/page", page),
        Route("/pay", pay, methods=["POST"]),
    ],
    lifespan=rk.lifespan,
    middleware=rk.middleware(),
)
