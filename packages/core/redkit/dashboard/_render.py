"""HTML of the dashboard: Jinja2 templates (every value escaped), charts as inline SVG built here
(readable without JavaScript), and the static files shipped in the package."""

from __future__ import annotations

import mimetypes
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

from .._optional import require
from ..queue._metrics import Metrics
from ..web import Answer
from ._security import security_headers

__all__ = ["metrics_view", "page", "static"]

STATIC = ("dashboard.css", "dashboard.js")


@lru_cache(maxsize=1)
def _environment() -> Any:
    jinja2 = require("jinja2", "dashboard")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("redkit.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["seconds"] = _seconds
    env.globals["url"] = _url
    return env


def page(template: str, **values: Any) -> bytes:
    """The page ``template`` rendered with ``values``, UTF-8."""
    html: str = _environment().get_template(f"{template}.html").render(**values)
    return html.encode("utf-8", "replace")  # a lone surrogate from anywhere: never a 500


@lru_cache(maxsize=len(STATIC))
def _static_body(name: str) -> bytes:
    return resources.files("redkit.dashboard").joinpath("static").joinpath(name).read_bytes()


def static(name: str) -> Answer:
    """The answer for one of the package's static files (404 for any other name)."""
    headers = [*security_headers()]
    if name not in STATIC:
        return Answer(
            404, (("Content-Type", "text/plain; charset=utf-8"), *headers), b"not found\n"
        )
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = [h for h in headers if h[0] != "Cache-Control"]
    headers += [("Content-Type", f"{kind}; charset=utf-8"), ("Cache-Control", "max-age=3600")]
    return Answer(200, tuple(headers), _static_body(name), kind="dashboard")


def _url(page_name: str, **params: Any) -> str:
    from urllib.parse import urlencode

    clean = {k: v for k, v in params.items() if v is not None and v != ""}
    return f"{page_name}?{urlencode(clean)}" if clean else page_name


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    stamp = value.timestamp() if isinstance(value, datetime) else float(value)
    delta = max(0.0, datetime.now(timezone.utc).timestamp() - stamp)
    if delta < 60:
        return f"{delta:.0f} s ago"
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    return f"{delta / 3600:.1f} h ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def metrics_view(m: Metrics) -> dict[str, Any]:
    """What the pages show of a queue's metrics: the last hour per minute and the last day per
    hour as SVG bar charts (completed above the axis, failed below), and the percentiles."""
    hour_done, hour_failed = m.completed[-60:], m.failed[-60:]
    day_done = _per_hour(m.completed)
    day_failed = _per_hour(m.failed)
    return {
        "hour": _bars(hour_done, hour_failed, "per minute, last hour"),
        "day": _bars(day_done, day_failed, "per hour, last day") if m.minutes > 60 else None,
        "hour_completed": sum(hour_done),
        "hour_failed": sum(hour_failed),
        "day_completed": sum(m.completed),
        "day_failed": sum(m.failed),
        "wait": {p: m.wait.percentile(p) for p in (50, 95, 99)},
        "run": {p: m.run.percentile(p) for p in (50, 95, 99)},
        "totals": m.totals,
    }


def _per_hour(counts: list[int]) -> list[int]:
    out = []
    start = len(counts) % 60
    if start:
        out.append(sum(counts[:start]))
    out += [sum(counts[i : i + 60]) for i in range(start, len(counts), 60)]
    return out[-24:]


def _bars(done: list[int], failed: list[int], caption: str) -> dict[str, Any]:
    """Bars of an SVG chart 240 x 60 (completed up from the middle, failed down)."""
    n = max(1, len(done))
    top = max([1, *done, *failed])
    width = 240 / n
    bars = []
    for i, (c, f) in enumerate(zip(done, failed)):
        x = round(i * width, 2)
        h_done = round(28 * c / top, 2)
        h_failed = round(28 * f / top, 2)
        bars.append(
            {
                "x": x,
                "w": round(max(width - 0.5, 0.5), 2),
                "up": h_done,
                "down": h_failed,
                "c": c,
                "f": f,
            }
        )
    return {"bars": bars, "caption": caption, "top": top}
