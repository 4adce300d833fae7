"""rediss:// verifies the server certificate by default, against a real TLS redis-server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit import RedkitConnectionError
from tests.conftest import IN_CI, call, new_prefix
from tests.servers import RedisProcess, free_port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("openssl is needed to make the test certificates")
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=redkit-test-ca",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    tls_port = free_port()
    proc = RedisProcess(
        None,
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(d / "server.crt"),
        "--tls-key-file",
        str(d / "server.key"),
        "--tls-ca-cert-file",
        str(d / "ca.crt"),
        "--tls-auth-clients",
        "no",
    ).start()
    yield f"rediss://127.0.0.1:{tls_port}/0", d / "ca.crt"
    proc.cleanup()


def _make(mode: str, url: str, **options: Any) -> Any:
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    return cls.from_url(url, prefix=new_prefix(), retry_attempts=0, **options)


async def _close(kit: Any) -> None:
    await call(kit.aclose() if hasattr(kit, "aclose") else kit.close())


async def test_untrusted_certificate_is_refused_by_default(
    tls_server: tuple[str, Path], mode: str
) -> None:
    url, _ = tls_server
    kit = _make(mode, url, cache_fail_open=False)
    try:
        with pytest.raises(RedkitConnectionError, match="certificate verify failed"):
            await call(kit.cache.get("k"))
    finally:
        await _close(kit)


async def test_trusted_ca_connects_and_hostname_is_checked(
    tls_server: tuple[str, Path], mode: str
) -> None:
    url, ca = tls_server
    kit = _make(mode, url, ssl_ca_certs=str(ca))
    try:
        await call(kit.cache.set("k", {"over": "tls"}))
        assert await call(kit.cache.get("k")) == {"over": "tls"}
        await call(kit.clear())
    finally:
        await _close(kit)
    # the certificate names localhost and 127.0.0.1 only: another name for the host is refused
    other = _make(
        mode,
        url.replace("127.0.0.1", "127.0.0.2"),
        ssl_ca_certs=str(ca),
        cache_fail_open=False,
        socket_connect_timeout=1,
    )
    try:
        with pytest.raises(RedkitConnectionError):
            await call(other.cache.get("k"))
    finally:
        await _close(other)
