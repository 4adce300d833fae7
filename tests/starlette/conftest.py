"""Fixtures of the Starlette adapter's tests: each runs on real Redis, memory:// and the test
cluster, through httpx's ASGITransport with the application's lifespan running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import httpx
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from redkit.errors import RedkitConnectionError
from redkit_starlette import Redkit, get_kit
from tests.conftest import new_prefix

SECRET = "test-secret-key"


@pytest.fixture
def make_rk(url: str) -> Callable[..., Redkit]:
    def make(**settings: Any) -> Redkit:
        settings.setdefault("prefix", new_prefix())
        settings.setdefault("session_secret", SECRET)
        return Redkit(url, **settings)

    return make


@asynccontextmanager
async def serve(app: Starlette, **client: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, and a client talking to it; its keys are cleared."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", **client
        ) as http:
            try:
                yield http
            finally:
                kit = getattr(app.state, "redkit", None)
                if kit is not None:
                    with contextlib.suppress(RedkitConnectionError):  # a test without Redis
                        await kit.clear()


__all__ = ["SECRET", "get_kit", "serve"]
