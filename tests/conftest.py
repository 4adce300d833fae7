"""Fixtures: every integration test runs against a real Redis (``REDIS_URL``, default
``redis://127.0.0.1:6379/15``), a real three-node Redis Cluster started for the session, and the
embedded ``memory://`` backend, in sync and async mode.

Each test gets its own key prefix (``rktest-<random>``) and deletes its keys afterwards, so the
suite also runs as an ACL user limited to ``~rktest-*``. With ``CI=true`` a missing Redis fails the
run instead of skipping the real-Redis half of the suite.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

import redkit
import redkit.asyncio

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _real_redis_answers() -> bool:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as probe:
            return bool(probe.ping())
    except redis.RedisError:
        return False


REAL_REDIS = _real_redis_answers()
if IN_CI and not REAL_REDIS:  # pragma: no cover - CI safety net
    raise pytest.UsageError(f"CI=true but no Redis answers at {REDIS_URL}: refusing to skip")


def backend_url(backend: str) -> str:
    if backend == "redis":
        if not REAL_REDIS:
            pytest.skip(f"no Redis at {REDIS_URL}")
        return REDIS_URL
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A real three-primary Redis Cluster of private redis-server processes (loopback only)."""
    from tests.servers import RedisCluster

    cluster = RedisCluster().start()
    yield cluster.url
    cluster.cleanup()


def proxied_url(port: int) -> str:
    """:data:`REDIS_URL` (credentials and database kept) through a proxy on loopback ``port``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(REDIS_URL)
    auth, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{auth}{at}127.0.0.1:{port}"))


@pytest.fixture
def proxy() -> Iterator[Any]:
    """A :class:`~tests.servers.ReplyDroppingProxy` in front of the real Redis."""
    from urllib.parse import urlsplit

    from tests.servers import ReplyDroppingProxy

    backend_url("redis")  # skips (or fails in CI) without a real Redis
    parts = urlsplit(REDIS_URL)
    p = ReplyDroppingProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield p
    p.close()


def new_prefix() -> str:
    return f"rktest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["redis", "memory", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "cluster":
        return str(request.getfixturevalue("redis_cluster"))
    return backend_url(backend)


@pytest.fixture
def prefix() -> str:
    return new_prefix()


@pytest.fixture
def sync_kit(url: str, prefix: str) -> Iterator[redkit.Redkit]:
    kit = redkit.Redkit.from_url(url, prefix=prefix)
    yield kit
    kit.clear()
    kit.close()


@pytest.fixture
async def async_kit(url: str, prefix: str) -> AsyncIterator[redkit.asyncio.Redkit]:
    kit = redkit.asyncio.Redkit.from_url(url, prefix=prefix)
    yield kit
    await kit.clear()
    await kit.aclose()


class Kits:
    """Make a client of the test's backend and mode; closed and cleared at teardown."""

    def __init__(self, url: str, mode: str) -> None:
        self.url = url
        self.mode = mode
        self.made: list[Any] = []

    def __call__(self, **options: Any) -> Any:
        options.setdefault("prefix", new_prefix())
        cls = redkit.Redkit if self.mode == "sync" else redkit.asyncio.Redkit
        kit = cls.from_url(self.url, **options)
        self.made.append(kit)
        return kit

    async def close(self) -> None:
        for kit in self.made:
            await call(kit.clear())
            if self.mode == "sync":
                kit.close()
            else:
                await kit.aclose()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_kit(url: str, mode: str) -> AsyncIterator[Kits]:
    kits = Kits(url, mode)
    yield kits
    await kits.close()


@pytest.fixture
async def kit(make_kit: Kits) -> Any:
    """A sync or an async client (per ``mode``) on the test's backend; use :func:`call`."""
    return make_kit()


async def call(result: Any) -> Any:
    """Await ``result`` when the async client returned a coroutine; return it as is otherwise.
    Lets one test body drive the sync and the async API alike."""
    if inspect.isawaitable(result):
        return await result
    return result
