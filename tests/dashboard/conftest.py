"""A browser-like client of the dashboard for both shells: WSGI (werkzeug's test client, for a
blocking kit) and ASGI (httpx over the ASGI app, for an asyncio kit), with cookies kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import redkit
from redkit.dashboard import Dashboard, make_asgi_app, make_wsgi_app

TOKEN = "a-long-dashboard-token-0123456789"


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, "the page has a form with a CSRF token"
        return found.group(1)


class Browser:
    """GET and POST against the dashboard mounted at ``/dash``, as one browser would."""

    def __init__(self, kit: Any, dashboard: Dashboard, remote: str = "127.0.0.1") -> None:
        self.kit = kit
        self.remote = remote
        self.is_async = not isinstance(kit, redkit.Redkit)
        self.origin = "http://testserver" if self.is_async else "http://localhost"
        if self.is_async:
            self.app = make_asgi_app(kit, dashboard)
            self.client: Any = httpx.AsyncClient(
                transport=httpx.ASGITransport(
                    app=self.app, root_path="/dash", client=(remote, 5000)
                ),
                base_url="http://testserver",
            )
        else:
            from werkzeug.middleware.dispatcher import DispatcherMiddleware
            from werkzeug.test import Client

            self.app = make_wsgi_app(kit, dashboard)
            outer = DispatcherMiddleware(
                lambda e, s: [s("404 Not Found", []) or b""], {"/dash": self.app}
            )
            self.client = Client(outer)
            self.jarless = Client(outer, use_cookies=False)

    async def get(self, path: str, **headers: str) -> Page:
        return await self._go("GET", path, None, headers)

    async def post(self, path: str, form: dict[str, str], **headers: str) -> Page:
        return await self._go("POST", path, form, headers)

    async def _go(
        self, method: str, path: str, form: dict[str, str] | None, headers: dict[str, str]
    ) -> Page:
        url = "/dash" + path
        head = {k.replace("_", "-"): v for k, v in headers.items()}
        if self.is_async:
            raw = {k: v if v.isascii() else v.encode("latin-1") for k, v in head.items()}
            r = await self.client.request(method, url, data=form, headers=raw)
            return Page(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)
        environ = {"REMOTE_ADDR": self.remote}
        client = self.client
        if "cookie" in head:  # werkzeug's client sends the cookies of its own jar instead
            environ["HTTP_COOKIE"] = head.pop("cookie")
            client = self.jarless
        r = client.open(url, method=method, data=form, headers=head, environ_base=environ)
        out = Page(
            r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.get_data(as_text=True)
        )
        r.close()
        return out

    async def aclose(self) -> None:
        if self.is_async:
            await self.client.aclose()
            await self.app.hub.aclose()
        else:
            self.app.close()


@pytest.fixture
async def browser(kit: Any) -> Any:
    b = Browser(kit, Dashboard(token=TOKEN))
    yield b
    await b.aclose()


async def signed_in(b: Browser) -> Browser:
    page = await b.post("/login", {"token": TOKEN})
    assert page.status == 303
    return b
