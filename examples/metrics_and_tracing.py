"""Metrics and tracing: how long jobs take, how many fail, and one trace across processes.

``python examples/metrics_and_tracing.py``

- ``orq.metricas()``: per alvo, jobs by status, error rate and latency percentiles (seconds),
  read from the store; ``orq stats`` in a shell shows the same.
- A worker's Prometheus counters (``orq worker … --metrics-port 9464`` serves them on /metrics).
- OpenTelemetry: with a tracer provider, publishing a job, handling it and publishing its result
  are spans of one trace, linked through the envelope's ``traceparent`` header (across processes).
"""

from __future__ import annotations

import random
from typing import Any

from _worker import running
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from orquestrador import Orquestrador, PermanentFailure, escavador, tracing
from orquestrador.worker.metrics import PrometheusMetrics


@escavador("medidor")
async def medidor(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["n"] % 5 == 0:
        raise PermanentFailure("multiples of five are refused")
    return {"leitura": round(random.uniform(10, 20), 2)}


def main() -> Any:
    exporter = InMemorySpanExporter()  # in real use: an OTLP exporter to Jaeger, Tempo, …
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)
    registry = CollectorRegistry()
    with Orquestrador() as orq, running("escavador:medidor", metrics=PrometheusMetrics(registry)):
        lote = orq.iniciar_coletas("medidor", [{"n": n} for n in range(1, 21)], progress=False).wait(60)
        metricas = orq.metricas("medidor")
        print(metricas.to_string())
        primeiro = lote[0]
    counters = [
        line for line in generate_latest(registry).decode().splitlines() if line.startswith("orq_jobs_")
    ]
    print("\n".join(counters))
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == _trace_of(exporter, primeiro)]
    print("one job's trace:", sorted(s.name for s in spans))
    assert lote.contagem() == {"ok": 16, "dead-lettered": 4}
    assert 'orq_jobs_ok_total{alvo="medidor"} 16.0' in counters
    assert sorted(s.name for s in spans) == [
        "orq.handle medidor",
        "orq.publish escavador_medidor",
        "orq.result",
    ]
    return metricas


def _trace_of(exporter: InMemorySpanExporter, job: Any) -> int:
    """The trace id of the publish span of ``job`` (its message id is an attribute)."""
    for span in exporter.get_finished_spans():
        if (span.attributes or {}).get("messaging.message.id") == job.message_id:
            return span.context.trace_id
    raise AssertionError("no span for the job")


if __name__ == "__main__":
    main()
