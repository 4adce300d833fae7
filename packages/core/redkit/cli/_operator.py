"""The operator commands ``info``, ``retry-failed``, ``drain``, ``schedules`` and ``metrics``
(their reports and the metrics server are shared with the framework adapters' commands), and
``demo``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ._options import UsageError, _whole, check_limit, refuse_memory


def queue_named(kit: Any, name: str) -> Any:
    """``kit.queue(name)``; a name that is no queue name is a usage error."""
    try:
        return kit.queue(name)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def info(kit: Any, names: Sequence[str] = (), *, as_json: bool = False) -> str:
    """The report of ``info``: each queue's counts, whether it is paused, and its workers
    (``names``: these queues; none: every queue of the registry), as text or JSON."""
    from .._ops import Batch, command

    run = kit._executor.run  # redkit's errors (RedkitConnectionError, ...), not redis-py's
    names = list(names)
    if not names:
        raw = run(Batch.one(command("ZRANGE", kit.keyspace.key("queues"), 0, -1)))
        names = [n.decode("utf-8", "replace") for n in raw]
    report = []
    now = time.time() * 1000
    for name in names:
        q = queue_named(kit, name)
        counts = q.counts()
        workers = []
        for wid, seen in q.workers():
            raw = run(Batch.one(command("GET", f"{q._core.base}:w:{wid}")))
            details = json.loads(raw) if raw else {}
            workers.append(
                {
                    "id": wid,
                    "seen_seconds_ago": round((now - seen) / 1000, 1),
                    **{
                        k: details[k]
                        for k in ("host", "pid", "concurrency", "running", "processed", "failed")
                        if k in details
                    },
                }
            )
        report.append({"queue": name, "paused": q.is_paused(), **counts, "workers": workers})
    if as_json:
        return json.dumps(report, indent=2)
    lines = [] if report else ["no queues"]
    for item in report:
        paused = " (paused)" if item["paused"] else ""
        lines.append(f"queue {item['queue']}{paused}")
        states = ("waiting", "prioritized", "delayed", "active", "completed", "failed", "cancelled")
        lines.append("  " + "  ".join(f"{s}={item[s]}" for s in states))
        lines.extend(
            f"  worker {w['id']}: running {w.get('running', '?')}, processed "
            f"{w.get('processed', '?')}, failed {w.get('failed', '?')}, seen "
            f"{w['seen_seconds_ago']}s ago"
            for w in item["workers"]
        )
    return "\n".join(lines)


def retry_failed(kit: Any, name: str, limit: int | None = None) -> str:
    """Move queue ``name``'s failed jobs (all, or the ``limit`` oldest) back; what to print."""
    moved = queue_named(kit, name).retry_failed(limit)
    return f"{moved} failed job(s) of {name!r} moved back to the queue"


def drain(kit: Any, name: str, delayed: bool = False) -> str:
    """Delete queue ``name``'s waiting (and with ``delayed``, delayed) jobs; what to print."""
    removed = queue_named(kit, name).drain(delayed=delayed)
    return f"{removed} waiting job(s) of {name!r} deleted"


def schedules(kit: Any, name: str, *, remove: str | None = None, as_json: bool = False) -> str:
    """The report of ``schedules``: queue ``name``'s job schedulers with their next runs (or,
    with ``remove``, the removal of that one), as text or JSON."""
    q = queue_named(kit, name)
    if remove is not None:
        try:
            removed = q.unschedule(remove)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if not removed:
            raise UsageError(f"queue {name!r} has no job scheduler {remove!r}")
        return f"job scheduler {remove!r} of {name!r} removed (a run already started goes on)"
    found = []
    for start in range(0, 10**9, 500):  # every scheduler, 500 per read
        page = q.schedules(start, start + 499)
        found += page
        if len(page) < 500:
            break

    def when(moment: Any) -> str | None:
        return None if moment is None else moment.isoformat()

    report = [
        {
            "id": s.id,
            "task": s.name,
            "cron": s.cron,
            "every_seconds": None if s.every is None else s.every.total_seconds(),
            "tz": s.tz,
            "missed": s.missed,
            "next_run": when(s.next_run),
            "last_run": when(s.last_run),
            "runs": s.runs,
        }
        for s in found
    ]
    if as_json:
        return json.dumps(report, indent=2)
    if not report:
        return f"queue {name!r} has no job schedulers"
    lines = []
    for item, s in zip(report, found):
        rule = f"cron {s.cron!r} ({s.tz})" if s.cron else f"every {s.every}"
        nxt = "none (over)" if s.next_run is None else s.next_run.astimezone(ZoneInfo(s.tz))
        lines.append(f"{item['id']}: {item['task']} {rule}, next {nxt}, {s.runs} run(s)")
    return "\n".join(lines)


def _kit(args: argparse.Namespace) -> Any:
    from .._client import Redkit
    from ..errors import ConfigurationError

    options: dict[str, Any] = {}
    if args.prefix:
        options["prefix"] = args.prefix
    try:
        kit = Redkit.from_url(args.url, **options) if args.url else Redkit.from_env(**options)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    try:
        refuse_memory(kit.settings, "the URL (--url, else REDKIT_URL, else REDIS_URL)")
    except UsageError:
        kit.close()
        raise
    return kit


