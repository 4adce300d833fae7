"""OpenTelemetry, when installed: the trace context current at ``add`` travels with the job (W3C
``traceparent``/``tracestate``, in its options), and the worker runs the job in a span of that
trace (kind CONSUMER), so a request and the jobs it added are one trace. Without opentelemetry,
or without a context and a configured tracer provider, nothing is done."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["carried", "job_span"]

_api: Any = None  # (propagate, trace) once looked up; False when opentelemetry is missing


def _otel() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            _api = False
        else:
            _api = (propagate, trace)
    return _api or None


def carried() -> dict[str, str] | None:
    """The current trace context as W3C headers, when a span is current; else ``None``."""
    api = _otel()
    if api is None:
        return None
    propagate, trace = api
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def job_span(name: str, queue: str, job_id: str, attempt: int, carrier: Any) -> Iterator[None]:
    """The span a job runs in: a child of the context it was added in (``carrier``), or a root
    span when a tracer provider is configured; nothing otherwise."""
    api = _otel()
    if api is None:
        yield
        return
    propagate, trace = api
    parent = propagate.extract(carrier) if isinstance(carrier, Mapping) else None
    if parent is None and type(trace.get_tracer_provider()).__name__ in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
    ):
        yield
        return
    tracer = trace.get_tracer("redkit.queue")
    attributes = {
        "messaging.system": "redkit",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "redkit.job.name": name,
        "redkit.job.attempt": attempt,
    }
    with tracer.start_as_current_span(
        f"process {name}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield
