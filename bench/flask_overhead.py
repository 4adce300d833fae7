"""Flask overhead benchmark: what redkit's Flask extension adds to a request, against Flask-Limiter.

Run ``python bench/flask_overhead.py`` (``--url``, or ``REDIS_URL``; default
``redis://127.0.0.1:6379/15``) with a Python where Flask is installed, and Flask-Limiter to
compare. Flask-Limiter is not one of redkit's dependencies: install it into a separate virtual
environment, next to redkit itself::

    python -m venv ../benchenv
    ../benchenv/bin/pip install -e ".[flask]" flask-limiter limits redis hiredis orjson
    ../benchenv/bin/python bench/flask_overhead.py

Without Flask-Limiter the benchmark says so and measures redkit's rows alone. It writes keys under
a fresh prefix (``rkbench-<random>-<n>`` for each redkit application, ``rkbench-<random>-fl-<n>``
for each Flask-Limiter one) and deletes them at the end (``kit.clear()``, ``SCAN`` + ``UNLINK``).

Every contender is its own Flask application with one view at ``/`` that returns ``"ok"``. A
request is a call of ``app.wsgi_app(environ, start_response)`` in this process, the response body
read and closed: no server, no socket, no test client. The environ is built once per
application with ``werkzeug.test.EnvironBuilder`` (``REMOTE_ADDR`` 127.0.0.1) and copied for
each request, with a fresh ``wsgi.input``. Every application has a ``SECRET_KEY``, as most do, so
Flask's own session interface runs in every row (redkit's replaces it in the session rows). The
contenders:

* ``flask``: plain Flask, no extension (the baseline);
* ``flask + cookie session``: plain Flask, the view reads ``session.get("n")`` from Flask's own
  signed-cookie session (what a session costs without a server-side store);
* ``redkit, no feature``: ``Redkit(app)`` registered, nothing used by the view (its
  ``before_request`` / ``after_request`` / ``teardown_request`` hooks alone);
* ``redkit session``: ``REDKIT_SESSIONS = True``; the request carries the cookie of a session
  created beforehand and the view reads ``session.get("n")`` (nothing is written back);
* ``redkit rate_limit <algorithm>``: the view decorated ``@ext.rate_limit("100000/minute")``
  with ``REDKIT_RATELIMIT_ALGORITHM`` set to ``fixed_window``, ``sliding_window_log`` or
  ``sliding_window_counter`` (the default);
* ``redkit idempotent``: a POST view decorated ``@ext.idempotent()``, every request with a new
  ``Idempotency-Key`` and a 16-byte JSON body, so each one begins, runs and stores its response;
* ``redkit all three``: the session, the rate limit (default algorithm) and ``@ext.idempotent()``
  on one POST view;
* ``Flask-Limiter <strategy>``: ``Limiter(get_remote_address, app=app, storage_uri=url,
  strategy=...)`` with ``fixed-window``, ``moving-window`` and ``sliding-window-counter`` (when
  the installed version has it), the view decorated ``@limiter.limit("100000/minute")``;
  Flask-Limiter's other settings are its defaults (no rate-limit headers).

redkit's rate-limit rows send five rate-limit headers (``X-RateLimit-*``, ``RateLimit-Policy``,
``RateLimit``: its default, from the reply of the same round trip); Flask-Limiter's send none
(its default). The limit is never reached (100,000 per minute is the
most redkit's ``sliding_window_log`` takes, as it keeps one entry per request) and no key is
replayed: the benchmark checks that every response was a 200, that every redkit session request
found its session and that every idempotent request stored its response.

Clients: each redkit application has its own ``redkit.Redkit`` built by the extension from
``app.config`` (redkit's default settings); each Flask-Limiter application a redis-py connection
pool built from the URL with redis-py's defaults, passed to ``limits``' Redis storage
(``storage_options``). redis-py uses hiredis for all of them when it is installed.

Method: ``bench/harness.py``. All the contenders are one scenario, so their slices alternate
(``--rounds`` rounds of ``--ops`` requests per contender, in slices of ``--chunk``, after
``--warmup`` requests).

How to read the output: ``µs/req`` is the median wall time per request over the rounds
(``range`` the fastest and the slowest round), ``req/s`` its inverse, ``cpu µs`` the median CPU
time of this process per request; ``+µs`` and ``+cpu`` are the differences with the baseline's
medians (what the extension, or the feature, adds to a request); ``RTT/req`` the requests
written to Redis per request, counted on the connections of each application's pool, the same
way for both libraries (a command or a script call is one round trip); for redkit it must also
equal ``kit.stats``' ``round_trips`` counter. ``ratio`` is the median over the baseline's. The
rate-limit table sets each redkit algorithm against the Flask-Limiter strategy that does the
same: ``ratio`` of the medians per request and ``+µs ratio`` of what each adds to the baseline
(below 1, redkit is faster). The header gives the share of a CPU that other processes used during
the run: figures from a busy machine are not comparable.

``--json`` prints the same figures as JSON; ``--check`` exits with status 1 when a redkit
contender does not make the round trips it should (0 with no feature, 1 per session read, 1 per
rate-limit check, 2 per idempotent request: begin and complete).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import io
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import harness
import redis
from harness import Contender, Result, Scenario, fmt
from ratelimit import Wire

try:
    from werkzeug.test import EnvironBuilder

    import flask
    from redkit_flask import Redkit as FlaskRedkit
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit(f"this benchmark needs Flask ({exc}): pip install -e '.[flask]'")

__all__ = ["ALGORITHMS", "Peer", "load_peer", "main", "render", "run", "targets"]

DESCRIPTION = "Flask overhead benchmark: redkit's extension hooks, against Flask-Limiter."
LIMIT = "100000/minute"
BODY = b'{"order": 12345}'
SECRET = "flask-overhead-bench"

INSTALL = """\
Flask-Limiter is not installed in this Python: only redkit's rows are measured.
To compare, install it into a separate virtual environment and run the benchmark from there:
    python -m venv ../benchenv
    ../benchenv/bin/pip install -e ".[flask]" flask-limiter limits redis hiredis orjson
    ../benchenv/bin/python bench/flask_overhead.py"""

ALGORITHMS = (
    ("fixed_window", "fixed-window"),
    ("sliding_window_log", "moving-window"),
    ("sliding_window_counter", "sliding-window-counter"),
)
"""redkit's algorithm and the Flask-Limiter strategy that does the same."""

