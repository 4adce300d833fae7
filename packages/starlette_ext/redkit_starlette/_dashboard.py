"""redkit's dashboard in a Starlette or FastAPI application: ``Mount("/redkit",
app=rk.dashboard(auth=...))``.

The mounted application finds the application's client (``app.state.redkit``, opened by
``rk.lifespan``) at each request and keeps one dashboard application per client, with its one
reader of live updates. The ``auth`` rule gets Starlette's ``Request`` (sync or async)."""

from __future__ import annotations

import weakref
from typing import Any

from starlette.requests import Request

from redkit.dashboard import Dashboard, make_asgi_app

from ._kit import STATE_NAME

__all__ = ["DashboardApp"]


class DashboardApp:
    """The ASGI application ``rk.dashboard(...)`` returns."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self._apps: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        app = scope.get("app")
        kit = getattr(getattr(app, "state", None), STATE_NAME, None)
        if kit is None:
            raise RuntimeError(
                "redkit is not started for this application: pass lifespan=rk.lifespan to "
                "Starlette() or FastAPI()"
            )
        served = self._apps.get(kit)
        if served is None:
            served = self._apps[kit] = make_asgi_app(kit, self.dashboard, request_for=Request)
            kit.on_close(served.close)
        await served(scope, receive, send)
