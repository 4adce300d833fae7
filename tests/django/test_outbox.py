"""The outbox (``REDKIT["OUTBOX"]``): ``enqueue_on_commit`` writes its job to the table
``redkit_outbox`` in the transaction that asks for it, adds it to Redis after the commit and
deletes the row; a process killed between the COMMIT and the add leaves the row, and the relay
(``manage.py redkit_outbox``, the worker's thread) adds it, once. On PostgreSQL and SQLite, with
real Redis."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings

import redkit_django
from redkit.errors import SerializationError
from redkit.queue import Keep
from redkit.queue.outbox import encode_job
from redkit_django import outbox
from redkit_django.models import OutboxJob
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.django.test_commands import PATH, ROOT, argv
from tests.django.test_jobs import run_burst
from tests.django.testapp import tasks
from tests.django.testapp.models import Customer

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")
DB = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
GONE = Keep(completed=0)  # a completed job is deleted at once
BOTH = pytest.mark.parametrize("using", ["default", "sqlite"])


@pytest.fixture
def boxed() -> Any:
    """``REDKIT`` with the outbox on, a new prefix on real Redis; its keys deleted after."""
    values = {"URL": REDIS_URL, "PREFIX": new_prefix(), "OUTBOX": True}
    with override_settings(REDKIT=values):
        yield values
        redkit_django.get_kit().clear()


def _down(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` on a closed port: every Redis call fails."""
    return {**values, "URL": "redis://127.0.0.1:1/0", "RETRY_ATTEMPTS": 0}


def rows(using: str = "default") -> list[str]:
    return sorted(OutboxJob.objects.using(using).values_list("id", flat=True))


def queue() -> Any:
    return redkit_django.get_kit().queue("default")


@DB
@BOTH
def test_the_row_is_written_in_the_transaction_sent_after_the_commit_then_deleted(
    boxed: Any, using: str
) -> None:
    with transaction.atomic(using=using):
        Customer.objects.using(using).create(name="ada")
        job_id = tasks.add.enqueue_on_commit(1, 2, using=using)
        assert rows(using) == [job_id]  # in the transaction, beside the application's writes
        assert queue().get_job(job_id) is None
    assert rows(using) == []
    job = queue().get_job(job_id)
    assert (job.state, job.data) == ("waiting", {"args": [1, 2], "kwargs": {}})

    immediate = tasks.add.enqueue_on_commit(9, 9, using=using)  # autocommit: at once
    assert queue().get_job(immediate).state == "waiting"
    assert rows(using) == []


@DB
def test_bad_input_and_bad_settings_write_nothing(boxed: Any) -> None:
    with pytest.raises(SerializationError):
        tasks.add.enqueue_on_commit(object(), 1)
    for bad, match in [
        ("yes", "must be True, False"),
        ({"TTL": 5}, "unknown key"),
        ({"DEDUP_TTL": -1}, "DEDUP_TTL"),
        ({"DEDUP_TTL": "1d"}, "DEDUP_TTL"),
    ]:
        with (
            override_settings(REDKIT={**boxed, "OUTBOX": bad}),
            pytest.raises(ImproperlyConfigured, match=match),
        ):
            tasks.add.enqueue_on_commit(1, 2)
    assert rows() == []
    assert sum(queue().counts().values()) == 0


