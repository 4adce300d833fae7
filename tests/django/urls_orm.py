"""Views that write orders, for the invalidation tests (tests/django/test_invalidation_web.py)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

import redkit_django
from redkit.cache import writes_pending
from tests.django.testapp.models import Order


def count_orders() -> int:
    """The number of orders, cached under the tag ``orders`` (see ``cached_count``)."""
    kit = redkit_django.get_kit()
    return int(kit.cache.get_or_set("orders:count", Order.objects.count, ttl=60, tags=["orders"]))


def write(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create(status=request.POST.get("status", "new"))
    if request.POST.get("fail"):
        raise RuntimeError("the view failed after writing")
    return JsonResponse({"id": order.pk, "count": count_orders(), "pending": writes_pending()})


async def awrite(request: HttpRequest) -> JsonResponse:
    order = await Order.objects.acreate(status="new")
    order.status = "paid"
    await order.asave()
    pk = order.pk
    if request.POST.get("delete"):
        await order.adelete()
    return JsonResponse({"id": pk, "pending": writes_pending()})


urlpatterns = [
    path("orders/", write),
    path("orders/async/", awrite),
]
