"""ASGI overhead benchmark: what redkit's Starlette/FastAPI middleware and dependencies add to a
request, against plain Starlette and FastAPI and against slowapi.

Run ``python bench/asgi_overhead.py`` (``--url``, or ``REDIS_URL``; default
``redis://127.0.0.1:6379/15``) with a Python where Starlette, FastAPI and asgi-lifespan are
installed, and slowapi to compare. slowapi is not one of redkit's dependencies: install it into a
separate virtual environment, next to redkit itself::

    python -m venv ../benchenv
    ../benchenv/bin/pip install -e ".[starlette]" fastapi slowapi asgi-lifespan hiredis orjson
    ../benchenv/bin/python bench/asgi_overhead.py

Without slowapi the benchmark says so and measures the other rows alone. It writes keys under a
fresh prefix (``rkbench-<random>-<n>`` for each redkit application; slowapi's keys hold its
``key_prefix`` ``rkbench-<random>-sa-<n>`` after ``limits``' own ``LIMITS:LIMITER/``) and at the
end deletes every key holding ``rkbench-<random>`` (``SCAN`` + ``UNLINK``).

Every contender is its own application with one route at ``/``. A request is a direct call of
``await app(scope, receive, send)`` in this process with a prepared HTTP scope (``client``
127.0.0.1, ``Host: testserver``, HTTP/1.1): ``receive`` hands over the request body in one
message and then, as a server does, the disconnect once the response is sent; ``send`` keeps the
status. No server, no socket, no test client. Every application's lifespan runs around the
whole measurement (``asgi_lifespan.LifespanManager``): that is where redkit opens the
application's kit, ``app.state.redkit``. Each redkit application has its own ``Redkit`` object
(redkit's default settings, ``ratelimit_default`` where a row says so) and so its own pool.

Three serial groups (one request at a time) and the concurrent rate-limit groups, each measured
on its own (its slices alternate), the first row its baseline:

* ``starlette``: plain Starlette answering ``PlainTextResponse("ok")`` to a GET (the baseline)
  and to a POST that reads its 16-byte JSON body; redkit's ``SessionMiddleware`` alone, the
  request carrying the cookie of a session created beforehand, the endpoint reading
  ``request.session.get("n")`` or not using the session at all (the middleware reads the
  session before the endpoint runs either way, ``request.session`` being a sync mapping: one
  round trip), or no cookie at all;
  ``RateLimitMiddleware`` alone with ``ratelimit_default="1000000/minute"``; a cache hit of a
  ``@rk.cached(ttl=300)`` endpoint with ``CacheMiddleware`` alone (stored before the
  measurement, the endpoint never runs); an ``@rk.idempotent()`` POST endpoint with
  ``IdempotencyMiddleware`` alone, without ``Idempotency-Key``, with a new key on every request
  (each one begins, runs and stores its response), and with the same key on every request (each
  one replayed: ``Idempotent-Replayed: true``); and all of ``rk.middleware()`` (sessions on,
  the default limit set) on a plain GET, without a cookie, and with a session cookie and the
  endpoint reading the session;
* ``fastapi``: a plain FastAPI ``@app.get`` returning a dict (the baseline);
  ``Depends(rk.limit("1000000/minute"))``; ``@rk.rate_limit("1000000/minute")`` with
  ``rk.middleware()``; a cache hit of ``@rk.cached(ttl=300)`` with ``rk.middleware()``;
  ``Depends(rk.session)`` with ``SessionMiddleware`` and a session cookie;
* ``rate limit``: FastAPI endpoints taking ``request: Request`` and returning
  ``PlainTextResponse("ok")`` (the form slowapi's decorator needs), limited to
  ``"1000000/minute"`` per client address: plain (the baseline); redkit's
  ``@rk.rate_limit`` with ``RateLimitMiddleware`` (its default algorithm,
  ``sliding_window_counter``, then ``fixed_window``), ``Depends(rk.limit)`` and
  ``RateLimitMiddleware`` with ``ratelimit_default``; slowapi's ``@limiter.limit`` with the
  ``sliding-window-counter`` strategy and with ``fixed-window`` (its default), and its
  ``SlowAPIMiddleware`` (``BaseHTTPMiddleware``) and ``SlowAPIASGIMiddleware`` with
  ``default_limits``. Each slowapi application has ``app.state.limiter``, the
  ``RateLimitExceeded`` handler and a ``Limiter(key_func=get_remote_address, storage_uri=url,
  key_prefix=...)`` whose ``limits`` storage gets a redis-py connection pool built from the URL
  with redis-py's defaults (``storage_options``). redkit sends its rate-limit headers (its
  default), slowapi none (its default);
* ``rate limit C=16``, ``rate limit C=64`` (``--concurrency``, default ``16,64``): the plain
  row, redkit's ``@rk.rate_limit``, ``Depends(rk.limit)`` and ``RateLimitMiddleware`` default,
  and slowapi's ``@limiter.limit``, ``SlowAPIMiddleware`` and ``SlowAPIASGIMiddleware``, the same
  applications on the same Redis, with C requests in flight at once on the event loop, as a
  server has with concurrent clients: a call is ``asyncio.gather`` of C ``await app(scope,
  receive, send)``, each with its own task, scope, ``receive`` and ``send``. redkit awaits its
  asyncio client, so the round trips of the C requests overlap; slowapi calls its sync
  ``limits`` storage on the event loop, which blocks the loop for each round trip, so they
  cannot. A group makes ``--ops // C`` calls per contender and round (about as many requests
  as a serial group), in slices of ``--chunk // C``, after ``--warmup // C`` (at least one,
  which opens the C connections); its figures are per request (a call's time over C). The pool
  of a redkit application in these groups allows C connections at least: redkit's default
  ``max_connections`` (64) when C is not larger, else ``max_connections=C``; slowapi's pool is
  redis-py's ``ConnectionPool`` (not blocking; redis-py 8 caps it at 100), of which it only ever
  uses one, since a blocking call never overlaps another.

The limit is never reached and no key is replayed unless a row says so. Before the measurement
every contender serves a request that must get the status it expects (200), and the cache and
replay rows a second one that must come from Redis; afterwards the benchmark checks that every
response had that status (and the replay header), that every session request found its session,
every cache request hit, every rate-limit request was allowed and every new key stored its
response, and that the cached endpoint never ran; in the concurrent groups, for every request
of every batch.

Method: ``bench/harness.py`` (``--rounds`` rounds of ``--ops`` requests per contender, in
slices of ``--chunk``, after ``--warmup`` requests), on asyncio's default event loop.

How to read the output: ``µs/req`` is the median wall time per request over the rounds
(``range`` the fastest and the slowest round), ``req/s`` its inverse, ``cpu µs`` the median CPU
time of this process per request; ``+µs`` and ``+cpu`` the differences with the group's
baseline; ``RTT/req`` the requests written to Redis per request, counted on the connections of
each application's pool the same way for both libraries (for redkit it must also equal
``kit.stats``' ``round_trips``); ``ratio`` the median over the group's baseline. The
rate-limit pairs set a redkit row against the slowapi row that does the same, one table per
rate-limit group: ``ratio`` of the medians and ``+ratio`` of what each adds to the baseline
(below 1, redkit is faster). ``conns``: the connections the application's pool had made by the
end of the group, counted from its start-up. The
header gives the share of a CPU that other processes used during the run: figures from a busy
machine are not comparable.

``--json`` prints the same figures as JSON; ``--check`` exits with status 1 when a redkit
contender does not make the round trips it should.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.metadata
import secrets
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import harness
import redis
from harness import Contender, Result, Scenario, fmt
from ratelimit import Wire

try:
    from asgi_lifespan import LifespanManager
    from fastapi import Depends, FastAPI
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message

    from redkit import web
    from redkit.settings import Settings
    from redkit_starlette import (
        CacheMiddleware,
        IdempotencyMiddleware,
        RateLimitMiddleware,
        Redkit,
        SessionMiddleware,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit(
        f"this benchmark needs Starlette, FastAPI and asgi-lifespan ({exc}): "
        "pip install -e '.[fastapi]' asgi-lifespan"
    )

__all__ = ["PAIRS", "Peer", "load_peer", "main", "render", "run", "targets"]

DESCRIPTION = "ASGI overhead benchmark: redkit's Starlette/FastAPI adapter, against slowapi."
LIMIT = "1000000/minute"
BODY = b'{"order": 12345}'
SECRET = "asgi-overhead-bench"
REPLAYED = (b"idempotent-replayed", b"true")
SWC = "sliding-window-counter"
"""The ``limits`` strategy doing what redkit's default algorithm does."""

