"""Model writes invalidate their rules' tags after the outermost commit, once; nothing on
rollback; a savepoint rolled back drops only its own tags; at once in autocommit mode. On
PostgreSQL and SQLite, real Redis and the cluster."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from redkit.cache import uncommitted_scope
from redkit_django import conf, invalidate_on_commit
from redkit_django.invalidation import tags_of
from tests.django import invalidation_support
from tests.django.invalidation_support import Watch, rolled_back
from tests.django.testapp.models import ArchivedOrder, Customer, Order, RushOrder, Tag

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])
watch = invalidation_support.watch
alias = invalidation_support.alias

TABLE = "table:testapp_order"


def new_order(alias: str, **fields: Any) -> Order:
    order = Order(**fields)
    order.save(using=alias)
    return order


def test_a_save_in_autocommit_mode_invalidates_at_once(watch: Watch, alias: str) -> None:
    customer = Customer.objects.using(alias).create(name="ada")
    watch.arm("orders", TABLE, f"customer:{customer.pk}", "unrelated")
    order = new_order(alias, customer=customer)
    assert watch.gone() == {"orders", TABLE, f"customer:{customer.pk}"}
    assert len(watch.calls) == 1
    assert f"order:{order.pk}" in watch.calls[0]


def test_a_changed_field_invalidates_its_old_and_new_values(watch: Watch, alias: str) -> None:
    ada, bob = (Customer.objects.using(alias).create(name=n) for n in ("ada", "bob"))
    order = new_order(alias, customer=ada)
    loaded = Order.objects.using(alias).get(pk=order.pk)
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", f"order:{order.pk}")
    loaded.customer = bob
    loaded.save()
    assert watch.gone() == {f"customer:{ada.pk}", f"customer:{bob.pk}", f"order:{order.pk}"}
    # the new value is now the loaded one: the next change invalidates bob and the new one
    carl = Customer.objects.using(alias).create(name="carl")
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", f"customer:{carl.pk}")
    loaded.customer = carl
    loaded.save()
    assert watch.gone() == {f"customer:{bob.pk}", f"customer:{carl.pk}"}


def test_a_field_left_out_of_update_fields_keeps_its_loaded_value(watch: Watch, alias: str) -> None:
    ada, bob, carl = (Customer.objects.using(alias).create(name=n) for n in ("a", "b", "c"))
    order = new_order(alias, customer=ada)
    order.customer = bob
    order.status = "paid"
    order.save(update_fields=["status"])  # the row still belongs to ada
    assert Order.objects.using(alias).get(pk=order.pk).customer_id == ada.pk
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", f"customer:{carl.pk}")
    order.customer = carl
    order.save()
    assert watch.gone() == {f"customer:{ada.pk}", f"customer:{carl.pk}"}


def test_a_deferred_rule_field_is_read_from_the_row(watch: Watch, alias: str) -> None:
    ada, bob = (Customer.objects.using(alias).create(name=n) for n in ("ada", "bob"))
    order = new_order(alias, customer=ada)
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}")
    partial = Order.objects.using(alias).only("status").get(pk=order.pk)
    partial.status = "paid"
    partial.save()  # customer_id was never loaded: its value comes from the row
    assert watch.gone() == {f"customer:{ada.pk}"}
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}")
    partial = Order.objects.using(alias).defer("customer").get(pk=order.pk)
    partial.customer_id = bob.pk
    partial.save()
    assert watch.gone() == {f"customer:{ada.pk}", f"customer:{bob.pk}"}
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}", f"order:{order.pk}")
    Order.objects.using(alias).only("status").get(pk=order.pk).delete()
    assert watch.gone() == {f"customer:{bob.pk}", f"order:{order.pk}"}


def test_a_delete_invalidates_the_row_as_it_was_loaded(watch: Watch, alias: str) -> None:
    ada, bob = (Customer.objects.using(alias).create(name=n) for n in ("ada", "bob"))
    order = new_order(alias, customer=ada)
    pk = order.pk
    watch.arm(f"order:{pk}", f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE)
    order.customer = bob  # changed in memory only: the row deleted is ada's
    order.delete()
    assert watch.gone() == {f"order:{pk}", f"customer:{ada.pk}", f"customer:{bob.pk}", TABLE}
    assert len(watch.calls) == 1


def test_a_cascade_invalidates_every_covered_row_once(watch: Watch, alias: str) -> None:
    ada = Customer.objects.using(alias).create(name="ada")
    orders = [new_order(alias, customer=ada) for _ in range(3)]
    tags = {*(f"order:{o.pk}" for o in orders), f"customer:{ada.pk}"}
    watch.arm(*tags)
    ada.delete()
    assert watch.gone() == tags
    assert len(watch.calls) == 1


def test_an_uncovered_model_invalidates_nothing(watch: Watch, alias: str) -> None:
    watch.arm("table:testapp_customer")
    Customer.objects.using(alias).create(name="ada").delete()
    assert watch.gone() == set()
    assert watch.calls == []


def test_one_invalidate_after_the_outermost_commit(watch: Watch, alias: str) -> None:
    ada = Customer.objects.using(alias).create(name="ada")
    watch.arm("orders", f"customer:{ada.pk}")
    with transaction.atomic(using=alias):
        first = new_order(alias, customer=ada)
        with transaction.atomic(using=alias):
            second = new_order(alias)
        assert watch.gone() == set()
        assert watch.calls == []
    assert watch.gone() == {"orders", f"customer:{ada.pk}"}
    assert len(watch.calls) == 1
    assert {f"order:{first.pk}", f"order:{second.pk}", TABLE} <= set(watch.calls[0])


def test_a_rollback_invalidates_nothing(watch: Watch, alias: str) -> None:
    watch.arm("orders")
    with rolled_back(alias):
        new_order(alias)
    assert watch.gone() == set()
    assert watch.calls == []
    new_order(alias)  # the next transaction starts afresh
    assert watch.gone() == {"orders"}


def test_a_savepoint_rolled_back_drops_only_its_own_tags(watch: Watch, alias: str) -> None:
    ada, bob = (Customer.objects.using(alias).create(name=n) for n in ("ada", "bob"))
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}")
    with transaction.atomic(using=alias):
        new_order(alias, customer=ada)
        with rolled_back(alias):
            new_order(alias, customer=bob)
    assert watch.gone() == {f"customer:{ada.pk}"}
    assert len(watch.calls) == 1


def test_only_a_rolled_back_savepoint_wrote(watch: Watch, alias: str) -> None:
    watch.arm("orders")
    with transaction.atomic(using=alias):
        Customer.objects.using(alias).create(name="ada")
        with rolled_back(alias):
            new_order(alias)
    assert watch.gone() == set()
    assert watch.calls == []


def test_a_released_savepoint_passes_its_tags_on(watch: Watch, alias: str) -> None:
    ada, bob = (Customer.objects.using(alias).create(name=n) for n in ("ada", "bob"))
    watch.arm(f"customer:{ada.pk}", f"customer:{bob.pk}")
    with transaction.atomic(using=alias):
        with transaction.atomic(using=alias):
            with transaction.atomic(using=alias):
                new_order(alias, customer=ada)
            with rolled_back(alias):
                new_order(alias, customer=bob)
        with transaction.atomic(using=alias, savepoint=False):
            new_order(alias)
    assert watch.gone() == {f"customer:{ada.pk}"}
    assert len(watch.calls) == 1
    assert "orders" in watch.calls[0]


def test_the_users_on_commit_callbacks_still_run(watch: Watch, alias: str) -> None:
    ran: list[str] = []
    watch.arm("orders")
    with transaction.atomic(using=alias):
        transaction.on_commit(lambda: ran.append("before"), using=alias)
        new_order(alias)
        transaction.on_commit(lambda: ran.append("after"), using=alias)
    assert ran == ["before", "after"]
    assert watch.gone() == {"orders"}


def test_each_database_commits_its_own_tags(watch: Watch) -> None:
    ada = Customer.objects.using("sqlite").create(name="ada")
    watch.arm("orders", f"customer:{ada.pk}")
    with transaction.atomic(using="default"):
        with transaction.atomic(using="sqlite"):
            new_order("sqlite", customer=ada)
        # sqlite committed; the transaction on default is still open and wrote nothing
        assert watch.gone() == {"orders", f"customer:{ada.pk}"}
        watch.arm("orders", f"customer:{ada.pk}")
        new_order("default")
        assert watch.gone() == set()
    assert watch.gone() == {"orders"}
    with transaction.atomic(using="sqlite"), rolled_back("default"):
        new_order("default", customer_id=ada.pk)
    assert watch.gone() == {"orders"}  # armed after its invalidation: nothing new


def test_a_failing_redis_is_logged_and_the_commit_stands(
    watch: Watch, alias: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(tags: Any) -> int:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(watch.kit.cache, "invalidate", down)
    ran: list[bool] = []
    with caplog.at_level(logging.ERROR, logger="redkit.django"):
        with transaction.atomic(using=alias):
            order = new_order(alias)
            transaction.on_commit(lambda: ran.append(True), using=alias)
        new_order(alias)  # autocommit
    assert Order.objects.using(alias).filter(pk=order.pk).exists()
    assert ran == [True]
    failures = [r for r in caplog.records if "invalidating" in r.getMessage()]
    assert len(failures) == 2
    assert "redis is down" in failures[0].getMessage()


def test_a_client_that_cannot_be_built_does_not_break_a_write(
    alias: str, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(REDKIT={"URL": "redis://127.0.0.1:1", "SOCKET_TIMEOUT": 0.2}):
        with caplog.at_level(logging.ERROR, logger="redkit.django"):
            order = new_order(alias)
        conf.reset()
    assert Order.objects.using(alias).filter(pk=order.pk).exists()
    assert any("invalidating" in r.getMessage() for r in caplog.records)


def test_invalidate_on_commit_joins_the_transaction(watch: Watch, alias: str) -> None:
    watch.arm("report", "orders")
    with transaction.atomic(using=alias):
        invalidate_on_commit(["report"], using=alias)
        new_order(alias)
        assert watch.gone() == set()
    assert watch.gone() == {"report", "orders"}
    assert len(watch.calls) == 1
    watch.arm("report")
    invalidate_on_commit("report", using=alias)
    assert watch.gone() == {"report"}


def test_a_multi_table_child_invalidates_its_parents_rule_and_both_tables(
    watch: Watch, alias: str
) -> None:
    ada = Customer.objects.using(alias).create(name="ada")
    watch.arm("orders", TABLE, "table:testapp_rushorder", f"customer:{ada.pk}")
    rush = RushOrder(customer=ada, priority=3)
    rush.save(using=alias)
    assert watch.gone() == {"orders", TABLE, "table:testapp_rushorder", f"customer:{ada.pk}"}
    assert tags_of(rush) >= {f"order:{rush.pk}", "table:testapp_rushorder"}


def test_a_proxy_has_its_concrete_models_rule(watch: Watch, alias: str) -> None:
    order = new_order(alias)
    watch.arm(f"order:{order.pk}", TABLE)
    ArchivedOrder.objects.using(alias).get(pk=order.pk).save()
    assert watch.gone() == {f"order:{order.pk}", TABLE}


TAG_RULES = {"testapp.Tag": ["tag:{name}"]}


def test_m2m_changes_invalidate_both_sides_and_the_relation(
    redkit_on: dict[str, Any], monkeypatch: pytest.MonkeyPatch, alias: str
) -> None:
    with override_settings(REDKIT={**redkit_on, "INVALIDATE": TAG_RULES}):
        import redkit_django

        watch = Watch(redkit_django.get_kit(), monkeypatch)
        order = new_order(alias)
        red, blue = (Tag.objects.using(alias).create(name=n) for n in ("red", "blue"))
        relation = "table:testapp_order_tags"
        both = {f"order:{order.pk}", "tag:red", "tag:blue", relation, "table:testapp_tag"}
        watch.arm(*both)
        order.tags.add(red, blue)
        assert watch.gone() == both
        assert len(watch.calls) == 1
        watch.arm(*both)
        red.orders.remove(order)  # the reverse side
        assert watch.gone() == {f"order:{order.pk}", "tag:red", relation, "table:testapp_tag"}
        watch.arm(*both)
        order.tags.clear()  # only blue is left to clear
        assert watch.gone() == {f"order:{order.pk}", "tag:blue", relation, "table:testapp_tag"}
        order.tags.set([red])
        watch.arm(*both)
        red.orders.clear()
        assert watch.gone() == {f"order:{order.pk}", "tag:red", relation, "table:testapp_tag"}
        watch.arm(*both)
        with transaction.atomic(using=alias):
            order.tags.add(blue)
            blue.orders.remove(order)
        assert watch.gone() == {f"order:{order.pk}", "tag:blue", relation, "table:testapp_tag"}
        assert len(watch.calls) == 1
        watch.arm(*both)
    conf.reset()


def test_a_field_filling_an_empty_tag_gives_no_tag(
    redkit_on: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    alias: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with override_settings(REDKIT={**redkit_on, "INVALIDATE": {"testapp.Tag": ["{name}"]}}):
        import redkit_django

        watch = Watch(redkit_django.get_kit(), monkeypatch)
        watch.arm("table:testapp_tag", "x")
        with caplog.at_level(logging.ERROR, logger="redkit.django"):
            Tag.objects.using(alias).create(name="")
            Tag.objects.using(alias).create(name="x")
        assert watch.calls == [["table:testapp_tag"], ["table:testapp_tag", "x"]]
        assert watch.gone() == {"table:testapp_tag", "x"}
        assert caplog.records == []
    conf.reset()


def test_manual_transaction_mode_invalidates_at_once(watch: Watch, alias: str) -> None:
    watch.arm("orders")
    transaction.set_autocommit(False, using=alias)
    try:
        new_order(alias)
        assert watch.gone() == {"orders"}  # no commit hook exists in this mode
        transaction.commit(using=alias)
    finally:
        transaction.set_autocommit(True, using=alias)


def test_rolled_back_transactions_leave_nothing_behind(watch: Watch, alias: str) -> None:
    for _ in range(5):
        with rolled_back(alias):
            new_order(alias)
    with transaction.atomic(using=alias):
        new_order(alias)
        assert len(uncommitted_scope().pending) == 1  # only the transaction still running
    assert uncommitted_scope().pending == {}
