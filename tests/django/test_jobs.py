"""``@redkit_django.task``: jobs sent to the current client (rebuilt on override_settings), sent
after commit, run by a worker inside Django (connections checked around each job; a database
error or a SystemExit fails that job only), on real Redis and the cluster, sync and async."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import override_settings

import redkit_django
from redkit.errors import SerializationError
from redkit.queue import AsyncJob, Job, JobFailed
from redkit_django import jobs
from redkit_django.models import OutboxJob
from tests.django.conftest import redkit_settings
from tests.django.testapp import tasks

DB = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])


def run_burst(queue: str = "default", **options: Any) -> Any:
    """Serve ``queue`` until no job is ready (on a thread, as ``redkit_worker --burst`` would)."""
    worker = jobs.worker(queue, burst=True, shutdown_timeout=5, **options)
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the burst worker did not stop"
    return worker


# the worker checks the connections of the thread async tasks run in, which an earlier test's
# async ORM calls may have opened (SQLite's in-memory test database is never closed)
@pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
def test_a_task_is_sent_on_the_current_client_and_run_by_a_worker(
    redkit_on: dict[str, Any],
) -> None:
    job = tasks.add.enqueue(2, 3)
    assert isinstance(job, Job)
    assert job.state == "waiting"
    assert job.name == "tests.django.testapp.tasks.add"
    assert job.data == {"args": [2, 3], "kwargs": {}}
    greeting = tasks.greet.enqueue(name="Ada")
    assert greeting.queue_name == "emails"
    assert tasks.add(1, 1) == 2  # a call runs here
    run_burst("default")
    assert job.wait(0) == 5
    assert greeting.refresh().state == "waiting"  # another queue
    worker = run_burst("emails")
    assert greeting.wait(0) == "hello Ada"
    assert worker.processed == 1


def test_a_task_follows_the_client_when_the_settings_change(redis_url: str) -> None:
    first, second = redkit_settings(redis_url), redkit_settings(redis_url)
    with override_settings(REDKIT=first):
        kit = redkit_django.get_kit()
        tasks.add.enqueue(1, 2)
        with override_settings(REDKIT=second):
            other = redkit_django.get_kit()
            job = tasks.add.options(priority=3).enqueue(4, 5)
            assert other.queue("default").counts()["prioritized"] == 1
            run_burst()
            assert job.wait(0) == 9
            other.clear()
        assert redkit_django.get_kit().queue("default").counts()["waiting"] == 1
        redkit_django.get_kit().clear()
    assert kit.closed


async def test_aenqueue_sends_on_the_running_loops_client(redkit_on: dict[str, Any]) -> None:
    job = await tasks.add.aenqueue(20, 22)
    assert isinstance(job, AsyncJob)
    later = await tasks.add.aenqueue_in(timedelta(hours=1), 1, 1)
    at = await tasks.add.aenqueue_at(datetime.now(timezone.utc) + timedelta(hours=1), 2, 2)
    assert (later.state, at.state) == ("delayed", "delayed")
    await asyncio_to_thread(run_burst)
    assert await job.wait(0) == 42
    assert (await later.refresh()).state == "delayed"


async def asyncio_to_thread(fn: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn)


def test_options_and_delays(redkit_on: dict[str, Any]) -> None:
    q = redkit_django.get_kit().queue("default")
    first = tasks.add.options(job_id="sum-1").enqueue(1, 2)
    again = tasks.add.options(job_id="sum-1").enqueue(5, 5)
    assert again.id == first.id == "sum-1"
    assert again.data == {"args": [1, 2], "kwargs": {}}
    later = tasks.add.enqueue_in(3600, 1, 1)
    at = tasks.add.enqueue_at(datetime.now(timezone.utc) + timedelta(hours=1), 1, 1)
    assert q.counts()["delayed"] == 2
    assert later.state == at.state == "delayed"
    assert tasks.greet.defaults == {"attempts": 2}
    assert repr(tasks.add) == "<DjangoTask 'tests.django.testapp.tasks.add' on 'default'>"


def test_bad_input_is_refused_before_anything_is_sent(redkit_on: dict[str, Any]) -> None:
    q = redkit_django.get_kit().queue("default")
    with pytest.raises(TypeError, match="unknown job option"):
        tasks.add.options(prority=1)
    with pytest.raises(ValueError, match="priority"):
        tasks.add.options(priority=-1).enqueue(1, 2)
    with pytest.raises(SerializationError):
        tasks.add.enqueue(datetime.now(), 1)
    with pytest.raises(SerializationError):
        tasks.add.enqueue_on_commit(object(), 1)
    with pytest.raises(TypeError, match="using"):
        tasks.add.enqueue_on_commit(1, 2, using=3)
    with pytest.raises(TypeError, match="unknown task option"):
        redkit_django.task(retries=3)
    with pytest.raises(TypeError, match="queue"):
        redkit_django.task(queue=7)
    with pytest.raises(TypeError, match="decorates a function"):
        redkit_django.task(42)  # type: ignore[call-overload]
    assert sum(q.counts().values()) == 0


def test_a_different_function_cannot_take_a_declared_name() -> None:
    def other(a: int, b: int) -> int:
        return a - b

    with pytest.raises(ValueError, match="declared already"):
        redkit_django.task(name="tests.django.testapp.tasks.add")(other)


def test_the_registry_and_the_default_queues() -> None:
    jobs.discover()
    names = [t.name for t in jobs.registered()]
    assert "tests.django.testapp.tasks.add" in names
    assert names == sorted(names)
    assert {"default", "emails"} <= set(jobs.queue_names())


# -- after commit -----------------------------------------------------------------------------
@DB
@pytest.mark.parametrize("outbox", [False, True], ids=["direct", "outbox"])
@pytest.mark.parametrize("using", ["default", "sqlite"])
def test_enqueue_on_commit_sends_after_the_outermost_commit_only(
    redkit_on: dict[str, Any], using: str, outbox: bool
) -> None:
    with override_settings(REDKIT={**redkit_on, "OUTBOX": outbox}):
        _sends_after_the_outermost_commit_only(using)
    assert not OutboxJob.objects.using(using).exists()  # each row deleted once its job was sent


def _sends_after_the_outermost_commit_only(using: str) -> None:
    q = redkit_django.get_kit().queue("default")
    with transaction.atomic(using=using):
        job_id = tasks.add.enqueue_on_commit(1, 2, using=using)
        with transaction.atomic(using=using):
            tasks.add.enqueue_on_commit(3, 4, using=using)
        assert q.counts()["waiting"] == 0  # inner block done: still inside the outer one
    assert q.counts()["waiting"] == 2
    assert q.get_job(job_id).data == {"args": [1, 2], "kwargs": {}}

    def rolled_back() -> None:
        with transaction.atomic(using=using):
            tasks.add.enqueue_on_commit(5, 6, using=using)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        rolled_back()
    with transaction.atomic(using=using):
        try:
            with transaction.atomic(using=using):
                tasks.add.enqueue_on_commit(7, 8, using=using)
                raise RuntimeError("savepoint rolled back")
        except RuntimeError:
            pass
    assert q.counts()["waiting"] == 2  # neither the rollback nor the savepoint's job

    immediate = tasks.add.enqueue_on_commit(9, 9, using=using)  # autocommit: at once
    assert q.get_job(immediate).data == {"args": [9, 9], "kwargs": {}}
    other = "sqlite" if using == "default" else "default"
    with transaction.atomic(using=other):  # another connection's transaction does not hold it
        tasks.add.enqueue_on_commit(1, 1, using=using)
        assert q.counts()["waiting"] == 4


# -- running inside Django ----------------------------------------------------------------------
@DB
def test_jobs_use_the_database_and_a_broken_connection_fails_one_job_only(
    redkit_on: dict[str, Any],
) -> None:
    User.objects.create(username="ada")
    broken = tasks.break_the_connection.enqueue()
    counted = tasks.count_users.enqueue()
    acounted = tasks.acount_users.enqueue()
    worker = run_burst(concurrency=1)
    with pytest.raises(JobFailed, match=r"InterfaceError|OperationalError"):
        broken.wait(0)
    assert counted.wait(0) == 1  # the next job on that thread got a fresh connection
    assert acounted.wait(0) == 1
    assert (worker.processed, worker.failed) == (2, 1)


def test_a_task_raising_system_exit_fails_alone(redkit_on: dict[str, Any]) -> None:
    exited = tasks.exits.enqueue(3)
    after = tasks.add.enqueue(1, 1)
    worker = run_burst(concurrency=1)
    with pytest.raises(JobFailed, match="SystemExit: 3"):
        exited.wait(0)
    assert after.wait(0) == 2
    assert worker.processed == 1


def test_a_job_of_no_declared_task_fails_naming_it(redkit_on: dict[str, Any]) -> None:
    job = redkit_django.get_kit().queue("default").add("tests.nowhere.task", {"args": []})
    run_burst()
    with pytest.raises(JobFailed, match=r"no task named 'tests\.nowhere\.task'"):
        job.wait(0)


@DB
def test_a_task_with_a_using_parameter_gets_it_and_the_alias_comes_from_options(
    redkit_on: dict[str, Any],
) -> None:
    q = redkit_django.get_kit().queue("default")
    with transaction.atomic(using="sqlite"):
        job_id = tasks.copy_to.options(using="sqlite").enqueue_on_commit("a", using="archive")
        assert q.get_job(job_id) is None  # waits for the sqlite transaction, not default's
    assert q.get_job(job_id).data == {"args": ["a"], "kwargs": {"using": "archive"}}
    with transaction.atomic(using="default"):
        later = tasks.copy_to.enqueue_on_commit("b", using="archive")  # the task's argument
        assert q.get_job(later) is None  # the database: "default"
    assert q.get_job(later).data == {"args": ["b"], "kwargs": {"using": "archive"}}
    with transaction.atomic(using="sqlite"):
        shorthand = tasks.add.options(priority=1).enqueue_on_commit(1, 2, using="sqlite")
        assert q.get_job(shorthand) is None
    job = q.get_job(shorthand)
    assert job.data == {"args": [1, 2], "kwargs": {}}
    record = job.record
    assert record is not None
    assert record.priority == 1
    with pytest.raises(TypeError, match="database alias"):
        tasks.add.options(using=3).enqueue_on_commit(1, 2)
