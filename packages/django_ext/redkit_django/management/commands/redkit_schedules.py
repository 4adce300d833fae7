"""``manage.py redkit_schedules QUEUE [--remove ID] [--json]``: a queue's job schedulers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redkit import cli

from ._redkit import call, project_kit


class Command(BaseCommand):  # type: ignore[misc]
    help = "List a queue's job schedulers and their next runs, or remove one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue")
        parser.add_argument("--remove", metavar="ID", help="remove this job scheduler")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        cli.configure_logging("ERROR")
        report = call(
            cli.schedules,
            project_kit(),
            options["queue"],
            remove=options["remove"],
            as_json=options["json"],
        )
        self.stdout.write(report)
