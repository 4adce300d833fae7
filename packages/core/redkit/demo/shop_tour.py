"""A tour of the example shop (:mod:`redkit.demo.shop`) on SQLite, with its worker in this
process; requests go through Flask's test client. ``python -m redkit demo --part shop`` runs it.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from redkit.demo.shop import create_app, kit, receipts


def run(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp}/shop.db", REDKIT_URL=url)
        state = app.extensions["redkit"]
        state.kit.clear()
        with app.app_context():
            workers = [kit.worker(q, concurrency=4).start() for q in ("mail", "reports")]
        try:
            tour(app.test_client())
        finally:
            for worker in workers:
                worker.stop()
            state.kit.clear()
            with app.app_context():
                for engine in app.extensions["sqlalchemy"].engines.values():
                    engine.dispose()  # SQLite lets go of the file before it is deleted


def tour(client: Any) -> None:
    print("1. users: a cached read, invalidated when the change commits, not on rollback")
    alice = client.post("/users", json={"name": "Alice", "email": "alice@example.com"}).get_json()
    print("  created:", alice)
    path = f"/users/{alice['id']}"
    client.get(path)
    client.patch(path + "?dry_run=1", json={"name": "Mallory"})
    print("  after a rolled-back rename, the cached user:", client.get(path).get_json()["name"])
    client.patch(path, json={"name": "Alice Smith"})
    print("  after a committed rename, the cached user:", client.get(path).get_json()["name"])

    print("\n2. sessions: login regenerates the session id")
    client.get(path)
    before = client.get_cookie("session")
    client.post("/login", json={"user_id": alice["id"]})
    after = client.get_cookie("session")
    print("  cookie carries only a signed id:", after is not None and "Alice" not in after.value)
    print("  new id after login:", before is None or before.value != after.value)

    print("\n3. idempotency: a retried POST /orders runs once")
    key = {"Idempotency-Key": "order-2f1c"}
    first = client.post("/orders", json={"total": 1250}, headers=key)
    retry = client.post("/orders", json={"total": 1250}, headers=key)
    print(f"  first: {first.status_code} {first.get_json()}")
    print(
        f"  retry: {retry.status_code}, "
        f"Idempotent-Replayed: {retry.headers.get('Idempotent-Replayed')}"
    )
    other = client.post("/orders", json={"total": 999}, headers=key)
    print(f"  same key, other body: {other.status_code}")
    bad = client.post("/orders", json={"total": -5})
    print(f"  a rejected order: {bad.status_code}, its receipt job is never sent")
    deadline = time.monotonic() + 10
    while not receipts and time.monotonic() < deadline:
        time.sleep(0.02)
    print("  receipts sent after commit:", receipts)

    print("\n4. a slow report: 202 at once, then poll the job")
    started = client.post("/reports")
    body = started.get_json()
    print(f"  {started.status_code} job {body['job_id'][:8]}...")
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(body["status_url"]).get_json()
        if status["progress"] and status["progress"] not in seen:
            seen.append(status["progress"])
        if status["state"] in ("completed", "failed"):
            break
        time.sleep(0.02)
    print(f"  progress updates seen while polling: {len(seen)}, the last {seen[-1]}")
    print(f"  state {status['state']}: {status.get('result')}")

    print("\n5. rate limits: login allows 5 a minute per client (one was used above)")
    codes = [client.post("/login", json={"user_id": alice["id"]}).status_code for _ in range(5)]
    limited = client.post("/login", json={"user_id": alice["id"]})
    print(f"  next five: {codes}, Retry-After {limited.headers['Retry-After']} s")
