"""Invalidation rules are checked on ``override_settings`` (ImproperlyConfigured) and by
``manage.py check`` (redkit.E301; startup: tests/django/test_checks_hostile.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import redkit_django
from redkit_django import invalidation
from tests.django.testapp.models import Order, Tag

BAD = [
    ({"shop.Order": ["order:{id}"]}, "no installed model 'shop.Order'"),
    ({"Order": ["order:{id}"]}, "no installed model 'Order'"),
    ({"testapp.Tag": ["tag:{colour}"]}, "testapp.Tag has no field 'colour'"),
    ({"testapp.Order": ["customer:{customer}"]}, "use {customer_id}"),
    ({"testapp.Order": ["tag:{tags}"]}, "{tags} is not a column of testapp.Order"),
    ({"testapp.Tag": ["tag:{"]}, "is not a valid template"),
    ({"testapp.Tag": ["tag:{}"]}, "{} is not a field name"),
    ({"testapp.Tag": ["tag:{0}"]}, "{0} is not a field name"),
    ({"testapp.Tag": ["tag:{name.upper}"]}, "is not a field name"),
    ({"testapp.Tag": ["tag:{id:08d}"]}, "without a conversion or format"),
    ({"testapp.Tag": ["tag:{name!r}"]}, "without a conversion or format"),
    ({"testapp.Tag": "tag:{id}"}, "is a list of tag templates"),
    ({"testapp.Tag": [""]}, "a tag template is a non-empty string"),
    ({"testapp.Tag": [3]}, "a tag template is a non-empty string"),
    ({"testapp.Tag": ["tag:\udc80"]}, "is not a valid template"),
    (["testapp.Tag"], 'REDKIT["INVALIDATE"] maps "app_label.Model" to tag templates'),
]


@pytest.fixture
def reconnect() -> Iterator[None]:
    """Whatever a test breaks, the receivers of the project's own rules are back after it."""
    yield
    invalidation.connect()


@pytest.mark.parametrize(("rules", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_rule_is_improperly_configured_naming_it(
    rules: Any, message: str, redkit_on: dict[str, Any], reconnect: None
) -> None:
    with (
        pytest.raises(ImproperlyConfigured, match="invalidation rules") as caught,
        override_settings(REDKIT={**redkit_on, "INVALIDATE": rules}),
    ):
        pass  # pragma: no cover - enabling the settings raises
    assert message in str(caught.value)


def test_the_decorator_refuses_what_is_not_a_model_or_a_template() -> None:
    with pytest.raises(TypeError, match="decorates a model class"):
        redkit_django.invalidates("x")(dict)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="tag templates"):
        redkit_django.invalidates(["order:{id}"])  # type: ignore[arg-type]


def test_rules_from_settings_add_to_the_decorators(redkit_on: dict[str, Any]) -> None:
    rules = {"testapp.Order": ["shop:{status}"], "testapp.Tag": ["tag:{name}", "tags"]}
    with override_settings(REDKIT={**redkit_on, "INVALIDATE": rules}):
        order = Order(pk=7, customer_id=3, status="paid")
        assert invalidation.tags_of(order) == {
            "order:7",
            "customer:3",
            "orders",
            "shop:paid",
            "table:testapp_order",
        }
        assert invalidation.tags_of(Tag(pk=1, name="red")) == {
            "tag:red",
            "tags",
            "table:testapp_tag",
        }
    # a NULL field fills no template; the settings' rules are gone with the settings
    assert invalidation.tags_of(Order(pk=8)) == {"order:8", "orders", "table:testapp_order"}
    assert invalidation.tags_of(Tag(pk=1, name="red")) == set()
