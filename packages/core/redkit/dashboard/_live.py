"""Live updates: Server-Sent Events of the counts on screen and of the job in view.

One :class:`LiveHub` per dashboard application reads Redis for every open stream of its
process: twice a second it reads the new entries of the events stream of each queue some tab
watches (one pipelined round trip, whatever the number of tabs), then, for the queues that had
events, their counts, and for the jobs in view that had events, their state and progress (one
more round trip), and hands each tab what it watches. A stream ends after
:data:`STREAM_LIFETIME` seconds (the browser reconnects by itself), so a deploy never waits for
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue as _queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._ops import Batch, command
from ..errors import RedkitError
from ..queue._options import check_name
from ..queue._records import parse_events
from ..web import Answer, Request
from ._security import security_headers

__all__ = ["LiveHub", "live_stream"]

log = logging.getLogger("redkit.dashboard")

INTERVAL = 0.5
STREAM_LIFETIME = 300.0
PING_EVERY = 15.0
MAX_QUEUES = 100
READ_COUNT = 500
"""Events read per queue per round; a queue with more skips ahead to its newest."""


@dataclass(eq=False)
class _Tab:
    queues: set[str]
    job: tuple[str, str] | None
    put: Callable[[str], None]
    messages: Any = None


@dataclass
class _State:
    """What the hub has read so far: the last event id of each queue watched."""

    last: dict[str, str] = field(default_factory=dict)


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class LiveHub:
    """The reader of one dashboard application's process (see the module docstring)."""

    def __init__(self, kit: Any, dashboard: Any) -> None:
        self.kit = kit
        self.dashboard = dashboard
        self.tabs: set[_Tab] = set()
        self.state = _State()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.rounds = 0
        """Round trips of reading made (for tests and the benchmark: one per interval, not per
        tab)."""

    # -- what a tab asks for -------------------------------------------------------------------
    def parse(self, request: Request) -> tuple[set[str], tuple[str, str] | None]:
        """The queues and the job a stream asks for (``q`` repeated, ``queue`` and ``job``);
        a bad name is a ``ValueError``."""
        names: set[str] = set()
        job: tuple[str, str] | None = None
        args = request.args
        for key, value in args:
            if key == "q" and len(names) < MAX_QUEUES:
                names.add(check_name("queue name", value))
        queue_name = dict(args).get("queue")
        job_id = dict(args).get("job")
        if queue_name and job_id:
            job = (check_name("queue name", queue_name), check_name("job id", job_id))
        allowed = self.dashboard.queues
        if allowed is not None:
            names &= set(allowed)
            if job and job[0] not in allowed:
                job = None
        return names, job

    # -- the reading loop, sans I/O -------------------------------------------------------------
    def _watched(self) -> tuple[set[str], set[tuple[str, str]]]:
        with self._lock:
            queues: set[str] = set()
            jobs: set[tuple[str, str]] = set()
            for tab in self.tabs:
                queues |= tab.queues
                if tab.job:
                    queues.add(tab.job[0])
                    jobs.add(tab.job)
        return queues, jobs

    def _read_batch(self, queues: set[str]) -> Batch[dict[str, Any]]:
        for name in [n for n in self.state.last if n not in queues]:
            del self.state.last[name]  # watched again later: from its newest event then
        order = sorted(queues)
        calls = []
        for name in order:
            core = self.dashboard._core(self.kit, name)
            since = self.state.last.get(name)
            if since is None:
                calls.append(command("XREVRANGE", core.events, "+", "-", "COUNT", 1))
            else:
                calls.append(command("XRANGE", core.events, f"({since}", "+", "COUNT", READ_COUNT))

        def parse(replies: list[Any]) -> dict[str, Any]:
            out = {}
            for name, reply in zip(order, replies):
                events = parse_events([(b"", reply or [])])
                if name not in self.state.last:
                    self.state.last[name] = events[0].id if events else "0-0"
                    continue
                if len(events) >= READ_COUNT:
                    del self.state.last[name]  # falling behind: from the newest event next
                    out[name] = events
                elif events:
                    self.state.last[name] = events[-1].id
                    out[name] = events
            return out

        return Batch(tuple(calls), parse)

    def _detail_batch(self, queues: list[str], jobs: list[tuple[str, str]]) -> Batch[Any]:
        calls: list[Any] = []
        counts = []
        for name in queues:
            b = self.dashboard._core(self.kit, name).counts()
            counts.append((name, b, len(calls), len(b.calls)))
            calls += b.calls
        job_at = len(calls)
        for name, job_id in jobs:
            calls.append(
                command("HMGET", self.dashboard._core(self.kit, name).job_key(job_id), "st", "prg")
            )

        def parse(replies: list[Any]) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
            got = {name: b.parse(replies[at : at + n]) for name, b, at, n in counts}
            details = {}
            for i, key in enumerate(jobs):
                st, prg = replies[job_at + i]
                progress = None
                if prg is not None:
                    try:
                        progress = json.loads(prg)
                    except ValueError:
                        progress = None
                shown = (
                    self.dashboard._shown("progress", progress) if progress is not None else None
                )
                details[key] = {"state": st.decode() if st else "gone", "progress": shown}
            return got, details

        return Batch(tuple(calls), parse)

    def _publish(self, counts: dict[str, Any], jobs: dict[tuple[str, str], Any]) -> None:
        with self._lock:
            tabs = list(self.tabs)
        for tab in tabs:
            mine = {q: c for q, c in counts.items() if q in tab.queues}
            if mine:
                tab.put(sse("counts", mine).decode())
            if tab.job and tab.job in jobs:
                tab.put(sse("job", jobs[tab.job]).decode())

    def _changed(
        self, events: dict[str, Any], jobs: set[tuple[str, str]]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        touched = sorted(events)
        seen = {(q, e.job_id) for q, evs in events.items() for e in evs if e.job_id}
        return touched, sorted(j for j in jobs if j in seen)

    # -- the blocking shell ---------------------------------------------------------------------
    def _run_thread(self) -> None:
        try:
            self._loop_thread()
        finally:
            with self._lock:
                self._thread = None  # a later tab starts another one

    def _loop_thread(self) -> None:
        run = self.kit._executor.run
        while not self._closed:
            queues, jobs = self._watched()
            if not queues:
                with self._lock:
                    if not self.tabs:
                        return
                time.sleep(INTERVAL)
                continue
            try:
                events = run(self._read_batch(queues))
                self.rounds += 1
                touched, in_view = self._changed(events, jobs)
                if touched:
                    counts, details = run(self._detail_batch(touched, in_view))
                    self._publish(counts, details)
            except RedkitError as exc:
                log.warning("redkit dashboard: live updates paused, Redis did not answer: %s", exc)
            except Exception:
                log.exception("redkit dashboard: live updates failed a round; going on")
            time.sleep(INTERVAL)

    def open(self, request: Request) -> tuple[Answer, Iterable[bytes] | None]:
        """A WSGI stream: the answer's head and the body's chunks, or a refusal (no stream)."""
        refused = self._refusal(self.kit._executor.drive(self.dashboard._who(request)))
        if refused is not None:
            return refused, None
        try:
            queues, job = self.parse(request)
        except (TypeError, ValueError) as exc:
            return _plain(400, str(exc)), None
        box: _queue.Queue[str] = _queue.Queue(maxsize=100)

        def put(message: str) -> None:
            with contextlib.suppress(_queue.Full):  # a tab that does not read loses updates
                box.put_nowait(message)

        if request.method == "HEAD":
            return Answer(200, _stream_headers(), b""), None  # a head, never a stream
        tab = _Tab(queues, job, put)
        return Answer(200, _stream_headers(), b""), _Stream(self, tab, box)

    def _join(self, tab: _Tab) -> None:
        with self._lock:
            self.tabs.add(tab)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_thread, name="redkit-dashboard-live", daemon=True
                )
                self._thread.start()

    def _refusal(self, who: str | None) -> Answer | None:
        if who is None:
            return _plain(401 if self.dashboard.access.has_login else 403, "not allowed")
        return None

    # -- the asyncio shell ----------------------------------------------------------------------
    async def _run_task(self) -> None:
        run = self.kit._executor.run
        try:
            while not self._closed and self.tabs:
                queues, jobs = self._watched()
                if not queues:
                    await asyncio.sleep(INTERVAL)
                    continue
                try:
                    events = await run(self._read_batch(queues))
                    self.rounds += 1
                    touched, in_view = self._changed(events, jobs)
                    if touched:
                        counts, details = await run(self._detail_batch(touched, in_view))
                        self._publish(counts, details)
                except RedkitError as exc:
                    log.warning(
                        "redkit dashboard: live updates paused, Redis did not answer: %s", exc
                    )
                except Exception:
                    log.exception("redkit dashboard: live updates failed a round; going on")
                await asyncio.sleep(INTERVAL)
        finally:
            self._task = None

    def add_async(self, tab: _Tab) -> None:
        with self._lock:
            self.tabs.add(tab)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run_task())

    def remove(self, tab: _Tab) -> None:
        with self._lock:
            self.tabs.discard(tab)

    async def aclose(self) -> None:
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def close(self) -> None:
        self._closed = True