BASELINE = "flask"


# -- the peer ---------------------------------------------------------------------------------


@dataclass
class Peer:
    """Flask-Limiter, imported at run time: it is not one of redkit's dependencies."""

    version: str
    limits_version: str
    limiter: Any
    """The ``Limiter`` class."""
    key_func: Callable[[], str]
    """``get_remote_address``."""
    strategies: list[str]
    """The strategies of ``ALGORITHMS`` the installed ``limits`` has."""


def load_peer() -> tuple[Peer | None, list[str]]:
    """Flask-Limiter when it is installed, and notes on what it lacks."""
    try:
        module: Any = importlib.import_module("flask_limiter")
        util: Any = importlib.import_module("flask_limiter.util")
        strategies: Any = importlib.import_module("limits.strategies")
    except ImportError:
        return None, [INSTALL]
    known = getattr(strategies, "STRATEGIES", {})
    wanted = [peer for _, peer in ALGORITHMS]
    notes = [
        f"limits has no {s!r} strategy: that pair is left out" for s in wanted if s not in known
    ]
    peer = Peer(
        importlib.metadata.version("flask-limiter"),
        importlib.metadata.version("limits"),
        module.Limiter,
        util.get_remote_address,
        [s for s in wanted if s in known],
    )
    return peer, notes


# -- serving ----------------------------------------------------------------------------------


