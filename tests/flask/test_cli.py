"""``flask redkit``: ``worker`` with the options of ``redkit worker`` (the same checks and
messages, several processes under the same supervisor), and ``info``, ``retry-failed`` and
``drain`` on the application's own client. Run as programs, on a real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redkit
from redkit import cli
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.queue.conftest import eventually, serving
from tests.reliability.queue_apps.harness import alive, children_of, wait_for
from tests.test_cli import started, stop

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

APP = """
    import os

    from flask import Flask
    from redkit_flask import Redkit

    app = Flask("rkapp")
    app.config["REDKIT_URL"] = os.environ["RKT_URL"]
    app.config["REDKIT_PREFIX"] = os.environ["RKT_PREFIX"]
    kit = Redkit(app)


    @kit.task(queue="mail", name="double")
    def double(n: int) -> int:
        return 2 * n
    """


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "rkapp.py").write_text(textwrap.dedent(APP).lstrip("\n"))
    (tmp_path / "jobs.py").write_text(
        "from redkit import Redkit\n\nqueue = Redkit.from_url('redis://127.0.0.1:1').queue('q')\n"
    )
    return tmp_path


@pytest.fixture
def app_kit(prefix: str) -> Iterator[redkit.Redkit]:
    """A client on the application's Redis and prefix."""
    client = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    yield client
    client.clear()
    client.close()


def environment(prefix: str, url: str = REDIS_URL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDKIT_", "FLASK_"))}
    env.update(RKT_URL=url, RKT_PREFIX=prefix)
    return env


def flask_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "rkapp", "redkit", *argv]


def run(cwd: Path, argv: list[str], prefix: str, url: str = REDIS_URL) -> Any:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=environment(prefix, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: Any, status: int = 2) -> str:
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return str(lines[0])


# -- usage errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "given"),
    [
        (["--limiter", "10"], {"limiter": "10"}),
        (["--limiter", "0/1"], {"limiter": "0/1"}),
        (["--limiter", "5/nan"], {"limiter": "5/nan"}),
        (["--shutdown-timeout", "-1"], {"shutdown_timeout": "-1"}),
        (["--shutdown-timeout", "nan"], {"shutdown_timeout": "nan"}),
        (["-c", "0"], {"concurrency": "0"}),
        (["-p", "0"], {"processes": "0"}),
        (["--loop", "trio"], {"loop": "trio"}),
        (["--log-level", "LOUD"], {"log_level": "LOUD"}),
    ],
)
def test_a_bad_worker_option_is_the_line_redkit_prints(
    project: Path, prefix: str, options: list[str], given: dict[str, str]
) -> None:
    with pytest.raises(cli.UsageError) as caught:
        cli.WorkerOptions.parse(**given)
    message = str(caught.value)
    flask = run(project, flask_argv("worker", *options), prefix)
    assert one_line(flask) == f"Error: {message}"
    plain = run(project, [sys.executable, "-m", "redkit", "worker", "jobs:queue", *options], prefix)
    assert one_line(plain) == f"redkit worker: error: {message}"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["worker", "--frobnicate"], "--frobnicate"),  # click's own words
        (["drain"], "'QUEUE'"),
        (["worker", ""], "queue name must not be empty"),
        (["retry-failed", "mail", "--limit", "0"], "--limit must be a whole number >= 1"),
    ],
)
def test_other_usage_errors_are_one_line(
    project: Path, prefix: str, argv: list[str], says: str
) -> None:
    line = one_line(run(project, flask_argv(*argv), prefix))
    assert line.startswith("Error: ")
    assert says in line


MEMORY = (
    "is on memory://, which lives inside one process: set REDKIT_URL (for example "
    "REDKIT_URL=redis://127.0.0.1:6379/0) so the worker and the app share a Redis"
)


@pytest.mark.parametrize(
    ("argv", "subject"),
    [
        (["worker"], "queue 'mail' of application 'rkapp'"),
        (["worker", "mail", "-p", "2"], "queue 'mail' of application 'rkapp'"),
        (["info"], "application 'rkapp'"),
        (["drain", "mail"], "application 'rkapp'"),
        (["retry-failed", "mail"], "application 'rkapp'"),
    ],
)
def test_an_app_on_memory_is_refused(
    project: Path, prefix: str, argv: list[str], subject: str
) -> None:
    done = run(project, flask_argv(*argv), prefix, url="memory://")
    assert one_line(done) == f"Error: {subject} {MEMORY}"


def test_help_lists_the_commands_and_the_options(project: Path, prefix: str) -> None:
    group = run(project, flask_argv("--help"), prefix)
    assert group.returncode == 0, group.stderr
    for command in ("worker", "info", "retry-failed", "drain"):
        assert command in group.stdout
    worker = run(project, flask_argv("worker", "--help"), prefix)
    for option in (
        "--concurrency",
        "--processes",
        "--limiter MAX/SECONDS",
        "--shutdown-timeout",
        "--loop [auto|asyncio|uvloop]",
        "--log-level",
    ):
        assert option in worker.stdout


