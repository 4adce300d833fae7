"""redkit runs on the redis-py versions it is tested with (declared in pyproject.toml) and
fails at import, with a message naming the tested range, on any other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from redkit import _connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("version", ["8.0.0", "8.1.0", "8.9.12"])
def test_a_tested_version_passes(version: str) -> None:
    _connection.check_redis_py(version)


@pytest.mark.parametrize("version", ["9.0.0", "10.1", "7.4.1", "5.0.8", "unknown", ""])
def test_another_version_is_refused_naming_the_tested_range(version: str) -> None:
    with pytest.raises(ImportError, match=r"tested with redis-py >=8\.0,<9") as info:
        _connection.check_redis_py(version)
    assert f"installed redis-py {version}" in str(info.value)


@pytest.mark.parametrize("version", ["9.0.0", "7.4.1"])
def test_import_fails_on_an_untested_redis_py(version: str) -> None:
    code = f"import redis; redis.__version__ = {version!r}; import redkit"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert f"not with the installed redis-py {version}" in done.stderr


def test_the_installed_redis_py_and_pyproject_agree_with_the_check() -> None:
    _connection.check_redis_py(redis.__version__)
    (low, high) = _connection.REDIS_PY
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"redis>={low[0]}.{low[1]},<{high[0]}",' in pyproject
