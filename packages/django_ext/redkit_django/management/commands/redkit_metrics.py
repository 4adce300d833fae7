"""``manage.py redkit_metrics [QUEUE ...] [--port N] [--host ADDR]``: the queues' metrics for
Prometheus, served until SIGTERM or SIGINT."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from redkit import cli

from ._redkit import call, project_kit


class Command(BaseCommand):  # type: ignore[misc]
    help = "Serve the queues' metrics to Prometheus at http://HOST:PORT/metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="*", help="queues (default: every known one)")
        parser.add_argument("--port", default="9108", help="port to listen on (default: 9108)")
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = call(cli.check_port, options["port"])
        kit = project_kit()
        cli.configure_logging("ERROR")

        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        call(
            cli.serve_metrics,
            kit,
            options["queues"],
            port=port,
            host=options["host"],
            announce=announce,
        )
