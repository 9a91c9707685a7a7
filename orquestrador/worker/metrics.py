"""Prometheus metrics of a worker (``orq worker --metrics-port``).

Without a port the worker holds :data:`NO_METRICS`, whose methods do nothing: prometheus_client is
not even imported, so a worker that nobody scrapes pays one empty call per event. With
``--processes N`` the children write to ``PROMETHEUS_MULTIPROC_DIR`` and the supervisor serves
their sum on the one port (see :mod:`orquestrador.worker.supervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

ENV_METRICS_PORT = "ORQ_METRICS_PORT"
ENV_METRICS_ADDR = "ORQ_METRICS_ADDR"
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Handler durations from a quick API call to a slow page or a long command.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class NoMetrics:
    """The disabled recorder: every hook is a no-op."""

    def received(self, alvo: str) -> None: ...
    def started(self, alvo: str) -> None: ...
    def finished(self, alvo: str) -> None: ...
    def handled(self, alvo: str, seconds: float) -> None: ...
    def ok(self, alvo: str) -> None: ...
    def failed(self, alvo: str) -> None: ...
    def retried(self, alvo: str) -> None: ...
    def dead_lettered(self, alvo: str) -> None: ...
    def fetch_recovered(self, broker: Any) -> None: ...
    def queue_depth(self, alvo: str, depth: int) -> None: ...
    def watch(self, broker: Any) -> asyncio.Task[None] | None:
        return None

    @property
    def enabled(self) -> bool:
        return False


NO_METRICS = NoMetrics()


class PrometheusMetrics(NoMetrics):
    """The worker's counters, labelled by ``alvo`` (plugin name)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = registry or REGISTRY

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, ["alvo"], registry=reg)

        self._received = counter("orq_jobs_received", "Deliveries taken from the queue (every attempt).")
        self._ok = counter("orq_jobs_ok", "Jobs whose result was published and acked.")
        self._failed = counter("orq_jobs_failed", "Attempts that ended in an error (retried or not).")
        self._retried = counter("orq_jobs_retried", "Failed attempts given back for a later retry.")
        self._dead = counter("orq_jobs_dead_lettered", "Jobs moved to the dead-letter queue.")
        self._duration = Histogram(
            "orq_handler_duration_seconds", "Time the handler ran, per attempt.", ["alvo"],
            buckets=BUCKETS, registry=reg,
        )  # fmt: skip
        self._in_flight = Gauge(
            "orq_jobs_in_flight", "Jobs being handled now.", ["alvo"],
            multiprocess_mode="livesum", registry=reg,
        )  # fmt: skip
        self._reconnects = Counter(
            "orq_broker_reconnects", "Times the connection to the broker was re-established.", registry=reg
        )
        self._depth = Gauge(
            "orq_queue_depth", "Jobs waiting in the plugin's queue (on Kafka: the group's lag).", ["alvo"],
            multiprocess_mode="max", registry=reg,
        )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return True

    def queue_depth(self, alvo: str, depth: int) -> None:
        self._depth.labels(alvo).set(depth)

    def received(self, alvo: str) -> None:
        self._received.labels(alvo).inc()

    def started(self, alvo: str) -> None:
        self._in_flight.labels(alvo).inc()

    def finished(self, alvo: str) -> None:
        self._in_flight.labels(alvo).dec()

    def handled(self, alvo: str, seconds: float) -> None:
        self._duration.labels(alvo).observe(seconds)

    def ok(self, alvo: str) -> None:
        self._ok.labels(alvo).inc()

    def failed(self, alvo: str) -> None:
        self._failed.labels(alvo).inc()

    def retried(self, alvo: str) -> None:
        self._retried.labels(alvo).inc()

    def dead_lettered(self, alvo: str) -> None:
        self._dead.labels(alvo).inc()

    def fetch_recovered(self, broker: Any) -> None:
        # Adapters that count their own reconnects are watched instead (see watch); for the
        # others (Redis reconnects inside each command) a fetch working again is the reconnect.
        if not broker.capabilities.counts_reconnects:
            self._reconnects.inc()

    def watch(self, broker: Any) -> asyncio.Task[None] | None:
        """Follow an adapter's own reconnect count (NATS, RabbitMQ) while the worker runs."""
        if not broker.capabilities.counts_reconnects:
            return None

        async def follow() -> None:
            seen = broker.reconnects
            while True:
                await asyncio.sleep(1.0)
                now = broker.reconnects
                if now > seen:
                    self._reconnects.inc(now - seen)
                seen = now

        return asyncio.create_task(follow())


def serve(port: int, *, multiprocess_dir: str | None = None) -> None:
    """Serve ``/metrics`` on ``port`` of every interface, like other exporters, so Prometheus on
    another host can scrape it; ``ORQ_METRICS_ADDR=127.0.0.1`` keeps it on this machine."""
    from prometheus_client import CollectorRegistry, start_http_server

    from orquestrador.errors import ConfigError

    addr = os.environ.get(ENV_METRICS_ADDR) or "0.0.0.0"
    registry = None
    if multiprocess_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    try:
        if registry is None:
            start_http_server(port, addr)
        else:
            start_http_server(port, addr, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}; "
                          "pick a free port with --metrics-port") from None  # fmt: skip


def for_worker(port: int | None) -> NoMetrics:
    """The recorder a worker process uses: real metrics when scraped, else the no-op one."""
    from orquestrador.worker.supervisor import is_child

    if is_child() and os.environ.get(ENV_MULTIPROC_DIR):
        return PrometheusMetrics()  # the supervisor serves the sum of its children
    if port is None:
        return NO_METRICS
    recorder = PrometheusMetrics()
    serve(port)
    return recorder


def mark_dead(pid: int) -> None:
    """Forget a dead child's live gauges (its counters stay in the sum)."""
    with contextlib.suppress(OSError):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
