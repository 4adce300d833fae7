"""Private redis-server processes for tests that kill, restart or reconfigure a server.

They listen on loopback (or a unix socket) only, keep nothing on disk, and are killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; for a cluster node also a free bus port (port + 10000)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster or (port < 55000 and _bindable(port + 10000)):
            return port


class RedisProcess:
    """One redis-server we own. ``stop()`` kills it (SIGKILL), ``start()`` brings it back."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        if REDIS_SERVER is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (CI must provide it)")
            pytest.skip("redis-server is not installed")
        self.port = port or free_port()
        # a port picked here may be taken by another process before the server binds it: the
        # first start then moves to another free port (a restart keeps the port it had)
        self._movable = True
        self._cluster = "--cluster-enabled" in extra
        self.dir = Path(tempfile.mkdtemp(prefix="redkit-redis-"))
        self.unixsocket = str(self.dir / "redis.sock")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        for _ in range(5):
            if self._launch():
                self._movable = False
                return self
            if not self._movable:
                break
            self.port = free_port(cluster=self._cluster)  # the port was taken meanwhile
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _launch(self) -> bool:
        """Start redis-server on ``self.port``; False when it exits at once (port taken)."""
        args = [
            str(REDIS_SERVER),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--unixsocket",
            self.unixsocket,
            "--unixsocketperm",
            "700",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False  # it could not bind its port
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as probe:
                    # a server of another process on the port is not this one
                    if probe.info("server").get("process_id") == self.proc.pid:
                        return True
                    time.sleep(0.02)
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three primaries (no replicas) on loopback, built with ``redis-cli --cluster create``."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [
            RedisProcess(free_port(cluster=True), "--cluster-enabled", "yes") for _ in range(size)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        if REDIS_CLI is None:
            pytest.skip("redis-cli is not installed")
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                str(REDIS_CLI),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = []
            for n in self.nodes:
                with redis.Redis(port=n.port) as probe:
                    infos.append(probe.cluster("info"))
            if all(i.get("cluster_state") == "ok" for i in infos):
                return self
            time.sleep(0.1)
        raise RuntimeError("the test cluster did not become ready")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def accept_each(sock: socket.socket, handle: Any) -> None:
    """Hand each connection accepted on ``sock`` to ``handle`` until ``sock`` is closed."""
    while True:
        try:
            client, _ = sock.accept()
        except OSError:
            return
        handle(client)


class _Proxy:
    """A TCP proxy on a loopback port of its own in front of ``upstream``: each accepted
    connection is handed to ``_connect`` (defined by the subclass); :meth:`close` ends them all."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        import threading

        self.upstream = (upstream_host, upstream_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self._open: list[socket.socket] = []
        threading.Thread(target=accept_each, args=(self.sock, self._connect), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()


class ReplyDroppingProxy(_Proxy):
    """A TCP proxy in front of a real Redis. ``drop_next_reply()`` makes it forward the next
    command, then close the client's connection instead of passing the reply back: the command
    ran, but the client never hears so (what a connection reset at the wrong moment does).
    ``drop_reply_of(pattern)`` does so for the next command whose bytes hold ``pattern``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        import threading

        self._armed = 0
        self._patterns: list[bytes] = []
        self._lock = threading.Lock()
        self.dropped = 0
        super().__init__(upstream_host, upstream_port)

    def drop_next_reply(self, count: int = 1) -> None:
        with self._lock:
            self._armed += count

    def drop_reply_of(self, pattern: bytes, count: int = 1) -> None:
        with self._lock:
            self._patterns += [pattern] * count

    def _take_armed(self, data: bytes) -> bool:
        with self._lock:
            for i, pattern in enumerate(self._patterns):
                if pattern in data:
                    del self._patterns[i]
                    self.dropped += 1
                    return True
            if self._armed:
                self._armed -= 1
                self.dropped += 1
                return True
            return False

    def _connect(self, client: socket.socket) -> None:
        import threading

        upstream = socket.create_connection(self.upstream)
        self._open += [client, upstream]
        threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True).start()

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                drop = self._take_armed(data)
                upstream.sendall(data)
                reply = upstream.recv(65536)
                if drop:
                    break  # the command ran upstream; its reply is thrown away
                client.sendall(reply)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()


class BlackholeProxy(_Proxy):
    """A TCP proxy in front of a real Redis that can cut the network without closing anything:
    between :meth:`cut` and :meth:`heal` every byte either way is thrown away, connections stay
    open and new ones are accepted (what a partition or a dead switch port does: calls hang until
    their timeout, nobody hears a reset)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.is_cut = False
        self.swallowed = 0  # bytes thrown away
        super().__init__(upstream_host, upstream_port)

    def cut(self) -> None:
        self.is_cut = True

    def heal(self) -> None:
        self.is_cut = False

    def _connect(self, client: socket.socket) -> None:
        import threading

        upstream = socket.create_connection(self.upstream)
        self._open += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.is_cut:
                    self.swallowed += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


class OldRedis:
    """A loopback TCP server speaking just enough RESP to pass for a Redis of ``version``
    through a client's handshake: ``HELLO`` answers the server's version (or, with
    ``version=None``, "unknown command", as Redis before 6 does), ``PING`` answers ``PONG``,
    everything else ``OK``. ``commands`` records what was sent, as lists of bytes."""

    def __init__(self, version: str | None) -> None:
        import threading

        self.version = version
        self.commands: list[list[bytes]] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> OldRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in [self.sock, *self._open]:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        accept_each(self.sock, self._start)

    def _start(self, client: socket.socket) -> None:
        import threading

        self._open.append(client)
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        proto = [2]
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                count = int(line[1:])
                args = []
                for _ in range(count):
                    size = int(reader.readline()[1:])
                    args.append(reader.read(size + 2)[:-2])
                self.commands.append(args)
                client.sendall(self._reply(args, proto))
        except (OSError, ValueError):
            return

    def _reply(self, args: list[bytes], proto: list[int]) -> bytes:
        name = args[0].upper()
        if name == b"HELLO":
            if self.version is None:
                return b"-ERR unknown command 'HELLO', with args beginning with: \r\n"
            if len(args) > 1:
                proto[0] = int(args[1])
            fields = [b"server", b"redis", b"version", self.version.encode(), b"proto"]
            body = b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in fields)
            body += b":%d\r\n" % proto[0]
            if proto[0] == 3:
                return b"%%%d\r\n" % 3 + body
            return b"*%d\r\n" % 6 + body
        if name == b"PING":
            return b"+PONG\r\n"
        return b"+OK\r\n"
