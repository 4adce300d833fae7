"""Fixtures of the Flask adapter's tests: each test runs on real Redis, on memory:// and on the
test cluster (a cluster run of the whole adapter costs about ten seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix


@pytest.fixture(params=["redis", "memory", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster"))
    if request.param == "redis" and not REAL_REDIS:  # pragma: no cover
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL if request.param == "redis" else "memory://flask"


def make_app(url: str, name: str = "app", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update({"REDKIT_URL": url, "REDKIT_PREFIX": new_prefix(), **config})
    return app


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        state = app.extensions.get("redkit")
        if state is not None:
            state.kit.clear()
            state.kit.close()
