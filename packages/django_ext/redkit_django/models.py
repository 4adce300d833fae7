"""The adapter's one model: the outbox's table (``REDKIT["OUTBOX"]``), created by ``migrate``."""

from __future__ import annotations

from django.db import models


class OutboxJob(models.Model):  # type: ignore[misc]
    """A job written in the transaction that asked for it, waiting to be added to Redis:
    ``id`` is the job's id, ``job`` the add's arguments (JSON, checked when it was written)."""

    id = models.CharField(max_length=200, primary_key=True)
    queue = models.CharField(max_length=200)
    job = models.TextField()
    created_ms = models.BigIntegerField(db_index=True)

    class Meta:
        app_label = "redkit"
        db_table = "redkit_outbox"
        verbose_name = "outbox job"

    def __str__(self) -> str:
        return f"{self.queue}/{self.id}"
