"""The example shop (examples/flask_app) driven through app.test_client() on real Redis, with
PostgreSQL (DATABASE_URL, default the local ``test`` database) and SQLite: cache invalidated
after commit and not after rollback, jobs sent after commit only, 202 + job polling, sessions,
idempotency and rate limits as the app configures them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask_sqlalchemy")

from redkit.demo import shop
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["postgresql", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if not REAL_REDIS:  # pragma: no cover
        pytest.skip(f"no Redis at {REDIS_URL}")
    if request.param == "postgresql":
        pytest.importorskip("psycopg")
        import sqlalchemy

        engine = sqlalchemy.create_engine(DATABASE_URL)
        try:
            with engine.connect():
                pass
        except Exception as exc:  # pragma: no cover - no database on this machine
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}")
            pytest.skip(f"PostgreSQL is not reachable: {exc}")
        finally:
            engine.dispose()
        database = DATABASE_URL
    else:
        database = f"sqlite:///{tmp_path}/shop.db"
    application = shop.create_app(
        TESTING=True,
        SQLALCHEMY_DATABASE_URI=database,
        REDKIT_URL=REDIS_URL,
        REDKIT_PREFIX=new_prefix(),
    )
    with application.app_context():
        shop.db.drop_all()
        shop.db.create_all()
    yield application
    state = application.extensions["redkit"]
    with application.app_context():
        shop.db.session.remove()
        shop.db.drop_all()
        for engine in shop.db.engines.values():
            engine.dispose()
    state.kit.clear()
    state.kit.close()


def make_user(client: Any, name: str = "Alice") -> dict[str, Any]:
    response = client.post("/users", json={"name": name, "email": f"{name.lower()}@example.com"})
    assert response.status_code == 201
    return response.get_json()  # type: ignore[no-any-return]


def waiting(app: Any, queue: str) -> int:
    with app.app_context():
        counts = shop.kit.queue(queue).counts()
    return int(counts["waiting"] + counts["prioritized"] + counts["delayed"])


def test_cache_invalidated_after_commit_not_after_rollback(app: Any) -> None:
    client = app.test_client()
    user = make_user(client)
    path = f"/users/{user['id']}"
    assert client.get(path).get_json()["name"] == "Alice"
    with app.app_context():  # the entry is cached: a change behind the app's back is not seen
        shop.db.session.execute(
            shop.User.__table__.update().values(name="Behind").where(shop.User.id == user["id"])
        )
        shop.db.session.commit()  # a bulk statement invalidates the table's tag ("users") only
    assert client.get(path).get_json()["name"] == "Alice"
    with app.app_context():
        shop.kit.cache.invalidate([f"user:{user['id']}"])
    assert client.get(path).get_json()["name"] == "Behind"
    # a rolled-back change invalidates nothing, and the cache keeps the committed value
    assert client.patch(path + "?dry_run=1", json={"name": "Mallory"}).get_json() == {
        "dry_run": True
    }
    assert client.get(path).get_json()["name"] == "Behind"
    # a committed change invalidates the user's entry at once
    assert client.patch(path, json={"name": "Alice Smith"}).status_code == 200
    assert client.get(path).get_json()["name"] == "Alice Smith"


def test_order_job_sent_after_commit_only_and_orders_cache_invalidated(app: Any) -> None:
    client = app.test_client()
    user = make_user(client)
    client.post("/login", json={"user_id": user["id"]})
    orders_path = f"/users/{user['id']}/orders"
    assert client.get(orders_path).get_json() == {"orders": []}  # cached, empty
    assert waiting(app, "mail") == 0
    rejected = client.post("/orders", json={"total": -1})
    assert rejected.status_code == 422
    assert waiting(app, "mail") == 0  # rolled back: no job
    assert client.get(orders_path).get_json() == {"orders": []}
    created = client.post("/orders", json={"total": 700})
    assert created.status_code == 201
    body = created.get_json()
    assert waiting(app, "mail") == 1  # committed: the receipt job is there
    with app.app_context():
        job = shop.kit.queue("mail").get_job(body["receipt_job"])
    assert job is not None
    assert job.name == shop.send_receipt.name
    assert client.get(orders_path).get_json() == {"orders": [{"id": body["id"], "total": 700}]}
    # the worker runs the task inside an app context, reading the committed order
    with app.app_context():
        worker = shop.kit.worker("mail").start()
    try:
        with app.app_context():
            handle = shop.kit.queue("mail").get_job(body["receipt_job"])
            assert handle is not None
            assert handle.wait(timeout=20) == 700
    finally:
        worker.stop()


def test_slow_report_answers_202_and_the_job_is_polled(app: Any) -> None:
    client = app.test_client()
    user = make_user(client)
    assert client.post("/reports").status_code == 401  # needs a session
    client.post("/login", json={"user_id": user["id"]})
    client.post("/orders", json={"total": 100})
    client.post("/orders", json={"total": 250})
    started = client.post("/reports")
    assert started.status_code == 202
    body = started.get_json()
    assert started.headers["Location"] == body["status_url"]
    assert client.get(body["status_url"]).get_json()["state"] == "waiting"
    stranger = app.test_client()
    other = make_user(stranger, "Bob")
    stranger.post("/login", json={"user_id": other["id"]})
    assert stranger.get(body["status_url"]).status_code == 404  # not Bob's job
    assert client.get("/jobs/not-a-job").status_code == 404
    with app.app_context():
        worker = shop.kit.worker("reports").start()
    progress: list[Any] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = client.get(body["status_url"]).get_json()
            if status["progress"] is not None and status["progress"] not in progress:
                progress.append(status["progress"])
            if status["state"] == "completed":
                break
            time.sleep(0.01)
    finally:
        worker.stop()
    assert status["state"] == "completed"
    assert status["result"] == {"user_id": user["id"], "orders": 2, "total": 350}
    assert progress
    assert progress[-1] == {"step": 5, "of": 5}


def test_login_regenerates_session_and_is_rate_limited(app: Any) -> None:
    client = app.test_client()
    user = make_user(client)
    client.get(f"/users/{user['id']}")
    attacker_cookie = "AB" + "x" * 42 + "A"
    client.set_cookie("session", attacker_cookie)
    response = client.post("/login", json={"user_id": user["id"]})
    assert response.status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert not cookie.value.startswith(attacker_cookie)
    codes = [client.post("/login", json={"user_id": user["id"]}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # 5 a minute, the first one above included
    client.post("/logout")
    assert client.post("/reports").status_code == 401


def test_idempotent_order_replay_409_422_per_user(app: Any) -> None:
    client = app.test_client()
    user = make_user(client)
    client.post("/login", json={"user_id": user["id"]})
    key = {"Idempotency-Key": "order-1"}
    first = client.post("/orders", json={"total": 500}, headers=key)
    replay = client.post("/orders", json={"total": 500}, headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.get_json() == first.get_json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert client.post("/orders", json={"total": 501}, headers=key).status_code == 422
    assert (
        client.post("/orders", json={"total": 5}, headers={"Idempotency-Key": ""}).status_code
        == 400
    )
    assert waiting(app, "mail") == 1  # one order, one receipt job
    # another user may use the same key for their own order
    other = app.test_client()
    bob = make_user(other, "Bob")
    other.post("/login", json={"user_id": bob["id"]})
    theirs = other.post("/orders", json={"total": 500}, headers=key)
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    # app-wide: PATCH honours the header too
    path = f"/users/{user['id']}"
    patch_key = {"Idempotency-Key": "rename-1"}
    assert client.patch(path, json={"name": "A1"}, headers=patch_key).status_code == 200
    again = client.patch(path, json={"name": "A1"}, headers=patch_key)
    assert again.headers["Idempotent-Replayed"] == "true"
