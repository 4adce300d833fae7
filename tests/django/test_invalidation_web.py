"""Invalidation in requests (ATOMIC_REQUESTS on and off), with async ORM calls, and cached reads
inside a transaction that has written: they are served but never stored."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import AsyncClient, Client

import redkit_django
from redkit.cache import writes_pending
from tests.django import invalidation_support
from tests.django.invalidation_support import Watch, rolled_back
from tests.django.testapp.models import Customer, Order

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "sqlite"]),
    pytest.mark.urls("tests.django.urls_orm"),
]
watch = invalidation_support.watch
alias = invalidation_support.alias


@pytest.fixture(params=[False, True], ids=["autocommit", "atomic_requests"])
def atomic_requests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setitem(connections["default"].settings_dict, "ATOMIC_REQUESTS", request.param)
    return bool(request.param)


def _release_connections() -> None:
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        connection.close()
        if raw is not None and connection.connection is raw:
            # Django keeps a connection to an in-memory SQLite database open (closing the last
            # one would drop the database): the main thread's holds it, this one may go
            raw.close()
            connection.connection = None
    for name in connections:  # the thread also forgets its connections, for the next test
        with contextlib.suppress(AttributeError):
            del connections[name]


@pytest.fixture
async def orm_thread() -> AsyncIterator[None]:
    """Async ORM calls run in a thread of their own: release its connections after the test."""
    yield
    await sync_to_async(_release_connections)()


def cached_count(kit: Any, alias: str, calls: list[str]) -> Any:
    @kit.cache.cached(ttl=60, tags=["orders"])
    def count_orders() -> int:
        calls.append("orders")
        return Order.objects.using(alias).count()

    return count_orders


def test_a_view_invalidates_after_its_request_commits(watch: Watch, atomic_requests: bool) -> None:
    watch.arm("orders", "orders:count")
    response = Client().post("/orders/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["pending"] is atomic_requests  # inside the request's transaction
    assert watch.gone() >= {"orders"}
    assert len(watch.calls) == 1
    assert f"order:{body['id']}" in watch.calls[0]
    kit = redkit_django.get_kit()
    # read inside the transaction that wrote: the count was not stored; in autocommit it was
    assert (kit.cache.get("orders:count") is None) is atomic_requests
    assert not writes_pending()


def test_a_failing_view_rolls_back_and_invalidates_nothing_with_atomic_requests(
    watch: Watch, atomic_requests: bool
) -> None:
    watch.arm("orders")
    client = Client(raise_request_exception=False)
    assert client.post("/orders/", {"fail": "1"}).status_code == 500
    assert Order.objects.exists() is not atomic_requests
    assert watch.gone() == (set() if atomic_requests else {"orders"})
    assert not writes_pending()


def test_cached_reads_inside_a_transaction_that_wrote_are_not_stored(
    watch: Watch, alias: str
) -> None:
    kit = watch.kit
    calls: list[str] = []
    count_orders = cached_count(kit, alias, calls)

    @kit.cache.cached(ttl=60, tags=["customers"])
    def names() -> list[str]:
        calls.append("names")
        return sorted(Customer.objects.using(alias).values_list("name", flat=True))

    Customer.objects.using(alias).create(name="ada")
    with transaction.atomic(using=alias):
        assert count_orders() == 0
        assert names() == ["ada"]  # nothing written yet: stored
        Order.objects.using(alias).create()
        assert writes_pending()
        assert count_orders() == 1  # its own write: read past the cache
        assert count_orders() == 1
        Customer.objects.using(alias).create(name="bob")  # a model no rule covers
        assert names() == ["ada"]  # other tags: the cache answers, as before the write
        kit.cache.delete(names.key_for())
        assert names() == ["ada", "bob"]
        assert names() == ["ada", "bob"]  # ...but is not filled from inside the transaction
    assert calls == ["orders", "names", "orders", "orders", "names", "names"]
    assert not writes_pending()
    calls.clear()
    assert count_orders() == 1
    assert count_orders() == 1
    assert names() == ["ada", "bob"]
    assert names() == ["ada", "bob"]
    assert calls == ["orders", "names"]


def test_after_a_rollback_the_cache_is_filled_again(watch: Watch, alias: str) -> None:
    calls: list[str] = []
    count_orders = cached_count(watch.kit, alias, calls)
    with rolled_back(alias):
        Order.objects.using(alias).create()
        assert writes_pending()
    assert not writes_pending()
    assert count_orders() == 0
    assert count_orders() == 0
    assert calls == ["orders"]
    with transaction.atomic(using=alias):
        with rolled_back(alias):
            Order.objects.using(alias).create()
        assert not writes_pending()  # all it wrote was rolled back


async def test_async_orm_calls_invalidate_off_the_event_loop(
    watch: Watch, alias: str, orm_thread: None
) -> None:
    loop_thread = threading.current_thread()
    order = await Order.objects.using(alias).acreate()
    watch.arm(f"order:{order.pk}", "orders")
    order.status = "paid"
    await order.asave(using=alias)
    assert watch.gone() == {f"order:{order.pk}", "orders"}
    pk = order.pk
    watch.arm(f"order:{pk}", "orders")
    await order.adelete(using=alias)
    assert watch.gone() == {f"order:{pk}", "orders"}
    watch.arm("orders", "table:testapp_order")
    assert await Order.objects.using(alias).aupdate(status="x") == 0
    assert watch.gone() == {"orders", "table:testapp_order"}
    assert watch.threads
    assert loop_thread not in watch.threads


async def test_an_async_view_and_a_transaction_run_from_async_code(
    watch: Watch, orm_thread: None
) -> None:
    watch.arm("orders")
    response = await AsyncClient().post("/orders/async/", {"delete": "1"})
    assert response.status_code == 200
    body = response.json()
    assert body["pending"] is False
    assert watch.gone() == {"orders"}
    assert not await Order.objects.filter(pk=body["id"]).aexists()

    def in_a_transaction() -> bool:
        with transaction.atomic():
            Order.objects.create()
            return writes_pending()

    watch.arm("orders")
    assert await sync_to_async(in_a_transaction)() is True
    assert watch.gone() == {"orders"}
    assert not writes_pending()