# -- the operator commands on the application's client --------------------------------------------
async def test_info_retry_failed_and_drain_use_the_apps_client(
    project: Path, prefix: str, app_kit: redkit.Redkit
) -> None:
    q = app_kit.queue("mail")
    for _ in range(3):
        q.add("no-such-task", None)  # nothing runs it: it fails
    async with serving(q, name="flask-cli", concurrency=2):
        await eventually(lambda: q.counts()["failed"] == 3)
        report = json.loads(run(project, flask_argv("info", "--json"), prefix).stdout)
        text = run(project, flask_argv("info", "mail"), prefix).stdout
    q.pause()
    ((mail),) = report
    assert (mail["queue"], mail["failed"], mail["waiting"]) == ("mail", 3, 0)
    assert [(w["id"], w["concurrency"]) for w in mail["workers"]] == [("flask-cli", 2)]
    assert text.startswith("queue mail\n")
    assert "failed=3" in text
    assert "worker flask-cli" in text

    def ok(*argv: str) -> str:
        done = run(project, flask_argv(*argv), prefix)
        assert done.returncode == 0, done.stderr
        return str(done.stdout)

    assert ok("retry-failed", "mail", "--limit", "1") == (
        "1 failed job(s) of 'mail' moved back to the queue\n"
    )
    assert (q.counts()["waiting"], q.counts()["failed"]) == (1, 2)
    assert ok("retry-failed", "mail").startswith("2 failed job(s)")
    q.add("no-such-task", None, delay=60)
    assert ok("drain", "mail") == "3 waiting job(s) of 'mail' deleted\n"
    assert q.counts()["delayed"] == 1
    assert ok("drain", "mail", "--delayed") == "1 waiting job(s) of 'mail' deleted\n"
    assert sum(q.counts().values()) == 0


def test_schedules_on_the_apps_client(project: Path, prefix: str, app_kit: redkit.Redkit) -> None:
    q = app_kit.queue("mail")
    q.schedule("digest", "send-digest", cron="0 8 * * MON")
    listed = run(project, flask_argv("schedules", "mail", "--json"), prefix)
    assert listed.returncode == 0, listed.stderr
    assert [(s["id"], s["cron"]) for s in json.loads(listed.stdout)] == [("digest", "0 8 * * MON")]
    removed = run(project, flask_argv("schedules", "mail", "--remove", "digest"), prefix)
    assert "job scheduler 'digest' of 'mail' removed" in removed.stdout
    assert q.schedules() == []


def test_metrics_on_the_apps_client(project: Path, prefix: str, app_kit: redkit.Redkit) -> None:
    from tests.servers import free_port
    from tests.test_metrics_export import served_until_sigterm

    q = app_kit.queue("mail")
    q.add("double", {"args": [1]})
    app_kit.queue("other").add("double", {"args": [2]})
    port = free_port()
    text = served_until_sigterm(
        flask_argv("metrics", "mail", "--port", str(port)),
        port,
        env=environment(prefix),
        cwd=project,
    )
    assert 'redkit_queue_jobs{queue="mail",state="waiting"} 1.0' in text
    assert 'queue="other"' not in text
    bad = one_line(run(project, flask_argv("metrics", "--port", "0x"), prefix))
    assert "--port must be a whole number" in bad


def test_an_unreachable_redis_is_one_line_and_exit_1(project: Path, prefix: str) -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    done = run(project, flask_argv("drain", "mail"), prefix, url=url)
    assert one_line(done, status=1).startswith("Error: ")
    assert done.stdout == ""


# -- several processes ----------------------------------------------------------------------------
def test_processes_run_under_the_supervisor_restart_and_stop(
    project: Path, prefix: str, app_kit: redkit.Redkit
) -> None:
    q = app_kit.queue("mail")
    options = ["-c", "2", "--limiter", "100/1", "--shutdown-timeout", "5", "--loop", "asyncio"]
    with started(flask_argv("worker", "-p", "2", *options), project, environment(prefix)) as sup:

        def serving_children() -> set[int]:
            pids = {int(wid.split(":")[1]) for wid, _ in q.workers()}
            return {p for p in children_of(sup.pid) if alive(p)} & pids

        try:
            first = wait_for(lambda: s if len(s := serving_children()) == 2 else None, 60, "two")
            for pid in first:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode().split("\0")[:-1]
                assert argv == [
                    *flask_argv("worker", "mail"),
                    *["--concurrency", "2", "--processes", "1", "--limiter", "100/1.0"],
                    *["--shutdown-timeout", "5.0", "--loop", "asyncio", "--log-level", "INFO"],
                ]
            assert q.add("double", {"args": [21]}).wait(30) == 42  # in the application's context
            killed = min(first)
            os.kill(killed, signal.SIGKILL)
            wait_for(lambda: len(s := serving_children()) == 2 and killed not in s, 60, "a restart")
            err = stop(sup)
        finally:
            for pid in children_of(sup.pid):  # a failed test leaves no worker process behind
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
    assert sup.returncode == 0, err
    assert "restarting in 0.5s" in err
    assert err.count("worker for mail of rkapp") == 3
    assert not [p for p in first if alive(p)]


def test_info_of_an_application_without_queues(project: Path) -> None:
    done = run(project, flask_argv("info"), new_prefix())
    assert (done.returncode, done.stdout) == (0, "no queues\n")
