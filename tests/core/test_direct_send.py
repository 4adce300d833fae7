"""Calls on a plain Redis client are sent on a pooled connection directly (not through
redis-py's ``execute_command``): the replies, errors, broken connections, cancellations and
pool accounting are the same as redis-py's; with redis-py's own metrics on, every call goes
through redis-py so that they count it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.observability.providers import ObservabilityInstance

import redkit
import redkit.asyncio
from redkit.errors import ResponseError
from tests.conftest import backend_url, call, new_prefix
from tests.servers import RedisProcess


@pytest.fixture
def plain_url() -> str:
    return backend_url("redis")


def _in_use(pool: Any) -> int:
    return len(pool._in_use_connections)


async def test_replies_are_parsed_as_redis_py_parses_them(kit: Any) -> None:
    # one call, a batch, a script, an error reply, reply callbacks (SET -> bool, HGETALL -> dict)
    assert await call(kit.cache.set("k", {"a": 1})) is True
    assert await call(kit.cache.get("k")) == {"a": 1}
    assert await call(kit.cache.get_many(["k", "nope"])) == {"k": {"a": 1}}
    assert await call(kit.cache.incr("n", 5)) == 5
    assert await call(kit.cache.set_many({"x": 1, "y": 2}, tags=["t"])) is True
    assert await call(kit.cache.get_many(["x", "y"])) == {"x": 1, "y": 2}
    sid = await call(kit.sessions.create({"user": 7}))  # one hash per session
    assert await call(kit.sessions.save(sid, {"cart": [1]})) is True
    assert await call(kit.sessions.load(sid)) == {"user": 7, "cart": [1]}
    with pytest.raises(ResponseError):
        await call(kit.cache.incr("k"))  # not an integer: Redis answers with an error


def test_a_connection_killed_between_calls_is_replaced() -> None:
    server = RedisProcess().start()  # a server of its own: CLIENT LIST and KILL are admin's
    kit = redkit.Redkit.from_url(server.url, prefix=new_prefix())
    admin = redis.Redis.from_url(server.url)
    try:
        kit.cache.set("k", 1)
        name = f"rk-kill-{new_prefix()}"
        kit.client.client_setname(name)
        killed = 0
        for entry in admin.client_list():
            if entry.get("name") == name:
                killed += admin.client_kill_filter(_id=entry["id"])
        assert killed == 1
        assert kit.cache.get("k") == 1  # the dead connection is replaced, the GET answered
        assert kit.cache.set("k", 2) is True
        assert kit.cache.get("k") == 2
        assert _in_use(kit.client.connection_pool) == 0
        assert kit.stats.get("connection_errors") == 0
    finally:
        admin.close()
        kit.close()
        server.cleanup()


async def test_a_cancelled_call_drops_its_connection(plain_url: str) -> None:
    kit = redkit.asyncio.Redkit.from_url(plain_url, prefix=new_prefix())
    try:
        await kit.cache.set("k", 1)
        pool = kit.client.connection_pool
        # BLPOP is not on the direct path: a slow script is; so cancel a GET stuck behind
        # another client's long script instead
        slow = redis.asyncio.Redis.from_url(plain_url)
        script = slow.register_script(
            "local t = redis.call('TIME') local s = tonumber(t[1]) * 1e6 + tonumber(t[2]) "
            "while true do local n = redis.call('TIME') "
            "if tonumber(n[1]) * 1e6 + tonumber(n[2]) - s > 300000 then break end end return 1"
        )
        busy = asyncio.create_task(script())
        await asyncio.sleep(0.05)
        get = asyncio.create_task(kit.cache.get("k"))
        await asyncio.sleep(0.05)
        get.cancel()
        with pytest.raises(asyncio.CancelledError):
            await get
        assert await busy == 1
        await slow.aclose()
        assert _in_use(pool) == 0  # released, and not holding the reply of the cancelled GET
        assert await kit.cache.get("k") == 1
        assert await kit.cache.set("k", 2) is True
        assert await kit.cache.get("k") == 2
    finally:
        await kit.aclose()


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics-on", "metrics-off"])
def test_with_redis_py_metrics_on_every_call_goes_through_redis_py(
    plain_url: str, metrics: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if metrics:
        monkeypatch.setattr(ObservabilityInstance, "is_enabled", lambda self: True)
    kit = redkit.Redkit.from_url(plain_url, prefix=new_prefix())
    seen: list[str] = []
    execute = redis.Redis.execute_command

    def watch(self: Any, *args: Any, **options: Any) -> Any:
        seen.append(str(args[0]))
        return execute(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", watch)
    try:
        assert kit.cache.set("k", 1) is True
        assert kit.cache.get("k") == 1
        # metrics off: sent on the pool's connection directly, not through execute_command
        assert seen == (["SET", "GET"] if metrics else [])
    finally:
        kit.close()


async def test_a_closed_kit_still_raises_client_closed(plain_url: str) -> None:
    kit = redkit.asyncio.Redkit.from_url(plain_url, prefix=new_prefix())
    await kit.cache.set("k", 1)
    await kit.aclose()
    with pytest.raises(redkit.ClientClosedError):
        await kit.cache.get("k")