class _Stream:
    """A WSGI stream's body: the tab joins the hub when the server starts reading it and
    leaves when it is closed, read to its end or not (a server that never reads it, for a
    HEAD or after an error, leaves no tab behind)."""

    def __init__(self, hub: LiveHub, tab: _Tab, box: _queue.Queue[str]) -> None:
        self._hub = hub
        self._tab = tab
        self._box = box
        self._chunks: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._chunks is None:
            self._chunks = self._read()
        return self._chunks

    def _read(self) -> Iterator[bytes]:
        self._hub._join(self._tab)
        try:
            yield b"retry: 3000\n\n"
            ends = time.monotonic() + STREAM_LIFETIME
            while (left := ends - time.monotonic()) > 0 and not self._hub._closed:
                try:
                    yield self._box.get(timeout=min(PING_EVERY, left)).encode()
                except _queue.Empty:
                    yield b": ping\n\n"
        finally:
            self._hub.remove(self._tab)

    def close(self) -> None:
        if self._chunks is not None:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # closed from another thread mid-read
                    close()
        self._hub.remove(self._tab)


def _stream_headers() -> tuple[tuple[str, str], ...]:
    headers = list(security_headers())
    headers += [("Content-Type", "text/event-stream; charset=utf-8"), ("X-Accel-Buffering", "no")]
    return tuple(headers)


