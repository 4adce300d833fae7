"""The checks of a worker command's options (shared with the framework adapters' commands), and
what every command shares: :class:`UsageError`, logging, the version."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

from .. import _durations as durations

DEFAULT_CONCURRENCY = 10
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXAMPLE_URL = "redis://127.0.0.1:6379/0"


class UsageError(Exception):
    """A command-line mistake, printed as one line without a traceback (exit status 2)."""


def version() -> str:
    """The installed redkit's version (package metadata, else ``redkit.__version__``)."""
    from importlib import metadata

    try:
        return metadata.version("redkit")
    except metadata.PackageNotFoundError:
        package = sys.modules.get("redkit")
        return str(getattr(package, "__version__", "unknown"))


# -- the options of a worker ----------------------------------------------------------------------
def _whole(option: str, value: object, least: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = least - 1
    if isinstance(value, bool) or number < least:
        raise UsageError(f"{option} must be a whole number >= {least}, got {str(value)!r}")
    return number


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _limiter(text: str | None) -> tuple[int, float] | None:
    if text is None:
        return None
    count, sep, per = str(text).partition("/")
    seconds = _number(per)
    if not sep or not count.strip().isdigit() or int(count) < 1 or seconds is None:
        seconds = 0.0
    if not 0 < seconds < 1e9:
        raise UsageError(
            "--limiter is MAX/SECONDS, a whole number of jobs >= 1 per a number of seconds > 0 "
            f"(like 100/1 or 600/60), got {text!r}"
        )
    return int(count), seconds


def _shutdown_timeout(value: object, option: str = "--shutdown-timeout") -> float | None:
    if value is None:
        return None
    seconds = _number(str(value))
    try:
        return durations.seconds(option, seconds, zero=True)
    except (TypeError, ValueError):
        raise UsageError(f"{option} is a number of seconds >= 0, got {str(value)!r}") from None


def _renamed_option(new: object, old: object) -> object:
    """``--shutdown-timeout``, or its deprecated name ``--shutdown-grace`` (with a line on
    stderr saying so)."""
    if old is None:
        return new
    if new is not None:
        raise UsageError("give --shutdown-timeout only (--shutdown-grace is its deprecated name)")
    print(
        "redkit: --shutdown-grace is deprecated, use --shutdown-timeout (same meaning)",
        file=sys.stderr,
    )
    return old


def _log_level(name: object) -> str:
    level = str(name).upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"--log-level is one of {', '.join(LOG_LEVELS)}, got {str(name)!r}")
    return level


def check_limit(value: object) -> int | None:
    """``--limit N`` of ``retry-failed`` (``None``: no limit)."""
    return None if value is None else _whole("--limit", value, 1)


@dataclass(frozen=True)
class WorkerOptions:
    """The options of a worker command, checked (:meth:`parse` takes what the command line
    gave, strings or numbers)."""

    concurrency: int = DEFAULT_CONCURRENCY
    processes: int = 1
    limiter: tuple[int, float] | None = None
    shutdown_timeout: float | None = None
    loop: str = "auto"
    log_level: str = "INFO"
    burst: bool = False

    @classmethod
    def parse(
        cls,
        *,
        concurrency: object = DEFAULT_CONCURRENCY,
        processes: object = 1,
        limiter: str | None = None,
        shutdown_timeout: object = None,
        loop: str = "auto",
        log_level: str = "INFO",
        shutdown_grace: object = None,
        burst: bool = False,
    ) -> WorkerOptions:
        """Raises :class:`UsageError` with the message both commands print. ``shutdown_grace``
        is the deprecated name of ``shutdown_timeout``: it works, and says so on stderr."""
        if loop not in LOOPS:
            raise UsageError(f"--loop is one of {', '.join(LOOPS)}, got {loop!r}")
        _uvloop(loop)  # a missing uvloop is a usage error before anything starts
        return cls(
            concurrency=_whole("--concurrency", concurrency, 1),
            processes=_whole("--processes", processes, 1),
            limiter=_limiter(limiter),
            shutdown_timeout=_shutdown_timeout(
                _renamed_option(shutdown_timeout, shutdown_grace),
                "--shutdown-timeout" if shutdown_grace is None else "--shutdown-grace",
            ),
            loop=loop,
            log_level=_log_level(log_level),
            burst=bool(burst),
        )

    @classmethod
    def from_args(cls, args: Any) -> WorkerOptions:
        """:meth:`parse` of what :func:`add_worker_options` added to a parsed command line."""
        return cls.parse(**{name: getattr(args, name) for name in WORKER_ARGS})

    def worker_options(self) -> dict[str, Any]:
        """Keyword arguments of ``queue.worker()``."""
        options: dict[str, Any] = {"concurrency": self.concurrency}
        if self.limiter is not None:
            options["limiter"] = self.limiter
        if self.shutdown_timeout is not None:
            options["shutdown_timeout"] = self.shutdown_timeout
        if self.burst:
            options["burst"] = True
        return options

    def child_argv(self) -> list[str]:
        """The same options for one worker process of a supervisor."""
        argv = ["--concurrency", str(self.concurrency), "--processes", "1"]
        if self.limiter is not None:
            argv += ["--limiter", f"{self.limiter[0]}/{self.limiter[1]!r}"]
        if self.shutdown_timeout is not None:
            argv += ["--shutdown-timeout", repr(self.shutdown_timeout)]
        argv += ["--loop", self.loop, "--log-level", self.log_level]
        return [*argv, "--burst"] if self.burst else argv


WORKER_ARGS = (
    "concurrency",
    "processes",
    "limiter",
    "shutdown_timeout",
    "shutdown_grace",
    "loop",
    "log_level",
    "burst",
)
"""The destinations of the options :func:`add_worker_options` adds."""


def add_worker_options(parser: Any) -> None:
    """Add the options of ``redkit worker`` (``-c``, ``-p``, ``--limiter``,
    ``--shutdown-timeout``, ``--loop``, ``--log-level``, ``--burst``) to an argparse parser, such
    as a framework's command; :meth:`WorkerOptions.from_args` checks what was given."""
    parser.add_argument(
        "-c",
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"jobs in flight per queue (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "-p",
        "--processes",
        default=1,
        metavar="N",
        help="worker processes, under a supervisor when more than 1 (default 1)",
    )
    parser.add_argument(
        "--limiter", metavar="MAX/SECONDS", help="queue-wide rate limit, like 100/1 or 600/60"
    )
    parser.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        help="seconds running jobs get to finish on SIGTERM (default 30)",
    )
    parser.add_argument("--shutdown-grace", help=argparse.SUPPRESS)  # deprecated name
    parser.add_argument(
        "--loop",
        default="auto",
        metavar="{auto,asyncio,uvloop}",
        help="event loop: uvloop when it is installed (auto, the default), or the one named",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default INFO)",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="run the jobs that are ready, then exit (for cron-style runs and tests)",
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


def refuse_memory(settings: Any, subject: str) -> None:
    """Refuse a client on ``memory://``: nothing outside this process sees its store."""
    if settings.scheme == "memory":
        raise UsageError(
            f"{subject} is on memory://, which lives inside one process: set REDKIT_URL (for "
            f"example REDKIT_URL={EXAMPLE_URL}) so the worker and the app share a Redis"
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _uvloop(choice: str) -> Any:
    """The uvloop module for ``--loop`` (``None``: run on asyncio's own loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                "--loop uvloop needs the uvloop package: pip install 'redkit[fast]'"
            ) from None
        return None
    return uvloop
