"""The ``redkit`` command: ``worker``, ``info``, ``retry-failed``, ``drain``, ``schedules``,
``metrics``, ``dashboard`` and ``demo``.

``redkit worker myapp.jobs:queue`` imports ``myapp.jobs`` and serves its ``queue`` (several
``module:attribute`` arguments serve several queues in one process); ``--processes N`` runs N such
processes under a supervisor that forwards signals and restarts a child that dies. The other
commands take queue names and reach Redis through ``--url`` (default: ``REDKIT_URL``, then
``REDIS_URL``) and ``--prefix``.

A mistake on the command line, or a module that does not import, is one line on stderr and exit
status 2. The checks of the options and their messages, the supervisor and the reports of the
operator commands are shared with the framework adapters' commands (``flask redkit``).
"""

from __future__ import annotations

from ._operator import (
    check_port,
    dashboard_for,
    drain,
    info,
    queue_named,
    retry_failed,
    schedules,
    serve_dashboard,
    serve_metrics,
)
from ._options import (
    DEFAULT_CONCURRENCY,
    LOOPS,
    UsageError,
    WorkerOptions,
    add_worker_options,
    check_limit,
    configure_logging,
    refuse_memory,
    version,
)
from ._parser import build_parser as build_parser  # importable, as before; not in __all__
from ._parser import main
from ._serve import run_workers, supervise
from ._targets import load_queue, make_worker

__all__ = [
    "DEFAULT_CONCURRENCY",
    "LOOPS",
    "UsageError",
    "WorkerOptions",
    "add_worker_options",
    "check_limit",
    "check_port",
    "configure_logging",
    "dashboard_for",
    "drain",
    "info",
    "load_queue",
    "main",
    "make_worker",
    "queue_named",
    "refuse_memory",
    "retry_failed",
    "run_workers",
    "schedules",
    "serve_dashboard",
    "serve_metrics",
    "supervise",
    "version",
]
