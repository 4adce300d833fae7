"""The Django example shop (``redkit.demo.django_shop``, ``examples/django_project``) on real
Redis and PostgreSQL: its tour, and the shop served by ``manage.py runserver`` with
``manage.py redkit_worker`` in another process, stopped by SIGTERM."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import REDIS_URL, new_prefix

ROOT = Path(__file__).resolve().parents[2]
PG = urllib.parse.urlsplit(
    os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
)


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG.hostname or "127.0.0.1",
        port=PG.port or 5432,
        user=PG.username or "postgres",
        password=PG.password or None,
        dbname=PG.path.lstrip("/") or "test",
        autocommit=True,
    )


@pytest.fixture
def shop_env() -> Iterator[dict[str, str]]:
    """The environment of a shop process: a database of its own, a test prefix on real Redis."""
    name = f"rk_shop_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    user = PG.username or "postgres"
    auth = user if not PG.password else f"{user}:{PG.password}"
    host = f"{PG.hostname or '127.0.0.1'}:{PG.port or 5432}"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{auth}@{host}/{name}",
        "REDKIT_URL": REDIS_URL,
        "REDKIT_PREFIX": new_prefix(),
        "DJANGO_SETTINGS_MODULE": "redkit.demo.django_shop.settings",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "packages" / p) for p in ("core", "django_ext")] + [str(ROOT)]
        ),
    }
    try:
        yield env
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redkit

        with redkit.Redkit.from_url(REDIS_URL, prefix=env["REDKIT_PREFIX"]) as kit:
            kit.clear()


def _manage(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "django_project" / "manage.py"), *args],
        env=env,
        cwd=ROOT / "examples" / "django_project",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_tour_runs_on_redis_and_postgresql(shop_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "examples/django_project/demo.py", "--url", REDIS_URL],
        env={k: v for k, v in shop_env.items() if k != "DJANGO_SETTINGS_MODULE"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for expected in (
        "after a rolled-back rename, the cached user: Alice\n",
        "after a committed rename, the cached user: Alice Smith",
        "retry: 201, Idempotent-Replayed: true",
        "receipts sent after commit: [1]\n",
        "status SUCCESSFUL: {'user_id': 1, 'orders': 1, 'total': 1250}",
        "next five: [200, 200, 200, 200, 429]",
    ):
        assert expected in done.stdout


class Browser:
    """A client of the running shop: cookies kept, the CSRF token sent back."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.token = ""

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Referer", self.base + "/")
        if self.token:
            request.add_header("X-CSRFToken", self.token)
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(browser: Browser, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[0]
        try:
            status, body = browser.call("GET", "/csrf/")
        except OSError:
            time.sleep(0.1)
            continue
        assert status == 200
        browser.token = body["csrf_token"]
        return
    pytest.fail("the shop did not answer within 30 s")


def _others_are_refused(base: str, server: Any, ada: int, report: dict[str, Any]) -> None:
    """Another client, anonymous then logged in as someone else, can neither rename Ada nor
    read her orders or her report."""
    mallory = Browser(base)
    _wait_for(mallory, server)
    rename = {"name": "Mallory"}
    assert mallory.call("PATCH", f"/users/{ada}/", rename)[0] == 401
    assert mallory.call("GET", f"/users/{ada}/orders/")[0] == 401
    taken = {"username": "ada", "password": "pw-000000", "name": "Not Ada"}
    assert mallory.call("POST", "/users/", taken)[0] == 409  # a clean answer, not a 500
    too_long = {"username": "m" * 151, "password": "pw-000000", "name": "M"}
    assert mallory.call("POST", "/users/", too_long)[0] == 400
    signup = {"username": "mallory", "password": "pw-654321", "name": "M"}
    assert mallory.call("POST", "/users/", signup)[0] == 201
    assert mallory.call("POST", "/login/", signup)[0] == 200
    mallory.token = next(c.value for c in mallory.jar if c.name == "csrftoken")
    assert mallory.call("PATCH", f"/users/{ada}/", rename)[0] == 403
    assert mallory.call("GET", f"/users/{ada}/orders/")[0] == 403
    assert mallory.call("GET", report["status_url"])[0] == 404
    assert mallory.call("GET", f"/users/{ada}/")[1]["name"] == "Ada"


def test_the_shop_serves_with_a_worker_process_that_stops_on_sigterm(
    shop_env: dict[str, str],
) -> None:
    migrate = _manage(shop_env, "migrate", "--verbosity", "0")
    output = migrate.communicate(timeout=60)[0]
    assert migrate.returncode == 0, output
    port = _free_port()
    server = _manage(shop_env, "runserver", "--noreload", f"127.0.0.1:{port}")
    worker = _manage(shop_env, "redkit_worker", "mail", "reports", "--shutdown-timeout", "10")
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        _wait_for(browser, server)
        assert (
            browser.call(
                "POST", "/users/", {"username": "ada", "password": "pw-123456", "name": "Ada"}
            )[0]
            == 201
        )
        status, body = browser.call("POST", "/login/", {"username": "ada", "password": "pw-123456"})
        assert status == 200, body
        browser.token = next(c.value for c in browser.jar if c.name == "csrftoken")
        first = browser.call("POST", "/orders/", {"total": 700}, **{"Idempotency-Key": "k-1"})
        again = browser.call("POST", "/orders/", {"total": 700}, **{"Idempotency-Key": "k-1"})
        assert first[0] == 201
        assert again == first  # replayed, not run twice
        status, started = browser.call("POST", "/reports/", {})
        assert status == 202, started
        deadline = time.monotonic() + 30
        report: Any = None
        while time.monotonic() < deadline:
            _, report = browser.call("GET", started["status_url"])
            if report["status"] in ("SUCCESSFUL", "FAILED"):
                break
            time.sleep(0.05)
        assert report["status"] == "SUCCESSFUL", report
        assert report["result"] == {
            "user_id": report["result"]["user_id"],
            "orders": 1,
            "total": 700,
        }
        assert report["progress"] == {"step": 5, "of": 5}
        _others_are_refused(f"http://127.0.0.1:{port}", server, body["user"]["id"], started)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.communicate()[0]
    finally:
        for process in (worker, server):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
