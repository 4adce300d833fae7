"""Redis goes away: the cache fails open, the breaker opens and closes, nothing raises unless asked.

A real redis-server process is started, killed with SIGKILL and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import CircuitOpenError, RedkitConnectionError
from tests.conftest import call, new_prefix
from tests.servers import RedisProcess

FAST = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "retry_attempts": 1,
    "breaker_threshold": 3,
    "breaker_cooldown": 0.5,
}


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def make(mode: str, url: str, **options: Any) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), **{**FAST, **options})


async def close(kit: Any) -> None:
    await call(kit.aclose() if hasattr(kit, "aclose") else kit.close())


async def test_cache_fails_open_while_redis_is_down_and_recovers(
    server: RedisProcess, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="redkit")
    kit = make(mode, server.url)
    loads: list[int] = []

    def loader() -> str:
        loads.append(1)
        return "fresh"

    try:
        assert await call(kit.cache.get_or_set("k", loader)) == "fresh"
        assert await call(kit.cache.get_or_set("k", loader)) == "fresh"
        assert loads == [1]

        server.stop()
        started = time.monotonic()
        for _ in range(30):
            assert await call(kit.cache.get_or_set("k", loader)) == "fresh"
            assert await call(kit.cache.get("k", "default")) == "default"
            assert await call(kit.cache.set("k2", 1)) is False
        elapsed = time.monotonic() - started
        # bounded: a few failed connects before the breaker opens, then no waiting at all
        assert elapsed < 10
        assert len(loads) == 31
        stats = kit.stats.snapshot()
        assert stats["cache_fail_open"] == 90
        assert stats["breaker_opened"] >= 1
        assert kit.breaker.state in ("open", "half-open")
        # only the first failures (and rare probes) touched the network
        assert stats["connection_errors"] < 10
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1  # logged once per outage

        server.start()
        await asyncio.sleep(FAST["breaker_cooldown"] + 0.1)
        assert await call(kit.cache.get_or_set("k", loader)) == "fresh"  # the probe
        assert kit.breaker.state == "closed"
        assert await call(kit.cache.get_or_set("k", loader)) == "fresh"
        assert len(loads) == 32  # cached again once Redis was back
        back = [r for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(back) == 1
    finally:
        await close(kit)


async def test_get_many_fails_open_on_either_round_trip(server: RedisProcess, mode: str) -> None:
    kit = make(mode, server.url)
    try:
        await call(kit.cache.set_many({"a": 1, "b": 2}))
        await call(kit.cache.set("t", 3, tags=["users"]))
        assert await call(kit.cache.get_many(["t", "a", "nope", "b"])) == {"t": 3, "a": 1, "b": 2}
        assert list(await call(kit.cache.get_many(["b", "t", "a"]))) == ["b", "t", "a"]

        # the tag check (the second round trip) fails: nothing is served, not half a page
        core = kit.cache._core
        plan = core._check_calls

        def down_after_mget(key: str, entry: Any) -> Any:
            server.stop()
            return plan(key, entry)

        core._check_calls = down_after_mget
        assert await call(kit.cache.get_many(["a", "t", "b"])) == {}
        assert kit.stats.get("cache_fail_open") == 1
        core._check_calls = plan
        # the MGET itself fails
        assert await call(kit.cache.get_many(["a", "b"])) == {}
        assert kit.stats.get("cache_fail_open") == 2
    finally:
        await close(kit)
        server.start()


async def test_fail_closed_raises_typed_errors(server: RedisProcess, mode: str) -> None:
    kit = make(mode, server.url, cache_fail_open=False)
    try:
        await call(kit.cache.set("k", 1))
        server.stop()
        for _ in range(3):
            with pytest.raises(RedkitConnectionError):
                await call(kit.cache.get("k"))
        with pytest.raises(CircuitOpenError):
            await call(kit.cache.get_or_set("k", lambda: 1))
    finally:
        await close(kit)


async def test_invalidation_is_never_silently_dropped(server: RedisProcess, mode: str) -> None:
    kit = make(mode, server.url)  # fail-open on: reads fail open, invalidation still raises
    try:
        server.stop()
        with pytest.raises(RedkitConnectionError):
            await call(kit.cache.invalidate(["users"]))
        with pytest.raises(RedkitConnectionError):
            await call(kit.cache.delete("k"))
    finally:
        await close(kit)


async def test_restart_loses_scripts_and_they_are_reloaded(server: RedisProcess, mode: str) -> None:
    kit = make(mode, server.url)
    try:
        assert await call(kit.cache.get_or_set("k", lambda: 1)) == 1
        server.stop()
        server.start()  # a new process: empty script cache, no data
        await asyncio.sleep(0.05)
        assert await call(kit.cache.get_or_set("k", lambda: 2)) == 2
        assert await call(kit.cache.get("k")) == 2
    finally:
        await close(kit)


class Blackhole:
    """A TCP server that accepts connections and reads requests but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.received += data.count(b"*")  # one RESP array per command sent

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


