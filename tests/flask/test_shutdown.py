"""`flask redkit worker`, in-process workers stopped gracefully at exit, and no connection leak
across test clients. Real Redis (the worker runs in another process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("flask_sqlalchemy")

from redkit_flask import Redkit
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.flask.conftest import make_app

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "flask_app"

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDKIT_", "FLASK_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SHOP), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_flask_redkit_worker_runs_the_apps_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    sys.path.insert(0, str(SHOP))
    import shop

    prefix, database = new_prefix(), f"sqlite:///{tmp_path}/shop.db"
    app = shop.create_app(
        REDKIT_URL=REDIS_URL, REDKIT_PREFIX=prefix, SQLALCHEMY_DATABASE_URI=database
    )
    client = app.test_client()
    user = client.post("/users", json={"name": "Ann", "email": "ann@example.com"}).get_json()
    client.post("/login", json={"user_id": user["id"]})
    job_id = client.post("/orders", json={"total": 321}).get_json()["receipt_job"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "shop", "redkit", "worker", "mail", "-c", "2"],
        cwd=SHOP,
        env=_env(
            REDKIT_URL=REDIS_URL,
            FLASK_REDKIT_PREFIX=prefix,
            FLASK_SQLALCHEMY_DATABASE_URI=database,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with app.app_context():
            handle = shop.kit.queue("mail").get_job(job_id)
            assert handle is not None
            assert handle.wait(timeout=60) == 321  # the worker process ran it in an app context
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        state = app.extensions["redkit"]
        state.kit.clear()
        state.kit.close()
    assert proc.returncode == 0, err
    assert "worker for mail" in err


def test_flask_redkit_worker_help_lists_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "shop", "redkit", "worker", "--help"],
        cwd=SHOP,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--concurrency", "--shutdown-timeout", "--loop"):
        assert option in done.stdout


def test_in_process_worker_finishes_its_job_when_the_process_exits() -> None:
    prefix = new_prefix()
    script = textwrap.dedent(
        f"""
        import time
        from flask import Flask
        from redkit_flask import Redkit

        app = Flask("exiting")
        app.config.update(REDKIT_URL={REDIS_URL!r}, REDKIT_PREFIX={prefix!r})
        ext = Redkit(app)

        @ext.task(queue="slow")
        def slow() -> str:
            time.sleep(1.0)
            return "finished"

        with app.app_context():
            ext.worker("slow").start()
            job = slow.options(keep=True).enqueue()
            while ext.queue("slow").get_job(job.id).state != "active":
                time.sleep(0.01)
            print(job.id, flush=True)
        # the main thread ends here, with the job still running on the worker's thread
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    app = make_app(REDIS_URL, REDKIT_PREFIX=prefix)
    ext = Redkit(app)
    with app.app_context():
        job = ext.queue("slow").get_job(job_id)
        assert job is not None
        assert job.state == "completed", (job.failed_reason, done.stderr)
        assert job.result == "finished"
        ext.kit.clear()
    ext.close(app)


def test_test_clients_share_the_apps_pool() -> None:
    app = make_app(REDIS_URL, REDKIT_SESSIONS=True, SECRET_KEY="k")
    ext = Redkit(app)

    @app.get("/")
    @ext.rate_limit("1000/minute")
    def index() -> str:
        from flask import session

        session["n"] = session.get("n", 0) + 1
        return "ok"

    for _ in range(50):
        with app.test_client() as client:
            assert client.get("/").status_code == 200
            assert client.get("/").status_code == 200
    pool = app.extensions["redkit"].kit.client.connection_pool
    # one request at a time: one connection, opened once and reused by every test client
    assert pool._created_connections == 1
    (connection,) = pool._available_connections
    app.extensions["redkit"].kit.clear()
    ext.close(app)
    assert connection._sock is None  # closed with the pool
