"""Sessions when Redis goes away (a real server stopped by the test): redkit's SessionMiddleware
answers 503 with Retry-After, never a 500, and never deletes the client's cookie."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_started
from django.test import Client, override_settings

from redkit_django import conf
from tests.django.conftest import redkit_settings
from tests.django.test_sessions_http import ENGINE, MIDDLEWARE, sid_of
from tests.servers import RedisProcess

pytestmark = pytest.mark.urls("tests.django.urls_web")


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def outage(url: str) -> dict[str, Any]:
    return redkit_settings(url, SOCKET_CONNECT_TIMEOUT=0.3, SOCKET_TIMEOUT=0.5, RETRY_ATTEMPTS=0)


def test_redis_down_reading_the_session_is_a_503_and_the_cookie_is_kept(
    server: RedisProcess,
) -> None:
    with override_settings(REDKIT=outage(server.url), SESSION_ENGINE=ENGINE, MIDDLEWARE=MIDDLEWARE):
        client = Client()
        sid = sid_of(client.get("/s/set/user/ada"))
        server.stop()
        got = client.get("/s/get")
        assert got.status_code == 503
        assert int(got.headers["Retry-After"]) >= 1
        assert got.headers["Content-Type"] == "application/problem+json"
        assert "sessionid" not in got.cookies  # never a logout
        assert sid is not None
    conf.reset()


def test_redis_down_writing_the_session_is_a_503(server: RedisProcess) -> None:
    with override_settings(REDKIT=outage(server.url), SESSION_ENGINE=ENGINE, MIDDLEWARE=MIDDLEWARE):
        client = Client()
        client.get("/s/set/a/1")
        assert client.get("/s/get").json() == {"a": "1"}

        def stop(**kwargs: Any) -> None:
            server.stop()

        request_started.connect(stop)
        try:
            got = client.get("/s/set/b/2")
        finally:
            request_started.disconnect(stop)
        assert got.status_code == 503
        assert "sessionid" not in got.cookies
    conf.reset()
