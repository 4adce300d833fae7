"""InvalidatingQuerySet: update(), bulk_create, bulk_update and delete() invalidate the tags of
the rows they write and their table's, after the commit like the signals."""

from __future__ import annotations

import pytest
from django.db.models import F, Value
from django.db.models.functions import Concat

from tests.django import invalidation_support
from tests.django.invalidation_support import Watch, rolled_back
from tests.django.testapp.models import Customer, Order

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
watch = invalidation_support.watch
alias = invalidation_support.alias

TABLE = "table:testapp_order"


def customers(alias: str, *names: str) -> list[Customer]:
    return [Customer.objects.using(alias).create(name=n) for n in names]


def test_update_invalidates_the_rows_before_and_after(watch: Watch, alias: str) -> None:
    ada, bob, carl = customers(alias, "ada", "bob", "carl")
    mine = [Order.objects.using(alias).create(customer=ada) for _ in range(2)]
    other = Order.objects.using(alias).create(customer=carl)
    tags = {f"customer:{c.pk}" for c in (ada, bob, carl)} | {f"order:{o.pk}" for o in mine}
    watch.arm(*tags, f"order:{other.pk}", TABLE, "orders")
    rows = Order.objects.using(alias).filter(customer=ada).update(customer=bob)
    assert rows == 2
    assert watch.gone() == tags - {f"customer:{carl.pk}"} | {TABLE, "orders"}
    assert len(watch.calls) == 1


def test_update_of_other_fields_reads_the_rows_once(watch: Watch, alias: str) -> None:
    (ada,) = customers(alias, "ada")
    order = Order.objects.using(alias).create(customer=ada)
    watch.arm(f"order:{order.pk}", f"customer:{ada.pk}", TABLE)
    queryset = Order.objects.using(alias).filter(pk=order.pk)
    assert queryset.update(note=Concat(F("note"), Value("!"))) == 1
    assert watch.gone() == {f"order:{order.pk}", f"customer:{ada.pk}", TABLE}
    assert Order.objects.using(alias).get(pk=order.pk).note == "!"


def test_update_in_a_rolled_back_transaction_invalidates_nothing(watch: Watch, alias: str) -> None:
    order = Order.objects.using(alias).create()
    watch.arm(f"order:{order.pk}", TABLE)
    with rolled_back(alias):
        Order.objects.using(alias).update(status="paid")
    assert watch.gone() == set()
    assert Order.objects.using(alias).get(pk=order.pk).status == "new"


def test_update_matching_nothing_still_invalidates_the_table(watch: Watch, alias: str) -> None:
    watch.arm(TABLE, "orders")
    assert Order.objects.using(alias).filter(status="none").update(status="paid") == 0
    assert watch.gone() == {TABLE, "orders"}


def test_bulk_create_invalidates_every_new_row(watch: Watch, alias: str) -> None:
    ada, bob = customers(alias, "ada", "bob")
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE, "orders")
    created = Order.objects.using(alias).bulk_create(
        [Order(customer=ada), Order(customer=bob), Order()]
    )
    assert len(created) == 3
    assert watch.gone() == {f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE, "orders"}
    assert len(watch.calls) == 1
    if all(o.pk is not None for o in created):  # the backend returned the new ids
        assert {f"order:{o.pk}" for o in created} <= set(watch.calls[0])


def test_bulk_update_invalidates_the_old_and_new_values(watch: Watch, alias: str) -> None:
    ada, bob = customers(alias, "ada", "bob")
    orders = [Order.objects.using(alias).create(customer=ada) for _ in range(2)]
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE)
    for order in orders:
        order.customer = bob
    assert Order.objects.using(alias).bulk_update(orders, ["customer"]) == 2
    assert watch.gone() == {f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE}
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}")
    for order in orders:
        order.status = "paid"
    Order.objects.using(alias).bulk_update(orders, ["status"])
    assert watch.gone() == {f"customer:{bob.pk}"}


def test_queryset_delete_invalidates_the_rows_and_the_table(watch: Watch, alias: str) -> None:
    ada, bob = customers(alias, "ada", "bob")
    doomed = Order.objects.using(alias).create(customer=ada)
    kept = Order.objects.using(alias).create(customer=bob)
    watch.arm(f"order:{doomed.pk}", f"order:{kept.pk}", f"customer:{ada.pk}", TABLE)
    deleted, _ = Order.objects.using(alias).filter(customer=ada).delete()
    assert deleted == 1
    assert watch.gone() == {f"order:{doomed.pk}", f"customer:{ada.pk}", TABLE}
    assert len(watch.calls) == 1
