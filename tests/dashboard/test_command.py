"""``redkit dashboard``: serves behind a token until SIGTERM, opens without one only to loopback
peers and only on a loopback address, and every missing or unsafe rule is a usage error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.dashboard.conftest import TOKEN
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


def _command(*extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "redkit",
        "dashboard",
        *extra,
        "--url",
        REDIS_URL,
        "--prefix",
        new_prefix(),
    ]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _get(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _served(proc: subprocess.Popen[str], port: int) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == f"redkit: dashboard on http://127.0.0.1:{port}/", line or (
        proc.stderr.read() if proc.stderr else ""
    )
    return f"http://127.0.0.1:{port}/"


def _stopped(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_it_serves_behind_its_token_until_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "REDKIT_DASHBOARD_TOKEN": TOKEN}
    proc = _command("--port", str(port), env=env)
    try:
        url = _served(proc, port)
        assert _get(url) == 401
        assert _get(url, Authorization=f"Bearer {TOKEN}") == 200
        assert _get(url + "static/dashboard.js") == 200
        _stopped(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_no_auth_opens_to_loopback_peers_only() -> None:
    port = free_port()
    proc = _command("--port", str(port), "--no-auth", "--read-only")
    try:
        url = _served(proc, port)
        assert _get(url) == 200
        _stopped(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "needs --token"),
        (("--token", "short"), "at least 16 characters"),
        (("--no-auth", "--host", "0.0.0.0"), "--no-auth serves only on a loopback address"),
        (("--no-auth", "--host", "192.168.1.10"), "--no-auth serves only on a loopback address"),
        (("--token", TOKEN, "--port", "0"), "--port must be"),
    ],
)
def test_an_unsafe_or_missing_rule_is_a_usage_error(args: tuple[str, ...], says: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDKIT_DASHBOARD_TOKEN"}
    proc = _command(*args, env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert says in err
    assert "Traceback" not in err
