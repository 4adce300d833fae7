"""The dashboard in a real browser (headless Chromium, driven by Playwright): sign in, open the
overview, follow a failed job, retry it and watch it complete without reloading, pause a queue,
and read it on a phone's screen. A screenshot of each step is kept under ``.artifacts/browser``
(or ``REDKIT_TEST_ARTIFACTS``). In CI a browser that cannot start fails the test."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redkit
from redkit import cli
from redkit.queue import JobFailed, Unrecoverable
from tests.conftest import IN_CI, REAL_REDIS, REDIS_URL, new_prefix
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not REAL_REDIS, reason=f"no Redis at {REDIS_URL}")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("REDKIT_TEST_ARTIFACTS") or ROOT / ".artifacts" / "browser")
TOKEN = "browser-test-token-0123456789"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed: it is in the dev extra")
        pytest.skip("playwright is not installed")
    executable = _chromium()
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:
            if IN_CI:
                pytest.fail(f"Chromium did not start: {exc}")
            pytest.skip(f"Chromium did not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served() -> Iterator[tuple[str, redkit.Redkit]]:
    kit = redkit.Redkit.from_url(REDIS_URL, prefix=new_prefix())
    port = free_port()
    stop = threading.Event()
    said: list[str] = []
    thread = threading.Thread(
        target=cli.serve_dashboard,
        args=(kit,),
        kwargs={"port": port, "token": TOKEN, "stop": stop, "announce": said.append},
        daemon=True,
    )
    thread.start()
    deadline = threading.Event()
    for _ in range(200):
        if said:
            break
        deadline.wait(0.05)
    assert said, "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}/", kit
    finally:
        stop.set()
        thread.join(10)
        kit.clear()
        kit.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_follow_a_failed_job_retry_it_and_watch_it_complete(browser: Any, served: Any) -> None:
    url, kit = served
    q = kit.queue("mail")
    broken = {"on": True}

    @q.task(name="send")
    def send(n: int) -> int:
        if broken["on"]:
            raise Unrecoverable(f"the mail server refused message {n}")
        return n * 2

    ok = send.enqueue(1)
    worker = q.worker(concurrency=2).start()
    try:
        broken["on"] = False
        ok.wait(10)
        broken["on"] = True
        bad = send.enqueue(7)
        with pytest.raises(JobFailed):
            bad.wait(10)
        assert bad.refresh().state == "failed"
        broken["on"] = False
        kit.queue("reports").add("build", None, delay=3600)

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(url)
        assert page.title().startswith("Sign in")
        _shot(page, "01-sign-in")
        page.get_by_label("Dashboard token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("h1:has-text('Queues')")
        assert page.locator("[data-queue='mail'][data-state='failed']").inner_text() == "1"
        _shot(page, "02-overview")

        page.get_by_role("link", name="mail", exact=True).click()
        page.get_by_role("link", name="failed 1").click()
        page.wait_for_selector("caption:has-text('failed jobs')")
        _shot(page, "03-failed-jobs")
        page.get_by_role("link", name=bad.id).click()
        page.wait_for_selector("text=the mail server refused message 7")
        assert page.locator("[data-field='state']").inner_text() == "failed"
        _shot(page, "04-failed-job")

        page.get_by_role("button", name="Retry").click()  # the worker runs it again: it succeeds
        page.wait_for_selector("[data-field='state']:has-text('completed')", timeout=15_000)
        assert page.locator("h2:has-text('Result')").count() == 1
        _shot(page, "05-completed")

        page.get_by_role("link", name="mail").first.click()
        page.get_by_role("button", name="Pause").click()
        page.wait_for_selector(".badge.paused")
        assert q.is_paused()
        _shot(page, "06-paused")
        page.get_by_role("button", name="Drain waiting", exact=True).click()
        page.wait_for_selector("text=This cannot be undone")  # asked first
        _shot(page, "07-confirm")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        mobile = phone.new_page()
        mobile.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
        mobile.goto(url)
        width = mobile.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, "the overview fits a phone's screen"
        _shot(mobile, "08-phone")

        page.goto(url)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
        assert violations == []
        context.close()
        phone.close()
    finally:
        worker.stop(10)