INSTALL = """\
slowapi is not installed in this Python: only the Starlette, FastAPI and redkit rows are measured.
To compare, install it into a separate virtual environment and run the benchmark from there:
    python -m venv ../benchenv
    ../benchenv/bin/pip install -e ".[starlette]" fastapi slowapi asgi-lifespan hiredis orjson
    ../benchenv/bin/python bench/asgi_overhead.py"""

STARLETTE, FASTAPI, RATE_LIMIT = "starlette", "fastapi", "rate limit"
GROUPS = (STARLETTE, FASTAPI, RATE_LIMIT)
CONCURRENCY = (16, 64)
"""Requests in flight at once in the concurrent rate-limit groups, by default."""
CONCURRENT = (
    "fastapi, request: Request",
    "redkit @rk.rate_limit",
    "redkit Depends(rk.limit)",
    "redkit RateLimitMiddleware default",
    "slowapi @limiter.limit",
    "slowapi SlowAPIMiddleware",
    "slowapi SlowAPIASGIMiddleware",
)
"""The rate-limit rows measured again with requests in flight at once, the baseline first."""
DEFAULT_POOL = Settings.max_connections


def concurrent_group(c: int) -> str:
    """The name of the rate-limit group with ``c`` requests in flight at once."""
    return f"rate limit C={c}"


PAIRS = (
    ("per route", "redkit @rk.rate_limit", "slowapi @limiter.limit"),
    ("per route, fixed window", "redkit @rk.rate_limit fixed_window", "slowapi @limiter.limit fw"),
    ("dependency / decorator", "redkit Depends(rk.limit)", "slowapi @limiter.limit"),
    ("default, middleware", "redkit RateLimitMiddleware default", "slowapi SlowAPIMiddleware"),
    (
        "default, ASGI middleware",
        "redkit RateLimitMiddleware default",
        "slowapi SlowAPIASGIMiddleware",
    ),
)
"""(what, redkit row, slowapi row) of the rate-limit rows that do the same."""


# -- the peer ---------------------------------------------------------------------------------


@dataclass
class Peer:
    """slowapi, imported at run time: it is not one of redkit's dependencies."""

    version: str
    limits_version: str
    limiter: Any
    """The ``Limiter`` class."""
    key_func: Callable[[Any], str]
    """``get_remote_address``."""
    exceeded: Any
    """``RateLimitExceeded``."""
    handler: Any
    """``_rate_limit_exceeded_handler``."""
    middleware: Any
    """``SlowAPIMiddleware``."""
    asgi: Any
    """``SlowAPIASGIMiddleware``."""


