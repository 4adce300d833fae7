"""The ``django.tasks`` backend: ``TASKS = {"default": {"BACKEND":
"redkit_django.tasks.RedkitBackend"}}``, Django 6's own ``django.tasks`` or, on Django 5.2, the
``django-tasks`` package.

A Django task is a job of the redkit queue named by its ``queue_name``: its name is the task's
module path, its data the call's arguments and the task's ``using()`` values. Django's priority
(-100 to 100, higher first) becomes the queue's priority ``101 - priority`` (1 to 201, lower
first), so Django tasks run in strict priority order, each priority in the order sent. The
result id is ``<queue>:<job id>``, so any process reads a result back with ``get_result``, from
the backend that sent it (the id of another backend's queue or job does not exist there). The
worker (``manage.py redkit_worker``) runs the jobs whose name is no redkit task with
:class:`TaskRunner`, which sends ``task_started`` and ``task_finished``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from redkit.errors import Unrecoverable

from .conf import get_async_kit, get_kit
from .jobs import in_django

__all__ = [
    "RedkitBackend",
    "TaskRunner",
    "ajob_of",
    "backend_queues",
    "from_queue_priority",
    "job_of",
]

log = logging.getLogger("redkit.django")

try:  # Django 6
    from django.tasks import TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
except ImportError:  # Django 5.2 and the django-tasks package
    try:
        from django_tasks import TaskResult, TaskResultStatus
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError:
        BaseTaskBackend = None

HIGHEST = 100  # django.tasks' priorities: -100 to 100, higher first
STATUS = {
    "waiting": "READY",
    "prioritized": "READY",
    "delayed": "READY",
    "active": "RUNNING",
    "completed": "SUCCESSFUL",
    "failed": "FAILED",
    "cancelled": "FAILED",  # django.tasks has no cancelled status: it did not succeed
    "waiting_children": "READY",  # a parent of a flow, waiting for its children
}
"""The status of a ``django.tasks`` result for each state of its job."""


def to_queue_priority(priority: int) -> int:
    """Django's priority (-100..100, higher first) as the queue's (1..201, lower first)."""
    return HIGHEST + 1 - int(priority)


def from_queue_priority(priority: int) -> int:
    """The inverse of :func:`to_queue_priority`."""
    return HIGHEST + 1 - int(priority)


def backend_queues() -> set[str]:
    """The queues of the ``TASKS`` backends that are redkit's (for the worker's defaults)."""
    names: set[str] = set()
    for params in (getattr(settings, "TASKS", None) or {}).values():
        backend = str(params.get("BACKEND", ""))
        if backend.rpartition(".")[2] == "RedkitBackend" and backend.startswith("redkit_django"):
            names.update(params.get("QUEUES") or ["default"])
    return names


def exception_path(reason: str | None, traceback: str | None) -> str:
    """The dotted path of the exception a failed job raised, from its traceback's last line
    (``module.Error: message``; builtins are written without their module)."""
    lines = (traceback or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    head = ""
    for line in lines[starts[-1] + 1 :] if starts else []:
        if line and not line.startswith(" "):
            head = line
            break
    if not head:
        head = reason or ""
    name = head.partition(":")[0].strip()
    if not name.replace(".", "").replace("_", "").isalnum():
        return "builtins.Exception"  # a failure that raised nothing (a stall, say)
    if "." not in name:
        return f"builtins.{name}" if isinstance(getattr(builtins, name, None), type) else name
    return name


def _task_at(path: str) -> Any:
    """The ``django.tasks`` Task declared at ``path``; ``None`` when there is none."""
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


class TaskRunner:
    """The worker's processor for ``django.tasks`` jobs: finds the task by the job's name, runs
    it inside Django (connections checked around it) and sends the task signals."""

    def __init__(self) -> None:
        self.worker_id = ""

    def __call__(self, job: Any) -> Any:
        declared = _task_at(job.name) if BaseTaskBackend is not None else None
        if declared is None:
            raise Unrecoverable(
                f"no task named {job.name!r} is declared for queue {job.queue_name!r} (a "
                "redkit_django task in an app's tasks.py, or a django.tasks task)"
            )
        return in_django(self._run)(declared, job)

    def _run(self, declared: Any, job: Any) -> Any:
        data = job.data if isinstance(job.data, dict) else {}
        now = timezone.now()
        result = _result(
            _using(declared, data.get("task") or {}, job.queue_name),
            f"{job.queue_name}:{job.id}",
            "RUNNING",
            data,
            enqueued_at=None,
            started_at=now,
            worker_ids=[self.worker_id],
        )
        sender = type(result.task.get_backend())
        task_started.send(sender=sender, task_result=result)
        task = result.task
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
            else:
                value = task.call(*result.args, **result.kwargs)
            value = normalize_json(value)
        except BaseException as exc:
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            object.__setattr__(result, "finished_at", timezone.now())
            result.errors.append(
                TaskError(
                    exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                    traceback=_format(exc),
                )
            )
            task_finished.send(sender=sender, task_result=result)
            raise
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "_return_value", value)
        task_finished.send(sender=sender, task_result=result)
        return value


def _format(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _using(declared: Any, meta: dict[str, Any], queue: str) -> Any:
    """The declared task with what ``using()`` gave when it was sent."""
    run_after = meta.get("run_after")
    changes: dict[str, Any] = {"queue_name": queue}
    if isinstance(meta.get("priority"), int):
        changes["priority"] = meta["priority"]
    if isinstance(run_after, str):
        changes["run_after"] = datetime.fromisoformat(run_after)
    if isinstance(meta.get("backend"), str):
        changes["backend"] = meta["backend"]
    try:
        return declared.using(**changes)
    except Exception:  # that backend or queue is not configured in this process
        return declared


def _result(
    task: Any,
    result_id: str,
    status: str,
    data: dict[str, Any],
    *,
    enqueued_at: datetime | None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    errors: list[Any] | None = None,
    worker_ids: list[str] | None = None,
) -> Any:
    args = data.get("args")
    kwargs = data.get("kwargs")
    return TaskResult(
        task=task,
        id=result_id,
        status=TaskResultStatus[status],
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=started_at,
        args=args if isinstance(args, list) else [],
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        backend=task.backend,
        errors=list(errors or ()),
        worker_ids=list(worker_ids or ()),
    )


def _split(result_id: object) -> tuple[str, str]:
    """``<queue>:<job id>`` -> (queue, job id); TaskResultDoesNotExist for anything else."""
    if isinstance(result_id, str):
        queue, sep, job_id = result_id.rpartition(":")
        if sep and queue and job_id:
            return queue, job_id
    raise TaskResultDoesNotExist(f"no task result has the id {result_id!r}")


def job_of(result: Any) -> Any:
    """The :class:`redkit.queue.Job` behind a ``django.tasks`` result (or its id), for what
    ``TaskResult`` does not carry: its ``progress`` (a task reports it with
    ``redkit.queue.current_job().update_progress(...)``), ``events()``, ``remove()``. ``None``
    when the queue no longer holds the job."""
    queue, job_id = _split(getattr(result, "id", result))
    try:
        return get_kit().queue(queue).get_job(job_id)
    except (TypeError, ValueError):
        return None


async def ajob_of(result: Any) -> Any:
    """:func:`job_of` on the running loop's client (an :class:`redkit.queue.AsyncJob`)."""
    queue, job_id = _split(getattr(result, "id", result))
    try:
        return await get_async_kit().queue(queue).get_job(job_id)
    except (TypeError, ValueError):
        return None