def _plain(status: int, text: str) -> Answer:
    return Answer(
        status,
        (("Content-Type", "text/plain; charset=utf-8"), *security_headers()),
        f"{text}\n".encode(),
    )


async def live_stream(
    hub: LiveHub, request: Request, receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    """An ASGI stream for ``request`` (or its refusal)."""
    from ._shells import _send

    who = await hub.kit._executor.drive(hub.dashboard._who(request))
    refused = hub._refusal(who)
    if refused is None:
        try:
            queues, job = hub.parse(request)
        except (TypeError, ValueError) as exc:
            refused = _plain(400, str(exc))
    if refused is not None:
        await _send(send, refused, {"method": request.method})
        return
    box: asyncio.Queue[str] = asyncio.Queue(maxsize=100)

    def put(message: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            box.put_nowait(message)

    tab = _Tab(queues, job, put)
    hub.add_async(tab)
    gone = asyncio.Event()

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(n.lower().encode(), v.encode()) for n, v in _stream_headers()],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
        ends = time.monotonic() + STREAM_LIFETIME
        while not gone.is_set() and not hub._closed and (left := ends - time.monotonic()) > 0:
            getter = asyncio.ensure_future(box.get())
            stopper = asyncio.ensure_future(gone.wait())
            done, _ = await asyncio.wait(
                {getter, stopper},
                timeout=min(PING_EVERY, left),
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopper.cancel()
            if getter in done:
                chunk = getter.result().encode()
            else:
                getter.cancel()
                if gone.is_set():
                    break
                chunk = b": ping\n\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        hub.remove(tab)
