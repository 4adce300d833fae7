"""An application served by a real uvicorn process in the lifespan tests: a worker runs
``slow`` jobs in its event loop; ``/enqueue`` adds them, ``/ping`` checks the kit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from redkit_starlette import Redkit, get_kit

rk = Redkit(os.environ["RKTEST_URL"], prefix=os.environ["RKTEST_PREFIX"])
GRACE = float(os.environ.get("RKTEST_GRACE", "10"))


@rk.task(queue="slow", name="slow")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


rk.worker("slow", concurrency=4, shutdown_timeout=GRACE)


async def enqueue(request: Request) -> JSONResponse:
    seconds = float(request.query_params["seconds"])
    job = await rk.task_for(request, slow).enqueue(seconds)
    return JSONResponse({"id": job.id})


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"pong": await get_kit(request).ping()})


kits: list[Any] = []


@asynccontextmanager
async def own(app: Starlette) -> AsyncIterator[None]:
    kit = app.state.redkit
    kits.append(kit)
    yield
    # the workers are stopped before the application's own shutdown, the kit closed after it
    print(f"SHUTDOWN workers={len(await kit.queue('slow').workers())}", flush=True)


@asynccontextmanager
async def reported(app: Starlette) -> AsyncIterator[None]:
    async with rk.lifespan(own)(app):
        yield
    print(f"CLOSED {[kit.closed for kit in kits]}", flush=True)


app = Starlette(routes=[Route("/enqueue", enqueue), Route("/ping", ping)], lifespan=reported)
