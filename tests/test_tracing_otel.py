"""With an OpenTelemetry tracer provider, publish, handle and result are linked spans of one trace."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orquestrador import (
    AsyncOrquestrador,
    Orquestrador,
    PermanentFailure,
    Pipeline,
    Worker,
    WorkerOptions,
    tracing,
)
from orquestrador.brokers import Broker
from orquestrador.plugins import Plugin

pytestmark = pytest.mark.nats


@pytest.fixture(scope="module")
def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    # A private provider handed to orquestrador, not OpenTelemetry's set-once global one.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def spans(provider: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[InMemorySpanExporter]:
    tracing.set_tracer_provider(provider[0])
    provider[1].clear()
    try:
        yield provider[1]
    finally:
        tracing.set_tracer_provider(None)
        provider[1].clear()


def listar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"itens": [1, 2]}


def processar(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["item"] == 2:
        raise PermanentFailure("item 2 is corrupt")
    return {"ok": True}


@pytest.mark.parametrize("broker_url", ["nats"], indirect=True)
async def test_spans_of_a_chain_are_linked_across_orchestrator_worker_and_pipeline(
    spans: InMemorySpanExporter, provider: tuple[TracerProvider, Any], broker: Broker, broker_url: str
):
    tag = uuid.uuid4().hex[:8]
    escavador, executor = f"listar_{tag}", f"processar_{tag}"
    pipeline = Pipeline(f"otel_{tag}").regra(
        f"escavador:{escavador}", f"executor:{executor}", lambda r: [{"item": i} for i in r["itens"]]
    )
    plugins = [
        Plugin("escavador", escavador, listar, "tests"),
        Plugin("executor", executor, processar, "tests"),
    ]
    worker = Worker(broker, plugins, WorkerOptions(concurrency=4))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{tag}")
    await orq.start()
    await orq.run_pipeline(pipeline)
    try:
        # The notebook cell's own span: the job chain continues the caller's trace.
        with provider[0].get_tracer("test").start_as_current_span("cell") as cell:
            launched = await orq.iniciar("iniciar_coleta", escavador, {"n": 1}, pipeline=pipeline.nome)
        assert await orq.esperar_cadeia(launched.correlation_id, 60) == {"ok": 2, "dead-lettered": 1}
    finally:
        worker.stop()
        await task
        await orq.close()
        for queue in (f"escavador_{escavador}", f"executor_{executor}", pipeline.fila, f"res_{tag}"):
            await broker.delete(queue)

    finished: list[ReadableSpan] = [s for s in spans.get_finished_spans() if s.name != "cell"]
    trace_id = cell.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}
    by_id = {s.context.span_id: s for s in finished}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None
        return by_id[span.parent.span_id]

    names = sorted(s.name for s in finished)
    assert names == sorted([
        f"orq.publish escavador_{escavador}", f"orq.handle {escavador}", "orq.result",
        *[f"orq.publish executor_{executor}"] * 2, *[f"orq.handle {executor}"] * 2,
        "orq.result", "orq.result",
    ])  # fmt: skip

    publish = next(s for s in finished if s.name == f"orq.publish escavador_{escavador}")
    assert publish.parent is not None and publish.parent.span_id == cell.get_span_context().span_id
    assert publish.kind == SpanKind.PRODUCER
    assert publish.attributes["messaging.system"] == "nats"
    assert publish.attributes["messaging.destination.name"] == f"escavador_{escavador}"
    assert publish.attributes["messaging.message.id"] == launched.message_id
    assert publish.attributes["orq.correlation_id"] == launched.correlation_id
    # The envelope carries the publish span, so the worker's handle span is its child.
    assert launched.headers["traceparent"].split("-")[2] == f"{publish.context.span_id:016x}"

    handle = next(s for s in finished if s.name == f"orq.handle {escavador}")
    assert parent(handle) is publish and handle.kind == SpanKind.CONSUMER
    assert handle.attributes["orq.tentativa"] == 1
    assert handle.attributes["messaging.message.id"] == launched.message_id
    assert handle.status.status_code != StatusCode.ERROR
    result = next(s for s in finished if s.name == "orq.result" and parent(s) is handle)
    assert result.attributes["messaging.destination.name"] == pipeline.fila

    # The pipeline's child jobs continue from the escavador's result, and so on down the chain.
    children = [s for s in finished if s.name == f"orq.publish executor_{executor}"]
    assert all(parent(c) is result for c in children)
    handles = [s for s in finished if s.name == f"orq.handle {executor}"]
    assert sorted(id(parent(h)) for h in handles) == sorted(id(c) for c in children)
    failed = [h for h in handles if h.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and "item 2 is corrupt" in (failed[0].status.description or "")
    assert any(e.name == "exception" for e in failed[0].events)
    results = [s for s in finished if s.name == "orq.result" and parent(s) in handles]
    assert sorted(s.attributes["orq.status"] for s in results) == ["erro", "ok"]


def test_no_spans_without_a_provider(spans: InMemorySpanExporter):
    tracing.set_tracer_provider(None)  # and OpenTelemetry's global provider is the default no-op
    span = tracing.start("orq.publish q", "producer", None, {"messaging.system": "nats"})
    span.end()
    assert not span.recording
    assert tracing.parse_traceparent(span.headers["traceparent"]) is not None
    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize("broker_url", ["nats"], indirect=True)
async def test_a_job_launched_from_a_notebook_cell_joins_the_cells_trace(
    spans: InMemorySpanExporter, provider: tuple[TracerProvider, Any], broker: Broker, broker_url: str
):
    # The synchronous facade runs the core on its own loop thread; the cell's span still reaches it.
    alvo = f"eco_{uuid.uuid4().hex[:8]}"
    tracer = provider[0].get_tracer("test")

    def cell() -> tuple[Any, Any]:
        with (
            Orquestrador(broker_url, responder_para=f"res_{alvo}") as orq,
            tracer.start_as_current_span("cell") as span,
        ):
            return span, orq.iniciar_coleta(alvo, {"n": 1})

    try:
        span, job = await asyncio.to_thread(cell)
    finally:
        for queue in (f"escavador_{alvo}", f"res_{alvo}"):
            await broker.delete(queue)
    publish = next(s for s in spans.get_finished_spans() if s.name == f"orq.publish escavador_{alvo}")
    assert publish.parent is not None and publish.parent.span_id == span.get_span_context().span_id
    assert publish.context.trace_id == span.get_span_context().trace_id
    assert publish.attributes["messaging.message.id"] == job.message_id
