"""The Prometheus exposition of queue metrics (``redkit.metrics``): a collector reading what the
workers keep in Redis, as a registry, a WSGI and an ASGI application, and the ``redkit metrics``
command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import redkit
import redkit.asyncio
from redkit.metrics import QueueCollector, make_asgi_app, make_wsgi_app, registry
from redkit.queue import Unrecoverable
from tests.conftest import REAL_REDIS, REDIS_URL, new_prefix
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")


@pytest.fixture
def kit() -> Iterator[redkit.Redkit]:
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    q = kit.queue("mail")

    @q.task(name="send")
    def send(n: int) -> int:
        if n < 0:
            raise Unrecoverable("bad address")
        return n

    for n in (1, 2, 3, -1):
        q.add("send", {"args": [n], "kwargs": {}})
    q.add("send", {"args": [9], "kwargs": {}}, delay=3600).cancel()
    worker = q.worker().start()
    deadline = time.monotonic() + 10
    while q.counts()["completed"] + q.counts()["failed"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    kit.queue("reports").add("build", None)  # a second queue, in the registry, never run
    yield kit
    kit.clear()
    kit.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_scrape_reads_every_queue_from_redis(kit: redkit.Redkit) -> None:
    got = samples(generate_latest(registry(kit)).decode())
    mail = (("queue", "mail"),)
    assert got[("redkit_queue_jobs", (("queue", "mail"), ("state", "completed")))] == 3
    assert got[("redkit_queue_jobs", (("queue", "mail"), ("state", "failed")))] == 1
    assert got[("redkit_queue_jobs", (("queue", "mail"), ("state", "cancelled")))] == 1
    assert got[("redkit_queue_jobs", (("queue", "reports"), ("state", "waiting")))] == 1
    assert got[("redkit_queue_jobs_completed_total", mail)] == 3
    assert got[("redkit_queue_jobs_failed_total", mail)] == 1
    assert got[("redkit_queue_jobs_cancelled_total", mail)] == 1
    assert got[("redkit_queue_workers", mail)] == 0
    assert got[("redkit_queue_paused", mail)] == 0
    assert got[("redkit_queue_run_seconds_count", mail)] == 4
    assert got[("redkit_queue_wait_seconds_count", mail)] == 4
    buckets = [
        v
        for (name, labels), v in got.items()
        if name == "redkit_queue_run_seconds_bucket" and ("queue", "mail") in labels
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert buckets[-1] == 4  # le="+Inf"
    assert got[("redkit_queue_run_seconds_sum", mail)] >= 0
    only = samples(generate_latest(registry(kit, ["reports"])).decode())
    assert {dict(labels)["queue"] for _, labels in only} == {"reports"}


def test_the_wsgi_and_asgi_apps_serve_the_exposition(kit: redkit.Redkit) -> None:
    from werkzeug.test import Client

    response = Client(make_wsgi_app(kit, ["mail"])).get("/")
    assert response.status_code == 200
    assert 'redkit_queue_jobs_completed_total{queue="mail"} 3.0' in response.get_data(as_text=True)

    async def scrape() -> str:
        akit = redkit.asyncio.Redkit.from_url(REDIS_URL, prefix=kit.settings.prefix)
        try:
            app = make_asgi_app(akit, ["mail"])  # an asyncio client: read with a blocking twin
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                r = await http.get("/")
                assert r.status_code == 200
                return r.text
        finally:
            await akit.aclose()

    import asyncio

    assert 'redkit_queue_jobs{queue="mail",state="failed"} 1.0' in asyncio.run(scrape())


def test_a_collector_of_an_asyncio_client_closes_its_own_client() -> None:
    akit = redkit.asyncio.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    collector = QueueCollector(akit, ["x"])
    assert [f.name for f in collector.collect()][:1] == ["redkit_queue_jobs"]
    collector.close()
    assert collector._kit._closed
    asyncio_close(akit)


def asyncio_close(akit: Any) -> None:
    import asyncio

    asyncio.run(akit.aclose())


def served_until_sigterm(
    argv: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Any = None
) -> str:
    """Run a metrics command, scrape it once it says where it listens, stop it with SIGTERM
    (exit status 0); the text scraped."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"redkit: metrics on http://127.0.0.1:{port}/metrics", (
            line or proc.communicate(timeout=20)
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        return text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_redkit_metrics_serves_until_sigterm(kit: redkit.Redkit) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "redkit", "metrics", "mail", "--port", str(port)]
    argv += ["--url", REDIS_URL, "--prefix", kit.settings.prefix]
    text = served_until_sigterm(argv, port)
    assert 'redkit_queue_jobs_completed_total{queue="mail"} 3.0' in text
    assert 'queue="reports"' not in text  # only the queue named


def test_a_port_in_use_is_a_usage_error(kit: redkit.Redkit) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "redkit", "metrics", "--port", str(port), "--url", REDIS_URL],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_metrics_stops_on_its_event_in_any_thread(kit: redkit.Redkit) -> None:
    import threading

    from redkit import cli

    port = free_port()
    stop = threading.Event()
    said: list[str] = []
    thread = threading.Thread(
        target=cli.serve_metrics,
        args=(kit, ["mail"]),
        kwargs={"port": port, "stop": stop, "announce": said.append},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
        assert said == [f"redkit: metrics on http://127.0.0.1:{port}/metrics"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert b'redkit_queue_jobs_failed_total{queue="mail"} 1.0' in r.read()
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(OSError):  # the port is closed again
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize(
    ("port", "says"),
    [("0", "--port must be a whole number >= 1"), ("70000", "--port must be a port number")],
)
def test_a_bad_port_is_a_usage_error(port: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redkit", "metrics", "--port", port, "--url", REDIS_URL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert says in done.stderr
