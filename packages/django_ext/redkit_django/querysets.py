"""Querysets whose bulk writes invalidate too: ``QuerySet.update()``, ``bulk_create``,
``bulk_update`` and ``QuerySet.delete()`` send no ``post_save`` (and ``delete()`` a
``post_delete`` per row only when Django collects the rows), so :class:`InvalidatingQuerySet`
records their tags itself, after the commit like the signals' tags::

    class Order(models.Model):
        objects = InvalidatingManager()

Each records the table's tag and the constant tags of the model's rule; ``bulk_create`` and
``bulk_update`` the tags of every object given as well; ``update()`` of a model whose rule reads
fields reads those fields of the matched rows first (one more query, two when it changes one of
them), so the rows' tags before and after are invalidated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.db import models, transaction

from . import invalidation

__all__ = ["InvalidatingManager", "InvalidatingQuerySet"]

M = TypeVar("M", bound=models.Model)


class InvalidatingQuerySet(models.QuerySet):  # type: ignore[misc]
    """A ``QuerySet`` whose ``update``, ``bulk_create``, ``bulk_update`` and ``delete``
    invalidate the model's tags after the commit. Subclass it, or use it as a mixin before
    another queryset class."""

    def _rule(self) -> Any:
        return invalidation.coverage().rule(self.model)

    def _record(self, tags: Iterable[str]) -> None:
        invalidation.invalidate_on_commit(tags, using=self.db)

    def update(self, **kwargs: Any) -> int:
        rule = self._rule()
        rows: int
        if rule is None:
            rows = super().update(**kwargs)
            return rows
        if not rule.fields:
            rows = super().update(**kwargs)
            self._record(rule.constant)
            return rows
        pk = self.model._meta.pk.attname
        with transaction.atomic(using=self.db, savepoint=False):
            before = list(self.values(pk, *rule.fields))
            rows = super().update(**kwargs)
            tags = set(rule.constant)
            for row in before:
                tags |= rule.tags(row)
            if {rule.names.get(name, name) for name in kwargs} & set(rule.fields) and before:
                pks = [row[pk] for row in before]
                after = self.model._base_manager.using(self.db).filter(pk__in=pks)
                for row in after.values(pk, *rule.fields):
                    tags |= rule.tags(row)
            self._record(tags)
        return rows

    def bulk_create(self, objs: Iterable[M], *args: Any, **kwargs: Any) -> list[M]:
        created: list[M] = super().bulk_create(objs, *args, **kwargs)
        self._written(created)
        return created

    def bulk_update(
        self, objs: Iterable[M], fields: Sequence[str], *args: Any, **kwargs: Any
    ) -> int:
        objs = list(objs)
        rows: int = super().bulk_update(objs, fields, *args, **kwargs)
        self._written(objs, fields)
        return rows

    def _written(self, objs: Sequence[M], fields: Sequence[str] | None = None) -> None:
        rule = self._rule()
        if rule is None:
            return
        tags = set(rule.constant)
        for obj in objs:
            tags |= invalidation.written_tags(obj, rule, fields)
        self._record(tags)

    def delete(self) -> tuple[int, dict[str, int]]:
        rule = self._rule()
        deleted: tuple[int, dict[str, int]]
        if rule is None:
            deleted = super().delete()
            return deleted
        with transaction.atomic(using=self.db, savepoint=False):
            deleted = super().delete()
            self._record(rule.constant)
        return deleted

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]
    update.alters_data = True  # type: ignore[attr-defined]


class InvalidatingManager(models.Manager.from_queryset(InvalidatingQuerySet)):  # type: ignore[misc]
    """The default manager with :class:`InvalidatingQuerySet`'s bulk writes."""