@DB
def test_with_redis_down_at_commit_the_row_waits_and_the_relay_sends_it_once(
    boxed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    down = _down(boxed)
    with (
        override_settings(REDKIT=down),
        caplog.at_level(logging.ERROR, "redkit.django"),
        transaction.atomic(),
    ):
        Customer.objects.create(name="kept")
        job_id = tasks.add.options(keep=GONE).enqueue_on_commit(2, 3)
    assert Customer.objects.filter(name="kept").exists()  # the commit stands
    assert rows() == [job_id]
    assert any("the relay will" in r.getMessage() for r in caplog.records)
    assert outbox.relay() == 1
    assert rows() == []
    assert queue().get_job(job_id).data == {"args": [2, 3], "kwargs": {}}
    assert outbox.relay() == 0

    # a row added again (a relay that died before deleting it) is the same job, even once
    # the job has run and is gone
    row = {"id": job_id, "queue": "default", "job": "", "created_ms": 1}
    raw = encode_job(tasks.add.options(keep=GONE)._task(), job_id, (2, 3), {}, 60)[2]
    OutboxJob.objects.create(**{**row, "job": raw})
    assert outbox.relay() == 1
    assert queue().counts()["waiting"] == 1
    run_burst()
    assert queue().get_job(job_id) is None  # ran, and deleted as it completed
    OutboxJob.objects.create(**{**row, "job": raw})
    assert outbox.relay() == 1
    assert queue().get_job(job_id) is None  # the dedup id outlives the job: nothing added
    assert sum(queue().counts().values()) == 0
    assert rows() == []


@DB
def test_a_row_that_is_not_a_job_is_logged_and_dropped_and_the_rest_moves(
    boxed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(REDKIT=_down(boxed)):
        good = tasks.add.enqueue_on_commit(1, 1)
    for ident, raw in [("a", "{not json"), ("b", '{"x": 1}'), ("c", '["other", "n", "d"]')]:
        OutboxJob.objects.create(id=ident, queue="default", job=raw, created_ms=0)
    with caplog.at_level(logging.ERROR, "redkit.queue"):
        assert outbox.relay(limit=2) == 4  # two transactions of two rows
    assert rows() == []
    assert queue().jobs("waiting") == [good]
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 3
    with pytest.raises(ValueError, match="limit"):
        outbox.relay(limit=0)


@DB
def test_the_relay_thread_moves_rows_until_stopped(boxed: Any) -> None:
    with override_settings(REDKIT=_down(boxed)), transaction.atomic():
        ids = [tasks.add.enqueue_on_commit(i, i) for i in range(5)]
    assert rows() == sorted(ids)
    relay = outbox.start_relay(interval=0.05)
    try:
        deadline = time.monotonic() + 15
        while rows() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        relay.stop()
    assert rows() == []
    assert relay.moved == 5
    assert sorted(queue().jobs("waiting")) == sorted(ids)
    with pytest.raises(ValueError, match="interval"):
        outbox.start_relay(interval=0)


@pytest.mark.django_db
def test_the_migration_matches_the_model() -> None:
    call_command("makemigrations", "redkit", "--check", "--dry-run", verbosity=0)


KILLED = textwrap.dedent(
    """
    import os, signal
    import django
    django.setup()
    from django.db import transaction
    from tests.django.testapp import tasks
    from tests.django.testapp.models import Customer

    with transaction.atomic():
        Customer.objects.create(name="paid")
        # runs first after the COMMIT: the job's own move never happens
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
        print(tasks.add.enqueue_on_commit(20, 22), flush=True)
    """
)


def _env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDKIT_", "DJANGO_"))}
    env.update(
        PYTHONPATH=PATH,
        RKT_URL=REDIS_URL,
        RKT_PREFIX=prefix,
        RKT_OUTBOX="1",
        RKT_DB_NAME=connections["default"].settings_dict["NAME"],  # the test database
        DJANGO_SETTINGS_MODULE="tests.django.settings_worker",
    )
    return env


def _killed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``KILLED``: a transaction that commits an order and its job, then a SIGKILL."""
    cmd = [sys.executable, "-c", KILLED]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_after_the_commit_loses_nothing_and_the_command_relays_it(
    boxed: Any,
) -> None:
    env = _env(boxed["PREFIX"])
    died = _killed(env)
    assert died.returncode == -signal.SIGKILL, died.stderr
    job_id = died.stdout.strip()
    assert Customer.objects.filter(name="paid").exists()
    assert rows() == [job_id]
    assert queue().get_job(job_id) is None  # killed before the add
    done = _run(env, "redkit_outbox", "--once")
    assert done.returncode == 0, done.stderr
    assert "moved 1 job(s)" in done.stdout
    assert rows() == []
    assert queue().get_job(job_id).data == {"args": [20, 22], "kwargs": {}}
    again = _run(env, "redkit_outbox", "--once")
    assert "moved 0 job(s)" in again.stdout
    bad = _run(env, "redkit_outbox", "--interval", "-1")
    assert bad.returncode == 2
    assert "--interval" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.django_db(transaction=True)
def test_the_worker_command_relays_what_a_dead_process_left_and_runs_it(boxed: Any) -> None:
    env = _env(boxed["PREFIX"])
    died = _killed(env)
    job_id = died.stdout.strip()
    assert rows() == [job_id]
    worker = subprocess.Popen(
        argv("redkit_worker", "default", "--log-level", "WARNING"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while queue().get_job(job_id) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker's relay thread moves the row
        assert queue().get_job(job_id).wait(30) == 42
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert rows() == []
