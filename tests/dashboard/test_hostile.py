"""The dashboard under attack: it refuses to exist without an auth rule, shows nothing before
sign-in, never acts on a forged or cross-site form, escapes whatever a job holds, and answers
every malformed request with a clean 4xx, never a 500; Redis down is a 503."""

from __future__ import annotations

from typing import Any

import pytest

import redkit
import redkit.asyncio
from redkit.dashboard import Dashboard
from redkit.errors import ConfigurationError
from tests.conftest import call, new_prefix
from tests.dashboard.conftest import TOKEN, Browser, signed_in
from tests.queue.conftest import eventually, serving
from tests.servers import free_port

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def test_no_auth_rule_no_dashboard() -> None:
    with pytest.raises(ConfigurationError, match="refuses to serve without an auth rule"):
        Dashboard()
    with pytest.raises(ValueError, match="at least 16 characters"):
        Dashboard(token="short")
    with pytest.raises(TypeError, match="auth must be a callable"):
        Dashboard(auth="admin")  # type: ignore[arg-type]


async def test_nothing_is_shown_or_done_before_sign_in(kit: Any, browser: Browser) -> None:
    q = kit.queue("secret-queue")
    job = await call(q.add("x", {"card": "4111"}))
    for path in (
        "/",
        "/queue?name=secret-queue",
        f"/job?queue=secret-queue&id={job.id}",
        "/audit",
        "/live?q=secret-queue",
    ):
        page = await browser.get(path)
        assert page.status == 401, path
        assert "secret-queue" not in page.text
        assert "4111" not in page.text
    acted = await browser.post(
        "/action", {"queue": "secret-queue", "do": "drain", "confirm": "yes"}
    )
    assert acted.status == 401
    assert (await call(q.counts()))["waiting"] == 1
    wrong = await browser.post("/login", {"token": TOKEN[:-1] + "x"})
    assert wrong.status == 401
    assert "That is not the token." in wrong.text
    for header in (
        "",
        "Bearer",
        f"bearer {TOKEN}x",
        f"Basic {TOKEN}",
        "Bearer \u00e9\u00e9",
        "Bearer " + "A" * 10_000,
    ):
        assert (await browser.get("/", authorization=header)).status == 401
    assert (await browser.get("/", authorization=f"Bearer {TOKEN}")).status == 200
    assert (await browser.get("/static/dashboard.css")).status == 200  # no secret in a stylesheet
    for path in (
        "/static/../_app.py",
        "/static/%2e%2e/_app.py",
        "/static/dashboard.css/../../_app.py",
    ):
        escaped = await browser.get(path)
        assert escaped.status in (401, 404)  # outside the package's static files: nothing
        assert "def handle" not in escaped.text


async def test_a_sign_in_ends_on_the_servers_clock(browser: Browser) -> None:
    import hashlib
    import hmac
    import time

    from redkit.dashboard._security import SESSION_SECONDS

    def cookie(issued: int) -> str:
        mac = hmac.new(TOKEN.encode(), f"redkit-dashboard:{issued}".encode(), hashlib.sha256)
        return f"redkit_dashboard_token={issued}.{mac.hexdigest()}"

    now = int(time.time())
    assert (await browser.get("/", cookie=cookie(now - 60))).status == 200
    expired = cookie(now - SESSION_SECONDS - 60)  # whatever Max-Age the browser kept
    assert (await browser.get("/", cookie=expired)).status == 401
    assert (await browser.get("/", cookie=cookie(now + 3600))).status == 401  # from the future


@pytest.mark.parametrize(
    "cookie",
    [
        "redkit_dashboard_token=",
        "redkit_dashboard_token=\u00ff\u00fe",
        "redkit_dashboard_token=" + "f" * 64,
        "redkit_dashboard_csrf; ;; =;redkit_dashboard_token",
        '"unbalanced=1; a="b',
        "x=" + "y" * 8000,
    ],
)
async def test_malformed_cookies_get_a_clean_answer(browser: Browser, cookie: str) -> None:
    page = await browser.get("/", cookie=cookie)
    assert page.status == 401


