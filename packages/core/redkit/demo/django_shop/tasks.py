"""The shop's jobs: a receipt (a redkit task, sent after its order commits) and a slow report
(a ``django.tasks`` task on redkit's backend, reporting its progress)."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import Count, Sum

import redkit_django
from redkit.queue import current_job
from redkit_django.tasks import job_of

from .models import Order

try:
    from django.tasks import task  # Django 6
except ImportError:  # Django 5.2 and the django-tasks package
    from django_tasks import task

receipts: list[int] = []  # what the receipt task "sent" (in this process)


@redkit_django.task(queue="mail", attempts=5, backoff=2.0)
def send_receipt(order_id: int) -> int:
    order = Order.objects.filter(pk=order_id).first()  # the worker closes stale connections
    if order is None:
        raise LookupError(f"order {order_id} is gone")
    receipts.append(order_id)
    return order.total


@task(queue_name="reports")
def build_report(user_id: int, steps: int = 5, pause: float = 0.05) -> dict[str, Any]:
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(pause)  # the slow part
        job.update_progress({"step": step, "of": steps})
    totals = Order.objects.filter(user_id=user_id).aggregate(orders=Count("id"), total=Sum("total"))
    return {"user_id": user_id, "orders": totals["orders"], "total": totals["total"] or 0}


def report_progress(result_id: str) -> Any:
    """The progress the report's job last reported (``None`` before its first step)."""
    job = job_of(result_id)
    return None if job is None else job.progress