def _read_back(result_id: str, queue: str, job: Any, backend: Any) -> Any:
    """The ``TaskResult`` of the job read from Redis, when ``backend`` sent it: a result id
    naming another backend's queue, or a job another backend sent, does not exist here."""
    declared = _task_at(job.name) if job is not None else None
    record = job.record if declared is not None else None
    data = record.data if record is not None and isinstance(record.data, dict) else {}
    meta = data.get("task")
    sender = meta.get("backend") if isinstance(meta, dict) else None
    if record is None or queue not in backend.queues or sender != backend.alias:
        raise TaskResultDoesNotExist(f"no task result has the id {result_id!r}")
    errors = []
    if record.failed_reason is not None:
        errors.append(
            TaskError(
                exception_class_path=exception_path(record.failed_reason, record.stacktrace),
                traceback=record.stacktrace or record.failed_reason,
            )
        )
    result = _result(
        _using(declared, data.get("task") or {}, queue),
        result_id,
        STATUS.get(record.state, "READY"),
        data,
        enqueued_at=record.created_at,
        started_at=record.processed_at,
        finished_at=record.finished_at
        if record.state in ("completed", "failed", "cancelled")
        else None,
        errors=errors,
        worker_ids=[record.worker_id] if record.worker_id else [],
    )
    if record.state == "completed":
        object.__setattr__(result, "_return_value", record.result)
    return result


