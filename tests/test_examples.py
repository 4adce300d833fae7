"""The demos the README runs work on the embedded backend and show what they claim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("REDKIT_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cache_demo() -> None:
    out = _run("cache_demo.py")
    assert "on memory://demo" in out
    assert "50 callers got 1 distinct value(s); the query ran 1 time(s)" in out


@pytest.mark.parametrize(
    "expected",
    [
        "stored: {'user': None, 'cart': ['tea'], 'theme': 'dark'}",
        "old id loads None",
        "attempt 2: REPLAY, 201",
        "same key, different body: MISMATCH; charges made: 1",
        "allowed: 100 of 200",
        "client ip 198.51.100.4",
        "LockNotAcquired",
        "received on 'orders': {'id': 1, 'total': 9.5}",
        "worker-2 recovers the unacknowledged one: [{'event': 'login', 'n': 2}]",
    ],
)
def test_web_demo(expected: str, web_demo_output: str) -> None:
    assert expected in web_demo_output


@pytest.fixture(scope="module")
def web_demo_output() -> str:
    return _run("web_demo.py")


@pytest.fixture(scope="module")
def queue_demo_output() -> str:
    return _run("queue_demo.py")


@pytest.mark.parametrize(
    "expected",
    [
        "same job_id, same job: True",
        "'waiting': 5, 'prioritized': 2, 'delayed': 1",
        "welcome sent to Ada <ada@example.com>",
        "order 41 charged on attempt 3",
        "report: {'rows': 400}, progress 100%",
        "JobFailed: job",
        "welcome sent to Bob <bob@example.com>",
        "dead-letter queue got __main__.refuse: Unrecoverable: order 42 is cancelled",
        "priority 1 ran before priority 9: True",
        "'completed': 7, 'failed': 1}",
    ],
)
def test_queue_demo(expected: str, queue_demo_output: str) -> None:
    assert expected in queue_demo_output


@pytest.fixture(scope="module")
def flask_demo_output() -> str:
    pytest.importorskip("flask_sqlalchemy")
    return _run("flask_app/demo.py")


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
def test_flask_demo(expected: str, flask_demo_output: str) -> None:
    assert expected in flask_demo_output
