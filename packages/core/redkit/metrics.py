"""Queue metrics for Prometheus (the ``metrics`` extra: ``prometheus_client``).

``QueueCollector(kit)`` reads, at each scrape, every queue's job counts by state, its workers, and
its totals since the start (jobs completed, failed and cancelled; wait and run time histograms),
as the workers keep them in Redis (``queue_metrics_minutes``): nothing is counted in the process
that serves the metrics, so any number of processes may serve them and they agree.
``make_wsgi_app(kit)`` and ``make_asgi_app(kit)`` are mountable in any framework; the command
``redkit metrics --port 9108`` serves them alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._ops import Batch, command
from ._optional import require
from .queue._metrics import TOTAL_FIELDS, parse_totals
from .queue._records import STATES

__all__ = ["QueueCollector", "make_asgi_app", "make_wsgi_app", "registry"]


class QueueCollector:
    """A Prometheus collector of redkit's queues: those named, or every queue of the registry
    (``<prefix>:queues``, what ``redkit info`` lists). ``kit`` may be a blocking or an asyncio
    client: a scrape is a blocking call, made on a blocking client of the same settings."""

    def __init__(self, kit: Any, queues: Sequence[str] | None = None) -> None:
        require("prometheus_client", "metrics")
        from ._client import Redkit

        self._own = not isinstance(kit, Redkit)
        self._kit = Redkit(kit.settings) if self._own else kit
        self._names = None if queues is None else list(queues)

    def close(self) -> None:
        """Close the blocking client made for an asyncio one."""
        if self._own:
            self._kit.close()

    def _queue_names(self) -> list[str]:
        if self._names is not None:
            return self._names
        raw = self._kit._executor.run(
            Batch.one(command("ZRANGE", self._kit.keyspace.key("queues"), 0, -1))
        )
        return sorted(n.decode("utf-8", "replace") for n in raw)

    def collect(self) -> Iterator[Any]:
        core = require("prometheus_client.core", "metrics")
        jobs = core.GaugeMetricFamily(
            "redkit_queue_jobs", "Jobs of a redkit queue by state", labels=["queue", "state"]
        )
        workers = core.GaugeMetricFamily(
            "redkit_queue_workers", "Workers registered on a redkit queue", labels=["queue"]
        )
        paused = core.GaugeMetricFamily(
            "redkit_queue_paused", "1 when the queue is paused", labels=["queue"]
        )
        ended = {
            kind: core.CounterMetricFamily(
                f"redkit_queue_jobs_{kind}",
                f"Jobs of a redkit queue {kind} since its metrics began",
                labels=["queue"],
            )
            for kind in ("completed", "failed", "cancelled")
        }
        waits = core.HistogramMetricFamily(
            "redkit_queue_wait_seconds",
            "Time from a job's add (or due time) to its first start",
            labels=["queue"],
        )
        runs = core.HistogramMetricFamily(
            "redkit_queue_run_seconds", "Run time of each attempt that ended", labels=["queue"]
        )
        for name in self._queue_names():
            q = self._kit.queue(name)
            c = q._core
            calls = [*c.counts().calls, command("ZCARD", c.workers)]
            calls += [
                command("HEXISTS", c.meta, "paused"),
                command("HMGET", c.metrics, *TOTAL_FIELDS),
            ]
            replies = self._kit._executor.run(Batch(tuple(calls), list))
            for state, n in zip(STATES, replies[: len(STATES)]):
                jobs.add_metric([name, state], int(n))
            workers.add_metric([name], int(replies[len(STATES)]))
            paused.add_metric([name], int(replies[len(STATES) + 1]))
            totals, wait, run = parse_totals(replies[-1])
            for kind, family in ended.items():
                family.add_metric([name], totals[kind])
            for family, hist in ((waits, wait), (runs, run)):
                family.add_metric([name], _buckets(hist), hist.sum)
        yield from (jobs, workers, paused, *ended.values(), waits, runs)


def _buckets(hist: Any) -> list[tuple[str, int]]:
    out, seen = [], 0
    for bound, n in zip((*hist.bounds, float("inf")), hist.counts):
        seen += n
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), seen))
    return out


def registry(kit: Any, queues: Iterable[str] | None = None) -> Any:
    """A ``CollectorRegistry`` holding a :class:`QueueCollector` (and nothing else)."""
    prometheus = require("prometheus_client", "metrics")
    reg = prometheus.CollectorRegistry(auto_describe=False)
    reg.register(QueueCollector(kit, None if queues is None else list(queues)))
    return reg


def make_wsgi_app(kit: Any, queues: Iterable[str] | None = None) -> Any:
    """A WSGI application serving the queues' metrics (mount it under ``/metrics``)."""
    prometheus = require("prometheus_client", "metrics")
    return prometheus.make_wsgi_app(registry(kit, queues))


def make_asgi_app(kit: Any, queues: Iterable[str] | None = None) -> Any:
    """An ASGI application serving the queues' metrics (``Mount("/metrics", ...)``)."""
    prometheus = require("prometheus_client", "metrics")
    return prometheus.make_asgi_app(registry(kit, queues))