if BaseTaskBackend is not None:

    class RedkitBackend(BaseTaskBackend):  # type: ignore[misc]
        """Runs ``django.tasks`` tasks on redkit's job queue (the settings of ``REDKIT``)."""

        supports_defer = True
        supports_async_task = True
        supports_get_result = True
        supports_priority = True

        def validate_task(self, task: Any) -> None:
            super().validate_task(task)
            try:
                get_kit().queue(task.queue_name)
            except (TypeError, ValueError) as exc:
                raise InvalidTask(f"queue_name {task.queue_name!r} is not valid: {exc}") from None

        def _job(self, task: Any, args: Iterable[Any], kwargs: dict[str, Any]) -> Any:
            """What to add: (name, data, options), every part checked."""
            self.validate_task(task)
            run_after = task.run_after
            if run_after is not None and timezone.is_naive(run_after):
                run_after = timezone.make_aware(run_after)
            meta = {
                "priority": task.priority,
                "backend": task.backend,
                "run_after": run_after.isoformat() if run_after is not None else None,
            }
            data = {
                "args": normalize_json(list(args)),
                "kwargs": normalize_json(dict(kwargs)),
                "task": meta,
            }
            options: dict[str, Any] = {"priority": to_queue_priority(task.priority)}
            if run_after is not None:
                options["delay"] = run_after
            return task.module_path, data, options

        def _enqueued(self, task: Any, queue: str, job_id: str, data: dict[str, Any]) -> Any:
            result = _result(task, f"{queue}:{job_id}", "READY", data, enqueued_at=timezone.now())
            task_enqueued.send(type(self), task_result=result)
            return result

        def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
            name, data, options = self._job(task, args, kwargs)
            job = get_kit().queue(task.queue_name).add(name, data, **options)
            return self._enqueued(task, task.queue_name, job.id, data)

        async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
            name, data, options = self._job(task, args, kwargs)
            job = await get_async_kit().queue(task.queue_name).add(name, data, **options)
            return self._enqueued(task, task.queue_name, job.id, data)

        def get_result(self, result_id: str) -> Any:
            queue = self._queue_of(result_id)
            return _read_back(result_id, queue, job_of(result_id), self)

        async def aget_result(self, result_id: str) -> Any:
            queue = self._queue_of(result_id)
            return _read_back(result_id, queue, await ajob_of(result_id), self)

        def _queue_of(self, result_id: object) -> str:
            """The queue a result id names, when it is one of this backend's (nothing is
            read from Redis for another)."""
            queue = _split(result_id)[0]
            if queue not in self.queues:
                raise TaskResultDoesNotExist(f"no task result has the id {result_id!r}")
            return queue

else:

    class RedkitBackend:  # type: ignore[no-redef]
        """Without ``django.tasks`` (Django 6) or the ``django-tasks`` package there is no
        backend to be: configuring it says what to install."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "redkit_django.tasks.RedkitBackend needs Django 6's django.tasks, or on Django "
                "5.2 the django-tasks package: pip install django-tasks"
            )