class Served:
    """Serves requests to one application through ``app.wsgi_app``, and counts the responses
    whose status is not the expected one."""

    def __init__(
        self,
        app: flask.Flask,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        key_header: str | None = None,
    ) -> None:
        builder = EnvironBuilder(
            path="/",
            method=method,
            headers=list((headers or {}).items()),
            data=body or None,
            content_type="application/json" if body else None,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        try:
            self.environ: dict[str, Any] = builder.get_environ()
        finally:
            builder.close()
        self.app = app
        self.body = body
        self.key_header = key_header
        """The environ name of ``Idempotency-Key``, set to each request's key; None: no key."""
        self.unexpected = 0
        self.last_status = ""

    def _start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        if not status.startswith("200"):
            self.unexpected += 1
            self.last_status = status
        return None

    def op(self, keys: Sequence[str]) -> None:
        """One request per key (the key is the ``Idempotency-Key`` when there is one)."""
        wsgi, base, body, name = self.app.wsgi_app, self.environ, self.body, self.key_header
        start = self._start_response
        for key in keys:
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO(body)
            if name is not None:
                environ[name] = key
            response = wsgi(environ, start)
            try:
                for _ in response:
                    pass
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()

    def check(self) -> None:
        """Serve one request and fail unless it is answered 200 (a broken set-up would make the
        benchmark measure error pages)."""
        self.op(["check-" + secrets.token_hex(8)])
        if self.unexpected:
            raise RuntimeError(f"the set-up request was answered {self.last_status!r}, not 200")


# -- contenders -------------------------------------------------------------------------------


@dataclass
class Setup:
    """One contender's application, how it is served, its counters and its clean-up."""

    name: str
    group: str
    """``flask``, ``redkit`` or ``Flask-Limiter``."""
    served: Served
    counters: Callable[[], dict[str, int]] | None
    expected_rtt: int | None = None
    """The round trips a request must make (redkit rows)."""
    algorithm: str | None = None
    """redkit's name of the rate-limit algorithm (rate-limit rows)."""
    checks: dict[str, int] = field(default_factory=dict)
    """Counters that must grow by one per request (``session_hits``, ...)."""
    close: Callable[[], None] = lambda: None

    def contender(self, token: str) -> Contender:
        served = self.served
        if served.key_header is not None:
            tag = f"{token}-{self.name.replace(' ', '-')}"

            def keys(label: str, n: int) -> list[str]:
                return [f"{tag}-{label}-{i}" for i in range(n)]

        else:

            def keys(label: str, n: int) -> list[str]:
                return [""] * n

        if self.counters is None:
            return Contender(self.name, served.op, keys, round_trips=0.0)
        return Contender(self.name, served.op, keys, self.counters)


def _view(read_session: bool) -> Callable[[], str]:
    def view() -> str:
        if read_session:
            flask.session.get("n")
        return "ok"

    return view


def _flask_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    return app


def plain_setups() -> list[Setup]:
    """Flask without an extension: the baseline, and with its own cookie session."""
    app = _flask_app()
    app.add_url_rule("/", "index", _view(False))
    baseline = Setup(BASELINE, "flask", Served(app), None)
    app = _flask_app()
    app.add_url_rule("/", "index", _view(True))
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookie = f"{app.config['SESSION_COOKIE_NAME']}={serializer.dumps({'n': 1})}"
    cookies = Setup(
        "flask + cookie session", "flask", Served(app, headers={"Cookie": cookie}), None
    )
    return [baseline, cookies]


@dataclass
class Plan:
    """What one run measures, and where."""

    url: str
    rounds: int
    ops: int
    chunk: int
    warmup: int
    token: str
    _n: int = 0

    def measure(self) -> tuple[int, int, int, int]:
        return self.rounds, self.ops, self.chunk, self.warmup

    def prefix(self, kind: str = "") -> str:
        """A fresh prefix under ``rkbench-<token>`` for one application's keys."""
        self._n += 1
        return f"rkbench-{self.token}-{kind}{self._n}"


def redkit_setup(
    plan: Plan,
    name: str,
    *,
    session: bool = False,
    limit: bool = False,
    idempotent: bool = False,
    algorithm: str | None = None,
) -> Setup:
    """A Flask application with redkit's extension and the features asked for."""
    app = _flask_app()
    app.config.update(REDKIT_URL=plan.url, REDKIT_PREFIX=plan.prefix(), REDKIT_SESSIONS=session)
    if algorithm is not None:
        app.config["REDKIT_RATELIMIT_ALGORITHM"] = algorithm
    ext = FlaskRedkit(app)
    kit = app.extensions["redkit"].kit
    wire = Wire(kit.client.connection_pool)  # before the pool opens its first connection
    view = _view(session)
    if limit:
        view = ext.rate_limit(LIMIT)(view)
    if idempotent:
        view = ext.idempotent()(view)
    app.add_url_rule("/", "index", view, methods=["POST"] if idempotent else ["GET"])
    headers: dict[str, str] = {}
    checks: dict[str, int] = {}
    if session:
        sid = kit.sessions.create({"n": 1})
        signer = app.session_interface.cookies(app).signer  # type: ignore[attr-defined]
        headers["Cookie"] = f"{app.config['SESSION_COOKIE_NAME']}={signer.sign(sid)}"
        checks["session_hits"] = 1
    if idempotent:
        checks["idempotency_stored"] = 1
    served = Served(
        app,
        "POST" if idempotent else "GET",
        headers,
        BODY if idempotent else b"",
        "HTTP_IDEMPOTENCY_KEY" if idempotent else None,
    )
    stats = kit.stats

    def counters() -> dict[str, int]:
        out = {
            "round_trips": wire.writes,
            "kit_round_trips": stats.get("round_trips"),
            "unexpected": served.unexpected,
        }
        for counter in checks:
            out[counter] = stats.get(counter)
        return out

    def close() -> None:
        kit.clear()
        kit.close()

    return Setup(
        name,
        "redkit",
        served,
        counters,
        int(session) + int(limit) + 2 * int(idempotent),
        (algorithm or kit.settings.ratelimit_algorithm) if limit and not session else None,
        checks,
        close,
    )


def limiter_setup(plan: Plan, peer: Peer, strategy: str) -> Setup:
    """A Flask application with Flask-Limiter and one limited view."""
    app = _flask_app()
    pool = redis.ConnectionPool.from_url(plan.url)
    wire = Wire(pool)
    prefix = plan.prefix("fl-")
    limiter = peer.limiter(
        peer.key_func,
        app=app,
        storage_uri=plan.url,
        strategy=strategy,
        storage_options={"connection_pool": pool, "key_prefix": prefix},
    )
    app.add_url_rule("/", "index", limiter.limit(LIMIT)(_view(False)))
    served = Served(app)

    def counters() -> dict[str, int]:
        return {"round_trips": wire.writes, "unexpected": served.unexpected}

    def close() -> None:
        try:
            harness.unlink(redis.Redis(connection_pool=pool), f"{prefix}:*")
        finally:
            pool.disconnect()

    algorithm = next(a for a, s in ALGORITHMS if s == strategy)
    return Setup(
        f"Flask-Limiter {strategy}", "Flask-Limiter", served, counters, None, algorithm, close=close
    )


def setups(plan: Plan, peer: Peer | None) -> list[Setup]:
    """Every contender, the baseline first."""
    out = plain_setups()
    out.append(redkit_setup(plan, "redkit, no feature"))
    out.append(redkit_setup(plan, "redkit session", session=True))
    for algorithm, _ in ALGORITHMS:
        out.append(
            redkit_setup(plan, f"redkit rate_limit {algorithm}", limit=True, algorithm=algorithm)
        )
    out.append(redkit_setup(plan, "redkit idempotent", idempotent=True))
    out.append(redkit_setup(plan, "redkit all three", session=True, limit=True, idempotent=True))
    if peer is not None:
        out += [limiter_setup(plan, peer, s) for s in peer.strategies]
    return out


# -- running ----------------------------------------------------------------------------------


def _verify(results: Sequence[Result], by_name: Mapping[str, Setup]) -> None:
    """Fail when a contender measured the wrong path: a response other than 200, a session not
    found, an idempotent response not stored."""
    for r in results:
        if r.count("unexpected"):
            raise RuntimeError(
                f"{r.contender}: {r.count('unexpected')} of {r.calls} responses were not 200 "
                f"(last {by_name[r.contender].served.last_status!r})"
            )
        for counter, per in by_name[r.contender].checks.items():
            if r.count(counter) != per * r.calls:
                raise RuntimeError(
                    f"{r.contender}: {counter} grew by {r.count(counter)} over {r.calls} requests"
                )


def _row(result: Result, setup: Setup, base: Result) -> dict[str, Any]:
    row = result.as_dict(
        {"group": setup.group, "algorithm": setup.algorithm},
        {
            "kit_round_trips_per_op": result.per_call("kit_round_trips")
            if setup.group == "redkit"
            else None,
            "expected_round_trips": setup.expected_rtt,
        },
    )
    row["requests_per_second"] = round(1e6 / result.median_us)
    row["extra_us"] = round(result.median_us - base.median_us, 2)
    row["extra_cpu_us"] = round(result.median_cpu_us - base.median_cpu_us, 2)
    return row


def pairs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each redkit rate-limit row against the Flask-Limiter row of the same algorithm."""
    out = []
    for algorithm, strategy in ALGORITHMS:
        ours = next(
            (r for r in rows if r["group"] == "redkit" and r["algorithm"] == algorithm), None
        )
        theirs = next(
            (r for r in rows if r["group"] == "Flask-Limiter" and r["algorithm"] == algorithm),
            None,
        )
        if ours is None or theirs is None:
            continue
        out.append(
            {
                "algorithm": algorithm,
                "strategy": strategy,
                **harness.versus(ours, theirs),
                "redkit_extra_cpu_us": ours["extra_cpu_us"],
                "peer_extra_cpu_us": theirs["extra_cpu_us"],
            }
        )
    return out


def targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per redkit row: the round trips it should make, on the wire and by ``kit.stats``."""
    return [
        harness.round_trip_target(row["contender"], row, row["expected_round_trips"])
        for row in rows
        if row["group"] == "redkit"
    ]


def run(
    url: str, rounds: int = 7, ops: int = 4000, chunk: int = 500, warmup: int = 1000
) -> dict[str, Any]:
    """Measure every contender against ``url``; returns the report (the ``--json`` document)."""
    peer, notes = load_peer()
    if peer is None:
        print(INSTALL, file=sys.stderr)
    token = secrets.token_hex(6)
    plan = Plan(url, rounds, ops, chunk, warmup, token)
    r = redis.Redis.from_url(url)
    r.ping()  # fail here, before anything is written, when Redis does not answer
    built: list[Setup] = []
    try:
        built = setups(plan, peer)
        for s in built:
            s.served.check()
        by_name = {s.name: s for s in built}
        watch = harness.Watch(
            r,
            url,
            flask=importlib.metadata.version("flask"),
            werkzeug=importlib.metadata.version("werkzeug"),
            flask_limiter=None if peer is None else peer.version,
            limits=None if peer is None else peer.limits_version,
        )
        scenario = Scenario("request", "sync", [s.contender(token) for s in built])
        results = harness.run_sync(scenario, *plan.measure())
        seconds = watch.stop()
        _verify(results, by_name)
    finally:
        for s in built:
            s.close()
        left = sum(1 for _ in r.scan_iter(match=f"rkbench-{token}*", count=1000))
        r.close()
    if left:
        raise RuntimeError(f"{left} keys under rkbench-{token} were not deleted")
    base = results[0]
    rows = [_row(res, by_name[res.contender], base) for res in results]
    return {
        "config": {**harness.config(url, rounds, ops, chunk, warmup), "limit": LIMIT},
        "machine": watch.info,
        "peer": {"library": "Flask-Limiter", "version": None if peer is None else peer.version},
        "notes": notes,
        "seconds": round(seconds, 1),
        "results": rows,
        "pairs": pairs(rows),
        "targets": targets(rows),
    }


# -- reporting --------------------------------------------------------------------------------


def _line(head: tuple[str, ...], r: Mapping[str, Any]) -> str:
    (group,) = head
    span = f"{r['min_us']:.1f}-{r['max_us']:.1f}"
    return (
        f"{group:<13} {r['contender']:<38} {r['median_us']:>7.1f} {span:>13} "
        f"{r['requests_per_second']:>6} {r['median_cpu_us']:>7.1f} {r['extra_us']:>7.1f} "
        f"{r['extra_cpu_us']:>6.1f} {fmt(r['round_trips_per_op'], '.2f'):>7} "
        f"{r['ratio']:>5.2f}"
    )


def _pair_line(p: Mapping[str, Any]) -> str:
    return (
        f"{p['algorithm']:<23} {p['strategy']:<23} {p['redkit_us']:>7.1f} {p['peer_us']:>7.1f} "
        f"{p['ratio']:>5.2f} {p['redkit_extra_us']:>7.1f} {p['peer_extra_us']:>7.1f} "
        f"{fmt(p['extra_ratio'], '.2f'):>6} {p['redkit_extra_cpu_us']:>7.1f} "
        f"{p['peer_extra_cpu_us']:>7.1f}"
    )


def render(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    m, cfg = report["machine"], report["config"]
    lines = [
        f"redkit Flask overhead benchmark: {cfg['rounds']} rounds x {cfg['ops']} requests per "
        f"contender (slices of {cfg['chunk']}), app.wsgi_app in-process, {report['seconds']} s",
        f"{harness.machine_line(m)}, Flask {m['flask']}, Werkzeug {m['werkzeug']}, "
        f"Flask-Limiter {m.get('flask_limiter') or 'not installed'}"
        + (f" (limits {m['limits']})" if m.get("limits") else ""),
        harness.load_line(m),
        *(f"note: {n}" for n in report["notes"] if n != INSTALL),
        "",
        f"{'':<13} {'contender':<38} {'µs/req':>7} {'range':>13} {'req/s':>6} {'cpu µs':>7} "
        f"{'+µs':>7} {'+cpu':>6} {'RTT/req':>7} {'ratio':>5}",
    ]
    lines += harness.table(report["results"], lambda r: (r["group"],), _line)
    if report["pairs"]:
        lines += [
            "",
            f"rate limit, same algorithm, limit {cfg['limit']!r} (ratios: redkit over "
            "Flask-Limiter, < 1: redkit faster)",
            f"{'redkit algorithm':<23} {'Flask-Limiter strategy':<23} {'redkit':>7} {'FL':>7} "
            f"{'ratio':>5} {'rk +µs':>7} {'FL +µs':>7} {'+ratio':>6} {'rk +cpu':>7} {'FL +cpu':>7}",
            *(_pair_line(p) for p in report["pairs"]),
        ]
    lines += [
        "",
        "+µs, +cpu: over the baseline (first row); RTT/req: requests written to Redis per request",
        "targets: the round trips each redkit contender must make",
        *harness.target_lines(report["targets"], 40),
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    return run(args.url, args.rounds, args.ops, args.chunk, args.warmup)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python bench/flask_overhead.py [--url URL] [--json] [--check] ...``."""
    return harness.cli(DESCRIPTION, argv, _run, render)


if __name__ == "__main__":
    sys.exit(main())