async def test_open_breaker_sends_nothing_to_a_hanging_server(mode: str) -> None:
    hole = Blackhole()
    kit = make(
        mode,
        f"redis://127.0.0.1:{hole.port}/0",
        socket_timeout=0.2,
        breaker_threshold=2,
        breaker_cooldown=60,
        health_check_interval=0,
    )
    try:
        for _ in range(2):  # each of these waits out one socket timeout
            assert await call(kit.cache.get_or_set("k", lambda: "v")) == "v"
        assert kit.breaker.state == "open"
        sent = hole.received
        assert sent >= 2
        for _ in range(50):
            assert await call(kit.cache.get_or_set("k", lambda: "v")) == "v"
        await asyncio.sleep(0.1)
        assert hole.received == sent  # not one more byte: no call waited on the socket
        assert kit.stats.get("cache_fail_open") == 52
    finally:
        await close(kit)
        hole.close()


async def test_unix_socket_url(server: RedisProcess, mode: str) -> None:
    kit = make(mode, f"unix://{server.unixsocket}?db=0")
    try:
        await call(kit.cache.set("k", {"via": "unix"}))
        assert await call(kit.cache.get("k")) == {"via": "unix"}
    finally:
        await call(kit.clear())
        await close(kit)


async def test_a_read_only_replica_during_failover_fails_open(
    server: RedisProcess, mode: str
) -> None:
    # a server that became a replica answers writes with READONLY: treated like an outage
    import redis as redis_py

    other = RedisProcess().start()
    try:
        with redis_py.Redis(port=server.port) as admin:
            admin.replicaof("127.0.0.1", other.port)
        kit = make(mode, server.url)
        try:
            assert await call(kit.cache.get_or_set("k", lambda: "from loader")) == "from loader"
            assert await call(kit.cache.set("k", 1)) is False
            assert kit.stats.get("cache_fail_open") == 2
        finally:
            await close(kit)
    finally:
        other.cleanup()


async def test_a_write_redis_does_not_read_times_out_and_the_connection_is_not_reused(
    server: RedisProcess,
) -> None:
    # a frozen Redis stops reading: once the socket buffers are full, an asyncio write waits,
    # bounded by socket_timeout; the half-written connection is dropped, never reused
    import signal

    from redkit._ops import Batch, command

    kit = make("async", server.url, retry_attempts=0)
    try:
        await kit._executor.run(Batch.one(command("PING")))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RedkitConnectionError, match=r"[Tt]imeout"):
                await kit._executor.run(Batch.one(command("SET", "big", b"x" * 64_000_000)))
            assert time.monotonic() - started < 5  # bounded by socket_timeout (0.5 s), not hung
        finally:
            server.proc.send_signal(signal.SIGCONT)
        await kit._executor.run(Batch.one(command("SET", "small", "1")))
        assert await kit._executor.run(Batch.one(command("GET", "small"))) == b"1"
        assert await kit._executor.run(Batch.one(command("EXISTS", "big"))) == 0
    finally:
        await close(kit)
