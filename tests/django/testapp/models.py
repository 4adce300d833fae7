"""Models of the adapter's tests."""

from __future__ import annotations

from django.db import models

from redkit_django import invalidates
from redkit_django.querysets import InvalidatingManager


# -- invalidation (tests/django/test_invalidation*.py) ----------------------------------------
class Customer(models.Model):
    """Covered by no rule of its own: writes to it invalidate nothing."""

    name = models.CharField(max_length=50)


class Tag(models.Model):
    """Covered by ``REDKIT["INVALIDATE"]`` in the tests that need it (``tag:{name}``)."""

    name = models.CharField(max_length=50)


@invalidates("order:{id}", "customer:{customer_id}", "orders")
class Order(models.Model):
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="orders"
    )
    status = models.CharField(max_length=20, default="new")
    note = models.TextField(default="")
    tags = models.ManyToManyField(Tag, related_name="orders", blank=True)

    objects = InvalidatingManager()


class RushOrder(Order):
    """A multi-table child: its writes invalidate its parent's rule and both tables."""

    priority = models.IntegerField(default=1)


class ArchivedOrder(Order):
    """A proxy: the rule and the table of :class:`Order`."""

    class Meta:
        proxy = True
