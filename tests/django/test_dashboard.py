"""``path("redkit/", include(dashboard_urls()))``: the dashboard in a Django project, staff only
by default, its forms past Django's CSRF middleware with their own token, through Django's test
client on real Redis and the cluster."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

import redkit_django
from redkit.errors import ConfigurationError
from redkit_django.dashboard import dashboard_urls
from tests.django.urls_dashboard import TOKEN

pytestmark = [pytest.mark.urls("tests.django.urls_dashboard"), pytest.mark.django_db]
CSRF_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _post(client: Client, url: str, form: dict[str, str]) -> Any:
    """A POST as a browser sends the dashboard's forms (urlencoded)."""
    return client.post(url, urlencode(form), content_type="application/x-www-form-urlencoded")


def _login(client: Client, **flags: bool) -> None:
    user = get_user_model().objects.create_user("grace", password="x" * 12, **flags)
    client.force_login(user)


def test_staff_see_the_queues_and_act(redkit_on: Any) -> None:
    q = redkit_django.get_kit().queue("billing")
    job = q.add("charge", {"amount": 5}, delay=3600)
    anonymous = Client()
    assert anonymous.get("/ops/redkit/").status_code == 403
    clerk = Client()
    _login(clerk)
    assert clerk.get("/ops/redkit/").status_code == 403  # not staff
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(
        get_user_model().objects.create_user("root", password="y" * 12, is_staff=True)
    )
    with override_settings(MIDDLEWARE=CSRF_MIDDLEWARE):
        page = staff.get("/ops/redkit/")
        assert page.status_code == 200
        html = page.content.decode()
        assert "Signed in as <strong>root</strong>" in html
        assert 'href="queue?name=billing"' in html
        assert "default-src 'none'" in page["Content-Security-Policy"]
        detail = staff.get(f"/ops/redkit/job?queue=billing&id={job.id}")
        done = _post(
            staff,
            "/ops/redkit/action",
            {
                "csrf": _csrf(detail.content.decode()),
                "queue": "billing",
                "job": job.id,
                "do": "promote",
            },
        )
        assert done.status_code == 303  # past Django's CSRF middleware, on the dashboard's token
        forged = _post(staff, "/ops/redkit/action", {"queue": "billing", "do": "pause"})
        assert forged.status_code == 403
    assert q.get_job(job.id).state == "waiting"
    assert not q.is_paused()


def test_a_token_and_read_only(redkit_on: Any) -> None:
    redkit_django.get_kit().queue("reports").add("build", None)
    client = Client()
    assert client.get("/token/").status_code == 401
    page = client.get("/token/queue?name=reports", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert page.status_code == 200
    assert "Drain" not in page.content.decode()
    signed = _post(client, "/token/login", {"token": TOKEN})
    assert signed.status_code == 303
    assert signed.cookies["redkit_dashboard_token"]["httponly"]
    assert signed.cookies["redkit_dashboard_token"]["samesite"] == "Strict"
    assert client.get("/token/").status_code == 200  # the cookie signs in
    stream = client.get("/token/live?q=reports", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert stream.status_code == 200
    assert stream["Content-Type"].startswith("text/event-stream")
    assert next(iter(stream.streaming_content)).startswith(b"retry: ")
    stream.close()


async def test_the_live_stream_under_asgi_is_an_async_iterator(redkit_on: Any) -> None:
    from django.test import AsyncClient

    client = AsyncClient()
    stream = await client.get("/token/live?q=reports", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stream.status_code == 200
    assert stream.is_async
    first = await anext(aiter(stream.streaming_content))
    assert first.startswith(b"retry: ")
    if hasattr(stream, "aclose"):  # Django 5.0 and later
        await stream.aclose()
    else:
        stream.close()


def test_no_rule_no_urls() -> None:
    with pytest.raises(ConfigurationError, match="refuses to serve without an auth rule"):
        dashboard_urls(auth=None)