def load_peer() -> tuple[Peer | None, list[str]]:
    """slowapi when it is installed, and notes on what it lacks."""
    try:
        module: Any = importlib.import_module("slowapi")
        errors: Any = importlib.import_module("slowapi.errors")
        middleware: Any = importlib.import_module("slowapi.middleware")
        util: Any = importlib.import_module("slowapi.util")
    except ImportError:
        return None, [INSTALL]
    peer = Peer(
        importlib.metadata.version("slowapi"),
        importlib.metadata.version("limits"),
        module.Limiter,
        util.get_remote_address,
        errors.RateLimitExceeded,
        module._rate_limit_exceeded_handler,
        middleware.SlowAPIMiddleware,
        middleware.SlowAPIASGIMiddleware,
    )
    return peer, []


# -- serving ----------------------------------------------------------------------------------


class Exchange:
    """One request's ``receive`` and ``send``: the body in one message, then the disconnect
    once the response is sent (as a server does); keeps the status and the headers."""

    __slots__ = ("body", "done", "headers", "status", "waiting")

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body
        self.done = False
        self.status = 0
        self.headers: Any = ()
        self.waiting: asyncio.Future[None] | None = None

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.done:
            self.waiting = asyncio.get_running_loop().create_future()
            await self.waiting
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = message.get("headers", ())
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.done = True
            if self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(None)


class Served:
    """Serves requests to one application with ``await app(scope, receive, send)``, and counts
    the responses without the expected status (or without the ``must`` header)."""

    def __init__(
        self,
        app: ASGIApp,
        method: str = "GET",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        keyed: bool = False,
        must: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.app = app
        self.body = body
        self.keyed = keyed
        """Whether each request carries its own ``Idempotency-Key`` (the call's key)."""
        self.must = must
        self.headers: list[tuple[bytes, bytes]] = [(b"host", b"testserver"), *headers]
        if body:
            self.headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        self.method = method
        self.unexpected = 0
        self.last_status = 0

    def add_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def _scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": b"",
            "headers": list(self.headers),
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }

    async def op(self, keys: Sequence[str]) -> None:
        """One request per key (the key is the ``Idempotency-Key`` when ``keyed``)."""
        app, base, body, keyed, must = self.app, self._scope(), self.body, self.keyed, self.must
        headers = base["headers"]
        for key in keys:
            scope = dict(base)
            if keyed:
                scope["headers"] = [*headers, (b"idempotency-key", key.encode())]
            exchange = Exchange(body)
            await app(scope, exchange.receive, exchange.send)
            if exchange.status != 200 or (must is not None and must not in exchange.headers):
                self.unexpected += 1
                self.last_status = exchange.status

    def batch(self, c: int) -> Callable[[Sequence[str]], Awaitable[None]]:
        """An op serving, per key, ``c`` requests in flight at once on the event loop (each its
        own task, scope, ``receive`` and ``send``), as a server does with concurrent clients."""
        if self.keyed:
            raise ValueError("a batch does not give each request its own key")
        app, base, body, must = self.app, self._scope(), self.body, self.must
        headers = base["headers"]

        async def op(keys: Sequence[str]) -> None:
            for _ in keys:
                exchanges = [Exchange(body) for _ in range(c)]
                await asyncio.gather(
                    *(app({**base, "headers": list(headers)}, e.receive, e.send) for e in exchanges)
                )
                for e in exchanges:
                    if e.status != 200 or (must is not None and must not in e.headers):
                        self.unexpected += 1
                        self.last_status = e.status

        return op

    async def check(self, name: str, first: bool = False) -> None:
        """Serve one request and fail unless it got the expected answer (a broken set-up would
        make the benchmark measure error pages); ``first``: the request that stores what the
        next ones replay, which lacks the ``must`` header."""
        must = self.must
        if first:
            self.must = None
        try:
            await self.op(["check-" + secrets.token_hex(8)])
        finally:
            self.must = must
        if self.unexpected:
            wanted = "200" if must is None or first else f"200 with {must[0].decode()}"
            raise RuntimeError(
                f"{name}: the set-up request was answered {self.last_status}, not {wanted}"
            )


class Opened:
    """Counts the connections that one redis-py connection pool (sync or asyncio) makes from
    now on: attach it before the pool makes the connections to count."""

    def __init__(self, pool: Any) -> None:
        self.n = 0
        base = pool.connection_class
        opened = self

        def __init__(conn: Any, *args: Any, **kwargs: Any) -> None:
            opened.n += 1
            base.__init__(conn, *args, **kwargs)

        pool.connection_class = type(f"Opened{base.__name__}", (base,), {"__init__": __init__})


class Calls:
    """How many times an endpoint ran."""

    def __init__(self) -> None:
        self.n = 0


# -- contenders -------------------------------------------------------------------------------


