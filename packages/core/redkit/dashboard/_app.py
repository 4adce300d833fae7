"""The dashboard's pages and actions, framework-neutral.

:meth:`Dashboard.handle` turns one :class:`redkit.web.Request` (its path relative to where the
dashboard is mounted) into a *flow*: a generator of queue round trips (``Batch``) and calls of
the application's hooks (``Load``) that returns an :class:`redkit.web.Answer`. The WSGI and ASGI
shells run it on a blocking or an asyncio client; nothing here does I/O. Every page is a bounded
number of round trips whatever the size of a queue: lists are read by position, a page at a
time, and a search looks at a bounded window of jobs per request.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .._ops import Batch, Flow, Load, command
from ..errors import RedkitError
from ..queue._core import QueueCore
from ..queue._options import check_name
from ..queue._records import STATES, JobRecord, WorkerInfo, parse_events
from ..web import Answer, Request
from . import _render
from ._security import (
    CSRF_COOKIE,
    SESSION_SECONDS,
    TOKEN_COOKIE,
    Access,
    csrf_ok,
    new_csrf,
    security_headers,
)

__all__ = ["Dashboard"]

log = logging.getLogger("redkit.dashboard")

PAGE_SIZE = 50
OVERVIEW_PAGE = 60
"""Queues shown per page of the overview."""
SEARCH_WINDOW = 5_000
"""Jobs a name search looks at per request (in windows of 1,000 per round trip)."""
TIMELINE_EVENTS = 2_000
"""Newest entries of a queue's events stream a job's timeline is looked for in."""
AUDIT_MAXLEN = 1_000
AUDIT_TTL_MS = 90 * 86400 * 1000
MAX_FORM = 16 * 1024
MAX_CORES = 256
"""Queue objects kept between requests (one per queue name asked for, the oldest dropped)."""
LIST_FIELDS = ("n", "st", "ts", "pon", "fon", "atm", "err", "p", "sch")
JOB_ACTIONS = {
    "retry": ("failed",),
    "remove": (
        "waiting",
        "prioritized",
        "delayed",
        "waiting_children",
        "completed",
        "failed",
        "cancelled",
    ),
    "promote": ("delayed",),
    "cancel": ("waiting", "prioritized", "delayed", "active", "waiting_children"),
}
QUEUE_ACTIONS = ("pause", "resume", "retry_failed", "drain", "drain_delayed", "clean")
DESTRUCTIVE = {"remove", "cancel", "drain", "drain_delayed", "clean", "retry_failed"}
BULK = {"drain", "drain_delayed", "clean", "retry_failed"}
CLEAN_STATES = ("completed", "failed", "cancelled")


class _Refused(Exception):
    """A request answered with an error page (bad input, unknown queue, not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Ctx:
    """What a page knows of its request."""

    request: Request
    who: str
    csrf: str
    new_csrf: bool
    args: dict[str, str]


class Dashboard:
    """The queues' web UI. ``auth`` decides who gets in (a callable of the request, called the
    framework's way, returning who it is or something false), ``token`` lets in a request
    carrying it (``Authorization: Bearer <token>``, or the cookie the login form sets);
    without either the dashboard refuses to be made. ``redact(field, value)`` returns what
    is shown of a job's ``data``, ``result``, ``progress``, ``logs``, ``error`` and
    ``stacktrace``. ``queues``: the queues shown (default: every queue the prefix knows);
    ``read_only``: no actions. ``loopback_only``: anyone on a loopback address may come in
    (the ``redkit dashboard --no-auth`` command), no one else."""

    def __init__(
        self,
        *,
        auth: Callable[..., Any] | None = None,
        token: str | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        queues: Iterable[str] | None = None,
        read_only: bool = False,
        title: str = "redkit",
        loopback_only: bool = False,
    ) -> None:
        self.access = Access(auth, token, loopback_only)
        if redact is not None and not callable(redact):
            raise TypeError("redact must be a callable of (field, value)")
        self.redact = redact
        self.queues = None if queues is None else [check_name("queue name", q) for q in queues]
        self.read_only = bool(read_only)
        self.title = str(title)
        self._cores: dict[tuple[int, str], QueueCore] = {}
        self._lock = threading.Lock()

    # -- the flow of one request -----------------------------------------------------------
    def handle(self, request: Request, kit: Any) -> Flow[Answer]:
        """The answer to ``request`` (its ``path`` relative to the mount, ``""`` or ``"/..."``)."""
        path = request.path or "/"
        if path.startswith("/static/"):
            return _render.static(path[len("/static/") :])
        try:
            who = yield from self._who(request)
            if who is None:
                if path == "/login" and self.access.has_login:
                    return (yield from self._login(request))
                if self.access.has_login:
                    return self._page(401, "login", None, error=None)
                return self._page(403, "refused", None)
            cookie = request.cookies.get(CSRF_COOKIE) or ""
            ctx = _Ctx(
                request, who, cookie if len(cookie) >= 20 else new_csrf(), len(cookie) < 20, {}
            )
            ctx.args = {_clean(k): _clean(v) for k, v in request.args}
            if request.method == "POST":
                if path == "/action":
                    return (yield from self._action(ctx, kit))
                if path == "/logout":
                    return _redirect("./", [(TOKEN_COOKIE, "", 0, request.scheme)])
                raise _Refused(405, "only the forms of the dashboard are posted")
            if request.method not in ("GET", "HEAD"):
                raise _Refused(405, "method not allowed")
            if path == "/":
                return (yield from self._overview(ctx, kit))
            if path == "/queue":
                return (yield from self._queue(ctx, kit))
            if path == "/job":
                return (yield from self._job(ctx, kit))
            if path == "/audit":
                return (yield from self._audit(ctx, kit))
            if path == "/login":
                return _redirect("./", [])
            raise _Refused(404, "no such page")
        except _Refused as refused:
            return self._page(refused.status, "error", None, message=refused.message)
        except RedkitError as exc:
            log.warning("redkit dashboard: Redis did not answer: %s", exc)
            return self._page(503, "error", None, message="Redis is unavailable; try again.")

    def _who(self, request: Request) -> Flow[str | None]:
        found = self.access.by_token(request) or self.access.by_address(request)
        if found:
            return found
        if self.access.auth is not None:
            try:
                user = yield Load(lambda: request.invoke(self.access.auth))  # type: ignore[arg-type]
            except Exception:
                log.exception("redkit dashboard: the auth rule raised; the request is refused")
                return None
            if user and getattr(user, "is_authenticated", True) is not False:
                return "authenticated" if user is True else str(user)[:200]
        return None  # nothing, False, or an anonymous user object (truthy, not authenticated)

    def _login(self, request: Request) -> Flow[Answer]:
        if request.method != "POST":
            return self._page(200, "login", None, error=None)
        form = yield from _form(request)
        value = self.access.login(form.get("token", ""))
        if value is None:
            return self._page(401, "login", None, error="That is not the token.")
        return _redirect("./", [(TOKEN_COOKIE, value, SESSION_SECONDS, request.scheme)])

    # -- helpers ------------------------------------------------------------------------------
    def _core(self, kit: Any, name: str) -> QueueCore:
        if self.queues is not None and name not in self.queues:
            raise _Refused(404, "this dashboard shows no such queue")
        key = (id(kit), name)
        with self._lock:  # request threads and the live reader's thread
            core = self._cores.get(key)
            if core is None or core.settings is not kit.settings:
                if len(self._cores) >= MAX_CORES:  # names come from requests: bounded
                    self._cores.pop(next(iter(self._cores)), None)
                core = QueueCore(kit, name)
                self._cores[key] = core
            return core

    def _names(self, kit: Any) -> Flow[list[str]]:
        if self.queues is not None:
            return list(self.queues)
        raw = yield Batch.one(command("ZRANGE", kit.keyspace.key("queues"), 0, -1))
        return sorted(n.decode("utf-8", "replace") for n in raw)

    def _arg(self, ctx: _Ctx, name: str, what: str) -> str:
        value = ctx.args.get(name, "")
        try:
            return check_name(what, value)
        except (TypeError, ValueError) as exc:
            raise _Refused(400, str(exc)) from None

    def _shown(self, field: str, value: Any) -> Any:
        if self.redact is None:
            return value
        try:
            return self.redact(field, value)
        except Exception:
            log.exception("redkit dashboard: the redact hook raised; the field is hidden")
            return "(hidden: the redact hook raised)"

    def _page(self, status: int, template: str, ctx: _Ctx | None, **values: Any) -> Answer:
        body = _render.page(
            template,
            title=self.title,
            who=ctx.who if ctx else None,
            csrf=ctx.csrf if ctx else "",
            read_only=self.read_only,
            has_login=self.access.has_login,
            done=ctx.args.get("done", "")[:200] if ctx else "",
            **values,
        )
        headers = [("Content-Type", "text/html; charset=utf-8"), *security_headers()]
        if ctx is not None and ctx.new_csrf:
            headers.append(("Set-Cookie", _cookie(CSRF_COOKIE, ctx.csrf, None, ctx.request.scheme)))
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="redkit dashboard"'))
        return Answer(status, tuple(headers), body, kind="dashboard")

    # -- pages --------------------------------------------------------------------------------
    def _overview(self, ctx: _Ctx, kit: Any) -> Flow[Answer]:
        every = yield from self._names(kit)
        page = _whole(ctx.args.get("page"), 1)
        pages = max(1, math.ceil(len(every) / OVERVIEW_PAGE))
        names = every[(page - 1) * OVERVIEW_PAGE : page * OVERVIEW_PAGE]
        cores = [self._core(kit, n) for n in names]
        batches: list[Batch[Any]] = []
        for core in cores:
            batches += [core.counts(), core.is_paused(), core.read_metrics(_minutes(kit, 1440))]
            batches.append(core.workers_info())
        replies = yield _merge(batches)
        queues = []
        seen: list[tuple[QueueCore, list[tuple[str, float]]]] = []
        for i, core in enumerate(cores):
            counts, paused, metrics, workers = replies[4 * i : 4 * i + 4]
            seen.append((core, workers))
            queues.append(
                {
                    "name": core.name,
                    "counts": counts,
                    "paused": paused,
                    "metrics": _render.metrics_view(metrics),
                }
            )
        details = yield _merge([_worker_batch(core, workers) for core, workers in seen])
        for item, infos in zip(queues, details):
            item["workers"] = infos
        return self._page(
            200, "overview", ctx, queues=queues, states=STATES, page=page, pages=pages
        )

    def _queue(self, ctx: _Ctx, kit: Any) -> Flow[Answer]:
        name = self._arg(ctx, "name", "queue name")
        core = self._core(kit, name)
        state = ctx.args.get("state") or "waiting"
        if state not in (*STATES, "schedules"):
            raise _Refused(400, f"state must be one of {', '.join(STATES)} or schedules")
        page = _whole(ctx.args.get("page"), 1)
        search = ctx.args.get("q", "").strip()[:200]
        counts, paused, metrics = yield _merge(
            [core.counts(), core.is_paused(), core.read_metrics(_minutes(kit, 60))]
        )
        values: dict[str, Any] = {
            "queue": name,
            "counts": counts,
            "paused": paused,
            "state": state,
            "states": STATES,
            "metrics": _render.metrics_view(metrics),
            "search": search,
            "page": page,
            "jobs": [],
            "pages": 1,
            "scanned": None,
            "schedules": [],
        }
        if state == "schedules":
            start = (page - 1) * PAGE_SIZE
            values["schedules"] = yield from core.sched.listed(start, start + PAGE_SIZE - 1)
            return self._page(200, "queue", ctx, **values)
        total = counts.get(state, 0)
        values["pages"] = max(1, math.ceil(total / PAGE_SIZE))
        if search:
            exists = False
            if _name_ok(search):
                exists = yield Batch.one(command("EXISTS", core.job_key(search)))
            if exists:
                return _redirect(_url("job", queue=name, id=search), [])
            start = _whole(ctx.args.get("at"), 0, what="at")
            ids, scanned = yield from _search(core, state, search, start, total)
            values["scanned"] = scanned
        else:
            start = (page - 1) * PAGE_SIZE
            ids = yield core.ids(state, start, start + PAGE_SIZE - 1)
        jobs = yield _summaries(core, ids)
        for job in jobs:
            job["error"] = self._shown("error", job["error"]) if job["error"] else None
        values["jobs"] = jobs
        return self._page(200, "queue", ctx, **values)

    def _job(self, ctx: _Ctx, kit: Any) -> Flow[Answer]:
        name = self._arg(ctx, "queue", "queue name")
        job_id = self._arg(ctx, "id", "job id")
        core = self._core(kit, name)
        record, events = yield _merge(
            [
                core.get(job_id),
                Batch.one(
                    command("XREVRANGE", core.events, "+", "-", "COUNT", TIMELINE_EVENTS),
                    lambda r: parse_events([(b"", r)]),
                ),
            ]
        )
        if record is None:
            raise _Refused(404, "no such job (it may have been removed, or cleaned by retention)")
        timeline = [
            {"time": e.time, "event": e.event, "fields": self._event_fields(e.fields)}
            for e in sorted((e for e in events if e.job_id == job_id), key=lambda e: e.id)
        ]
        return self._page(
            200,
            "job",
            ctx,
            queue=name,
            job=record,
            shown=self._job_fields(record),
            timeline=timeline,
            actions=[a for a, states in JOB_ACTIONS.items() if record.state in states],
        )

    def _event_fields(self, fields: dict[str, str]) -> dict[str, Any]:
        """An event's fields as shown: its reason and its progress through the redact hook."""
        shown: dict[str, Any] = {}
        for key, value in fields.items():
            if key in ("id", "event"):
                continue
            if key == "reason":
                shown[key] = self._shown("error", value)
            elif key in ("progress", "data"):
                shown[key] = self._shown("progress", value)
            else:
                shown[key] = value
        return shown

    def _job_fields(self, record: JobRecord) -> dict[str, Any]:
        errors = [
            {
                "attempt": e.attempt,
                "reason": self._shown("error", e.reason),
                "stacktrace": self._shown("stacktrace", e.stacktrace),
                "at": e.failed_at,
            }
            for e in record.errors
        ]
        return {
            "data": _json(self._shown("data", record.data)),
            "result": _json(self._shown("result", record.result)),
            "progress": _json(self._shown("progress", record.progress)),
            "logs": self._shown("logs", list(record.logs)),
            "error": self._shown("error", record.failed_reason),
            "stacktrace": self._shown("stacktrace", record.stacktrace),
            "options": _json(record.options),
            "errors": errors,
        }

    def _audit(self, ctx: _Ctx, kit: Any) -> Flow[Answer]:
        raw = yield Batch.one(
            command("XREVRANGE", kit.keyspace.key("dashboard", "audit"), "+", "-", "COUNT", 200)
        )
        entries = []
        for ident, fields in raw or []:
            got = (
                {
                    k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                    for k, v in fields.items()
                }
                if isinstance(fields, dict)
                else {
                    fields[i].decode("utf-8", "replace"): fields[i + 1].decode("utf-8", "replace")
                    for i in range(0, len(fields), 2)
                }
            )
            stamp = int(ident.decode().split("-")[0]) / 1000
            entries.append({"at": datetime.fromtimestamp(stamp, timezone.utc), **got})
        return self._page(200, "audit", ctx, entries=entries)

    # -- actions ------------------------------------------------------------------------------
    def _action(self, ctx: _Ctx, kit: Any) -> Flow[Answer]:
        form = yield from _form(ctx.request)
        if not csrf_ok(ctx.request, form):
            raise _Refused(
                403, "the form is stale or came from another site: reload the page and try again"
            )
        if self.read_only:
            raise _Refused(403, "this dashboard is read-only")
        do = form.get("do", "")
        ctx.args = form
        name = self._arg(ctx, "queue", "queue name")
        core = self._core(kit, name)
        job_id = form.get("job") or None
        if job_id is not None:
            job_id = self._arg(ctx, "job", "job id")
            if do not in JOB_ACTIONS:
                raise _Refused(400, "no such action on a job")
        elif do not in QUEUE_ACTIONS:
            raise _Refused(400, "no such action on a queue")
        options: dict[str, Any] = {}
        if do == "clean":
            state = form.get("state", "")
            if state not in CLEAN_STATES:
                raise _Refused(400, "clean takes completed, failed or cancelled jobs")
            options = {
                "state": state,
                "older_than": _whole(form.get("older_than"), 0, what="older_than"),
            }
        if do in DESTRUCTIVE and form.get("confirm") != "yes":
            return self._page(200, "confirm", ctx, queue=name, job=job_id, do=do, options=options)
        target = f"job {job_id} of queue {name}" if job_id else f"queue {name}"
        if do in BULK:  # rounds of 1,000: recorded before the first, whatever happens after
            yield _audit_entry(kit, ctx.who, do, name, job_id, "started")
        try:
            outcome = yield from _run_action(core, do, job_id, options)
        except RedkitError:
            if do in BULK:
                log.warning(
                    "redkit dashboard: %s: %s %s: stopped by a Redis error", ctx.who, do, target
                )
            raise
        log.info("redkit dashboard: %s: %s %s: %s", ctx.who, do, target, outcome)
        yield _audit_entry(kit, ctx.who, do, name, job_id, outcome)
        back = (
            _url("job", queue=name, id=job_id)
            if job_id and do not in ("remove",)
            else _url("queue", name=name)
        )
        return _redirect(f"{back}&done={_quote_done(do, outcome)}", [])


# -- flows and batches shared by the pages ---------------------------------------------------------
def _merge(batches: list[Batch[Any]]) -> Batch[list[Any]]:
    """One round trip of several batches; the list of their parsed replies."""
    calls: list[Any] = []
    sizes = []
    for b in batches:
        calls += b.calls
        sizes.append(len(b.calls))

    def parse(replies: list[Any]) -> list[Any]:
        out, at = [], 0
        for b, n in zip(batches, sizes):
            out.append(b.parse(replies[at : at + n]))
            at += n
        return out

    return Batch(tuple(calls), parse)


def _audit_entry(
    kit: Any, who: str, do: str, queue: str, job_id: str | None, outcome: str
) -> Batch[Any]:
    """The audit stream's entry of an action: capped in length, and entries older than
    :data:`AUDIT_TTL_MS` trimmed (the key expires when no action comes for that long)."""
    key = kit.keyspace.key("dashboard", "audit")
    oldest = f"{max(0, int(time.time() * 1000) - AUDIT_TTL_MS)}-0"
    fields = ["who", who, "action", do, "queue", queue, "job", job_id or "", "outcome", outcome]
    return Batch(
        (
            command("XADD", key, "MAXLEN", "~", AUDIT_MAXLEN, "*", *fields),
            command("XTRIM", key, "MINID", "~", oldest),
            command("PEXPIRE", key, AUDIT_TTL_MS),
        )
    )


def _worker_batch(core: QueueCore, seen: list[tuple[str, float]]) -> Batch[list[WorkerInfo]]:
    if not seen:
        return Batch((), lambda _: [])
    keys = [f"{core.base}:w:{wid}" for wid, _ in seen]
    return Batch.one(
        command("MGET", *keys),
        lambda raw: [WorkerInfo.parse(wid, ms, r) for (wid, ms), r in zip(seen, raw)],
    )


def _summaries(core: QueueCore, ids: list[str]) -> Batch[list[dict[str, Any]]]:
    """The fields a list shows of each job (never its data), in one round trip."""
    calls = tuple(command("HMGET", core.job_key(i), *LIST_FIELDS) for i in ids)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        out = []
        for job_id, raw in zip(ids, replies):
            f = dict(zip(LIST_FIELDS, raw))
            if f["st"] is None:
                continue  # gone between the two reads
            out.append(
                {
                    "id": job_id,
                    "name": _text(f["n"]),
                    "state": _text(f["st"]),
                    "created": _ms(f["ts"]),
                    "processed": _ms(f["pon"]),
                    "finished": _ms(f["fon"]),
                    "attempts": int(f["atm"] or 0),
                    "error": _text(f["err"]),
                    "priority": int(f["p"] or 0),
                    "schedule": _text(f["sch"]),
                }
            )
        return out

    return Batch(calls, parse)


def _search(
    core: QueueCore, state: str, text: str, start: int, total: int
) -> Flow[tuple[list[str], tuple[int, int]]]:
    """Jobs of ``state`` whose name contains ``text`` (case-insensitive) among the
    :data:`SEARCH_WINDOW` jobs from position ``start``: at most a page of them, and the
    positions looked at."""
    needle = text.casefold()
    found: list[str] = []
    at = start  # the next position to look at
    end = min(total, start + SEARCH_WINDOW)
    while at < end and len(found) < PAGE_SIZE:
        ids = yield core.ids(state, at, min(end, at + 1000) - 1)
        if not ids:
            break
        names = yield Batch(tuple(command("HGET", core.job_key(i), "n") for i in ids))
        for job_id, raw in zip(ids, names):
            at += 1
            if raw is not None and needle in raw.decode("utf-8", "replace").casefold():
                found.append(job_id)
                if len(found) >= PAGE_SIZE:
                    break
    return found, (start, at)


def _run_action(core: QueueCore, do: str, job_id: str | None, options: dict[str, Any]) -> Flow[str]:
    if job_id is not None:
        if do == "retry":
            moved, _ = yield core.retry([job_id], 1)
            return "retried" if moved else "not failed (nothing done)"
        if do == "remove":
            code = yield core.remove(job_id)
            return {1: "removed", 0: "not found", -1: "running: not removed"}.get(code, str(code))
        if do == "promote":
            code = yield core.promote(job_id)
            return {0: "not found"}.get(
                code, "promoted" if code > 0 else "not delayed (nothing done)"
            )
        code = yield core.cancel(job_id, "cancelled from the dashboard")
        return {1: "cancelled", 2: "asked to stop", -1: "not found"}.get(
            code, "already ended (nothing done)"
        )
    if do in ("pause", "resume"):
        changed = yield core.pause(do == "pause")
        return f"{do}d" if changed else f"already {do}d"
    if do == "retry_failed":
        moved = yield from core.retry_all(None)
        return f"{moved} moved back"
    if do in ("drain", "drain_delayed"):
        removed = yield from core.drain_all(do == "drain_delayed")
        return f"{removed} deleted"
    removed = yield from core.clean_all(options["state"], options["older_than"] * 1000, None)
    return f"{removed} cleaned"


def _form(request: Request) -> Flow[dict[str, str]]:
    """The posted form (urlencoded, at most 16 KiB; anything else is empty)."""
    if request.body is None:
        return {}
    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    raw = yield Load(request.body)
    if (
        kind != "application/x-www-form-urlencoded"
        or not isinstance(raw, bytes | bytearray)
        or len(raw) > MAX_FORM
    ):
        return {}
    try:
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    except ValueError:  # more fields than any form of the dashboard has
        return {}
    return dict(pairs)


def _clean(text: str) -> str:
    """``text`` with bytes that were not UTF-8 (kept as surrogates) replaced."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _minutes(kit: Any, wanted: int) -> int:
    kept = kit.settings.queue_metrics_minutes
    return max(1, min(wanted, kept)) if kept else 1


def _whole(raw: str | None, low: int, what: str = "page") -> int:
    if raw is None or raw == "":
        return low
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 12:
        raise _Refused(400, f"{what} must be a whole number")
    return max(low, int(raw))


def _name_ok(value: str) -> bool:
    try:
        check_name("job id", value)
    except (TypeError, ValueError):
        return False
    return True


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _ms(raw: bytes | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return datetime.fromtimestamp(int(raw) / 1000, timezone.utc)
    except (ValueError, OverflowError):
        return None


def _json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def _url(page: str, **params: Any) -> str:
    return f"{page}?{urlencode({k: v for k, v in params.items() if v is not None})}"


def _quote_done(do: str, outcome: str) -> str:
    return urlencode({"x": f"{do}: {outcome}"})[2:]


def _redirect(location: str, cookies: list[tuple[str, str, int, str]]) -> Answer:
    headers = [("Location", location), *security_headers()]
    for name, value, age, scheme in cookies:
        headers.append(("Set-Cookie", _cookie(name, value, age, scheme)))
    return Answer(303, tuple(headers), b"", kind="dashboard")


def _cookie(name: str, value: str, max_age: int | None, scheme: str) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)
