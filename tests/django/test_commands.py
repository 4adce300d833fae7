"""``manage.py redkit_worker``, ``redkit_info``, ``redkit_drain`` and ``redkit_retry_failed``,
run as real processes (``python -m django ... --settings``) on real Redis: the worker serves the
project's tasks, ``--burst`` exits when no job is ready, SIGTERM lets a running job finish (or
gives it back after ``--shutdown-timeout``), and usage mistakes are one line with status 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redkit
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.test_cli import started

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")
ROOT = Path(__file__).resolve().parents[2]
PATH = os.pathsep.join(
    [str(ROOT / "packages" / p) for p in ("core", "flask_ext", "django_ext", "starlette_ext")]
    + [str(ROOT)]
)


@pytest.fixture
def project() -> Iterator[tuple[redkit.Redkit, dict[str, str]]]:
    """A client on a new prefix, and the environment of commands that use the same one."""
    prefix = new_prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDKIT_", "DJANGO_"))}
    env.update(PYTHONPATH=PATH, RKT_URL=REDIS_URL, RKT_PREFIX=prefix)
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=prefix)
    yield kit, env
    kit.clear()
    kit.close()


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args, "--settings=tests.django.settings_worker"]


def manage(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args), env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120
    )


def until(predicate: Any, timeout: float = 60, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)
    return value


def test_a_burst_worker_runs_the_projects_tasks_and_exits(project: Any) -> None:
    kit, env = project
    add = kit.queue("default").add("tests.django.testapp.tasks.add", {"args": [2, 3]})
    greet = kit.queue("emails").add(
        "tests.django.testapp.tasks.greet", {"args": [], "kwargs": {"name": "Ada"}}
    )
    done = manage(env, "redkit_worker", "--burst", "-c", "2", "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    assert add.wait(0) == 5
    assert greet.wait(0) == "hello Ada"  # every queue with a task, found by autodiscovery
    only = kit.queue("emails").add("tests.django.testapp.tasks.greet", {"args": ["Bo"]})
    other = kit.queue("default").add("tests.django.testapp.tasks.add", {"args": [1, 1]})
    assert manage(env, "redkit_worker", "emails", "--burst").returncode == 0
    assert only.wait(0) == "hello Bo"
    assert other.refresh().state == "waiting"


@pytest.mark.parametrize(
    ("sleep", "timeout", "state"),
    [(1.0, "30", "completed"), (30.0, "0.5", "waiting")],
    ids=["finishes-within-the-timeout", "given-back-after-the-timeout"],
)
def test_sigterm_during_a_running_job(project: Any, sleep: float, timeout: str, state: str) -> None:
    kit, env = project
    job = kit.queue("default").add("tests.django.testapp.tasks.sleep_then", {"args": [sleep, "m"]})
    with started(
        argv("redkit_worker", "default", "--shutdown-timeout", timeout), ROOT, env
    ) as proc:
        until(lambda: kit.cache.get("started:m"), what="the job's start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    assert job.refresh().state == state
    if state == "completed":
        assert job.result == "m"
    else:
        assert "gave 1 unfinished job(s) back" in err
        assert job.attempts_made == 0


def test_info_retry_failed_and_drain(project: Any) -> None:
    kit, env = project
    q = kit.queue("default")
    failed = q.add("tests.django.testapp.tasks.exits", {"args": [1]})
    assert manage(env, "redkit_worker", "--burst").returncode == 0
    assert failed.refresh().state == "failed"
    q.add("x", {}, delay=3600)
    q.add("y", {})
    info = manage(env, "redkit_info", "default")
    assert info.returncode == 0, info.stderr
    assert "waiting=1  prioritized=0  delayed=1  active=0  completed=0  failed=1" in info.stdout
    assert '"failed": 1' in manage(env, "redkit_info", "--json").stdout
    moved = manage(env, "redkit_retry_failed", "default", "--limit", "5")
    assert moved.stdout.strip() == "1 failed job(s) of 'default' moved back to the queue"
    assert q.counts()["waiting"] == 2
    refused = manage(env, "redkit_drain", "default", stdin="no\n")
    assert refused.returncode == 0
    assert "nothing was deleted" in refused.stdout
    assert "Delete the 2 waiting job(s) of queue 'default'?" in refused.stdout
    assert q.counts()["waiting"] == 2
    asked = manage(env, "redkit_drain", "default", stdin="yes\n")
    assert "2 waiting job(s) of 'default' deleted" in asked.stdout
    assert manage(env, "redkit_drain", "default", "--delayed", "--yes").stdout.startswith(
        "1 waiting job(s)"
    )
    assert q.counts()["delayed"] == 0


def test_schedules(project: Any) -> None:
    kit, _env = project
    env = _env
    q = kit.queue("default")
    q.schedule("cleanup", "tests.django.testapp.tasks.exits", every=3600)
    listed = manage(env, "redkit_schedules", "default")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(
        "cleanup: tests.django.testapp.tasks.exits every 1:00:00, next "
    )
    removed = manage(env, "redkit_schedules", "default", "--remove", "cleanup")
    assert "job scheduler 'cleanup' of 'default' removed" in removed.stdout
    missing = manage(env, "redkit_schedules", "default", "--remove", "cleanup")
    assert missing.returncode == 2
    assert "has no job scheduler 'cleanup'" in missing.stderr
    assert q.schedules() == []


def test_metrics(project: Any) -> None:
    from tests.servers import free_port
    from tests.test_metrics_export import served_until_sigterm

    kit, env = project
    kit.queue("default").add("tests.django.testapp.tasks.add", {"args": [1, 2]})
    kit.queue("emails").add("tests.django.testapp.tasks.greet", {"args": ["Ada"]})
    port = free_port()
    text = served_until_sigterm(
        argv("redkit_metrics", "--port", str(port)), port, env=env, cwd=ROOT
    )
    assert 'redkit_queue_jobs{queue="default",state="waiting"} 1.0' in text
    assert 'redkit_queue_jobs{queue="emails",state="waiting"} 1.0' in text  # every known queue
    bad = manage(env, "redkit_metrics", "--port", "70000")
    assert bad.returncode == 2
    assert "--port must be a port number" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["redkit_worker", "-c", "0"], "--concurrency must be a whole number >= 1, got '0'"),
        (["redkit_worker", "--limiter", "10"], "--limiter is MAX/SECONDS"),
        (["redkit_worker", "--shutdown-timeout", "nan"], "--shutdown-timeout is a number"),
        (["redkit_worker", ""], "queue name"),
        (["redkit_retry_failed", "default", "--limit", "0"], "--limit must be a whole number"),
        (["redkit_info", "--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_usage_mistakes_are_one_line_and_status_2(project: Any, args: list[str], says: str) -> None:
    _, env = project
    done = manage(env, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert says in done.stderr


@pytest.mark.parametrize("command", ["redkit_worker", "redkit_info"])
def test_memory_is_refused(project: Any, command: str) -> None:
    _, env = project
    done = manage({**env, "RKT_URL": "memory://"}, command)
    assert done.returncode == 2
    assert "memory://, which lives inside one process" in done.stderr


def test_an_unreachable_redis_is_status_1(project: Any) -> None:
    _, env = project
    done = manage({**env, "RKT_URL": "redis://127.0.0.1:1/0"}, "redkit_info", "default")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("CommandError: redkit:") or "redkit:" in done.stderr