def cmd_info(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        print(info(kit, args.names, as_json=args.json))
    return 0


def cmd_retry_failed(args: argparse.Namespace) -> int:
    limit = check_limit(args.limit)
    with _kit(args) as kit:
        print(retry_failed(kit, args.name, limit))
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        print(drain(kit, args.name, args.delayed))
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    with _kit(args) as kit:
        print(schedules(kit, args.name, remove=args.remove, as_json=args.json))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    port = check_port(args.port)
    with _kit(args) as kit:
        serve_metrics(kit, args.names, port=port, host=args.host)
    return 0


def check_port(value: Any) -> int:
    """``--port``: a port number (1 to 65535), else a usage error."""
    port = _whole("--port", value, 1)
    if port > 65535:
        raise UsageError(f"--port must be a port number (1 to 65535), got {value!r}")
    return port


def serve_metrics(
    kit: Any,
    names: Sequence[str] = (),
    *,
    port: int = 9108,
    host: str = "127.0.0.1",
    stop: Any = None,
    announce: Any = None,
) -> None:
    """Serve the Prometheus exposition of ``names`` (none: every queue of the registry) at
    ``http://host:port/metrics`` until SIGTERM or SIGINT, or until the ``threading.Event``
    ``stop`` is set; ``announce(line)`` (default: print) says where, once listening.

    The ``metrics`` extra missing, a bad port or an address that cannot be bound is a usage
    error, raised before anything listens."""

    from ..metrics import registry

    port = check_port(port)
    prometheus = _prometheus()
    reg = registry(kit, list(names) or None)
    try:
        server, thread = prometheus.start_http_server(port, addr=host, registry=reg)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        _serve_until_stopped(f"redkit: metrics on http://{host}:{port}/metrics", stop, announce)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _serve_until_stopped(line: str, stop: Any, announce: Any) -> None:
    """Say ``line`` (``announce``, default print), then wait for SIGTERM or SIGINT (handled
    while waiting, in the main thread only) or for the ``threading.Event`` ``stop``."""
    import signal
    import threading

    stopped = stop if stop is not None else threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stopped.set())
    try:
        (announce or (lambda text: print(text, flush=True)))(line)
        stopped.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_dashboard(args: argparse.Namespace) -> int:
    port = check_port(args.port)
    with _kit(args) as kit:
        serve_dashboard(
            kit,
            args.names,
            port=port,
            host=args.host,
            token=args.token,
            no_auth=args.no_auth,
            read_only=args.read_only,
        )
    return 0


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard_for(
    names: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    no_auth: bool = False,
    read_only: bool = False,
) -> Any:
    """The :class:`~redkit.dashboard.Dashboard` the commands serve: behind ``token`` (default:
    the ``REDKIT_DASHBOARD_TOKEN`` variable), or, with ``no_auth``, open to loopback peers
    only, which only a loopback ``host`` allows. A missing rule is a usage error."""
    import os

    from .._optional import require
    from ..errors import MissingDependencyError

    try:
        require("jinja2", "dashboard")
    except MissingDependencyError as exc:
        raise UsageError(str(exc)) from None
    from ..dashboard import Dashboard

    token = token or os.environ.get("REDKIT_DASHBOARD_TOKEN") or None
    if no_auth and not _loopback(host):
        raise UsageError(
            f"--no-auth serves only on a loopback address, not on {host!r}: the dashboard's "
            "actions are an admin's (use --token, or REDKIT_DASHBOARD_TOKEN)"
        )
    if token is None and not no_auth:
        raise UsageError(
            "the dashboard needs --token (or REDKIT_DASHBOARD_TOKEN), or --no-auth on a "
            "loopback address"
        )
    if token is not None and len(token) < 16:
        raise UsageError("the dashboard's token must be at least 16 characters")
    return Dashboard(
        token=token,
        queues=list(names) or None,
        read_only=read_only,
        loopback_only=no_auth and token is None,
    )


def serve_dashboard(
    kit: Any,
    names: Sequence[str] = (),
    *,
    port: int = 9181,
    host: str = "127.0.0.1",
    token: str | None = None,
    no_auth: bool = False,
    read_only: bool = False,
    stop: Any = None,
    announce: Any = None,
) -> None:
    """Serve the dashboard (see :func:`dashboard_for`) at ``http://host:port/`` on a threaded
    WSGI server until SIGTERM or SIGINT, or until the ``threading.Event`` ``stop`` is set."""
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from ..dashboard import make_wsgi_app

    port = check_port(port)
    dashboard = dashboard_for(names, host=host, token=token, no_auth=no_auth, read_only=read_only)
    app = make_wsgi_app(kit, dashboard)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    try:
        server = make_server(host, port, app, server_class=Server, handler_class=Quiet)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, name="redkit-dashboard", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    try:
        _serve_until_stopped(f"redkit: dashboard on http://{shown}:{port}/", stop, announce)
    finally:
        app.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _prometheus() -> Any:
    from .._optional import require
    from ..errors import MissingDependencyError

    try:
        return require("prometheus_client", "metrics")
    except MissingDependencyError as exc:
        raise UsageError(str(exc)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import main as demo

    return demo([f"--{opt}={value}" for opt in ("part", "url") if (value := getattr(args, opt))])
