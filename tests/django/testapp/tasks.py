"""Tasks of the adapter's tests: redkit_django tasks, and django.tasks tasks when Django 6 or the
django-tasks package provides them. The worker finds this module by autodiscovery."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth.models import User
from django.db import connection

import redkit_django

RAN: list[Any] = []
"""What the tasks run in this process did, in order (tests read it; the worker runs on a thread)."""


@redkit_django.task
def add(a: int, b: int) -> int:
    return a + b


@redkit_django.task
def copy_to(name: str, using: str) -> str:
    """A task whose own parameter is named ``using``."""
    return f"{name} -> {using}"


@redkit_django.task(queue="emails", attempts=2)
async def greet(name: str) -> str:
    return f"hello {name}"


@redkit_django.task
def count_users() -> int:
    return User.objects.count()


@redkit_django.task
async def acount_users() -> int:
    return await User.objects.acount()


@redkit_django.task
def break_the_connection() -> int:
    """Close the database socket behind Django's back, then query: the job fails."""
    User.objects.count()
    connection.connection.close()
    return User.objects.count()


@redkit_django.task
def exits(code: int) -> None:
    raise SystemExit(code)


@redkit_django.task
def note(label: str) -> str:
    RAN.append(label)
    return label


@redkit_django.task
def sleep_then(seconds: float, marker: str) -> str:
    """Mark that it started (in the cache), sleep, return ``marker``."""
    redkit_django.get_kit().cache.set(f"started:{marker}", True, ttl=60)
    time.sleep(seconds)
    return marker


try:  # Django 6
    from django.tasks import task as django_task
except ImportError:  # Django 5.2 with django-tasks, or neither
    try:
        from django_tasks import task as django_task
    except ImportError:
        django_task = None

if django_task is not None:

    @django_task
    def reports_progress(steps: int) -> int:
        from redkit.queue import current_job

        for step in range(1, steps + 1):
            current_job().update_progress({"step": step, "of": steps})
        return steps

    @django_task
    def multiply(a: int, b: int) -> int:
        return a * b

    @django_task
    async def amultiply(a: int, b: int) -> int:
        return a * b

    @django_task(takes_context=True)
    def with_context(context: Any, x: int) -> dict[str, Any]:
        return {"attempt": context.attempt, "id": context.task_result.id, "x": x}

    @django_task
    def fails(message: str) -> None:
        raise ValueError(message)

    @django_task
    def exits_task() -> None:
        raise SystemExit(2)

    @django_task
    def record(label: str) -> str:
        RAN.append(label)
        return label

    @django_task
    def returns_bytes() -> Any:
        return (b"raw", 1)

    @django_task
    def users() -> int:
        return User.objects.count()
