"""``manage.py redkit_info [queue ...] [--json]``: counts, paused state and workers of queues."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redkit import cli

from ._redkit import call, project_kit


class Command(BaseCommand):  # type: ignore[misc]
    help = "Show each queue's job counts, whether it is paused, and its workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "queues", nargs="*", metavar="queue", help="queues (default: every known one)"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        cli.configure_logging("ERROR")
        self.stdout.write(call(cli.info, project_kit(), options["queues"], as_json=options["json"]))
