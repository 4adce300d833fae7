"""Build redis-py clients (sync or asyncio) from :class:`~redkit.settings.Settings`.

redis-py does the talking: pooling, health checks, TLS, Sentinel and Cluster. This module only maps
redkit's URL forms and options onto it, and keeps ``memory://`` servers (fakeredis with Lua) shared
per name inside one process, so a sync and an async client of ``memory://app`` see the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ._optional import require
from .errors import ConfigurationError, UnsupportedServerError
from .settings import Settings, redact_url

__all__ = [
    "MIN_REDIS",
    "REDIS_PY",
    "WaitingPool",
    "check_redis_py",
    "make_client",
    "memory_server",
]

REDIS_PY = ((8, 0), (9, 0))
"""The redis-py versions redkit is tested with, from (included) and to (excluded); pyproject.toml
declares the same range. This module builds on redis-py's connection internals (handshake,
command packing, write bounds), so another major version fails at import instead of mid-request."""


def check_redis_py(version: str) -> None:
    """Raise ``ImportError`` naming the tested range when redis-py ``version`` is outside it."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    (low, high) = REDIS_PY
    if len(numbers) == 2 and low <= numbers < high:
        return
    tested = f">={low[0]}.{low[1]},<{high[0]}"
    raise ImportError(
        f"redkit is tested with redis-py {tested}, not with the installed redis-py {version}: "
        f'pip install "redis{tested}"'
    )


check_redis_py(getattr(redis, "__version__", "unknown"))

MIN_REDIS = (7, 0)
"""The oldest Redis redkit supports: its scripts use ``PEXPIRE ... GT`` and ``SET ... NX GET``."""

_servers: dict[str, Any] = {}
_servers_lock = threading.Lock()


def memory_server(name: str) -> Any:
    """The process-wide fakeredis server named ``name`` (created on first use)."""
    fakeredis = require("fakeredis", "memory")
    with _servers_lock:
        server = _servers.get(name)
        if server is None:
            server = _servers[name] = fakeredis.FakeServer()
        return server


def _pack_linear(self: Any, *args: Any) -> list[bytes]:
    """redis-py's asyncio connections pack a command by re-joining the whole buffer once per
    argument (quadratic up to 6 KB per chunk: about 2 ms for a 300-argument script call). This
    packs the same bytes, with the same encoder and the same first-argument rule, in one pass
    (bytes, ints and, with the default UTF-8 strict encoding, strings without a call to it)."""
    if isinstance(args[0], str):
        args = tuple(args[0].encode().split()) + args[1:]
    elif b" " in args[0]:
        args = tuple(args[0].split()) + args[1:]
    encoder = self.encoder
    encode = encoder.encode
    plain = encoder.encoding == "utf-8" and encoder.encoding_errors == "strict"
    parts: list[Any] = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            value = arg
        elif kind is str and plain:
            value = arg.encode()
        elif kind is int:
            value = b"%d" % arg
        else:
            value = encode(arg)
        append(b"$%d\r\n" % len(value))
        append(value)
        append(b"\r\n")
    return [b"".join(parts)]


_asyncio_timeout: Any = getattr(asyncio, "timeout", None)  # Python 3.11+


def _bounded_send(base: Any) -> Any:
    """redis-py bounds each write by ``socket_timeout`` with ``asyncio.wait_for``, which makes a
    Task per command. This is the same method, bounded by ``asyncio.timeout`` (Python 3.11+), which
    needs no Task: same connecting, health check, errors and disconnecting."""
    plain = base.send_packed_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            return await plain(self, command, check_health)  # type: ignore[no-any-return]
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with _asyncio_timeout(timeout):
                self._writer.writelines(command)
                await self._writer.drain()
        except TimeoutError:  # before OSError: TimeoutError is one
            _abort(self)
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            number, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
            raise RedisConnectionError(
                f"Error {number} while writing to socket. {message}."
            ) from exc
        except BaseException:
            # a write cut short leaves a partial command on the connection: never reuse it
            _abort(self)
            await self.disconnect(nowait=True)
            raise
        return None

    return send_packed_command


