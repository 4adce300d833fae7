"""``manage.py redkit_drain QUEUE [--delayed] [--yes]``: delete a queue's waiting jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redkit import cli

from ._redkit import call, project_kit


class Command(BaseCommand):  # type: ignore[misc]
    help = "Delete a queue's waiting (and with --delayed, delayed) jobs; running jobs go on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queue")
        parser.add_argument("--delayed", action="store_true", help="delete delayed jobs too")
        parser.add_argument(
            "--yes",
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="do not ask for confirmation",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cli.configure_logging("ERROR")
        kit = project_kit()
        name, delayed = options["queue"], options["delayed"]
        queue = call(cli.queue_named, kit, name)
        if options["interactive"]:
            counts = call(queue.counts)
            ready = counts["waiting"] + counts["prioritized"]
            what = f"{ready} waiting job(s)" + (
                f" and {counts['delayed']} delayed job(s)" if delayed else ""
            )
            try:
                answer = input(f"Delete the {what} of queue {name!r}? Type 'yes' to go on: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                self.stdout.write("Drain cancelled: nothing was deleted.")
                return
        self.stdout.write(call(cli.drain, kit, name, delayed))
