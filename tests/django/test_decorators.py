"""``ratelimit``, ``idempotent`` and ``cached_view`` on function views (sync and async),
class-based views (method_decorator and mixins) and Django REST framework APIView and ViewSet,
without any redkit middleware; hostile requests first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

from redkit_django.sessions import DEADLINE  # noqa: F401 - the engine under test
from tests.django.conftest import redkit_settings

ENGINE = "redkit_django.sessions"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
pytestmark = pytest.mark.urls("tests.django.urls_web")


@pytest.fixture(autouse=True)
def site(redkit_on: dict[str, Any]) -> Iterator[None]:
    with override_settings(SESSION_ENGINE=ENGINE, MIDDLEWARE=MIDDLEWARE):
        yield


# -- hostile requests ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", " ", "x" * 10_000, "ключ", "a\tb", "\x7f"], ids=repr)
def test_a_malformed_idempotency_key_is_a_clean_400_and_the_view_does_not_run(key: str) -> None:
    got = Client().post(
        "/pay", data=b"{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert got.status_code == 400
    assert got.headers["Content-Type"] == "application/problem+json"


def test_x_forwarded_for_without_trusted_proxies_does_not_buy_new_counters() -> None:
    client = Client()
    codes = [
        client.get("/limited", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(4)
    ]
    assert codes == [200, 200, 429, 429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(redis_url: str) -> None:
    with override_settings(REDKIT=redkit_settings(redis_url, TRUSTED_PROXIES=["127.0.0.1"])):
        client = Client()
        first = [
            client.get("/limited", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code for _ in "abc"
        ]
        other = client.get("/limited", HTTP_X_FORWARDED_FOR="203.0.113.10")
        assert first == [200, 200, 429]
        assert other.status_code == 200


def test_huge_and_odd_headers_get_clean_answers() -> None:
    client = Client()
    huge = "x" * 60_000
    assert client.get("/limited", HTTP_X_FORWARDED_FOR=huge).status_code == 200
    assert client.get("/by-header", HTTP_X_API_KEY=huge).status_code == 200
    assert client.get("/page/a", HTTP_ACCEPT_LANGUAGE=huge).status_code == 200
    got = client.post("/pay", data=b"", content_type="text/plain", HTTP_IDEMPOTENCY_KEY="k" + huge)
    assert got.status_code == 400


def test_a_429_is_never_cached_and_never_served_to_another_client() -> None:
    assert Client(REMOTE_ADDR="192.0.2.1").get("/page-limited").status_code == 200
    denied = Client(REMOTE_ADDR="192.0.2.2")
    assert denied.get("/page-limited").status_code == 200  # served from the cache
    fresh = Client(REMOTE_ADDR="192.0.2.3")
    got = fresh.get("/page-limited")
    assert got.status_code == 200
    assert b"limited page" in got.content


def test_a_page_that_read_the_session_is_never_served_to_another_user() -> None:
    ada, bob = Client(), Client()
    ada.get("/s/set/name/ada")
    bob.get("/s/set/name/bob")
    assert ada.get("/page-session").content.startswith(b"hello ada")
    assert bob.get("/page-session").content.startswith(b"hello bob")
    again = ada.get("/page-session").content
    assert again.startswith(b"hello ada")
    assert ada.get("/page-session").content == again  # ada's own copy is cached
    assert Client().get("/page-session").content.startswith(b"hello stranger")


def test_credentials_bypass_the_cache() -> None:
    first = Client().get("/page/x", HTTP_AUTHORIZATION="Bearer one").content
    second = Client().get("/page/x", HTTP_AUTHORIZATION="Bearer two").content
    assert first != second


def test_responses_setting_cookies_csrf_tokens_or_private_are_not_stored() -> None:
    for url in ("/page-cookie", "/page-csrf", "/page-private"):
        a, b = Client().get(url), Client().get(url)
        assert a.status_code == b.status_code == 200
        assert a.content != b.content, url


def test_vary_makes_one_entry_per_header_value() -> None:
    en = Client().get("/page-varying", HTTP_ACCEPT_LANGUAGE="en").content
    fr = Client().get("/page-varying", HTTP_ACCEPT_LANGUAGE="fr").content
    assert en.startswith(b"lang en")
    assert fr.startswith(b"lang fr")
    assert Client().get("/page-varying", HTTP_ACCEPT_LANGUAGE="en").content == en


# -- rate limits ----------------------------------------------------------------------------------
LIMITED = ["/limited", "/limited-cbv", "/limited-mixin", "/limited-api", "/limited-set/"]


@pytest.mark.parametrize("url", LIMITED)
def test_the_third_request_is_429_with_retry_after_and_ratelimit_headers(url: str) -> None:
    client = Client()
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] or first.headers["X-RateLimit-Limit"]
    assert client.get(url).status_code == 200
    denied = client.get(url)
    assert denied.status_code == 429
    assert int(denied.headers["Retry-After"]) >= 1
    assert denied.headers["X-RateLimit-Remaining"] == "0"
    assert json.loads(denied.content)["status"] == 429


async def test_async_views_are_limited_on_the_async_client() -> None:
    client = AsyncClient()
    codes = [(await client.get("/alimited")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.django_db(transaction=True)
def test_key_user_counts_each_user_apart_and_anonymous_by_address() -> None:
    ada, bob = Client(), Client()
    ada.get("/s/login/ada")
    bob.get("/s/login/bob")
    assert [ada.get("/by-user").status_code for _ in "abc"] == [200, 200, 429]
    assert bob.get("/by-user").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_key_user_reads_the_user_without_a_query_on_the_event_loop() -> None:
    client = AsyncClient()
    codes = [(await client.get("/aby-user")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_header_and_callable_keys_and_methods() -> None:
    client = Client()
    assert [client.get("/by-header", HTTP_X_API_KEY="a").status_code for _ in "abc"] == [
        200,
        200,
        429,
    ]
    assert client.get("/by-header", HTTP_X_API_KEY="b").status_code == 200
    assert [client.get("/by-callable?who=x").status_code for _ in "abc"] == [200, 200, 429]
    assert client.get("/by-callable?who=y").status_code == 200
    assert all(client.get("/post-only").status_code == 200 for _ in range(4))
    assert [client.post("/post-only").status_code for _ in "abc"] == [200, 200, 429]


def test_bad_decorator_arguments_fail_when_decorating() -> None:
    from redkit.errors import InvalidRateLimit
    from redkit_django import cached_view, idempotent, ratelimit

    with pytest.raises(InvalidRateLimit):
        ratelimit("ten per minute")
    with pytest.raises(ValueError, match="key"):
        ratelimit("1/minute", key="cookie:x")
    with pytest.raises(ValueError, match="idempotency keys apply"):
        idempotent(methods=["GET"])
    with pytest.raises(TypeError, match="tags"):
        cached_view(10, tags="one")


# -- idempotency ----------------------------------------------------------------------------------
PAY = ["/pay", "/pay-api", "/pay-set/"]


@pytest.mark.parametrize("url", PAY)
def test_a_retry_is_replayed_and_another_body_is_422(url: str) -> None:
    client = Client()
    first = client.post(url, data={"n": 1}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    again = client.post(url, data={"n": 1}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(url, data={"n": 2}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422
    fresh = client.post(url, data={"n": 1}, HTTP_IDEMPOTENCY_KEY="k-2")
    assert fresh.content != first.content


def test_keys_are_per_client_so_nobody_gets_another_clients_response() -> None:
    mine = Client(REMOTE_ADDR="192.0.2.10").post("/pay", data={}, HTTP_IDEMPOTENCY_KEY="k")
    theirs = Client(REMOTE_ADDR="192.0.2.11").post("/pay", data={}, HTTP_IDEMPOTENCY_KEY="k")
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.content != mine.content


def test_required_keys_failures_and_streams() -> None:
    client = Client()
    assert client.post("/pay-required").status_code == 400
    assert client.post("/pay-required", HTTP_IDEMPOTENCY_KEY="r").status_code == 201
    with pytest.raises(RuntimeError):
        client.post("/pay-and-fail", HTTP_IDEMPOTENCY_KEY="f")
    with pytest.raises(RuntimeError):  # released: the retry runs again, not a 409
        client.post("/pay-and-fail", HTTP_IDEMPOTENCY_KEY="f")
    one = b"".join(client.post("/pay-streamed", HTTP_IDEMPOTENCY_KEY="s").streaming_content)
    two = b"".join(client.post("/pay-streamed", HTTP_IDEMPOTENCY_KEY="s").streaming_content)
    assert one != two  # a stream is not stored: the key was released


async def test_async_idempotent_view_replays() -> None:
    client = AsyncClient()
    first = await client.post("/apay", headers={"idempotency-key": "a-1"})
    again = await client.post("/apay", headers={"idempotency-key": "a-1"})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


# -- the view cache -------------------------------------------------------------------------------
CACHED = ["/page/home", "/cached-cbv", "/cached-mixin", "/cached-api", "/cached-set/"]


@pytest.mark.parametrize("url", CACHED)
def test_a_cached_view_runs_once_and_head_is_answered_from_it(url: str) -> None:
    first = Client().get(url)
    assert first.status_code == 200
    assert Client().get(url).content == first.content
    head = Client().head(url)
    assert head.status_code == 200
    assert Client().get(url + ("&" if "?" in url else "?") + "q=1").content != first.content


async def test_async_cached_view() -> None:
    first = await AsyncClient().get("/apage")
    assert (await AsyncClient().get("/apage")).content == first.content


def test_invalidating_a_tag_drops_the_page() -> None:
    import redkit_django

    first = Client().get("/page/about").content
    assert Client().get("/page/about").content == first
    redkit_django.get_kit().cache.invalidate(tags=["page:about"])
    assert Client().get("/page/about").content != first