def _abort(connection: Any) -> None:
    """Drop a connection whose write did not complete at once: a plain close would first wait
    for Redis to read what is still buffered, which it is not doing."""
    writer = getattr(connection, "_writer", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.transport.abort()


def _version_of(reply: Any) -> str | None:
    """The ``version`` field of a ``HELLO`` reply (a flat list in RESP2, a map in RESP3)."""
    if isinstance(reply, dict):
        items: Any = reply.items()
    elif isinstance(reply, (list, tuple)):
        items = zip(reply[::2], reply[1::2])
    else:
        return None
    for key, value in items:
        if (key.decode() if isinstance(key, bytes) else str(key)) == "version":
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _refusal(connection: Any, reply: Any) -> UnsupportedServerError | None:
    """The error for a server whose ``HELLO`` answered ``reply`` (an error reply included), or
    None when it is recent enough (or when HELLO is denied by an ACL: nothing to tell)."""
    if isinstance(reply, RedisResponseError):
        text = str(reply).lower()
        if "unknown command" not in text and "wrong number" not in text:
            raise reply  # another refusal (an ACL denying HELLO 3): redis-py's to report
        version = "older than 6.0 (it knows no HELLO)"
    else:
        version = _version_of(reply) or "unknown"
        numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
        if len(numbers) == 2 and numbers >= MIN_REDIS:
            return None
    where = getattr(connection, "path", None) or (
        f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
    )
    minimum = ".".join(map(str, MIN_REDIS))
    return UnsupportedServerError(
        f"the Redis server at {where} is version {version}; redkit needs Redis {minimum} or "
        "newer (its scripts use PEXPIRE ... GT and SET ... NX GET)"
    )


def _checked_sync(base: Any) -> dict[str, Any]:
    name = "on_connect_check_health" if hasattr(base, "on_connect_check_health") else "on_connect"
    plain = getattr(base, name)

    def on_connect(self: Any, *args: Any, **kwargs: Any) -> None:
        self.handshake_metadata = None
        try:
            plain(self, *args, **kwargs)
            reply = self.handshake_metadata  # the reply to redis-py's own HELLO 3, if sent
            if _version_of(reply) is None:  # RESP2: no HELLO yet, ask
                self.send_command("HELLO", check_health=False)
                reply = self.read_response()
        except RedisResponseError as exc:
            reply = exc
        error = _refusal(self, reply)
        if error is not None:
            self.disconnect()  # never handed out again as a connected connection
            raise error

    return {name: on_connect}


def _checked_async(base: Any) -> dict[str, Any]:
    name = "on_connect_check_health" if hasattr(base, "on_connect_check_health") else "on_connect"
    plain = getattr(base, name)

    async def on_connect(self: Any, *args: Any, **kwargs: Any) -> None:
        replies: list[Any] = []
        read = self.read_response

        async def reading(*a: Any, **k: Any) -> Any:
            reply = await read(*a, **k)
            replies.append(reply)
            return reply

        self.read_response = reading  # to see the reply of redis-py's own HELLO 3, if sent
        try:
            await plain(self, *args, **kwargs)
            reply = next((r for r in replies if _version_of(r) is not None), None)
            if reply is None:  # RESP2: no HELLO yet, ask
                await self.send_command("HELLO", check_health=False)
                reply = await read()
        except RedisResponseError as exc:
            reply = exc
        finally:
            del self.read_response
        error = _refusal(self, reply)
        if error is not None:
            await self.disconnect()
            raise error

    return {name: on_connect}


_checked_classes: dict[tuple[type, bool], type] = {}


def _connection_class(base: Any, asyncio: bool) -> Any:
    """``base`` with the server's version checked once per connection, at its handshake (one
    ``HELLO``); for asyncio also packing commands in linear time and bounding writes without a
    Task per command."""
    made = _checked_classes.get((base, asyncio))
    if made is None:
        members: dict[str, Any] = {}
        if asyncio:
            members["pack_command"] = _pack_linear
            if _asyncio_timeout is not None and all(
                hasattr(base, name)
                for name in ("is_connected", "connect_check_health", "check_health")
            ):
                members["send_packed_command"] = _bounded_send(base)
            members.update(_checked_async(base))
        else:
            members.update(_checked_sync(base))
        made = _checked_classes[(base, asyncio)] = type(base.__name__, (base,), members)
    return made


class WaitingPool(redis.ConnectionPool):
    """redis-py's ``ConnectionPool`` (a list under a lock), except that a caller finding all
    ``max_connections`` busy waits up to ``timeout`` seconds for one to come back instead of
    failing at once. What ``BlockingConnectionPool`` does, without the ``queue.Queue`` round
    (two conditions, a dozen Python calls) that it costs on every command."""

    def __init__(self, *args: Any, timeout: float = 5.0, **kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(*args, **kwargs)

    def reset(self) -> None:  # also in a forked child: no waiter of the parent is here
        super().reset()
        self._freed = threading.Condition(threading.Lock())
        self._waiting = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection()
        except redis.exceptions.MaxConnectionsError:
            pass
        deadline = time.monotonic() + self.timeout
        with self._freed:  # held from the failed try to wait(): a release cannot slip between
            self._waiting += 1
            try:
                while True:
                    try:
                        return super().get_connection()
                    except redis.exceptions.MaxConnectionsError:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise RedisConnectionError("No connection available.") from None
                        self._freed.wait(left)
            finally:
                self._waiting -= 1

    def release(self, connection: Any) -> None:
        super().release(connection)
        if self._waiting:
            with self._freed:
                self._freed.notify()


def checked_pool(pool: Any, asyncio: bool) -> Any:
    """Give a connection pool redkit's connection class (see :func:`_connection_class`)."""
    pool.connection_class = _connection_class(pool.connection_class, asyncio)
    return pool


def fast_packing(pool: Any) -> Any:
    """An asyncio pool with redkit's connection class (the benchmarks' probes wrap this)."""
    return checked_pool(pool, asyncio=True)


def _retry(settings: Settings, asyncio: bool) -> Any:
    # redis-py never re-sends: it would also re-send a command that ran but whose reply was
    # lost. redkit's executors retry instead, and only batches that are safe to send twice.
    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(NoBackoff(), 0)
    return Retry(NoBackoff(), 0)


def _common(settings: Settings, asyncio: bool) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "health_check_interval": settings.health_check_interval,
        "retry": _retry(settings, asyncio),
    }


def _auth(settings: Settings, username: str | None, password: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    user = settings.username or username
    pw = settings.password or password
    if user:
        out["username"] = user
    if pw:
        out["password"] = pw
    return out


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hostinfo = netloc.rpartition("@")[2]
    hosts = []
    for item in hostinfo.split(","):
        if not item:
            continue
        host, _, port = (
            item.rpartition(":") if item.count(":") == 1 or "]" in item else (item, "", "")
        )
        if not host:
            host, port = item, ""
        host = host.strip("[]")
        try:
            hosts.append((host, int(port) if port else default_port))
        except ValueError:
            raise ConfigurationError(f"invalid port in {item!r}") from None
    if not hosts:
        raise ConfigurationError("the URL names no host")
    return hosts


def _userinfo(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    userinfo = netloc.rpartition("@")[0]
    if ":" in userinfo:
        user, _, pw = userinfo.partition(":")
        return (unquote(user) or None), (unquote(pw) or None)
    return None, unquote(userinfo) or None


def _ssl(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "ssl_cert_reqs": settings.ssl_cert_reqs,
        "ssl_check_hostname": settings.ssl_check_hostname and settings.ssl_cert_reqs == "required",
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if getattr(settings, name):
            opts[name] = getattr(settings, name)
    return opts


def make_client(settings: Settings, *, asyncio: bool) -> Any:
    """A redis-py client (``redis.Redis``, ``redis.asyncio.Redis``, a Sentinel-managed or a cluster
    client, or fakeredis for ``memory://``). Raises ``ConfigurationError`` for a bad URL."""
    url = settings.url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    common = _common(settings, asyncio)
    try:
        if scheme == "memory":
            server = memory_server(parts.netloc + parts.path)
            fakeredis = require("fakeredis", "memory")
            cls = fakeredis.FakeAsyncRedis if asyncio else fakeredis.FakeRedis
            return cls(server=server)
        if scheme in ("redis", "rediss", "unix"):
            # credentials: from the URL, each overridden by the username/password settings;
            # passed as arguments so that redis-py's own URL parsing never sees them
            extra = _auth(settings, *_userinfo(parts.netloc))
            if "@" in parts.netloc:
                url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
            if scheme == "rediss":
                extra.update(_ssl(settings))
            if asyncio:
                # the async executor queues callers beyond max_connections itself
                from redis.asyncio import ConnectionPool as AsyncPool
                from redis.asyncio import Redis as AsyncRedis

                apool = fast_packing(
                    AsyncPool.from_url(
                        url, max_connections=settings.max_connections, **common, **extra
                    )
                )
                return AsyncRedis.from_pool(apool)
            # when all connections are busy, a thread waits for one (up to pool_timeout)
            # instead of failing at once
            from redis import Redis

            if scheme == "unix":
                extra.update(_no_maintenance_notices())

            bpool = checked_pool(
                WaitingPool.from_url(
                    url,
                    max_connections=settings.max_connections,
                    timeout=settings.pool_timeout,
                    **common,
                    **extra,
                ),
                asyncio=False,
            )
            return Redis.from_pool(bpool)
        if scheme == "redis+sentinel":
            return _sentinel(settings, parts, common, asyncio)
        if scheme == "redis+cluster":
            return _cluster(settings, parts, common, asyncio)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
    raise ConfigurationError(f"unsupported URL {redact_url(url)!r}")  # pragma: no cover


def _no_maintenance_notices() -> dict[str, Any]:
    """Connection options that keep redis-py from asking a Unix socket's server for
    maintenance notices: they are about moving endpoints by host name, which a socket has none
    of (redis-py 8.0 refuses the connection instead of skipping the handshake)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - a redis-py without them sends no such handshake
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _sentinel(settings: Settings, parts: Any, common: dict[str, Any], asyncio: bool) -> Any:
    # redis+sentinel://[user:password@]host:26379[,host2:26379]/service_name[/db][?ssl=true]
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ConfigurationError("redis+sentinel:// URLs need the service name as path: /mymaster")
    service = unquote(segments[0])
    db = int(segments[1]) if len(segments) > 1 else 0
    query = dict(parse_qsl(parts.query))
    user, pw = _userinfo(parts.netloc)
    kwargs: dict[str, Any] = {"db": db, **_auth(settings, user, pw), **common}
    if query.get("ssl", "").lower() in ("1", "true", "yes"):
        kwargs.update({"ssl": True, **_ssl(settings)})
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
    }
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    hosts = _hosts(parts.netloc, 26379)
    if asyncio:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        sentinel: Any = AsyncSentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    else:
        from redis.sentinel import Sentinel

        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    client = sentinel.master_for(service, max_connections=settings.max_connections)
    checked_pool(client.connection_pool, asyncio)
    return client


def _cluster(settings: Settings, parts: Any, common: dict[str, Any], asyncio: bool) -> Any:
    # redis+cluster://[user:password@]host:7000[,host2:7001][?ssl=true]
    user, pw = _userinfo(parts.netloc)
    query = dict(parse_qsl(parts.query))
    kwargs: dict[str, Any] = {**_auth(settings, user, pw), **common}
    kwargs.pop("health_check_interval", None)
    if query.get("ssl", "").lower() in ("1", "true", "yes"):
        kwargs.update({"ssl": True, **_ssl(settings)})
    hosts = _hosts(parts.netloc, 6379)
    if asyncio:
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        return AsyncCluster(startup_nodes=[AsyncNode(h, p) for h, p in hosts], **kwargs)
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],  # type: ignore[no-untyped-call]
        max_connections=settings.max_connections,
        **kwargs,
    )