async def test_a_forged_or_cross_site_form_does_nothing(kit: Any, browser: Browser) -> None:
    q = kit.queue("guarded")
    await call(q.add("x", None))
    await signed_in(browser)
    csrf = (await browser.get("/queue?name=guarded")).csrf()
    drain = {"queue": "guarded", "do": "drain", "confirm": "yes"}
    for form, headers in [
        (drain, {}),  # no token
        ({**drain, "csrf": "x" * 43}, {}),  # a wrong one
        ({**drain, "csrf": csrf}, {"sec_fetch_site": "cross-site"}),
        ({**drain, "csrf": csrf}, {"origin": "https://evil.example"}),
        ({**drain, "csrf": csrf}, {"origin": "null"}),  # a sandboxed frame's form
    ]:
        page = await browser.post("/action", form, **headers)
        assert page.status == 403
    assert (await call(q.counts()))["waiting"] == 1
    ok = await browser.post("/action", {**drain, "csrf": csrf}, origin=browser.origin)
    assert ok.status == 303
    assert (await call(q.counts()))["waiting"] == 0


async def _failed(q: Any, job_id: str) -> bool:
    job = await call(q.get_job(job_id))
    return job is not None and job.state == "failed"


async def test_whatever_a_job_holds_is_escaped(kit: Any, browser: Browser) -> None:
    name = "q" + HOSTILE[:60]
    q = kit.queue(name)
    job = await call(q.add(HOSTILE[:150], {"html": HOSTILE, "key": "</pre><script>x</script>"}))
    await call(q.add(HOSTILE[:150], None, delay=60))

    @q.task(name="explode")
    def explode() -> None:
        raise ValueError(f"</pre>{HOSTILE}")  # in the error, the traceback and the events

    failed = await call(explode.enqueue())
    async with serving(q):
        await eventually(lambda: _failed(q, failed.id), 10, "the failure")
    await signed_in(browser)
    from urllib.parse import quote

    for path in (
        "/",
        f"/queue?name={quote(name)}",
        f"/queue?name={quote(name)}&state=delayed",
        f"/job?queue={quote(name)}&id={job.id}",
        f"/queue?name={quote(name)}&state=failed",
        f"/job?queue={quote(name)}&id={failed.id}",
    ):
        page = await browser.get(path)
        assert page.status == 200, path
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "</pre><script>" not in page.text
        assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/queue",
        "/queue?name=",
        "/queue?name=a%00b",
        "/queue?name=" + "n" * 300,
        "/queue?name=ok&state=bogus",
        "/queue?name=ok&page=abc",
        "/queue?name=ok&page=-1",
        "/queue?name=ok&page=99999999999999999999",
        "/queue?name=ok&q=%ff%fe",
        "/job?queue=ok",
        "/job?queue=ok&id=missing",
        "/job?queue=ok&id=a%0Ab",
        "/nope",
        "/live?q=a%00",
        "/queue?name=%E2%80%AE%F0%9F%92%A5",
        "/queue?name=ok&page=%C2%B2",  # a digit to str.isdigit, not to int()
        "/queue?name=ok&q=x&at=%D9%A3",
    ],
)
async def test_malformed_requests_get_a_clean_4xx(browser: Browser, path: str) -> None:
    await signed_in(browser)
    page = await browser.get(path)
    assert 200 <= page.status < 500, (path, page.status)
    assert "Traceback" not in page.text


async def test_malformed_forms_get_a_clean_4xx(kit: Any, browser: Browser) -> None:
    await signed_in(browser)
    csrf = (await browser.get("/")).csrf()
    for form in [
        {"csrf": csrf},
        {"csrf": csrf, "queue": "q", "do": "explode"},
        {"csrf": csrf, "queue": "q", "job": "j", "do": "drain"},
        {"csrf": csrf, "queue": "q", "do": "clean", "state": "waiting", "confirm": "yes"},
        {
            "csrf": csrf,
            "queue": "q",
            "do": "clean",
            "state": "failed",
            "older_than": "-5",
            "confirm": "yes",
        },
        {"csrf": csrf, "queue": "", "do": "pause"},
        {"csrf": csrf, "queue": "q\x00", "do": "pause"},
    ]:
        page = await browser.post("/action", form)
        assert page.status == 400, form
    assert (await browser.post("/nowhere", {"csrf": csrf})).status == 405


