"""OpenTelemetry: a job added inside a span runs in a span of the same trace, its child, on the
worker (sync and async tasks), with the job's attributes; a failure is recorded on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from redkit.queue import JobFailed
from tests.conftest import call
from tests.queue.conftest import serving

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

_EXPORTER = memory.InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    from opentelemetry.util._once import Once

    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    yield
    provider.shutdown()
    # back to no provider for the tests after these (as opentelemetry's own tests reset it)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[Any]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def test_a_job_runs_in_a_child_span_of_the_add(kit: Any, spans: Any) -> None:
    q = kit.queue("traced")
    seen: list[Any] = []

    @q.task(name="sync-step")
    def sync_step(n: int) -> int:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return n

    @q.task(name="async-step")
    async def async_step(n: int) -> int:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return n

    @q.task(name="broken")
    def broken() -> None:
        raise RuntimeError("down")

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        jobs = [
            await call(sync_step.enqueue(1)),
            await call(async_step.enqueue(2)),
            await call(broken.enqueue()),
        ]
    untraced = await call(sync_step.enqueue(3))  # no span current: a root span of its own
    async with serving(q):
        assert await call(jobs[0].wait(10)) == 1
        assert await call(jobs[1].wait(10)) == 2
        with pytest.raises(JobFailed):
            await call(jobs[2].wait(10))
        await call(untraced.wait(10))
    trace_id = request.get_span_context().trace_id
    assert seen[:2] == [trace_id, trace_id]  # the tasks ran inside the job's span
    runs = {
        s.attributes["messaging.message.id"]: s
        for s in spans.get_finished_spans()
        if "messaging.message.id" in s.attributes
    }
    for job in jobs:
        span = runs[job.id]
        assert span.context.trace_id == trace_id
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.kind == trace.SpanKind.CONSUMER
        assert span.attributes["messaging.destination.name"] == "traced"
    assert runs[jobs[2].id].status.status_code == trace.StatusCode.ERROR
    assert runs[untraced.id].parent is None
    assert runs[untraced.id].context.trace_id != trace_id
