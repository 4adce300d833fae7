"""The Flask extension: configuration from app.config, application factories, one client per
application, tasks run inside the application's context, pools closed. Real Redis and memory://."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("flask")

import redkit
from flask import Flask, current_app
from redkit import ConfigurationError
from redkit_flask import Redkit, settings_from_config
from tests.flask.conftest import make_app


def test_settings_come_from_app_config_and_arguments_win(url: str, apps: list[Flask]) -> None:
    app = make_app(url, REDKIT_CACHE_TTL="42", REDKIT_SOCKET_TIMEOUT=3)
    apps.append(app)
    ext = Redkit(app, cache_ttl=7)
    state = app.extensions["redkit"]
    assert state.ext is ext
    settings = state.kit.settings
    assert settings.cache_ttl == 7  # the constructor's argument
    assert settings.socket_timeout == 3.0  # from the config, coerced
    assert settings.prefix == app.config["REDKIT_PREFIX"]
    assert settings_from_config({"REDKIT_CACHE_TTL": "9", "OTHER": 1}).cache_ttl == 9.0
    with pytest.raises(ConfigurationError, match="REDKIT_CACHE_TLL"):
        settings_from_config({"REDKIT_CACHE_TLL": 5})
    with pytest.raises(ConfigurationError, match="cache_tll"):
        Redkit(cache_tll=5)


def test_registering_twice_is_harmless_and_another_extension_is_refused(
    url: str, apps: list[Flask]
) -> None:
    app = make_app(url)
    apps.append(app)
    ext = Redkit(app)
    kit = app.extensions["redkit"].kit
    ext.init_app(app)
    assert app.extensions["redkit"].kit is kit
    with pytest.raises(RuntimeError, match="already registered"):
        Redkit(app)


def test_an_application_factory_gets_one_client_per_application(
    url: str, apps: list[Flask]
) -> None:
    ext = Redkit()
    first, second = make_app(url, "first"), make_app(url, "second")
    apps += [first, second]
    for app in (first, second):
        ext.init_app(app)
    with first.app_context():
        ext.cache.set("k", "first")
        assert ext.kit is first.extensions["redkit"].kit
    with second.app_context():
        assert ext.cache.get("k") is None  # its own prefix
        ext.cache.set("k", "second")
    with first.app_context():
        assert ext.cache.get("k") == "first"
    with pytest.raises(RuntimeError, match="application context"):
        ext.kit  # noqa: B018 - two applications and none current
    other = Flask("other")
    with other.app_context(), pytest.raises(RuntimeError, match="not registered"):
        ext.kit  # noqa: B018

    single = Redkit(make_app(url, "single"))
    apps.append(next(iter(single._apps)))
    assert single.kit.ping() is True  # one application: usable outside its context


def test_tasks_run_inside_the_application_context(url: str, apps: list[Flask]) -> None:
    ext = Redkit()
    seen: list[Any] = []

    @ext.task(queue="mail", attempts=2)
    def send(to: str) -> str:
        seen.append((current_app.name, current_app.config["GREETING"]))
        return f"sent to {to}"

    @ext.task(queue="mail")
    async def asend(to: str) -> str:
        await asyncio.sleep(0)
        seen.append((current_app.name, to))
        return to.upper()

    app = make_app(url, "shop", GREETING="hello")
    apps.append(app)
    ext.init_app(app)  # after the tasks were declared
    ext.init_app(app)  # twice: the tasks are not registered again

    with app.app_context():
        job = send.enqueue("ada@example.com")
        ajob = asend.enqueue("bob")
        assert job.name == send.name == f"{__name__}.{send.__qualname__}"
        worker = ext.worker("mail", concurrency=2).start()
        try:
            assert job.wait(10) == "sent to ada@example.com"
            assert ajob.wait(10) == "BOB"
        finally:
            worker.stop()
        assert ext.queue("mail").get_job(job.id).attempts_made == 1
        assert sorted(seen) == [("shop", "bob"), ("shop", "hello")]
        assert send("direct") == "sent to direct"  # calling it runs it here, in this context
    assert len(seen) == 3


def test_close_closes_the_pool_and_is_idempotent(url: str, apps: list[Flask]) -> None:
    app = make_app(url)
    ext = Redkit(app)
    with app.app_context():
        ext.cache.set("k", 1)
        ext.close()
        ext.close()
    kit: redkit.Redkit = app.extensions["redkit"].kit
    assert kit._closed is True
    fresh = redkit.Redkit.from_url(url, prefix=kit.settings.prefix)
    fresh.clear()
    fresh.close()
