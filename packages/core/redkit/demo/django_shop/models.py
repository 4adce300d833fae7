"""The shop's models: its customers are Django's users."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders"
    )
    total = models.PositiveIntegerField(help_text="in cents")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"order {self.pk} of {self.user_id}: {self.total / 100:.2f}"
