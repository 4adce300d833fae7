"""The command line itself: the parser and :func:`main`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._operator import (
    cmd_dashboard,
    cmd_demo,
    cmd_drain,
    cmd_info,
    cmd_metrics,
    cmd_retry_failed,
    cmd_schedules,
)
from ._options import UsageError, _one_line, add_worker_options, configure_logging, version
from ._serve import cmd_worker


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line: ``redkit worker: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="redkit", description="redkit's job queue tools")
    parser.add_argument("--version", action="version", version=f"redkit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    w = sub.add_parser("worker", help="run a worker for one or more queues")
    w.add_argument(
        "queues",
        nargs="+",
        metavar="module:queue",
        help="where the queue (or Worker) is, like myapp.jobs:queue",
    )
    add_worker_options(w)
    w.set_defaults(func=cmd_worker, parser=w)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="Redis URL (default: REDKIT_URL, then REDIS_URL)")
        p.add_argument("--prefix", help="key prefix (default: REDKIT_PREFIX or 'redkit')")

    i = sub.add_parser("info", help="queues, their job counts and workers")
    i.add_argument("names", nargs="*", metavar="queue", help="queues (default: every known one)")
    i.add_argument("--json", action="store_true", help="print JSON")
    connection(i)
    i.set_defaults(func=cmd_info, parser=i)

    r = sub.add_parser("retry-failed", help="move a queue's failed jobs back to the queue")
    r.add_argument("name", metavar="queue")
    r.add_argument("--limit", metavar="N", help="at most this many (oldest first)")
    connection(r)
    r.set_defaults(func=cmd_retry_failed, parser=r)

    d = sub.add_parser("drain", help="delete a queue's waiting jobs")
    d.add_argument("name", metavar="queue")
    d.add_argument("--delayed", action="store_true", help="delete delayed jobs too")
    connection(d)
    d.set_defaults(func=cmd_drain, parser=d)

    s = sub.add_parser("schedules", help="a queue's job schedulers and their next runs")
    s.add_argument("name", metavar="queue")
    s.add_argument("--remove", metavar="ID", help="remove this job scheduler")
    s.add_argument("--json", action="store_true", help="print JSON")
    connection(s)
    s.set_defaults(func=cmd_schedules, parser=s)

    p = sub.add_parser("metrics", help="serve the queues' metrics to Prometheus")
    p.add_argument("names", nargs="*", metavar="queue", help="queues (default: every known one)")
    p.add_argument("--port", default="9108", help="port to listen on (default: 9108)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    connection(p)
    p.set_defaults(func=cmd_metrics, parser=p)

    b = sub.add_parser("dashboard", help="serve the queues' web dashboard")
    b.add_argument("names", nargs="*", metavar="queue", help="queues (default: every known one)")
    b.add_argument("--port", default="9181", help="port to listen on (default: 9181)")
    b.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    b.add_argument("--token", help="the token that signs in (default: REDKIT_DASHBOARD_TOKEN)")
    b.add_argument(
        "--no-auth",
        action="store_true",
        help="no sign-in, for loopback peers only (loopback --host)",
    )
    b.add_argument("--read-only", action="store_true", help="show, never act")
    connection(b)
    b.set_defaults(func=cmd_dashboard, parser=b)

    m = sub.add_parser("demo", help="a tour of redkit on the embedded memory:// backend")
    m.add_argument("--part", help="run one part only: cache, web, queue or shop")
    m.add_argument("--url", help="run on this Redis URL instead of memory://")
    m.set_defaults(func=cmd_demo, parser=m)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("info", "retry-failed", "drain", "schedules"):
        configure_logging("ERROR")  # what goes wrong is the one line printed below
    elif args.command != "worker":
        configure_logging("WARNING")
    from ..errors import RedkitError

    try:
        return int(args.func(args))
    except UsageError as exc:
        args.parser.error(str(exc))
        return 2  # not reached: error() exits
    except RedkitError as exc:
        print(f"redkit: {_one_line(str(exc))}", file=sys.stderr)
        return 1
