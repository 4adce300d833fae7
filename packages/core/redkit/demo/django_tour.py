"""A tour of the Django example shop (:mod:`redkit.demo.django_shop`) on a SQLite file of its
own (``DATABASE_URL`` is ignored), with its workers in this process; requests go through
Django's test client. ``python -m redkit demo --part django`` runs it."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

SETTINGS = "redkit.demo.django_shop.settings"


def run(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
        os.environ["REDKIT_URL"] = url
        os.environ["SHOP_SQLITE"] = os.path.join(tmp, "shop.sqlite3")
        # the tour's data lives in that file only: never in a database DATABASE_URL names
        os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections
        from django.test import Client

        import redkit_django
        from redkit_django.jobs import worker

        call_command("migrate", verbosity=0)
        kit = redkit_django.get_kit()
        kit.clear()
        workers = [worker(q, concurrency=4).start() for q in ("mail", "reports")]
        try:
            tour(Client())
        finally:
            for w in workers:
                w.stop()
            kit.clear()
            connections.close_all()  # SQLite lets go of the file before it is deleted


def _json(response: Any) -> Any:
    return response.json()


def tour(client: Any) -> None:
    from .django_shop.tasks import receipts

    post = lambda path, body, **headers: client.post(  # noqa: E731
        path, body, content_type="application/json", headers=headers
    )
    print("1. sessions: in Redis, a new session key at login")
    alice = _json(post("/users/", {"username": "alice", "password": "s3cret!", "name": "Alice"}))
    print("  created:", alice)
    path = f"/users/{alice['id']}/"
    client.get(path)
    before = client.cookies.get("sessionid")
    post("/login/", {"username": "alice", "password": "s3cret!"})
    after = client.cookies["sessionid"].value
    print("  the cookie carries only an id:", "alice" not in after)
    print("  new id after login:", before is None or before.value != after)

    print("\n2. users: a cached read, invalidated when the change commits, not on rollback")
    client.get(path)
    client.patch(path + "?dry_run=1", {"name": "Mallory"}, content_type="application/json")
    print("  after a rolled-back rename, the cached user:", _json(client.get(path))["name"])
    client.patch(path, {"name": "Alice Smith"}, content_type="application/json")
    print("  after a committed rename, the cached user:", _json(client.get(path))["name"])

    print("\n3. idempotency: a retried POST /orders/ runs once")
    first = post("/orders/", {"total": 1250}, **{"Idempotency-Key": "order-2f1c"})
    retry = post("/orders/", {"total": 1250}, **{"Idempotency-Key": "order-2f1c"})
    print(f"  first: {first.status_code} {_json(first)}")
    print(f"  retry: {retry.status_code}, Idempotent-Replayed: {retry['Idempotent-Replayed']}")
    other = post("/orders/", {"total": 999}, **{"Idempotency-Key": "order-2f1c"})
    print(f"  same key, other body: {other.status_code}")
    bad = post("/orders/", {"total": -5})
    print(f"  a rejected order: {bad.status_code}, its receipt job is never sent")
    orders = _json(client.get(f"/users/{alice['id']}/orders/"))["orders"]
    print("  the user's orders (cached, invalidated by the commit):", orders)
    deadline = time.monotonic() + 10
    while not receipts and time.monotonic() < deadline:
        time.sleep(0.02)
    print("  receipts sent after commit:", receipts)

    print("\n4. a slow report through django.tasks: 202 at once, then poll")
    started = post("/reports/", {})
    body = _json(started)
    print(f"  {started.status_code} result {body['id'][:16]}...")
    seen: list[Any] = []
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _json(client.get(body["status_url"]))
        if status["progress"] and status["progress"] not in seen:
            seen.append(status["progress"])
        if status["status"] in ("SUCCESSFUL", "FAILED"):
            break
        time.sleep(0.02)
    print(f"  progress updates seen while polling: {len(seen)}, the last {seen[-1:]}")
    print(f"  status {status.get('status')}: {status.get('result')}")

    print("\n5. rate limits: login allows 5 a minute per client (one was used above)")
    login = {"username": "alice", "password": "s3cret!"}
    codes = [post("/login/", login).status_code for _ in range(5)]
    limited = post("/login/", login)
    print(f"  next five: {codes}, Retry-After {limited['Retry-After']} s")