@dataclass
class Setup:
    """One contender: its application, how it is served, its counters and its clean-up."""

    name: str
    group: str
    """``starlette``, ``fastapi`` or ``rate limit``: the scenario it is measured in."""
    kind: str
    """``plain``, ``redkit`` or ``slowapi``."""
    app: Any
    served: Served
    calls: Calls
    runs: int = 1
    """How many times the endpoint must run per request (0: a cache hit)."""
    rk: Redkit | None = None
    session: str | None = None
    """``"cookie"``: the request carries the cookie of a session created beforehand."""
    twice: bool = False
    """Check with a second request (one that must come from Redis: a hit, a replay)."""
    expected_rtt: int | None = None
    checks: dict[str, int] = field(default_factory=dict)
    """``kit.stats`` counters that must grow by this much per request."""
    wire: Wire | None = None
    opened: Opened | None = None
    close: Callable[[], None] = lambda: None

    def kit(self) -> Any:
        return None if self.rk is None else self.app.state.redkit

    async def prepare(self) -> None:
        """After start-up: count the kit's writes, make the session, check the answers."""
        kit = self.kit()
        if kit is not None:
            self.wire = Wire(kit.client.connection_pool)
            self.opened = Opened(kit.client.connection_pool)
        if self.session == "cookie":
            assert self.rk is not None
            sid = await kit.sessions.create({"n": 1})
            signed = web.CookieSigner(self.rk.session_secrets).sign(sid)
            name = web.CookieAttributes().name
            self.served.add_header(b"cookie", f"{name}={signed}".encode())
        await self.served.check(self.name, first=self.twice)
        if self.twice:
            before = self.calls.n
            await self.served.check(self.name)
            if self.runs == 0 and self.calls.n != before:
                raise RuntimeError(f"{self.name}: the second request was not served from Redis")

    def contender(self, token: str, concurrency: int = 1) -> Contender:
        """The contender; ``concurrency`` > 1: each call is that many requests in flight at
        once."""
        served, calls, wire, kit = self.served, self.calls, self.wire, self.kit()
        opened = self.opened
        if served.keyed:
            tag = f"{token}-{secrets.token_hex(4)}"

            def keys(label: str, n: int) -> list[str]:
                return [f"{tag}-{label}-{i}" for i in range(n)]

        else:

            def keys(label: str, n: int) -> list[str]:
                return [""] * n

        checks = self.checks

        def counters() -> dict[str, int]:
            out = {"unexpected": served.unexpected, "calls": calls.n}
            if wire is not None:
                out["round_trips"] = wire.writes
            if opened is not None:
                out["connections"] = opened.n
            if kit is not None:
                out["kit_round_trips"] = kit.stats.get("round_trips")
                for counter in checks:
                    out[counter] = kit.stats.get(counter)
            return out

        op = served.op if concurrency == 1 else served.batch(concurrency)
        return Contender(self.name, op, keys, counters)


