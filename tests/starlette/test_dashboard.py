"""``Mount("/redkit", app=rk.dashboard(auth=...))``: the dashboard in a Starlette or FastAPI
application, on the application's own client, its rule given Starlette's request (sync or
async), through httpx with the lifespan running, on real Redis, memory:// and the cluster."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from redkit.errors import ConfigurationError
from tests.starlette.conftest import serve


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_mounted_on_the_applications_client(make_rk: Any, kind: str) -> None:
    rk = make_rk()
    seen: list[Any] = []

    def sync_rule(request: Request) -> Any:
        seen.append(type(request))
        return request.headers.get("x-admin")

    async def async_rule(request: Request) -> Any:
        seen.append(type(request))
        return request.headers.get("x-admin")

    app = Starlette(
        routes=[Mount("/ops", app=rk.dashboard(auth=sync_rule if kind == "sync" else async_rule))],
        lifespan=rk.lifespan,
    )
    async with serve(app) as http:
        kit = app.state.redkit  # the client rk.lifespan opened
        job = await kit.queue("emails").add("send", {"to": "ada"}, delay=60)
        assert (await http.get("/ops/")).status_code == 403
        moved = await http.get("/ops", follow_redirects=False)
        assert moved.status_code in (307, 308)
        admin = {"x-admin": "grace"}
        page = await http.get("/ops/", headers=admin)
        assert page.status_code == 200
        assert "Signed in as <strong>grace</strong>" in page.text
        assert 'href="queue?name=emails"' in page.text
        detail = await http.get(f"/ops/job?queue=emails&id={job.id}", headers=admin)
        done = await http.post(
            "/ops/action",
            data={"csrf": _csrf(detail.text), "queue": "emails", "job": job.id, "do": "promote"},
            headers=admin,
        )
        assert done.status_code == 303
        assert (await kit.queue("emails").get_job(job.id)).state == "waiting"
    assert seen
    assert all(issubclass(t, Request) for t in seen)


def test_no_rule_no_dashboard(make_rk: Any) -> None:
    with pytest.raises(ConfigurationError, match="refuses to serve without an auth rule"):
        make_rk().dashboard()
