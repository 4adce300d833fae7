"""Hostile requests against the middleware and decorators: malformed headers, cookies and query
strings get a clean answer, and a cached page or a replayed response never reaches another
client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

from redkit_django import conf
from tests.django.conftest import redkit_settings

MIDDLEWARE = [
    "redkit_django.middleware.RateLimitMiddleware",
    "redkit_django.middleware.CacheMiddleware",
    "redkit_django.middleware.IdempotencyMiddleware",
    "redkit_django.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
pytestmark = pytest.mark.urls("tests.django.urls_web")


@pytest.fixture
def site(redis_url: str) -> Iterator[dict[str, Any]]:
    values = redkit_settings(redis_url, RATELIMIT_DEFAULT="100/minute")
    with override_settings(
        REDKIT=values, MIDDLEWARE=MIDDLEWARE, SESSION_ENGINE="redkit_django.sessions"
    ):
        yield values
        conf.get_kit().clear()
    conf.reset()


HOSTILE_HEADERS = [
    {"HTTP_IDEMPOTENCY_KEY": "k" * 100_000},
    {"HTTP_IDEMPOTENCY_KEY": "caf\u00e9"},
    {"HTTP_IDEMPOTENCY_KEY": ""},
    {"HTTP_IDEMPOTENCY_KEY": "a\x00b"},
    {"HTTP_X_FORWARDED_FOR": "not-an-ip, ::ffff:zz, " + "1." * 5000},
    {"HTTP_AUTHORIZATION": "\u00ff" * 10_000},
    {"HTTP_COOKIE": "sessionid=" + "\u00e9" * 5000},
    {"HTTP_COOKIE": "sessionid=; sessionid=x; =; ;;; csrftoken=\x7f"},
    {"HTTP_COOKIE": "sessionid=" + "A" * 45},
    {"HTTP_ACCEPT_LANGUAGE": "\u00e9" * 20_000},
]


@pytest.mark.django_db
@pytest.mark.parametrize("headers", HOSTILE_HEADERS)
@pytest.mark.parametrize("url", ["/plain", "/page/x", "/page-session", "/page-varying", "/pay"])
def test_hostile_headers_get_a_clean_answer(site: Any, headers: dict[str, str], url: str) -> None:
    client = Client(enforce_csrf_checks=False)
    for method in (client.get, client.head, client.post, client.options):
        response = method(url, **headers)
        assert response.status_code < 500, (method, url, headers, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["a=%ff%fe", "%00=%00", "a=" + "%e9" * 3000, "a&a&&=&b=\u00e9", "x=1;y=2"]
)
def test_hostile_query_strings_get_a_clean_answer(site: Any, query: str) -> None:
    client = Client()
    assert client.get(f"/page/q?{query}").status_code == 200
    assert client.get(f"/page/q?{query}").status_code == 200


def _token_of(response: Any) -> str:
    return response.content.decode().split()[1]


@pytest.mark.django_db
@pytest.mark.parametrize("use_sessions", [False, True])
def test_a_page_with_a_csrf_token_is_never_served_to_another_client(
    site: Any, use_sessions: bool
) -> None:
    with override_settings(CSRF_USE_SESSIONS=use_sessions):
        first, second = Client(), Client()
        one = first.get("/page-csrf")
        again = first.get("/page-csrf")  # now with its cookie (or session)
        other = second.get("/page-csrf")
        assert _token_of(other) != _token_of(one)
        assert _token_of(other) != _token_of(again)


@pytest.mark.django_db(transaction=True)
def test_a_replayed_response_never_reaches_another_user(site: Any) -> None:
    alice, bob = Client(), Client()
    alice.get("/s/login/alice")
    bob.get("/s/login/bob")
    first = alice.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="same-key")
    theirs = bob.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="same-key")
    assert first.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert theirs.content != first.content


@pytest.mark.django_db(transaction=True)
def test_a_page_read_by_a_logged_in_user_is_not_served_to_another(site: Any) -> None:
    alice, bob, anon = Client(), Client(), Client()
    alice.get("/s/login/alice")
    alice.get("/s/set/name/alice")
    bob.get("/s/login/bob")
    seen = alice.get("/page-session").content
    assert b"alice" in seen
    assert b"alice" not in bob.get("/page-session").content
    assert b"alice" not in anon.get("/page-session").content


@pytest.mark.django_db
def test_credentials_bypass_the_cached_rest_framework_view(site: Any) -> None:
    client = Client()
    first = client.get("/cached-api", HTTP_AUTHORIZATION="Token a")
    second = client.get("/cached-api", HTTP_AUTHORIZATION="Token b")
    assert first.content != second.content


async def test_async_pages_and_replays_stay_with_their_client(site: Any) -> None:
    alice, bob = AsyncClient(), AsyncClient()
    await alice.get("/as/set/who/alice")  # a session each: the key belongs to it
    await bob.get("/as/set/who/bob")
    first = await alice.post("/apay", HTTP_IDEMPOTENCY_KEY="k-1")
    theirs = await bob.post("/apay", HTTP_IDEMPOTENCY_KEY="k-1")
    assert "Idempotent-Replayed" not in theirs
    assert theirs.content != first.content
    one = await alice.get("/page-csrf")
    other = await bob.get("/page-csrf")
    assert _token_of(one) != _token_of(other)