@dataclass
class Plan:
    """What one run measures, and where."""

    url: str
    rounds: int
    ops: int
    chunk: int
    warmup: int
    token: str
    concurrency: tuple[int, ...] = CONCURRENCY
    _n: int = 0

    def measure(self, c: int = 1) -> tuple[int, int, int, int]:
        """Rounds, calls per round, calls per slice and warm-up calls, a call being ``c``
        requests: about as many requests as a serial group makes."""
        return (
            self.rounds,
            max(1, self.ops // c),
            max(1, self.chunk // c),
            max(1, self.warmup // c),
        )

    def pool(self) -> dict[str, int]:
        """The settings of a redkit application measured with requests in flight at once: a
        pool of at least as many connections as requests (redkit's default when it is
        enough)."""
        most = max(self.concurrency, default=1)
        return {} if most <= DEFAULT_POOL else {"max_connections": most}

    def prefix(self, kind: str = "") -> str:
        """A fresh prefix under ``rkbench-<token>`` for one application's keys."""
        self._n += 1
        return f"rkbench-{self.token}-{kind}{self._n}"

    def redkit(self, **settings: Any) -> Redkit:
        return Redkit(self.url, prefix=self.prefix(), session_secret=SECRET, **settings)


def _text(calls: Calls, *, session: bool = False, body: bool = False) -> Any:
    """A Starlette endpoint answering ``"ok"`` (reading the session, the body, when told)."""

    async def endpoint(request: Request) -> PlainTextResponse:
        calls.n += 1
        if body:
            await request.body()
        if session:
            request.session.get("n")
        return PlainTextResponse("ok")

    return endpoint


def _hello(calls: Calls) -> Any:
    """A FastAPI endpoint returning a dict."""

    async def endpoint() -> dict[str, str]:
        calls.n += 1
        return {"hello": "world"}

    return endpoint


def _with_request(calls: Calls) -> Any:
    """A FastAPI endpoint taking the request, as slowapi's decorator needs."""

    async def endpoint(request: Request) -> PlainTextResponse:
        calls.n += 1
        return PlainTextResponse("ok")

    return endpoint


def _only(rk: Redkit, middleware: Any) -> list[Middleware]:
    """One of redkit's middleware alone."""
    return [Middleware(middleware, redkit=rk)]


def _starlette_row(
    name: str,
    rk: Redkit | None = None,
    middleware: Sequence[Middleware] = (),
    *,
    read: bool = False,
    post: bool = False,
    decorators: Sequence[Callable[[Any], Any]] = (),
    key: str | None = None,
    **expect: Any,
) -> Setup:
    """A Starlette application with one endpoint (GET, or a POST reading its body), decorated
    with ``decorators``. ``key``: ``"each"`` for a new ``Idempotency-Key`` per request, another
    string for that key on every request (replayed). ``expect``: the :class:`Setup` fields."""
    calls = Calls()
    endpoint = _text(calls, session=read, body=post)
    for decorate in decorators:
        endpoint = decorate(endpoint)
    method = "POST" if post else "GET"
    app = Starlette(
        routes=[Route("/", endpoint, methods=[method])],
        middleware=list(middleware),
        lifespan=None if rk is None else rk.lifespan,
    )
    same = key is not None and key != "each"
    served = Served(
        app,
        method,
        [(b"idempotency-key", str(key).encode())] if same else (),
        BODY if post else b"",
        keyed=key == "each",
        must=REPLAYED if same else None,
    )
    kind = "plain" if rk is None else "redkit"
    return Setup(name, STARLETTE, kind, app, served, calls, rk=rk, **expect)


def _fastapi_row(
    name: str,
    group: str,
    endpoint: Any,
    calls: Calls,
    rk: Redkit | None = None,
    middleware: Sequence[Middleware] = (),
    dependencies: Sequence[Any] = (),
    **expect: Any,
) -> Setup:
    """A FastAPI application with ``endpoint`` at ``GET /``. ``expect``: the :class:`Setup`
    fields."""
    app = FastAPI(lifespan=None if rk is None else rk.lifespan, middleware=list(middleware))
    app.add_api_route("/", endpoint, methods=["GET"], dependencies=list(dependencies))
    kind = "plain" if rk is None else "redkit"
    return Setup(name, group, kind, app, Served(app), calls, rk=rk, **expect)


ALLOWED = {"ratelimit_allowed": 1}
HIT = {"cache_hits": 1}
FOUND = {"session_hits": 1}


def starlette_setups(plan: Plan) -> list[Setup]:
    """The Starlette rows, plain Starlette first."""
    out = [_starlette_row("starlette"), _starlette_row("starlette POST, body read", post=True)]
    for name, read, cookie, rtt in (
        ("session, cookie, endpoint reads it", True, True, 1),
        ("session, cookie, endpoint ignores it", False, True, 1),
        ("session, no cookie, endpoint reads it", True, False, 0),
    ):
        rk = plan.redkit(sessions=True)
        out.append(
            _starlette_row(
                name,
                rk,
                _only(rk, SessionMiddleware),
                read=read,
                session="cookie" if cookie else None,
                expected_rtt=rtt,
                checks=FOUND if cookie else {},
            )
        )
    rk = plan.redkit(ratelimit_default=LIMIT)
    out.append(
        _starlette_row(
            "RateLimitMiddleware default",
            rk,
            _only(rk, RateLimitMiddleware),
            expected_rtt=1,
            checks=ALLOWED,
        )
    )
    rk = plan.redkit()
    out.append(
        _starlette_row(
            "cache hit: @rk.cached",
            rk,
            _only(rk, CacheMiddleware),
            decorators=[rk.cached(ttl=300)],
            runs=0,
            twice=True,
            expected_rtt=1,
            checks=HIT,
        )
    )
    for name, key, rtt in (
        ("idempotent POST, no key", None, 0),
        ("idempotent POST, new key", "each", 2),
        ("idempotent POST, replayed key", f"replayed-{plan.token}", 1),
    ):
        rk = plan.redkit()
        replayed = key not in (None, "each")
        out.append(
            _starlette_row(
                name,
                rk,
                _only(rk, IdempotencyMiddleware),
                post=True,
                decorators=[rk.idempotent()],
                key=key,
                runs=0 if replayed else 1,
                twice=replayed,
                expected_rtt=rtt,
                checks={"idempotency_stored": 1} if key == "each" else {},
            )
        )
    for name, cookie, rtt in (
        ("rk.middleware(), GET, no cookie", False, 1),
        ("rk.middleware(), GET, session read", True, 2),
    ):
        rk = plan.redkit(sessions=True, ratelimit_default=LIMIT)
        out.append(
            _starlette_row(
                name,
                rk,
                rk.middleware(),
                read=cookie,
                session="cookie" if cookie else None,
                expected_rtt=rtt,
                checks={**ALLOWED, **FOUND} if cookie else ALLOWED,
            )
        )
    return out


def fastapi_setups(plan: Plan) -> list[Setup]:
    """The FastAPI rows, plain FastAPI first."""
    calls = Calls()
    out = [_fastapi_row("fastapi", FASTAPI, _hello(calls), calls)]

    calls, rk = Calls(), plan.redkit()
    dependency = Depends(rk.limit(LIMIT))
    out.append(
        _fastapi_row(
            "Depends(rk.limit)",
            FASTAPI,
            _hello(calls),
            calls,
            rk,
            dependencies=[dependency],
            expected_rtt=1,
            checks=ALLOWED,
        )
    )
    calls, rk = Calls(), plan.redkit()
    out.append(
        _fastapi_row(
            "@rk.rate_limit + rk.middleware()",
            FASTAPI,
            rk.rate_limit(LIMIT)(_hello(calls)),
            calls,
            rk,
            rk.middleware(),
            expected_rtt=1,
            checks=ALLOWED,
        )
    )
    calls, rk = Calls(), plan.redkit()
    out.append(
        _fastapi_row(
            "cache hit: @rk.cached + rk.middleware()",
            FASTAPI,
            rk.cached(ttl=300)(_hello(calls)),
            calls,
            rk,
            rk.middleware(),
            runs=0,
            twice=True,
            expected_rtt=1,
            checks=HIT,
        )
    )

    calls, rk = Calls(), plan.redkit(sessions=True)
    session_calls = calls

    async def with_session(session: web.LazySession = Depends(rk.session)) -> dict[str, str]:
        session_calls.n += 1
        return {"n": str(session.get("n"))}

    out.append(
        _fastapi_row(
            "Depends(rk.session), cookie",
            FASTAPI,
            with_session,
            calls,
            rk,
            _only(rk, SessionMiddleware),
            session="cookie",
            expected_rtt=1,
            checks=FOUND,
        )
    )
    return out


def _redkit_limit(plan: Plan, name: str, how: str, algorithm: str | None = None) -> Setup:
    """redkit limiting a rate-limit row: ``how`` is ``decorator``, ``dependency`` or
    ``default`` (``RateLimitMiddleware`` with ``ratelimit_default``)."""
    calls = Calls()
    rk = plan.redkit(ratelimit_default=LIMIT if how == "default" else None, **plan.pool())
    endpoint = _with_request(calls)
    if how == "decorator":
        endpoint = rk.rate_limit(LIMIT, algorithm=algorithm)(endpoint)
    dependencies = [Depends(rk.limit(LIMIT))] if how == "dependency" else []
    middleware = [] if how == "dependency" else _only(rk, RateLimitMiddleware)
    return _fastapi_row(
        name,
        RATE_LIMIT,
        endpoint,
        calls,
        rk,
        middleware,
        dependencies,
        expected_rtt=1,
        checks=ALLOWED,
    )


def _slowapi(plan: Plan, peer: Peer, name: str, how: str, strategy: str) -> Setup:
    """slowapi limiting a rate-limit row: ``how`` is ``decorator``, ``middleware``
    (``SlowAPIMiddleware``) or ``asgi`` (``SlowAPIASGIMiddleware``), both with
    ``default_limits``."""
    calls = Calls()
    pool = redis.ConnectionPool.from_url(plan.url)
    wire = Wire(pool)  # before the pool opens its first connection
    limiter = peer.limiter(
        key_func=peer.key_func,
        default_limits=[] if how == "decorator" else [LIMIT],
        storage_uri=plan.url,
        storage_options={"connection_pool": pool},
        strategy=strategy,
        key_prefix=plan.prefix("sa-"),
    )
    endpoint = _with_request(calls)
    middleware: list[Middleware] = []
    if how == "decorator":
        endpoint = limiter.limit(LIMIT)(endpoint)
    else:
        middleware.append(Middleware(peer.middleware if how == "middleware" else peer.asgi))
    setup = _fastapi_row(name, RATE_LIMIT, endpoint, calls, None, middleware)
    setup.app.state.limiter = limiter
    setup.app.add_exception_handler(peer.exceeded, peer.handler)
    setup.kind, setup.wire, setup.close = "slowapi", wire, pool.disconnect
    setup.opened = Opened(pool)
    return setup


def rate_limit_setups(plan: Plan, peer: Peer | None) -> list[Setup]:
    """The rate-limit rows, plain FastAPI (an endpoint taking the request) first."""
    calls = Calls()
    out = [_fastapi_row("fastapi, request: Request", RATE_LIMIT, _with_request(calls), calls)]
    out += [
        _redkit_limit(plan, "redkit @rk.rate_limit", "decorator"),
        _redkit_limit(plan, "redkit @rk.rate_limit fixed_window", "decorator", "fixed_window"),
        _redkit_limit(plan, "redkit Depends(rk.limit)", "dependency"),
        _redkit_limit(plan, "redkit RateLimitMiddleware default", "default"),
    ]
    if peer is not None:
        out += [
            _slowapi(plan, peer, "slowapi @limiter.limit", "decorator", SWC),
            _slowapi(plan, peer, "slowapi @limiter.limit fw", "decorator", "fixed-window"),
            _slowapi(plan, peer, "slowapi SlowAPIMiddleware", "middleware", SWC),
            _slowapi(plan, peer, "slowapi SlowAPIASGIMiddleware", "asgi", SWC),
        ]
    return out


def setups(plan: Plan, peer: Peer | None) -> list[Setup]:
    """Every contender, each group's baseline first."""
    return [*starlette_setups(plan), *fastapi_setups(plan), *rate_limit_setups(plan, peer)]


# -- running ----------------------------------------------------------------------------------


def _verify(results: Sequence[Result], by_name: Mapping[str, Setup]) -> None:
    """Fail when a contender measured the wrong path: an unexpected answer, an endpoint that
    ran when it should not (or did not run), a counter that did not grow as it should."""
    for r in results:
        s = by_name[r.contender]
        if r.count("unexpected"):
            raise RuntimeError(
                f"{r.contender}: {r.count('unexpected')} of {r.calls} responses were not the "
                f"expected ones (last status {s.served.last_status})"
            )
        if r.count("calls") != s.runs * r.calls:
            raise RuntimeError(
                f"{r.contender}: the endpoint ran {r.count('calls')} times in {r.calls} requests"
            )
        for counter, per in s.checks.items():
            if r.count(counter) != per * r.calls:
                raise RuntimeError(
                    f"{r.contender}: {counter} grew by {r.count(counter)} over {r.calls} requests"
                )


def _per_request(result: Result, c: int) -> Result:
    """A result of calls of ``c`` requests each, per request."""
    return dataclasses.replace(
        result,
        wall_us=[x / c for x in result.wall_us],
        cpu_us=[x / c for x in result.cpu_us],
        calls=result.calls * c,
    )


def _pools(scenario: Scenario, by_name: Mapping[str, Setup]) -> dict[tuple[str, str], int]:
    """(scenario, contender) -> how many connections the contender's pool has made so far."""
    out = {}
    for c in scenario.contenders:
        opened = by_name[c.name].opened
        if opened is not None:
            out[scenario.name, c.name] = opened.n
    return out


async def _measure(
    plan: Plan, built: Sequence[Setup]
) -> tuple[list[Result], dict[tuple[str, str], int], dict[str, Any], float]:
    """Start every application, check and measure the groups (the serial ones, then the
    concurrent ones), stop them. Also returns how many connections each pool had made by the
    end of each group."""
    async with contextlib.AsyncExitStack() as stack:
        for s in built:
            await stack.enter_async_context(LifespanManager(s.app))
        for s in built:
            await s.prepare()
        r = redis.Redis.from_url(plan.url)
        try:
            watch = harness.Watch(
                r,
                plan.url,
                starlette=importlib.metadata.version("starlette"),
                fastapi=importlib.metadata.version("fastapi"),
                asgi_lifespan=importlib.metadata.version("asgi-lifespan"),
                slowapi=_version("slowapi"),
                limits=_version("limits"),
            )
            by_name = {s.name: s for s in built}
            results: list[Result] = []
            pools: dict[tuple[str, str], int] = {}
            for group in GROUPS:
                members = [s.contender(plan.token) for s in built if s.group == group]
                scenario = Scenario(group, "async", members)
                results += await harness.run_async(scenario, *plan.measure())
                pools.update(_pools(scenario, by_name))
            for c in plan.concurrency:
                members = [by_name[n].contender(plan.token, c) for n in CONCURRENT if n in by_name]
                scenario = Scenario(concurrent_group(c), "async", members)
                measured = await harness.run_async(scenario, *plan.measure(c))
                results += [_per_request(res, c) for res in measured]
                pools.update(_pools(scenario, by_name))
            seconds = watch.stop()
        finally:
            r.close()
    return results, pools, watch.info, seconds


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _row(
    result: Result, setup: Setup, base: Result, concurrency: int, pools: Mapping[Any, int]
) -> dict[str, Any]:
    row = result.as_dict(
        {"group": result.scenario, "kind": setup.kind, "concurrency": concurrency},
        {
            "pool_connections": pools.get((result.scenario, result.contender)),
            "kit_round_trips_per_op": result.per_call("kit_round_trips")
            if setup.kind == "redkit"
            else None,
            "expected_round_trips": setup.expected_rtt,
        },
    )
    row["requests_per_second"] = round(1e6 / result.median_us)
    row["extra_us"] = round(result.median_us - base.median_us, 2)
    row["extra_cpu_us"] = round(result.median_cpu_us - base.median_cpu_us, 2)
    return row


def pairs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each redkit rate-limit row against the slowapi row that does the same, in the serial
    rate-limit group and then in each concurrent one."""
    groups = dict.fromkeys(
        r["group"] for r in rows if r["group"] == RATE_LIMIT or r["concurrency"] > 1
    )
    out = []
    for group in groups:
        by_name = {r["contender"]: r for r in rows if r["group"] == group}
        out += _pairs(group, by_name)
    return out


def _pairs(group: str, by_name: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for what, ours_name, theirs_name in PAIRS:
        ours, theirs = by_name.get(ours_name), by_name.get(theirs_name)
        if ours is None or theirs is None:
            continue
        out.append(
            {
                "group": group,
                "concurrency": ours["concurrency"],
                "what": what,
                "redkit": ours_name,
                "slowapi": theirs_name,
                **harness.versus(ours, theirs),
                "redkit_connections": ours["pool_connections"],
                "peer_connections": theirs["pool_connections"],
            }
        )
    return out


def targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per redkit row: the round trips it should make, on the wire and by ``kit.stats``."""
    return [
        harness.round_trip_target(
            f"{row['group']}: {row['contender']}", row, row["expected_round_trips"]
        )
        for row in rows
        if row["kind"] == "redkit"
    ]


def run(
    url: str,
    rounds: int = 7,
    ops: int = 4000,
    chunk: int = 500,
    warmup: int = 1000,
    concurrency: Sequence[int] = CONCURRENCY,
) -> dict[str, Any]:
    """Measure every contender against ``url``, the rate-limit rows also with ``concurrency``
    requests in flight at once (one group per figure); returns the report (the ``--json``
    document)."""
    if any(c < 1 for c in concurrency) or len(set(concurrency)) != len(concurrency):
        raise ValueError(f"concurrency must be distinct figures of at least 1: {concurrency}")
    peer, notes = load_peer()
    if peer is None:
        print(INSTALL, file=sys.stderr)
    token = secrets.token_hex(6)
    plan = Plan(url, rounds, ops, chunk, warmup, token, tuple(concurrency))
    r = redis.Redis.from_url(url)
    r.ping()  # fail here, before anything is written, when Redis does not answer
    built: list[Setup] = []
    try:
        built = setups(plan, peer)
        by_name = {s.name: s for s in built}
        if len(by_name) != len(built):
            raise RuntimeError("two contenders have the same name")
        results, pools, info, seconds = asyncio.run(_measure(plan, built))
        _verify(results, by_name)
    finally:
        for s in built:
            s.close()
        removed = harness.unlink(r, f"*rkbench-{token}*")
        left = sum(1 for _ in r.scan_iter(match=f"*rkbench-{token}*", count=1000))
        r.close()
    if left:
        raise RuntimeError(f"{left} keys under rkbench-{token} were not deleted")
    bases = {res.scenario: res for res in results if res.baseline}
    flight = {concurrent_group(c): c for c in plan.concurrency}
    rows = [
        _row(
            res,
            by_name[res.contender],
            bases[res.scenario],
            flight.get(res.scenario, 1),
            pools,
        )
        for res in results
    ]
    return {
        "config": {
            **harness.config(url, rounds, ops, chunk, warmup),
            "limit": LIMIT,
            "concurrency": [
                {
                    "in_flight": c,
                    "batches": plan.measure(c)[1],
                    "batches_per_slice": plan.measure(c)[2],
                    "warmup_batches": plan.measure(c)[3],
                }
                for c in plan.concurrency
            ],
            "redkit_max_connections": plan.pool().get("max_connections", DEFAULT_POOL),
        },
        "machine": info,
        "peer": {"library": "slowapi", "version": None if peer is None else peer.version},
        "notes": notes,
        "seconds": round(seconds, 1),
        "keys_deleted": removed,
        "results": rows,
        "pairs": pairs(rows),
        "targets": targets(rows),
    }


# -- reporting --------------------------------------------------------------------------------


def _line(head: tuple[str, ...], r: Mapping[str, Any]) -> str:
    (group,) = head
    span = f"{r['min_us']:.1f}-{r['max_us']:.1f}"
    return (
        f"{group:<15} {r['contender']:<40} {r['median_us']:>7.1f} {span:>13} "
        f"{r['requests_per_second']:>6} {r['median_cpu_us']:>7.1f} {r['extra_us']:>7.1f} "
        f"{r['extra_cpu_us']:>6.1f} {fmt(r['round_trips_per_op'], '.2f'):>7} "
        f"{r['ratio']:>5.2f} {fmt(r['pool_connections'], 'd'):>5}"
    )


def _pair_line(p: Mapping[str, Any]) -> str:
    return (
        f"{p['what']:<24} {p['redkit_us']:>7.1f} {p['peer_us']:>8.1f} {p['ratio']:>5.2f} "
        f"{p['redkit_extra_us']:>7.1f} {p['peer_extra_us']:>7.1f} "
        f"{fmt(p['extra_ratio'], '.2f'):>6}  {p['redkit']} / {p['slowapi']}"
    )


def _pair_tables(report: Mapping[str, Any]) -> list[str]:
    """One table of redkit-over-slowapi ratios per rate-limit group."""
    limit = repr(report["config"]["limit"])
    lines: list[str] = []
    groups = dict.fromkeys((p["group"], p["concurrency"]) for p in report["pairs"])
    for group, c in groups:
        how = "one request at a time" if c == 1 else f"{c} requests in flight at once, per request"
        lines += [
            "",
            f"{group}: {limit} per address, {how} (ratios: redkit over slowapi, "
            "< 1: redkit faster)",
            f"{'':<24} {'redkit':>7} {'slowapi':>8} {'ratio':>5} {'rk +µs':>7} {'sa +µs':>7} "
            f"{'+ratio':>6}  rows",
            *(_pair_line(p) for p in report["pairs"] if p["group"] == group),
        ]
    return lines


def render(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    m, cfg = report["machine"], report["config"]
    lines = [
        f"redkit ASGI overhead benchmark: {cfg['rounds']} rounds x {cfg['ops']} requests per "
        f"contender (slices of {cfg['chunk']}), await app(scope, receive, send) in-process, "
        f"{report['seconds']} s",
        f"{harness.machine_line(m)}, Starlette {m['starlette']}, FastAPI {m['fastapi']}, "
        f"slowapi {m.get('slowapi') or 'not installed'}"
        + (f" (limits {m['limits']})" if m.get("limits") else ""),
        harness.load_line(m),
        *(f"note: {n}" for n in report["notes"] if n != INSTALL),
    ]
    for c in cfg["concurrency"]:
        lines.append(
            f"{concurrent_group(c['in_flight'])}: rounds of {c['batches']} batches of "
            f"{c['in_flight']} requests in flight at once (asyncio.gather), slices of "
            f"{c['batches_per_slice']}; figures per request; redkit pools of "
            f"max_connections={cfg['redkit_max_connections']}"
        )
    lines += [
        "",
        f"{'':<15} {'contender':<40} {'µs/req':>7} {'range':>13} {'req/s':>6} {'cpu µs':>7} "
        f"{'+µs':>7} {'+cpu':>6} {'RTT/req':>7} {'ratio':>5} {'conns':>5}",
    ]
    lines += harness.table(report["results"], lambda r: (r["group"],), _line)
    lines += _pair_tables(report)
    lines += [
        "",
        "ratio, +µs, +cpu: over the group's baseline (its first row); RTT/req: requests written "
        "to Redis per request; conns: connections the application's pool had made by the end "
        "of the group",
        "targets: the round trips each redkit contender must make",
        *harness.target_lines(report["targets"], 56),
    ]
    return "\n".join(lines)


def _concurrency(text: str) -> tuple[int, ...]:
    """``--concurrency``: comma-separated figures of at least 1 (empty: no concurrent group)."""
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if any(c < 1 for c in out) or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"figures must be distinct and at least 1: {text!r}")
    return out


def _more(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=CONCURRENCY,
        help="requests in flight at once in the concurrent rate-limit groups, comma-separated "
        f"(default {','.join(map(str, CONCURRENCY))}; empty: none)",
    )


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return run(args.url, args.rounds, args.ops, args.chunk, args.warmup, args.concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python bench/asgi_overhead.py [--url URL] [--concurrency 16,64]
    [--json] [--check] ...``."""
    return harness.cli(DESCRIPTION, argv, _run, render, more=_more)


if __name__ == "__main__":
    sys.exit(main())
