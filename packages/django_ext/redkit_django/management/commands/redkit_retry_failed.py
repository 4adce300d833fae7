"""``manage.py redkit_retry_failed QUEUE [--limit N]``: failed jobs back to the queue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redkit import cli

from ._redkit import call, project_kit


class Command(BaseCommand):  # type: ignore[misc]
    help = "Move a queue's failed jobs back to the queue, with their attempts reset."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue")
        parser.add_argument("--limit", metavar="N", help="at most this many (oldest first)")

    def handle(self, *args: Any, **options: Any) -> None:
        cli.configure_logging("ERROR")
        limit = call(cli.check_limit, options["limit"])
        self.stdout.write(call(cli.retry_failed, project_kit(), options["queue"], limit))
