"""The dashboard's pages and actions through HTTP, on both shells, on real Redis, the embedded
server and the cluster: the overview, a queue's jobs by state (paged in Redis), a job's detail,
retry, promote, remove, cancel, pause, drain and clean, each confirmed when it destroys."""

from __future__ import annotations

from typing import Any

from redkit.queue import Unrecoverable
from tests.conftest import call
from tests.dashboard.conftest import Browser, signed_in
from tests.queue.conftest import eventually, serving


async def _failed_job(kit: Any) -> tuple[Any, Any]:
    q = kit.queue("mail")

    @q.task(name="send")
    def send(n: int) -> int:
        if n < 0:
            raise Unrecoverable(f"bad address {n}")
        return n

    await call(send.enqueue(1))
    bad = await call(send.enqueue(-7))
    async with serving(q):
        await eventually(lambda: _state(q, bad.id, "failed"), 10, "the failure")
    return q, bad


async def _state(q: Any, job_id: str, state: str) -> bool:
    job = await call(q.get_job(job_id))
    return job is not None and job.state == state


async def test_the_overview_lists_each_queue_with_its_counts(kit: Any, browser: Browser) -> None:
    await _failed_job(kit)
    await call(kit.queue("reports").add("build", None, delay=60))
    await signed_in(browser)
    page = await browser.get("/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert 'href="queue?name=mail"' in page.text
    assert 'href="queue?name=reports"' in page.text
    assert 'data-queue="mail" data-state="failed">1<' in page.text
    assert 'data-queue="reports" data-state="delayed">1<' in page.text
    assert "<svg" in page.text  # the charts, without JavaScript


async def test_a_failed_job_is_listed_shown_and_retried(kit: Any, browser: Browser) -> None:
    q, bad = await _failed_job(kit)
    await signed_in(browser)
    listed = await browser.get("/queue?name=mail&state=failed")
    assert listed.status == 200
    assert f'href="job?queue=mail&amp;id={bad.id}"' in listed.text
    assert "Unrecoverable: bad address -7" in listed.text
    detail = await browser.get(f"/job?queue=mail&id={bad.id}")
    assert detail.status == 200
    assert "Traceback (most recent call last)" in detail.text
    assert "failed" in detail.text
    assert '"args": [\n    -7\n  ]' in detail.text.replace("&#34;", '"')
    done = await browser.post(
        "/action", {"csrf": detail.csrf(), "queue": "mail", "job": bad.id, "do": "retry"}
    )
    assert done.status == 303
    assert done.headers["location"].startswith(f"job?queue=mail&id={bad.id}&done=retry")
    assert (await call(q.get_job(bad.id))).state == "waiting"
    audit = await browser.get("/audit")
    assert "<td>retry</td>" in audit.text
    assert "<td>token</td>" in audit.text  # who did it


async def test_destructive_actions_ask_first(kit: Any, browser: Browser) -> None:
    q = kit.queue("work")
    for i in range(3):
        await call(q.add("x", {"i": i}))
    later = await call(q.add("x", None, delay=3600))
    await signed_in(browser)
    page = await browser.get("/queue?name=work")
    csrf = page.csrf()
    asked = await browser.post("/action", {"csrf": csrf, "queue": "work", "do": "drain"})
    assert asked.status == 200
    assert "This cannot be undone" in asked.text
    assert (await call(q.counts()))["waiting"] == 3  # nothing yet
    done = await browser.post(
        "/action", {"csrf": csrf, "queue": "work", "do": "drain", "confirm": "yes"}
    )
    assert done.status == 303
    assert (await call(q.counts()))["waiting"] == 0
    promoted = await browser.post(
        "/action", {"csrf": csrf, "queue": "work", "job": later.id, "do": "promote"}
    )
    assert promoted.status == 303
    assert (await call(q.get_job(later.id))).state == "waiting"
    audit = await browser.get("/audit")
    assert audit.text.index("3 deleted") < audit.text.index("started")  # newest first
    paused = await browser.post("/action", {"csrf": csrf, "queue": "work", "do": "pause"})
    assert paused.status == 303
    assert await call(q.is_paused())
    page = await browser.get("/queue?name=work")
    assert "paused" in page.text


async def test_pages_of_a_big_state_are_read_a_page_at_a_time(kit: Any, browser: Browser) -> None:
    q = kit.queue("big")
    await call(q.add_bulk([("task-a" if i % 10 else "needle", {"i": i}) for i in range(230)]))
    await signed_in(browser)
    first = await browser.get("/queue?name=big")
    assert first.text.count('href="job?queue=big') == 50
    assert "Page 1 of 5" in first.text
    last = await browser.get("/queue?name=big&page=5")
    assert last.text.count('href="job?queue=big') == 30
    found = await browser.get("/queue?name=big&q=needle")
    assert found.text.count('href="job?queue=big') == 23
    assert "Jobs 1 to 230 of 230 looked at." in found.text
    names = await browser.get("/queue?name=big&q=task-a")  # 207 match: a page of 50
    assert names.text.count('href="job?queue=big') == 50
    assert "Jobs 1 to 56 of 230 looked at." in names.text  # stopped at its 50th match
    further = await browser.get("/queue?name=big&q=task-a&at=56")  # "Look further"
    assert "Jobs 57 to 112 of 230 looked at." in further.text
    assert 'at=56"' in names.text
    ids = await call(q.jobs("waiting", 0, 0))
    jump = await browser.get(f"/queue?name=big&q={ids[0]}")
    assert jump.status == 303  # an id goes straight to its job
