"""The FastAPI example shop (examples/fastapi_app) on real Redis, with PostgreSQL (psycopg's
async mode; DATABASE_URL, default the local ``test`` database) and SQLite (aiosqlite): its tour
run in a process of its own, since the shop reads its servers from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("aiosqlite")

from sqlalchemy.engine import make_url

from tests.conftest import IN_CI, REAL_REDIS, REDIS_URL, new_prefix
from tests.test_examples import FASTAPI_TOUR

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _database(which: str, tmp_path: Path) -> str:
    if which == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/shop.db"
    url = make_url(DATABASE_URL).set(drivername="postgresql+psycopg_async")
    import sqlalchemy

    engine = sqlalchemy.create_engine(DATABASE_URL)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # pragma: no cover - no database on this machine
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("which", ["postgresql", "sqlite"])
def test_the_fastapi_shop_on_real_servers(which: str, tmp_path: Path) -> None:
    if not REAL_REDIS:  # pragma: no cover
        pytest.skip(f"no Redis at {REDIS_URL}")
    env = {
        **os.environ,
        "DATABASE_URL": _database(which, tmp_path),
        "REDKIT_PREFIX": new_prefix(),
        "REDKIT_SESSION_SECRET": "a-test-only-session-key-0123456789",
    }
    done = subprocess.run(
        [sys.executable, "-m", "redkit", "demo", "--part", "fastapi", "--url", REDIS_URL],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # an ACL user without CONFIG (as in CI) makes the workers say they cannot check the policy
    said = [
        line
        for line in (out + done.stderr).splitlines()
        if "could not read Redis' maxmemory-policy" not in line
    ]
    for alarm in ("Traceback", "ERROR", "WARNING"):
        assert not [line for line in said if alarm in line]
    for expected in FASTAPI_TOUR:
        assert expected in out, out
