"""``manage.py redkit_outbox [--once] [--interval S] [--database ALIAS]``: move the outbox's rows
to Redis (``REDKIT["OUTBOX"]``; ``manage.py redkit_worker`` does it too, on a thread)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from redkit import cli

from ... import outbox
from ._redkit import call, project_kit


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise cli.UsageError(f"--interval must be a positive number of seconds, not {text!r}")
    return value


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Move the jobs left in the outbox table to Redis, every --interval seconds until SIGTERM "
        "or SIGINT (--once: one pass). Safe to run beside workers and other relays."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", default="1", help="seconds between passes (1)")
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="the database alias of the outbox"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = call(_positive, options["interval"])
        using = options["database"]
        if using not in connections:
            raise CommandError(f"no database {using!r} in settings.DATABASES", returncode=2)
        project_kit()
        if options["once"]:
            try:
                moved = call(outbox.relay, using)
            except DatabaseError as exc:
                raise CommandError(f"redkit: {exc}", returncode=1) from None
            self.stdout.write(f"moved {moved} job(s) of the outbox to Redis")
            return
        cli.configure_logging("INFO")
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        relay = outbox.start_relay(using, interval)
        self.stderr.write(f"redkit: outbox relay for database {using!r}, every {interval:g}s")
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            relay.stop()
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(f"moved {relay.moved} job(s) of the outbox to Redis")
