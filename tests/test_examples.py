"""``python -m redkit demo``, the tour the README runs first: on the embedded backend, whatever
REDKIT_URL and REDIS_URL say, it tells each part's story and prints nothing that looks like a
failure, on stdout or stderr."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALARMS = ("Traceback", "ERROR", "WARNING", "Exception")


def _run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REDKIT_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for alarm in ALARMS:
        assert alarm not in done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def tour() -> str:
    return _run("-m", "redkit", "demo")


def test_the_tour_runs_on_memory_and_says_where_data_lives(tour: str) -> None:
    assert "a tour on memory://demo" in tour
    assert "memory:// lives in this process only" in tour
    assert "A real deployment sets REDKIT_URL" in tour
    for number in range(1, 7):
        assert f"\n== {number}/6 " in tour


@pytest.mark.parametrize(
    "expected",
    [
        # the cache
        "50 callers got 1 distinct value(s); the query ran 1 time(s)",
        "get_user(3)  (miss again after invalidation)",
        "await price('sku-1')  (hit )",
        # the web primitives
        "stored: {'user': None, 'cart': ['tea'], 'theme': 'dark'}",
        "old id loads None",
        "attempt 2: REPLAY, 201",
        "same key, different body: MISMATCH; charges made: 1",
        "allowed: 100 of 200",
        "client ip 198.51.100.4",
        "LockNotAcquired",
        "received on 'orders': {'id': 1, 'total': 9.5}",
        "worker-2 recovers the unacknowledged one: [{'event': 'login', 'n': 2}]",
        # the job queue
        "same job_id, same job: True",
        "'waiting': 5, 'prioritized': 2, 'delayed': 1",
        "(flaky_charge) failed (attempt 1 of 3), retrying",
        "welcome sent to Ada <ada@example.com>",
        "order 41 charged on attempt 3",
        "report: {'rows': 400}, progress 100%",
        "JobFailed: job",
        "welcome sent to Bob <bob@example.com>",
        "dead-letter queue got refuse: Unrecoverable: order 42 is cancelled",
        "priority 1 ran before priority 9: True",
        "'completed': 7, 'failed': 1, 'cancelled': 0, 'waiting_children': 0}",
    ],
)
def test_the_tour_tells_each_part(expected: str, tour: str) -> None:
    assert expected in tour


@pytest.mark.parametrize(
    "expected",
    [
        "after a rolled-back rename, the cached user: Alice\n",
        "after a committed rename, the cached user: Alice Smith",
        "cookie carries only a signed id: True",
        "new id after login: True",
        "retry: 201, Idempotent-Replayed: true",
        "same key, other body: 422",
        "a rejected order: 422",
        "receipts sent after commit: [1]\n",
        "the last {'of': 5, 'step': 5}\n",
        "state completed: {'orders': 1, 'total': 1250, 'user_id': 1}",
        "next five: [200, 200, 200, 200, 429]",
    ],
)
def test_the_tour_runs_the_flask_shop(expected: str, tour: str) -> None:
    if importlib.util.find_spec("flask_sqlalchemy") is None:
        assert "skipped: this part needs flask_sqlalchemy" in tour
        pytest.skip("Flask-SQLAlchemy is not installed")
    assert expected in tour


@pytest.mark.parametrize(
    "expected",
    [
        "after a rolled-back rename, the cached user: Alice\n",
        "after a committed rename, the cached user: Alice Smith",
        "the cookie carries only an id: True",
        "new id after login: True",
        "retry: 201, Idempotent-Replayed: true",
        "same key, other body: 422",
        "a rejected order: 422",
        "the user's orders (cached, invalidated by the commit): [{'id': 1, 'total': 1250}]",
        "receipts sent after commit: [1]\n",
        "202 result reports:",
        "the last [{'step': 5, 'of': 5}]\n",
        "status SUCCESSFUL: {'user_id': 1, 'orders': 1, 'total': 1250}",
        "next five: [200, 200, 200, 200, 429]",
    ],
)
def test_the_tour_runs_the_django_shop(expected: str, tour: str) -> None:
    assert expected in tour.split("a Django shop", 1)[1]


FASTAPI_TOUR = [
    "created: {'id': 1, 'name': 'Alice', 'email': 'alice@example.com'} at /users/1",
    "after a rolled-back rename, the cached user: Alice\n",
    "after a committed rename, the cached user: Alice Smith",
    "the cookie carries only a signed id: True",
    "new id after login: True",
    "retry: 201, Idempotent-Replayed: true",
    "same key, other body: 422",
    "a rejected order: 422",
    "the user's orders (cached, invalidated by the commit): [{'id': 1, 'total': 1250}]",
    "receipts sent after commit: [1]\n",
    "'progress', 'completed']\n",
    "'result': {'user_id': 1, 'orders': 1, 'total': 1250}}\n",
    "another browser (not logged in) asking for the job: 401",
    "next five: [200, 200, 200, 200, 429]",
]
"""What the FastAPI shop's tour says, on any backend and database."""


@pytest.mark.parametrize("expected", FASTAPI_TOUR)
def test_the_tour_runs_the_fastapi_shop(expected: str, tour: str) -> None:
    part = tour.split("a FastAPI shop", 1)[1].split("a Django shop", 1)[0]
    assert expected in part


def test_the_fastapi_example_serves_under_uvicorn() -> None:
    """``uvicorn app:app`` in examples/fastapi_app, as its README says: it starts (tables,
    workers), answers, and stops on SIGTERM."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
        cwd=ROOT / "examples" / "fastapi_app",
        env={k: v for k, v in os.environ.items() if k not in ("REDKIT_URL", "REDIS_URL")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json") as got:
                    schema = json.loads(got.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        assert "/jobs/{job_id}/events" in schema["paths"]
        orders = schema["paths"]["/orders"]["post"]["parameters"]
        assert [p["name"] for p in orders] == ["Idempotency-Key"]
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output


def test_part_runs_one_part_only() -> None:
    out = _run("-m", "redkit", "demo", "--part", "web")
    assert "memory:// lives in this process only" in out
    assert "\n== 2/6 web primitives" in out
    assert "attempt 2: REPLAY, 201" in out
    assert "== 1/6" not in out
    assert "== 3/6" not in out


def test_an_example_file_runs_its_part() -> None:
    out = _run("examples/queue_demo.py")
    assert "\n== 3/6 the job queue" in out
    assert "order 41 charged on attempt 3" in out
    assert "== 2/6" not in out


def test_the_shop_is_skipped_in_one_line_without_flask_sqlalchemy() -> None:
    code = (
        "import sys; sys.modules['flask_sqlalchemy'] = None; from redkit.demo import main; "
        "sys.exit(main(['--part', 'shop']))"
    )
    out = _run("-c", code)
    tail = out.split("== 4/6", 1)[1].splitlines()
    assert tail[2] == "skipped: this part needs flask_sqlalchemy: pip install 'redkit[all]'"
    assert tail[4].startswith("The tour took")
