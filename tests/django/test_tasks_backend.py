"""``redkit_django.tasks.RedkitBackend``: Django's ``django.tasks`` (Django 6) or the
``django-tasks`` package (Django 5.2) on redkit's queue: enqueue and aenqueue, results read back
from Redis with their statuses, timestamps, errors and workers, the task signals, ``using()``
values, strict priority order, and Django's own validation errors, on real Redis and the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as tz
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

import redkit_django
from tests.django.test_jobs import run_burst
from tests.django.testapp import tasks

try:
    from django.tasks import TaskResultStatus, default_task_backend, signals
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
except ImportError:
    try:
        from django_tasks import TaskResultStatus, default_task_backend, signals
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
    except ImportError:
        pytest.skip("neither django.tasks nor django-tasks is installed", allow_module_level=True)

BACKEND = {"BACKEND": "redkit_django.tasks.RedkitBackend", "QUEUES": ["default", "emails"]}


@pytest.fixture
def backend(redkit_on: dict[str, Any]) -> Iterator[Any]:
    with override_settings(TASKS={"default": BACKEND}):
        yield default_task_backend


@pytest.fixture
def sent() -> Iterator[list[tuple[str, str, str]]]:
    """(signal, result id, status) of every task signal sent, in order."""
    seen: list[tuple[str, str, str]] = []
    receivers = {}
    for name in ("task_enqueued", "task_started", "task_finished"):

        def receive(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            seen.append((_name, task_result.id, str(task_result.status)))

        receivers[name] = receive
        getattr(signals, name).connect(receive)
    yield seen
    for name, receive in receivers.items():
        getattr(signals, name).disconnect(receive)


def test_a_task_runs_on_a_worker_and_its_result_is_read_back(backend: Any, sent: list) -> None:
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority
    result = tasks.multiply.enqueue(6, 7)
    assert result.status == TaskResultStatus.READY
    assert result.args == [6, 7]
    queue, _, job_id = result.id.rpartition(":")
    assert queue == "default"
    job = redkit_django.get_kit().queue("default").get_job(job_id)
    assert job.name == "tests.django.testapp.tasks.multiply"
    ready = tasks.multiply.get_result(result.id)
    assert ready.status == TaskResultStatus.READY
    assert ready.enqueued_at is not None
    assert ready.started_at is None
    assert ready.worker_ids == []
    with pytest.raises(ValueError, match="not finished"):
        _ = ready.return_value
    worker = run_burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.worker_ids == [worker.id]
    assert result.attempts == 1
    assert result.errors == []
    assert sent == [
        ("task_enqueued", result.id, "READY"),
        ("task_started", result.id, "RUNNING"),
        ("task_finished", result.id, "SUCCESSFUL"),
    ]


async def test_async_enqueue_results_and_async_tasks(backend: Any) -> None:
    result = await tasks.amultiply.aenqueue(3, 4)
    context = await tasks.with_context.aenqueue(x=5)
    assert (await backend.aget_result(result.id)).status == TaskResultStatus.READY
    await asyncio.to_thread(run_burst)
    await result.arefresh()
    assert result.return_value == 12
    done = await tasks.with_context.aget_result(context.id)
    assert done.return_value == {"attempt": 1, "id": context.id, "x": 5}
    assert done.kwargs == {"x": 5}


def test_a_failure_keeps_the_exception_and_its_traceback(backend: Any, sent: list) -> None:
    failed = tasks.fails.enqueue("boom")
    exited = tasks.exits_task.enqueue()
    after = tasks.multiply.enqueue(2, 2)
    run_burst(concurrency=1)
    failed.refresh()
    assert failed.status == TaskResultStatus.FAILED
    assert failed.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value
    (error,) = failed.errors
    assert error.exception_class is ValueError
    assert "boom" in error.traceback
    assert "in fails" in error.traceback
    exited.refresh()
    assert exited.status == TaskResultStatus.FAILED
    assert exited.errors[0].exception_class is SystemExit
    after.refresh()
    assert after.return_value == 4  # the worker survived the SystemExit
    finished = [(rid, status) for name, rid, status in sent if name == "task_finished"]
    assert finished == [(failed.id, "FAILED"), (exited.id, "FAILED"), (after.id, "SUCCESSFUL")]


def test_using_values_are_kept_and_run_after_defers(backend: Any) -> None:
    later = datetime.now(tz.utc) + timedelta(hours=1)
    deferred = tasks.multiply.using(run_after=later, priority=40).enqueue(1, 1)
    other = tasks.multiply.using(queue_name="emails", priority=-3).enqueue(2, 3)
    assert other.id.startswith("emails:")
    run_burst("default")
    read = tasks.multiply.get_result(deferred.id)
    assert read.status == TaskResultStatus.READY
    assert (read.task.priority, read.task.run_after, read.task.queue_name) == (40, later, "default")
    assert read.task.backend == "default"
    assert read.backend == "default"
    assert redkit_django.get_kit().queue("default").counts()["delayed"] == 1
    run_burst("emails")
    emailed = backend.get_result(other.id)
    assert emailed.return_value == 6
    assert emailed.task.priority == -3


def test_priorities_run_in_strict_order(backend: Any) -> None:
    tasks.RAN.clear()
    order = [("low", -100), ("mid", 0), ("top", 100), ("mid2", 0), ("high", 50), ("neg", -5)]
    for label, priority in order:
        tasks.record.using(priority=priority).enqueue(label)
    run_burst(concurrency=1)
    assert tasks.RAN == ["top", "high", "mid", "mid2", "neg", "low"]


@pytest.mark.django_db(transaction=True)
def test_tasks_reach_the_database_and_return_values_are_normalized(backend: Any) -> None:
    User.objects.create(username="ada")
    counted = tasks.users.enqueue()
    raw = tasks.returns_bytes.enqueue()
    run_burst()
    assert backend.get_result(counted.id).return_value == 1
    assert backend.get_result(raw.id).return_value == ["raw", 1]


def test_django_validation_errors(backend: Any) -> None:
    q = redkit_django.get_kit().queue("default")
    with pytest.raises(InvalidTask, match="Queue 'other' is not valid"):
        tasks.multiply.using(queue_name="other").enqueue(1, 2)
    with pytest.raises(InvalidTask, match="priority"):
        tasks.multiply.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.multiply.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)
    with pytest.raises(TypeError):
        tasks.multiply.enqueue(object(), 2)
    with (
        override_settings(TASKS={"default": {**BACKEND, "QUEUES": []}}),
        pytest.raises(InvalidTask, match="queue_name"),
    ):
        tasks.multiply.using(queue_name="").enqueue(1, 2)
    assert sum(q.counts().values()) == 0


@pytest.mark.parametrize(
    "result_id",
    ["", "no-colon", "default:nope", ":x", "default:", "\x00:1", "a" * 300 + ":1", "default:\n"],
)
def test_unknown_result_ids_do_not_exist(backend: Any, result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(result_id)


def test_a_job_that_is_no_django_task_has_no_result(backend: Any) -> None:
    job = tasks.add.enqueue(1, 2)  # a redkit_django task, not a django.tasks one
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(f"default:{job.id}")


def test_job_of_gives_the_job_behind_a_result_with_its_progress(backend: Any) -> None:
    from redkit_django.tasks import ajob_of, job_of

    result = tasks.reports_progress.enqueue(3)
    job = job_of(result)
    assert job is not None
    assert job.id == result.id.rpartition(":")[2]
    assert job.progress is None
    run_burst()
    assert job_of(result.id).progress == {"step": 3, "of": 3}
    assert tasks.reports_progress.get_result(result.id).return_value == 3

    async def read() -> Any:
        found = await ajob_of(result.id)
        return found.progress

    assert asyncio.run(read()) == {"step": 3, "of": 3}
    assert job_of(result.id.rpartition(":")[0] + ":no-such-job") is None
    for bad in ("no-colon", "", 5, None):
        with pytest.raises(TaskResultDoesNotExist):
            job_of(bad)


def test_a_backend_reads_back_only_results_of_its_own_queues_and_alias(redkit_on: Any) -> None:
    other = {"BACKEND": "redkit_django.tasks.RedkitBackend", "QUEUES": ["private", "default"]}
    with override_settings(TASKS={"default": BACKEND, "other": other}):
        task_backends = _task_backends()

        private = tasks.multiply.using(backend="other", queue_name="private").enqueue(2, 3)
        shared = tasks.multiply.using(backend="other").enqueue(2, 4)  # its "default" queue
        assert task_backends["other"].get_result(private.id).args == [2, 3]
        assert task_backends["other"].get_result(shared.id).args == [2, 4]
        for result_id in (private.id, shared.id):
            with pytest.raises(TaskResultDoesNotExist):
                default_task_backend.get_result(result_id)
        huge = "default:" + "9" * 100_000
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(huge)


def _task_backends() -> Any:
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends
    return task_backends
