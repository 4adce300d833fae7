"""``manage.py redkit_worker [queue ...]``: serve the project's queues.

It takes the options of ``redkit worker`` (``-c``, ``-p``, ``--limiter``, ``--shutdown-timeout``,
``--loop``, ``--log-level``, ``--burst``), checked by the same code. Without queue names it
serves every queue that a declared task or a ``TASKS`` backend of redkit's names. With
``REDKIT["OUTBOX"]`` on, it also moves the outbox's rows to Redis (``manage.py redkit_outbox``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redkit import cli

from ... import jobs, outbox
from ._redkit import call, project_kit


def _child_argv(names: list[str], options: cli.WorkerOptions, given: dict[str, Any]) -> list[str]:
    """The command of one worker process of a supervisor: this command, same settings."""
    script = sys.argv[0] if sys.argv else ""
    if not script or script.endswith("__main__.py"):  # python -m django
        head = [sys.executable, "-m", "django"]
    else:
        head = [sys.executable, script]
    for flag in ("settings", "pythonpath"):
        if given.get(flag):
            head += [f"--{flag}", given[flag]]
    return [*head, "redkit_worker", *names, *options.child_argv()]


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run a worker for the project's queues (default: every queue with a task). SIGTERM or "
        "SIGINT lets running jobs finish (up to --shutdown-timeout); a second signal stops at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "queues", nargs="*", metavar="queue", help="queues to serve (default: every one)"
        )
        cli.add_worker_options(parser)

    def handle(self, *args: Any, **given: Any) -> None:
        options: cli.WorkerOptions = call(cli.WorkerOptions.from_args, argparse.Namespace(**given))
        jobs.discover()
        kit = project_kit()
        names = [call(cli.queue_named, kit, n).name for n in given["queues"]] or jobs.queue_names()
        workers = [call(self._worker, name, options) for name in names]
        cli.configure_logging(options.log_level)
        if options.processes > 1:
            status = cli.supervise(_child_argv(names, options, given), options.processes)
        else:
            self.stderr.write(f"redkit: worker for {', '.join(names)}")
            relay = outbox.start_relay() if outbox.enabled() else None  # rows a crash left
            try:
                status = call(cli.run_workers, workers, options.loop)
            finally:
                if relay is not None:
                    relay.stop()
        if status:
            raise CommandError(f"redkit: worker exited with status {status}", returncode=status)

    @staticmethod
    def _worker(name: str, options: cli.WorkerOptions) -> Any:
        try:
            return jobs.worker(name, **options.worker_options())
        except (TypeError, ValueError) as exc:
            raise cli.UsageError(str(exc)) from None