async def test_the_queues_shown_are_the_only_ones_reachable(kit: Any) -> None:
    await call(kit.queue("shown").add("x", None))
    await call(kit.queue("invisible").add("x", None))
    b = Browser(kit, Dashboard(token=TOKEN, queues=["shown"], read_only=True))
    try:
        await signed_in(b)
        page = await b.get("/")
        assert "shown" in page.text
        assert "invisible" not in page.text
        assert (await b.get("/queue?name=invisible")).status == 404
        queue_page = await b.get("/queue?name=shown")
        assert "Drain" not in queue_page.text  # read-only: no action offered
        acted = await b.post("/action", {"csrf": page.csrf(), "queue": "shown", "do": "pause"})
        assert acted.status == 403
        assert not await call(kit.queue("shown").is_paused())
    finally:
        await b.aclose()


async def test_an_auth_rule_and_redaction(kit: Any) -> None:
    q = kit.queue("people")
    job = await call(q.add("x", {"email": "ada@example.com"}))
    seen: list[Any] = []

    class Anonymous:  # like Starlette's UnauthenticatedUser or Django's AnonymousUser: truthy
        is_authenticated = False

    def auth(request: Any) -> Any:
        seen.append(request.path)
        user = request.headers.get("x-user")
        if user == "anonymous":
            return Anonymous()
        return user if user != "boom" else 1 / 0

    def redact(field: str, value: Any) -> Any:
        if field == "data":
            return dict.fromkeys(value, "***")
        if field in ("error", "stacktrace", "progress"):
            return "[redacted]"
        return value

    b = Browser(kit, Dashboard(auth=auth, redact=redact))
    try:
        assert (await b.get("/")).status == 403  # no user: refused, no login form
        assert (await b.get("/", x_user="boom")).status == 403  # a raising rule refuses
        assert (await b.get("/", x_user="anonymous")).status == 403  # not authenticated
        page = await b.get(f"/job?queue=people&id={job.id}", x_user="ada")
        assert page.status == 200
        assert "ada@example.com" not in page.text
        assert "***" in page.text
        assert "Signed in as <strong>ada</strong>" in page.text
        assert seen

        @q.task(name="leaky")
        def leaky() -> None:
            from redkit.queue import current_job

            current_job().update_progress({"email": "grace@example.com"})
            raise ValueError("no mailbox for grace@example.com")

        failed = await call(leaky.enqueue())
        async with serving(q):
            await eventually(lambda: _failed(q, failed.id), 10, "the failure")
        for path in ("/queue?name=people&state=failed", f"/job?queue=people&id={failed.id}"):
            shown = await b.get(path, x_user="ada")
            assert "grace@example.com" not in shown.text, path  # the list, the timeline too
            assert "[redacted]" in shown.text
    finally:
        await b.aclose()


async def test_redis_down_is_a_503(mode: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    cls = redkit.Redkit if mode == "sync" else redkit.asyncio.Redkit
    down = cls.from_url(url, prefix=new_prefix(), retry_attempts=0)
    b = Browser(down, Dashboard(token=TOKEN))
    try:
        page = await b.get("/", authorization=f"Bearer {TOKEN}")
        assert page.status == 503
        assert "Redis is unavailable" in page.text
    finally:
        await b.aclose()
        await call(down.close() if mode == "sync" else down.aclose())


async def test_loopback_only_lets_in_loopback_alone(kit: Any) -> None:
    dashboard = Dashboard(loopback_only=True)
    local = {"host": "127.0.0.1:9181"}
    for remote, status in [("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 403), ("", 403)]:
        b = Browser(kit, dashboard, remote=remote)
        try:
            assert (await b.get("/", **local)).status == status, remote
        finally:
            await b.aclose()
    b = Browser(kit, dashboard)
    try:
        for host in ("localhost:9181", "[::1]:9181", "127.0.0.1"):
            assert (await b.get("/", host=host)).status == 200, host
        # a page of another site whose name now points at 127.0.0.1 (DNS rebinding)
        for host in ("rebind.attacker.example:9181", "127.0.0.1.nip.io"):
            assert (await b.get("/", host=host)).status == 403, host
        # a reverse proxy on the same host forwards anyone from loopback: refused
        for header in ("x_forwarded_for", "forwarded", "x_real_ip", "via"):
            assert (await b.get("/", **local, **{header: "203.0.113.9"})).status == 403, header
    finally:
        await b.aclose()
