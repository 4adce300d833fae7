"""A job's progress as Server-Sent Events: ``return await rk.job_events(request, job_id)`` in an
endpoint streams the job's state, then each of its events, and ends with its last one, so a
browser (``new EventSource(url)``) follows a job it was answered ``202 Accepted`` for without
polling.

Every stream of one application and queue is fed by one reader of the queue's events stream
(:class:`EventHub`), however many browsers follow jobs: a stream holds no Redis connection of
its own. A stream starts with the job's current state, so a browser that reconnects (its
``EventSource`` does by itself) is up to date again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from redkit import web
from redkit.errors import InvalidKeyError, RedkitConnectionError
from redkit.queue import AsyncJob, AsyncQueue, Event

__all__ = ["FINAL_EVENTS", "EventHub", "job_events"]

log = logging.getLogger("redkit.starlette")

FINAL_EVENTS = frozenset({"completed", "failed", "cancelled", "removed"})
"""The events after which a job has nothing more to say (``failed``: for good)."""
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})
MAX_JOB_ID = 256
"""Longest job id a stream is opened for (longer ones are no job: 404)."""
BACKLOG = 1000
"""Events kept for one slow stream; past it the stream ends (the browser reconnects)."""


class _Overflow:
    """Put in a stream's queue when it fell too far behind."""


OVERFLOW = _Overflow()


class EventHub:
    """One reader of a queue's events, handing each job's events to the streams following it.
    It runs while at least one stream follows a job of the queue."""

    def __init__(self, queue: AsyncQueue, idle: float = 5.0) -> None:
        self.queue = queue
        self.idle = idle
        self.followers: dict[str, set[asyncio.Queue[Event | _Overflow]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def follow(self, job_id: str) -> asyncio.Queue[Event | _Overflow]:
        """A queue receiving every event of ``job_id`` from now on (read from Redis before this
        returns, so a state read after it misses nothing)."""
        inbox: asyncio.Queue[Event | _Overflow] = asyncio.Queue(BACKLOG)
        async with self._starting:
            self.followers.setdefault(job_id, set()).add(inbox)
            if not self.running:
                try:
                    since = await self.queue.last_event_id()
                except BaseException:
                    self.leave(job_id, inbox)
                    raise
                self._task = asyncio.create_task(
                    self._read(since), name=f"redkit-events-{self.queue.name}"
                )
        return inbox

    def leave(self, job_id: str, inbox: asyncio.Queue[Event | _Overflow]) -> None:
        found = self.followers.get(job_id)
        if found is not None:
            found.discard(inbox)
            if not found:
                del self.followers[job_id]

    async def _read(self, since: str) -> None:
        while self.followers:
            try:
                async for event in self.queue.events(since=since, timeout=self.idle):
                    since = event.id
                    self._hand(event)
                    if not self.followers:
                        return
            except RedkitConnectionError as exc:
                log.warning("redkit: job events of %r unreadable: %s", self.queue.name, exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("redkit: reading the job events of %r failed", self.queue.name)
                await asyncio.sleep(1.0)

    def _hand(self, event: Event) -> None:
        for inbox in list(self.followers.get(event.job_id or "", ())):
            try:
                inbox.put_nowait(event)
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    inbox.get_nowait()  # room for the marker: the stream ends at it
                inbox.put_nowait(OVERFLOW)

    async def aclose(self) -> None:
        """Stop reading (at shutdown); the streams still open end at their next heartbeat."""
        self.followers.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _message(kind: str, data: dict[str, Any], ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _state(job: AsyncJob, result: bool, errors: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "progress": job.progress,
        "attempts": job.attempts_made,
    }
    if result and job.state == "completed":
        data["result"] = job.result
    if errors and job.state in ("failed", "cancelled"):
        data["reason"] = job.failed_reason
    return data


def _event_data(event: Event, errors: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"id": event.job_id}
    for name, value in event.fields.items():
        if name == "reason" and not errors:
            continue
        data[name] = _json(value) if name == "progress" else value
    return data


async def job_events(
    hub: EventHub,
    job_id: Any,
    *,
    result: bool,
    errors: bool,
    heartbeat: float,
    retry_ms: int,
    lifetime: float,
) -> Response:
    """The response of :meth:`redkit_starlette.Redkit.job_events`."""
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID:
        return _not_found()
    try:
        inbox = await hub.follow(job_id)
    except RedkitConnectionError:
        return _unavailable()
    try:
        job = await hub.queue.get_job(job_id)
    except RedkitConnectionError:
        hub.leave(job_id, inbox)
        return _unavailable()
    except (ValueError, TypeError, InvalidKeyError):  # no id a job can have
        hub.leave(job_id, inbox)
        return _not_found()
    except BaseException:
        hub.leave(job_id, inbox)
        raise
    if job is None:
        hub.leave(job_id, inbox)
        return _not_found()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {retry_ms}\n\n".encode()
            yield _message("state", _state(job, result, errors))
            if job.state in FINAL_STATES:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + lifetime
            while True:
                left = deadline - loop.time()
                if left <= 0:  # the browser reconnects and gets the state (a shutdown ends)
                    return
                try:
                    got = await asyncio.wait_for(inbox.get(), min(heartbeat, left))
                except asyncio.TimeoutError:
                    if not hub.running:  # stopped (shutdown): end, the browser reconnects
                        return
                    if loop.time() < deadline:
                        yield b": keep-alive\n\n"
                    continue
                if isinstance(got, _Overflow):
                    return
                data = _event_data(got, errors)
                if got.event == "completed" and result:
                    data["result"] = await _result_of(hub.queue, job_id)
                yield _message(got.event, data, got.id)
                if got.event in FINAL_EVENTS:
                    return
        finally:
            hub.leave(job_id, inbox)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _result_of(queue: AsyncQueue, job_id: str) -> Any:
    try:
        job = await queue.get_job(job_id)
    except RedkitConnectionError:
        return None
    return None if job is None else job.result


def _not_found() -> Response:
    answer = web.problem(404, "Not Found", "no such job")
    return Response(answer.body, answer.status, dict(answer.headers))


def _unavailable() -> Response:
    answer = web.unavailable(5, "the job's events")
    return Response(answer.body, answer.status, dict(answer.headers))
