"""Closing an application's redkit: the lease renewer thread ends and nothing keeps the client
alive, whether the extension or the client itself is closed."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import redkit
from flask import Flask
from redkit import ClientClosedError
from redkit_flask import Redkit
from tests.flask.conftest import make_app


def _leases() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "redkit-idempotency-leases"]


def _app_with_running_lease(url: str) -> tuple[Flask, Redkit]:
    app = make_app(url, REDKIT_IDEMPOTENCY_LEASE=30)
    ext = Redkit(app)

    @app.post("/pay")
    @ext.idempotent()
    def pay() -> str:
        return "paid"

    response = app.test_client().post("/pay", headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 200
    return app, ext


@pytest.mark.parametrize("how", ["extension", "client"])
def test_five_apps_closed_leave_no_lease_thread_and_no_client(url: str, how: str) -> None:
    before = set(_leases())
    kits: list[weakref.ref[redkit.Redkit]] = []
    for _ in range(5):
        app, ext = _app_with_running_lease(url)
        state = app.extensions["redkit"]
        assert set(_leases()) - before, "the renewer runs while a request holds a key"
        kits.append(weakref.ref(state.kit))
        state.kit.clear()
        if how == "extension":
            ext.close(app)
        else:
            state.kit.close()
        del app, ext, state
    assert not set(_leases()) - before
    gc.collect()
    assert [k for k in kits if k() is not None] == []


def test_closing_twice_is_harmless_and_a_closed_app_stays_closed(url: str) -> None:
    app, ext = _app_with_running_lease(url)
    with app.app_context():
        ext.kit.clear()
    ext.close(app)
    ext.close(app)
    app.extensions["redkit"].kit.close()
    with app.app_context(), pytest.raises(ClientClosedError):
        ext.cache.get("page")
