"""The session engine behind Django's SessionMiddleware, through the test clients: hostile
cookies get a new session (never a 500), login cycles the id, logout kills it, expiry reaches
the cookie, a session deleted mid-request is Django's 400."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings

import redkit_django
from redkit.sessions import valid_sid
from tests.django.conftest import redkit_settings

ENGINE = "redkit_django.sessions"
MIDDLEWARE = [
    "redkit_django.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
pytestmark = pytest.mark.urls("tests.django.urls_web")


@pytest.fixture(autouse=True)
def engine(redkit_on: dict[str, Any]) -> Iterator[None]:
    with override_settings(SESSION_ENGINE=ENGINE, MIDDLEWARE=MIDDLEWARE):
        yield


def sid_of(response: Any) -> str | None:
    morsel = response.cookies.get("sessionid")
    return None if morsel is None else morsel.value


HOSTILE = [
    "garbage",
    "x" * 4000,
    "A" * 45,
    "AA" + "b" * 42 + "A",  # well formed, never issued
    '"quoted;value"',
    "%00%ff%fe",
]


@pytest.mark.parametrize("cookie", HOSTILE, ids=lambda c: repr(c[:20]))
def test_a_hostile_session_cookie_gets_a_new_session(cookie: str) -> None:
    client = Client()
    got = client.get("/s/set/k/v", HTTP_COOKIE=f"sessionid={cookie}")
    assert got.status_code == 200
    new = sid_of(got)
    assert new is not None
    assert new != cookie
    assert valid_sid(new) == new
    assert client.get("/s/get").json() == {"k": "v"}


def test_a_non_ascii_or_undecodable_cookie_header_is_no_session() -> None:
    client = Client()
    for raw in ("sessionid=é" * 3, "sessionid=\xff\xfe", "sessionid=" + "ü" * 300):
        got = client.get("/s/get", HTTP_COOKIE=raw)
        assert got.status_code == 200
        assert got.json() == {}


def test_a_session_id_of_another_prefix_is_not_adopted(redis_url: str) -> None:
    other = redkit_settings(redis_url)
    with override_settings(REDKIT=other):
        theirs = Client()
        theirs.get("/s/set/user/them")
        their_sid = sid_of(theirs.get("/s/set/x/1"))
    mine = Client()
    got = mine.get("/s/get", HTTP_COOKIE=f"sessionid={their_sid}")
    assert got.json() == {}
    with override_settings(REDKIT=other):
        redkit_django.get_kit().clear()


def test_the_cookie_carries_a_redkit_id_and_django_cookie_settings() -> None:
    with override_settings(SESSION_COOKIE_AGE=1234, SESSION_COOKIE_SAMESITE="Strict"):
        got = Client().get("/s/set/a/1")
    morsel = got.cookies["sessionid"]
    assert valid_sid(morsel.value) == morsel.value
    assert morsel["max-age"] == 1234
    assert morsel["samesite"] == "Strict"
    assert morsel["httponly"]


def test_set_expiry_zero_is_a_browser_session_cookie() -> None:
    client = Client()
    got = client.get("/s/expiry/0")
    assert got.cookies["sessionid"]["max-age"] == ""
    assert client.get("/s/get").json() == {"e": 1}


@pytest.mark.django_db(transaction=True)
def test_login_moves_the_session_to_a_new_id_and_logout_kills_it() -> None:
    client = Client()
    anonymous = sid_of(client.get("/s/set/cart/tea"))
    assert anonymous is not None
    logged = client.get("/s/login/ada")
    user_sid = sid_of(logged)
    assert user_sid is not None
    assert user_sid != anonymous
    assert client.get("/s/get").json() == {"cart": "tea"}  # kept across the login
    attacker = Client()
    assert attacker.get("/s/get", HTTP_COOKIE=f"sessionid={anonymous}").json() == {}
    client.get("/s/logout")
    assert redkit_django.get_kit().sessions.load(user_sid) is None


def test_a_session_deleted_during_the_request_is_djangos_400() -> None:
    client = Client()
    sid = sid_of(client.get("/s/set/a/1"))
    assert client.get("/s/get").json() == {"a": "1"}

    got = client.get("/s/lost")
    assert got.status_code == 400
    assert redkit_django.get_kit().sessions.load(sid) is None  # not created again


async def test_async_views_use_the_async_methods() -> None:
    client = AsyncClient()
    got = await client.get("/as/set/k/v")
    first = sid_of(got)
    assert first is not None
    assert (await client.get("/as/get")).json() == {"k": "v"}
    await client.get("/as/cycle")
    assert (await client.get("/as/get")).json() == {"k": "v"}
    assert redkit_django.get_kit().sessions.load(first) is None


async def test_async_hostile_cookies_get_a_new_session() -> None:
    for cookie in HOSTILE:
        client = AsyncClient()
        got = await client.get("/as/set/k/v", headers={"cookie": f"sessionid={cookie}"})
        assert got.status_code == 200
        assert sid_of(got) != cookie
