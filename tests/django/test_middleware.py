"""The site-wide middleware: default and application rate limits with exemptions, idempotency
keys on every unsafe method, the view cache on every page; sync and async; Redis down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

from redkit_django import conf
from tests.django.conftest import redkit_settings
from tests.servers import RedisProcess

MIDDLEWARE = [
    "redkit_django.middleware.RateLimitMiddleware",
    "redkit_django.middleware.CacheMiddleware",
    "redkit_django.middleware.IdempotencyMiddleware",
    "redkit_django.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SITE = {"RATELIMIT_DEFAULT": "3/minute", "RATELIMIT_APPLICATION": "6/minute"}
pytestmark = pytest.mark.urls("tests.django.urls_web")


@pytest.fixture
def site(redis_url: str) -> Iterator[dict[str, Any]]:
    values = redkit_settings(redis_url, **SITE)
    with override_settings(
        REDKIT=values, MIDDLEWARE=MIDDLEWARE, SESSION_ENGINE="redkit_django.sessions"
    ):
        yield values
        conf.get_kit().clear()
    conf.reset()


def test_the_default_limit_counts_views_without_limits_of_their_own(site: Any) -> None:
    client = Client()
    codes = [client.get(f"/plain?n={i}").status_code for i in range(4)]  # not cached: n
    assert codes == [200, 200, 200, 429]
    assert [client.get("/exempt").status_code for _ in range(8)] == [200] * 8


def test_the_application_limit_is_shared_by_every_view_but_exempt_ones(site: Any) -> None:
    client = Client()
    codes = [client.get(url).status_code for url in ["/limited", "/by-header"] * 2]
    codes += [client.get("/by-callable?who=x").status_code for _ in range(2)]
    assert codes == [200] * 6
    denied = client.get("/limited-mixin")
    assert denied.status_code == 429
    assert int(denied.headers["Retry-After"]) >= 1
    assert client.get("/exempt").status_code == 200


def test_idempotency_keys_on_every_unsafe_method(site: Any) -> None:
    client = Client()
    first = client.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="m-1")
    again = client.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="m-1")
    assert first.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="bad key\x7f").status_code == 400


def test_the_cache_middleware_never_serves_a_session_page_to_another_user(site: Any) -> None:
    ada, bob = Client(), Client()
    ada.get("/s/set/name/ada")
    bob.get("/s/set/name/bob")
    assert b"ada" in ada.get("/s/get").content
    assert b"bob" in bob.get("/s/get").content
    page = Client().get("/echo").content
    assert page == b"echo"


async def test_the_middleware_runs_on_the_async_path(site: Any) -> None:
    client = AsyncClient()
    codes = [(await client.get(f"/alimited?n={i}")).status_code for i in range(3)]
    assert codes == [200, 200, 429]  # its own limit
    first = await client.post("/apay", headers={"idempotency-key": "x"})
    again = await client.post("/apay", headers={"idempotency-key": "x"})
    assert again.content == first.content


# -- Redis down -----------------------------------------------------------------------------------
@pytest.fixture
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def test_redis_down_limits_let_through_and_idempotency_answers_503(server: RedisProcess) -> None:
    values = redkit_settings(
        server.url, SOCKET_CONNECT_TIMEOUT=0.3, SOCKET_TIMEOUT=0.5, RETRY_ATTEMPTS=0, **SITE
    )
    with override_settings(REDKIT=values, MIDDLEWARE=MIDDLEWARE):
        client = Client()
        assert client.get("/exempt").status_code == 200
        server.stop()
        assert client.get("/limited").status_code == 200  # fail open
        assert client.get("/plain").status_code == 200  # the cache fails open too
        paid = client.post("/pay-plain", HTTP_IDEMPOTENCY_KEY="d-1")
        assert paid.status_code == 503  # never run twice
        assert int(paid.headers["Retry-After"]) >= 1
        assert paid.headers["Content-Type"] == "application/problem+json"
    conf.reset()
