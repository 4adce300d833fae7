"""The ``redkit`` command, run as a program: ``--version``, one line on stderr and exit status 2
for every usage mistake (bad options, targets that are no queue, modules that do not import,
memory://), and ``worker``, ``info``, ``retry-failed`` and ``drain`` on a real Redis."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import redkit
from redkit import cli
from redkit.queue import STATES, JobFailed
from tests.conftest import REAL_REDIS, REDIS_URL, call
from tests.queue.conftest import eventually, serving

ZERO = dict.fromkeys(STATES, 0)
NEEDS_REDIS = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")

MODULES = {
    "jobs.py": """
        import os

        from redkit import Redkit

        kit = Redkit.from_url(os.environ["RKT_URL"], prefix=os.environ["RKT_PREFIX"])
        queue = kit.queue("emails")
        serve_me = queue.worker(concurrency=2)
        not_a_queue = 42
        local = Redkit.from_url("memory://rktest-cli").queue("local")
        local_worker = local.worker()


        @queue.task(name="double")
        def double(n: int) -> int:
            return 2 * n


        def make_task():
            return double


        def needs_arguments(x):
            return x
        """,
    "broken_syntax.py": """
        x = 1
        def f(:
            pass
        """,
    "needs_dependency.py": """
        import os
        import rktest_no_such_dependency
        """,
    "fails.py": """
        import os
        raise RuntimeError("RKT_SETTING\\nis not set")
        """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return tmp_path


def environment(prefix: str = "rktest-cli", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDKIT_") and k != "REDIS_URL"}
    env.update(RKT_URL=REDIS_URL, RKT_PREFIX=prefix, **extra)
    return env


def redkit_command(cwd: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redkit", *argv],
        cwd=cwd,
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def started(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A command running in the background, killed at the end of the block if it still runs."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """SIGTERM, then wait for the exit; what it wrote on stderr."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=timeout)[1]


def one_line(done: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The only line on stderr of a command that exited with ``status``."""
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- --version ------------------------------------------------------------------------------------
def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = redkit_command(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"redkit {metadata.version('redkit')}\n"
    script = Path(sys.executable).with_name("redkit")
    if script.exists():  # the installed command, not only python -m redkit
        installed = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        assert installed.stdout == done.stdout


def test_version_without_package_metadata_is_the_modules_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert cli.version() == redkit.__version__


# -- usage errors: one line, exit status 2 --------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "says"),
    [
        (
            "jobs:double",
            "jobs:double is a task of queue 'emails', not a queue: name its queue, like jobs:queue",
        ),
        ("jobs:make_task", "jobs:make_task is a task of queue 'emails'"),
        ("jobs:not_a_queue", "jobs:not_a_queue is not a redkit queue or worker (it is of type int"),
        ("jobs:kit", "jobs:kit is not a redkit queue or worker (it is of type Redkit)"),
        ("jobs:needs_arguments", "calling jobs:needs_arguments() failed: TypeError: "),
        ("jobs:no_such_attribute", "'jobs' has no attribute 'no_such_attribute'"),
        (
            "broken_syntax:queue",
            "cannot import 'broken_syntax': syntax error in broken_syntax.py, line 2",
        ),
        (
            "needs_dependency:queue",
            "'needs_dependency' was found but its own import failed: it "
            "imports 'rktest_no_such_dependency', and there is no module named "
            "'rktest_no_such_dependency' (needs_dependency.py, line 2)",
        ),
        (
            "fails:queue",
            "importing 'fails' failed: RuntimeError: RKT_SETTING is not set (fails.py, line 2)",
        ),
        (
            "no_such_module_for_redkit:queue",
            "cannot import 'no_such_module_for_redkit': no module "
            "named 'no_such_module_for_redkit'",
        ),
        ("no-colon", "expected module:attribute (like myapp.jobs:queue), got 'no-colon'"),
        ("jobs:", "expected module:attribute"),
        (":queue", "expected module:attribute"),
    ],
)
def test_a_target_that_is_no_queue_is_one_line(project: Path, target: str, says: str) -> None:
    line = one_line(redkit_command(project, "worker", target))
    assert line.startswith("redkit worker: error: ")
    assert says in line


MEMORY = (
    "is on memory://, which lives inside one process: set REDKIT_URL (for example "
    "REDKIT_URL=redis://127.0.0.1:6379/0) so the worker and the app share a Redis"
)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["jobs:local"], f"queue 'local' of jobs:local {MEMORY}"),
        (["jobs:local_worker"], f"the worker jobs:local_worker {MEMORY}"),
        (["jobs:queue", "jobs:local", "-p", "2"], f"queue 'local' of jobs:local {MEMORY}"),
    ],
)
def test_the_worker_refuses_a_queue_on_memory(project: Path, argv: list[str], says: str) -> None:
    assert one_line(redkit_command(project, "worker", *argv)) == f"redkit worker: error: {says}"


SHUTDOWN = "--shutdown-timeout is a number of seconds >= 0, got"
LIMITER = (
    "--limiter is MAX/SECONDS, a whole number of jobs >= 1 per a number of seconds > 0 "
    "(like 100/1 or 600/60), got "
)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--limiter", "10"], LIMITER + "'10'"),
        (["--limiter", "0/1"], LIMITER + "'0/1'"),
        (["--limiter=-5/1"], LIMITER + "'-5/1'"),
        (["--limiter", "5/0"], LIMITER + "'5/0'"),
        (["--limiter", "5/-1"], LIMITER + "'5/-1'"),
        (["--limiter", "five/1"], LIMITER + "'five/1'"),
        (["--limiter", "5/soon"], LIMITER + "'5/soon'"),
        (["--limiter", "5/nan"], LIMITER + "'5/nan'"),
        (["--limiter", "2.5/1"], LIMITER + "'2.5/1'"),
        (["--shutdown-timeout", "-1"], f"{SHUTDOWN} '-1'"),
        (["--shutdown-timeout", "nan"], f"{SHUTDOWN} 'nan'"),
        (["--shutdown-timeout", "inf"], f"{SHUTDOWN} 'inf'"),
        (["--shutdown-timeout", "soon"], f"{SHUTDOWN} 'soon'"),
        (["-c", "0"], "--concurrency must be a whole number >= 1, got '0'"),
        (["--concurrency", "many"], "--concurrency must be a whole number >= 1, got 'many'"),
        (["-p", "0"], "--processes must be a whole number >= 1, got '0'"),
        (["-p", "-2"], "--processes must be a whole number >= 1, got '-2'"),
        (["--loop", "trio"], "--loop is one of auto, asyncio, uvloop, got 'trio'"),
        (
            ["--log-level", "LOUD"],
            "--log-level is one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        ),
    ],
)
def test_a_bad_option_is_one_line(project: Path, options: list[str], says: str) -> None:
    done = redkit_command(project, "worker", "jobs:queue", *options)
    assert one_line(done) == f"redkit worker: error: {says}"


def test_the_old_shutdown_grace_flag_still_works_and_says_it_is_deprecated(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = cli.WorkerOptions.parse(shutdown_grace="7")
    assert options.shutdown_timeout == 7.0
    assert options.worker_options()["shutdown_timeout"] == 7.0
    assert "--shutdown-grace is deprecated, use --shutdown-timeout" in capsys.readouterr().err
    with pytest.raises(cli.UsageError, match="--shutdown-timeout only"):
        cli.WorkerOptions.parse(shutdown_timeout="1", shutdown_grace="2")
    done = redkit_command(project, "worker", "jobs:queue", "--shutdown-grace", "-1")
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "redkit: --shutdown-grace is deprecated, use --shutdown-timeout (same meaning)",
        "redkit worker: error: --shutdown-grace is a number of seconds >= 0, got '-1'",
    ]
    assert done.returncode == 2


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["worker"], ["drain"], ["worker", "jobs:queue", "--frobnicate"]],
)
def test_argparse_mistakes_are_one_line_too(project: Path, argv: list[str]) -> None:
    assert one_line(redkit_command(project, *argv)).startswith("redkit")


@pytest.mark.parametrize(
    "argv", [["info"], ["info", "mail", "--json"], ["drain", "mail"], ["retry-failed", "mail"]]
)
@pytest.mark.parametrize("url", [None, "memory://", "memory://shop"])
def test_operator_commands_refuse_memory(project: Path, argv: list[str], url: str | None) -> None:
    done = redkit_command(project, *argv, *(["--url", url] if url else []))
    assert one_line(done) == (
        f"redkit {argv[0]}: error: the URL (--url, else REDKIT_URL, else REDIS_URL) {MEMORY}"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["retry-failed", "mail", "--limit", "0"], "--limit must be a whole number >= 1, got '0'"),
        (["retry-failed", "mail", "--limit", "x"], "--limit must be a whole number >= 1, got 'x'"),
        (["info", "--url", "mongodb://x"], "unsupported URL scheme 'mongodb'"),
        (["drain", "", "--url", REDIS_URL], "queue name must not be empty"),
    ],
)
def test_operator_commands_with_bad_arguments(project: Path, argv: list[str], says: str) -> None:
    assert says in one_line(redkit_command(project, *argv, "--prefix", "rktest-cli"))


@pytest.mark.parametrize(
    "argv", [["info"], ["info", "--json"], ["retry-failed", "q"], ["drain", "q"]]
)
def test_an_unreachable_redis_is_one_line_and_exit_1(project: Path, argv: list[str]) -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.2&retry_attempts=0"
    done = redkit_command(project, *argv, "--url", url)
    assert one_line(done, status=1).startswith("redkit: ")
    assert done.stdout == ""


# -- the commands on a real Redis -----------------------------------------------------------------
@pytest.fixture
def cli_kit(backend: str, url: str, prefix: str) -> Iterator[redkit.Redkit]:
    kit = redkit.Redkit.from_url(url, prefix=prefix)
    yield kit
    kit.clear()
    kit.close()


def on_redis(test: Any) -> Any:
    """Run ``test`` on the real Redis and the real cluster."""
    return NEEDS_REDIS(
        pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)(test)
    )


@on_redis
async def test_info_reports_counts_and_workers(
    cli_kit: redkit.Redkit, url: str, prefix: str, tmp_path: Path
) -> None:
    q = cli_kit.queue("mail")
    other = cli_kit.queue("reports")
    await call(q.add("send", None))
    await call(q.add("send", None, delay=60))
    await call(other.add("build", None, priority=2))
    other.pause()
    conn = ["--url", url, "--prefix", prefix]
    async with serving(q, name="cli-worker", concurrency=3):
        # nothing runs "send": the waiting job fails, then the listing is stable
        await eventually(lambda: q.counts()["failed"] == 1)
        as_json = redkit_command(tmp_path, "info", *conn, "--json")
        as_text = redkit_command(tmp_path, "info", "mail", *conn)
    assert as_json.returncode == 0, as_json.stderr
    report = {item["queue"]: item for item in json.loads(as_json.stdout)}
    assert set(report) == {"mail", "reports"}
    mail = report["mail"]
    assert {s: mail[s] for s in STATES} == {**ZERO, "delayed": 1, "failed": 1}
    assert mail["paused"] is False
    (worker,) = mail["workers"]
    assert worker["id"] == "cli-worker"
    assert worker["concurrency"] == 3
    assert "seen_seconds_ago" in worker
    assert report["reports"]["paused"] is True
    assert report["reports"]["prioritized"] == 1
    assert report["reports"]["workers"] == []
    assert as_text.returncode == 0, as_text.stderr
    text = as_text.stdout
    assert text.startswith("queue mail\n")
    assert "delayed=1" in text
    assert "failed=1" in text
    assert "worker cli-worker: running 0" in text
    assert "reports" not in text
    empty = redkit_command(tmp_path, "info", "--url", url, "--prefix", f"{prefix}-none")
    assert (empty.returncode, empty.stdout) == (0, "no queues\n")


@on_redis
async def test_retry_failed_and_drain(
    cli_kit: redkit.Redkit, url: str, prefix: str, tmp_path: Path
) -> None:
    q = cli_kit.queue("jobs")
    broken = {"on": True}

    @q.task(name="flaky")
    def flaky(i: int) -> int:
        if broken["on"]:
            raise RuntimeError("down")
        return i

    failing = [q.add("flaky", {"args": [i]}) for i in range(3)]
    async with serving(q):
        for job in failing:
            with pytest.raises(JobFailed):
                job.wait(10)
        q.pause()

    def run(*argv: str) -> str:
        done = redkit_command(tmp_path, *argv, "--url", url, "--prefix", prefix)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("retry-failed", "jobs", "--limit", "1") == (
        "1 failed job(s) of 'jobs' moved back to the queue\n"
    )
    assert q.counts() == {**ZERO, "waiting": 1, "failed": 2}
    assert run("retry-failed", "jobs").startswith("2 failed job(s)")
    assert q.counts() == {**ZERO, "waiting": 3}
    q.add("flaky", {"args": [9]}, delay=60)
    assert run("drain", "jobs") == "3 waiting job(s) of 'jobs' deleted\n"
    assert q.counts() == {**ZERO, "delayed": 1}
    assert run("drain", "jobs", "--delayed").startswith("1 waiting job(s)")
    assert q.counts() == ZERO


@on_redis
async def test_schedules_lists_and_removes_job_schedulers(
    cli_kit: redkit.Redkit, url: str, prefix: str, tmp_path: Path
) -> None:
    q = cli_kit.queue("jobs")
    q.schedule("nightly", "report", cron="30 2 * * *", tz="Europe/Paris")
    q.schedule("often", "poll", every=90, limit=10)

    def run(*argv: str) -> Any:
        return redkit_command(tmp_path, *argv, "--url", url, "--prefix", prefix)

    listed = run("schedules", "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    report = {item["id"]: item for item in json.loads(listed.stdout)}
    assert report["nightly"]["cron"] == "30 2 * * *"
    assert report["nightly"]["tz"] == "Europe/Paris"
    assert report["nightly"]["next_run"] == q.get_schedule("nightly").next_run.isoformat()
    assert (report["often"]["every_seconds"], report["often"]["runs"]) == (90.0, 1)
    text = run("schedules", "jobs").stdout
    assert "nightly: report cron '30 2 * * *' (Europe/Paris), next " in text
    assert ":30:00+0" in text  # shown in its own time zone
    assert "often: poll every 0:01:30, next " in text
    removed = run("schedules", "jobs", "--remove", "often")
    assert (
        removed.stdout
        == "job scheduler 'often' of 'jobs' removed (a run already started goes on)\n"
    )
    assert [s.id for s in q.schedules()] == ["nightly"]
    unknown = run("schedules", "jobs", "--remove", "often")
    assert unknown.returncode == 2
    assert "queue 'jobs' has no job scheduler 'often'" in unknown.stderr
    assert run("schedules", "empty").stdout == "queue 'empty' has no job schedulers\n"


@NEEDS_REDIS
def test_the_worker_serves_with_every_option_and_stops_on_sigterm(
    project: Path, prefix: str
) -> None:
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    q = kit.queue("emails")
    options = ["-c", "3", "--limiter", "100/1", "--shutdown-timeout", "5", "--loop", "asyncio"]
    argv = [
        sys.executable,
        "-m",
        "redkit",
        "worker",
        "jobs:queue",
        *options,
        "--log-level",
        "DEBUG",
    ]
    try:
        with started(argv, project, environment(prefix)) as proc:
            assert q.add("double", {"args": [21]}).wait(30) == 42
            (wid, _), *_ = q.workers()
            report = json.loads(
                redkit_command(
                    project, "info", "emails", "--json", "--prefix", prefix, "--url", REDIS_URL
                ).stdout
            )
            assert report[0]["workers"][0]["concurrency"] == 3
            assert wid.split(":")[1] == str(proc.pid)
            err = stop(proc)
    finally:
        kit.clear()
        kit.close()
    assert proc.returncode == 0, err
    assert "event loop asyncio" in err
    assert "SIGTERM received" in err
    assert " DEBUG " in err


@NEEDS_REDIS
def test_a_burst_worker_runs_the_ready_jobs_and_exits(project: Path, prefix: str) -> None:
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    q = kit.queue("emails")
    try:
        jobs = [q.add("double", {"args": [n]}) for n in range(3)]
        later = q.add("double", {"args": [9]}, delay=3600)
        argv = [sys.executable, "-m", "redkit", "worker", "jobs:queue", "--burst", "-c", "2"]
        done = subprocess.run(
            argv, cwd=project, env=environment(prefix), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert [j.wait(0) for j in jobs] == [0, 2, 4]
        assert later.refresh().state == "delayed"
    finally:
        kit.clear()
        kit.close()
    assert cli.WorkerOptions.parse(burst=True).child_argv()[-1] == "--burst"
    assert cli.WorkerOptions.parse(burst=True).worker_options()["burst"] is True


def test_the_shared_checks_accept_what_the_commands_document() -> None:
    options: Any = cli.WorkerOptions.parse(
        concurrency="20",
        processes=4,
        limiter="600/60",
        shutdown_timeout="0",
        loop="asyncio",
        log_level="warning",
    )
    assert options == cli.WorkerOptions(20, 4, (600, 60.0), 0.0, "asyncio", "WARNING")
    assert options.worker_options() == {
        "concurrency": 20,
        "limiter": (600, 60.0),
        "shutdown_timeout": 0.0,
    }
    again = cli.WorkerOptions.parse(
        **dict(
            zip(
                ("concurrency", "processes", "limiter", "shutdown_timeout", "loop", "log_level"),
                options.child_argv()[1::2],
                strict=True,
            )
        )
    )
    assert again == cli.WorkerOptions(20, 1, (600, 60.0), 0.0, "asyncio", "WARNING")
    assert cli.WorkerOptions.parse() == cli.WorkerOptions()
    assert cli.check_limit(None) is None
    assert cli.check_limit("5") == 5
