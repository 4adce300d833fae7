"""Redis 7.0 is the oldest server redkit talks to: a client of an older one fails at its first
connection with ``UnsupportedServerError`` naming both versions, before any command of redkit's
reaches it (sync and async; a tiny fake server plays the old Redis). ``memory://`` is unaffected."""

from __future__ import annotations

import pytest

import redkit
import redkit.asyncio
from redkit import UnsupportedServerError
from tests.conftest import REAL_REDIS, REDIS_URL, call, new_prefix
from tests.servers import OldRedis


def _kit(mode: str, url: str) -> redkit.Redkit | redkit.asyncio.Redkit:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), retry_attempts=0)


async def _close(kit: object) -> None:
    if isinstance(kit, redkit.Redkit):
        kit.close()
    elif isinstance(kit, redkit.asyncio.Redkit):
        await kit.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("version", "said"), [("6.2.14", "6.2.14"), ("5.0.7", "5.0.7"), (None, "older than 6")]
)
async def test_an_older_server_is_refused_at_connect(
    mode: str, version: str | None, said: str
) -> None:
    with OldRedis(version) as server:
        kit = _kit(mode, server.url)
        try:
            for _ in range(2):  # every new connection checks: the refused one is not kept
                with pytest.raises(UnsupportedServerError, match=r"Redis 7\.0 or newer") as info:
                    await call(kit.cache.set("k", "v"))
                assert said in str(info.value)
                assert "127.0.0.1" in str(info.value)
            sent = [c[0].upper() for c in server.commands]
            assert b"HELLO" in sent
            assert not {b"SET", b"EVALSHA", b"EVAL"} & set(sent), sent
            assert kit.breaker.state == "closed"  # not an outage
        finally:
            await _close(kit)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("version", ["7.0.0", "7.4.2", "8.0.1"])
async def test_a_supported_server_passes(mode: str, version: str) -> None:
    with OldRedis(version) as server:
        kit = _kit(mode, server.url)
        try:
            assert await call(kit.ping())
            hellos = [c for c in server.commands if c[0].upper() == b"HELLO"]
            assert len(hellos) == 1  # redis-py's own HELLO 3 when it sends one, else redkit's
            assert await call(kit.ping())  # once per connection, not per call
            assert [c for c in server.commands if c[0].upper() == b"HELLO"] == hellos
        finally:
            await _close(kit)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_test_server_and_memory_pass(mode: str) -> None:
    urls = ["memory://version-check"] + ([REDIS_URL] if REAL_REDIS else [])
    for url in urls:
        kit = _kit(mode, url)
        try:
            await call(kit.cache.set("k", "v"))
            assert await call(kit.cache.get("k")) == "v"
            await call(kit.clear())
        finally:
            await _close(kit)


def test_the_error_is_typed() -> None:
    assert issubclass(UnsupportedServerError, redkit.RedkitError)
    assert not issubclass(UnsupportedServerError, redkit.RedkitConnectionError)
