"""``flask redkit ...``: the job-queue commands of an application using the extension."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup

__all__ = ["cli_group"]


def cli_group(ext: Any) -> click.Group:
    """The ``redkit`` command group of the extension ``ext``."""
    group = AppGroup("redkit", help="redkit's job queue for this application.")

    @group.command("worker")
    @click.argument("queues", nargs=-1)
    @click.option(
        "-c",
        "--concurrency",
        type=int,
        default=10,
        show_default=True,
        help="Jobs in flight per queue.",
    )
    @click.option(
        "--shutdown-grace",
        type=float,
        default=None,
        help="Seconds running jobs get to finish on SIGTERM (default 30).",
    )
    @click.option(
        "--loop",
        type=click.Choice(["auto", "asyncio", "uvloop"]),
        default="auto",
        show_default=True,
        help="Event loop (auto: uvloop when installed).",
    )
    def worker(
        queues: tuple[str, ...], concurrency: int, shutdown_grace: float | None, loop: str
    ) -> None:
        """Run a worker for QUEUES (default: every queue with a task) of this application.

        SIGTERM or SIGINT lets running jobs finish (up to the grace), a second signal stops
        at once."""
        from redkit.cli import UsageError, run_workers

        state = ext.state()
        names = list(queues) or sorted({t.queue_name for t in ext._tasks}) or ["default"]
        options: dict[str, Any] = {"concurrency": concurrency}
        if shutdown_grace is not None:
            options["shutdown_grace"] = shutdown_grace
        workers = [state.kit.queue(name).worker(**options) for name in names]
        click.echo(f"redkit: worker for {', '.join(names)} of {state.app.name}", err=True)
        try:
            code = run_workers(workers, loop)
        except UsageError as exc:
            raise click.UsageError(str(exc)) from None
        raise SystemExit(code)

    return group
