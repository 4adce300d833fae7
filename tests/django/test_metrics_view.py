"""``redkit_django.metrics.metrics_view``: the queues' Prometheus exposition, never open (staff
by default, a bearer token, or a rule), through Django's test client on real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

import redkit_django
from redkit_django.metrics import metrics_view
from tests.django.conftest import redkit_settings
from tests.django.urls_metrics import TOKEN
from tests.servers import free_port

pytestmark = [pytest.mark.urls("tests.django.urls_metrics"), pytest.mark.django_db]


@pytest.fixture
def queues(redkit_on: Any) -> Any:
    kit = redkit_django.get_kit()
    kit.queue("mail").add("send", {"args": [1]})
    kit.queue("mail").add("send", {"args": [2]})
    kit.queue("reports").add("build", None)
    return kit


def waiting(text: str) -> dict[str, float]:
    return {
        s.labels["queue"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "redkit_queue_jobs" and s.labels["state"] == "waiting"
    }


def login(client: Client, **flags: bool) -> None:
    user = get_user_model().objects.create_user("ada", password="x" * 12, **flags)
    client.force_login(user)


def test_a_staff_user_reads_every_queue(queues: Any) -> None:
    client = Client()
    login(client, is_staff=True)
    response = client.get("/staff")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert waiting(response.content.decode()) == {"mail": 2, "reports": 1}


@pytest.mark.parametrize("flags", [{}, {"is_staff": True, "is_active": False}])
def test_anyone_else_is_refused_with_no_metric(queues: Any, flags: dict[str, bool]) -> None:
    client = Client()
    if flags:
        login(client, **flags)
    for path in ("/staff", "/header"):
        response = client.get(path)
        assert response.status_code == 403
        assert b"redkit_queue" not in response.content
    assert Client().get("/header", HTTP_X_INTERNAL="1").status_code == 200  # the project's rule


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"bearer {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        "Bearer \udcff\x00",
        f"Bearer {TOKEN}\u00e9",
        "Bearer " + "A" * 100_000,
    ],
)
def test_a_wrong_token_is_401_never_a_500(queues: Any, header: str | None) -> None:
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = Client().get("/scraper", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"redkit_queue" not in response.content


def test_the_token_grants_the_queues_named(queues: Any) -> None:
    response = Client().get("/scraper", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert waiting(response.content.decode()) == {"mail": 2}
    staff = Client()
    login(staff, is_staff=True)
    assert staff.get("/scraper").status_code == 200  # staff too, by default
    assert staff.get("/token-only").status_code == 401  # allow=None: the token alone
    assert Client().get("/token-only", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_openmetrics_when_the_scraper_asks_and_get_only(queues: Any) -> None:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    response = Client().get("/scraper", HTTP_ACCEPT="application/openmetrics-text", **auth)
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")
    assert Client().post("/scraper", **auth).status_code == 405


def test_redis_down_is_503(db: Any) -> None:
    with override_settings(REDKIT=redkit_settings(f"redis://127.0.0.1:{free_port()}/0")):
        response = Client().get("/scraper", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"Traceback" not in response.content


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"token": "short"}, "at least 16 characters"),
        ({"token": 12345678901234567}, "at least 16 characters"),
        ({"allow": None}, "never open"),
    ],
)
def test_an_open_or_weak_view_is_refused_when_made(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        metrics_view(**kwargs)
