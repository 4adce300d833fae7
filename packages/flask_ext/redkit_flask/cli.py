"""``flask redkit ...``: the job-queue commands of an application using the extension.

``worker`` takes the options of ``redkit worker`` (checked, and answered, by the same code in
:mod:`redkit.cli`); ``info``, ``drain``, ``retry-failed``, ``schedules`` and ``metrics`` use the
application's own client, so they need no URL. A usage error is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, NoReturn

import click
from flask.cli import AppGroup, ScriptInfo

from flask import Flask, current_app
from redkit import cli
from redkit.errors import RedkitError

__all__ = ["cli_group"]


class _UsageError(click.UsageError):
    """Shown as one line, like the errors of ``redkit``."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {' '.join(self.format_message().split())}", file=file, err=True)


class _Group(AppGroup):
    """Every usage error of a subcommand (click's own ones too) is shown as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError:
            raise
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), exc.ctx) from None


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(...)`` with redkit's usage errors as click's (exit 2), Redis' errors exit 1."""
    try:
        return fn(*args, **kwargs)
    except cli.UsageError as exc:
        raise _UsageError(str(exc)) from None
    except RedkitError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None


def _child_argv(names: list[str], options: cli.WorkerOptions) -> list[str]:
    """The command of one worker process of a supervisor: this command, on the same app."""
    ctx = click.get_current_context()
    info = ctx.ensure_object(ScriptInfo)
    if info.create_app is not None:  # a script of its own (FlaskGroup(create_app=...))
        head = [sys.executable, sys.argv[0]]
    else:
        head = [sys.executable, "-m", "flask"]
        if info.app_import_path:
            head += ["--app", info.app_import_path]
    path: list[str] = []
    at: click.Context | None = ctx
    while at is not None and at.parent is not None:
        path.insert(0, at.info_name or "")
        at = at.parent
    return [*head, *path, *names, *options.child_argv()]


def cli_group(ext: Any) -> click.Group:
    """The ``redkit`` command group of the extension ``ext``."""
    group = _Group("redkit", help="redkit's job queue for this application.")

    def app() -> Flask:
        return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]

    def kit() -> Any:
        """The application's client; memory:// is refused (no other process sees it)."""
        state = ext.state(app())
        _call(cli.refuse_memory, state.kit.settings, f"application {state.app.name!r}")
        cli.configure_logging("ERROR")  # what goes wrong is the one line of the error
        return state.kit

    @group.command("worker")
    @click.argument("queues", nargs=-1)
    @click.option(
        "-c",
        "--concurrency",
        default=str(cli.DEFAULT_CONCURRENCY),
        metavar="N",
        show_default=True,
        help="Jobs in flight per queue.",
    )
    @click.option(
        "-p",
        "--processes",
        default="1",
        metavar="N",
        show_default=True,
        help="Worker processes, under a supervisor when more than 1.",
    )
    @click.option("--limiter", metavar="MAX/SECONDS", help="Queue-wide rate limit, like 100/1.")
    @click.option(
        "--shutdown-timeout",
        metavar="SECONDS",
        help="Seconds running jobs get to finish on SIGTERM (default 30).",
    )
    @click.option("--shutdown-grace", hidden=True, help="Deprecated name of --shutdown-timeout.")
    @click.option(
        "--loop",
        default="auto",
        metavar="[" + "|".join(cli.LOOPS) + "]",
        show_default=True,
        help="Event loop (auto: uvloop when installed).",
    )
    @click.option(
        "--log-level", default="INFO", metavar="LEVEL", show_default=True, help="Log level."
    )
    def worker(queues: tuple[str, ...], **given: Any) -> NoReturn:
        """Run a worker for QUEUES (default: every queue with a task) of this application.

        SIGTERM or SIGINT lets running jobs finish (up to --shutdown-timeout), a second signal stops
        at once."""
        options: cli.WorkerOptions = _call(cli.WorkerOptions.parse, **given)
        state = ext.state(app())
        names = list(queues) or sorted({t.queue_name for t in ext._tasks}) or ["default"]
        workers = [
            _call(
                cli.make_worker,
                _call(cli.queue_named, state.kit, name),
                options,
                f"queue {name!r} of application {state.app.name!r}",
            )
            for name in names
        ]
        cli.configure_logging(options.log_level)
        if options.processes > 1:
            raise SystemExit(cli.supervise(_child_argv(names, options), options.processes))
        click.echo(f"redkit: worker for {', '.join(names)} of {state.app.name}", err=True)
        raise SystemExit(_call(cli.run_workers, workers, options.loop))

    @group.command("info")
    @click.argument("queues", nargs=-1)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def info(queues: tuple[str, ...], as_json: bool) -> None:
        """Counts, paused state and workers of QUEUES (default: every known queue)."""
        click.echo(_call(cli.info, kit(), queues, as_json=as_json))

    @group.command("retry-failed")
    @click.argument("queue")
    @click.option("--limit", metavar="N", help="At most this many (oldest first).")
    def retry_failed(queue: str, limit: str | None) -> None:
        """Move the failed jobs of QUEUE back to the queue."""
        click.echo(_call(cli.retry_failed, kit(), queue, _call(cli.check_limit, limit)))

    @group.command("drain")
    @click.argument("queue")
    @click.option("--delayed", is_flag=True, help="Delete delayed jobs too.")
    def drain(queue: str, delayed: bool) -> None:
        """Delete the waiting jobs of QUEUE."""
        click.echo(_call(cli.drain, kit(), queue, delayed))

    @group.command("schedules")
    @click.argument("queue")
    @click.option("--remove", metavar="ID", help="Remove this job scheduler.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def schedules(queue: str, remove: str | None, as_json: bool) -> None:
        """The job schedulers of QUEUE and their next runs (or remove one)."""
        click.echo(_call(cli.schedules, kit(), queue, remove=remove, as_json=as_json))

    @group.command("metrics")
    @click.argument("queues", nargs=-1)
    @click.option("--port", default="9108", show_default=True, help="Port to listen on.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
    def metrics(queues: tuple[str, ...], port: str, host: str) -> None:
        """Serve the metrics of QUEUES (default: every known queue) to Prometheus at
        http://HOST:PORT/metrics until SIGTERM or SIGINT."""
        checked = _call(cli.check_port, port)
        _call(cli.serve_metrics, kit(), queues, port=checked, host=host, announce=click.echo)

    return group
