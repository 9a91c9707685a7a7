"""W3C trace context travels through a whole job chain, on every broker, without OpenTelemetry."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from typing import Any

import pytest

from orquestrador import AsyncOrquestrador, Pipeline, Worker, WorkerOptions
from orquestrador import envelope as wire
from orquestrador.brokers import Broker
from orquestrador.plugins import Plugin
from orquestrador.tracing import new_traceparent, parse_traceparent
from tests.conftest import eventually

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        VALID + "-extra",  # version 00 has exactly four fields
        "garbage",
        "",
        None,
        42,
    ],
)
def test_malformed_traceparents_are_refused_and_replaced_by_a_new_trace(value: object):
    assert parse_traceparent(value) is None
    fresh = new_traceparent(value)
    assert parse_traceparent(fresh) is not None
    assert fresh.split("-")[1] != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_child_keeps_the_trace_and_flags_with_a_new_span_id():
    assert parse_traceparent(VALID) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    # A later version may append fields; its first four are still understood.
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more") is not None
    child = parse_traceparent(new_traceparent(VALID))
    assert child is not None
    assert child[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child[1] != "00f067aa0ba902b7"
    assert child[2] == "01"


def listar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"itens": [payload["n"], payload["n"] + 1]}


def dobrar(payload: dict[str, Any]) -> dict[str, Any]:
    return {"dobro": payload["item"] * 2}


def _stored_envelopes(orq: AsyncOrquestrador, correlation_id: str) -> list[dict[str, Any]]:
    """Every envelope the orchestrator sent or received for the chain, as it was on the wire."""
    with sqlite3.connect(orq.store.path) as conn:
        rows = conn.execute("SELECT body FROM envelopes WHERE correlation_id = ?", (correlation_id,))
        bodies = [json.loads(body) for (body,) in rows]
    return [b for b in bodies if "correlation_id" in b]  # not the children summaries


async def test_a_pipeline_chain_shares_one_trace_id_with_a_span_id_per_envelope(
    broker: Broker, broker_url: str
):
    tag = uuid.uuid4().hex[:8]
    escavador, executor = f"listar_{tag}", f"dobrar_{tag}"
    pipeline = Pipeline(f"trace_{tag}").regra(
        f"escavador:{escavador}", f"executor:{executor}", lambda r: [{"item": i} for i in r["itens"]]
    )
    queues = [f"escavador_{escavador}", f"executor_{executor}", pipeline.fila, f"res_{tag}"]
    first = Worker(broker, [Plugin("escavador", escavador, listar, "tests")], WorkerOptions(concurrency=2))
    second = Worker(broker, [Plugin("executor", executor, dobrar, "tests")], WorkerOptions(concurrency=2))
    tasks = [asyncio.create_task(first.run())]
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{tag}")
    await orq.start()
    await orq.run_pipeline(pipeline)
    try:
        launched = await orq.iniciar("iniciar_coleta", escavador, {"n": 1}, pipeline=pipeline.nome)
        # The children wait in their queue until their worker starts: read them as published.
        await broker.declare(f"executor_{executor}")
        children = await eventually(lambda: _peek_two(broker, f"executor_{executor}"), timeout=60)
        tasks.append(asyncio.create_task(second.run()))
        assert await orq.esperar_cadeia(launched.correlation_id, 60) == {"ok": 3}
        stored = _stored_envelopes(orq, launched.correlation_id)
        lote = await orq.iniciar_lote("iniciar_coleta", escavador, [{"n": 10}, {"n": 20}])
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*tasks)
        await orq.close()
        for queue in queues:
            await broker.delete(queue)

    tipos = sorted(e["tipo_evento"] for e in [*stored, *children])
    assert tipos == ["iniciar_coleta", "iniciar_execucao", "iniciar_execucao", "resultado_coleta",
                     "resultado_execucao", "resultado_execucao"]  # fmt: skip
    parsed = [parse_traceparent(e["headers"].get("traceparent")) for e in [*stored, *children]]
    assert all(p is not None for p in parsed), parsed
    trace_id = parse_traceparent(launched.headers["traceparent"])[0]  # type: ignore[index]
    assert {p[0] for p in parsed} == {trace_id}  # type: ignore[index]
    assert len({p[1] for p in parsed}) == 6, "each envelope is its own span"  # type: ignore[index]
    # Jobs launched without a surrounding trace each start their own.
    assert len({parse_traceparent(e.headers["traceparent"])[0] for e in lote}) == 2  # type: ignore[index]


async def _peek_two(broker: Broker, queue: str) -> list[dict[str, Any]] | None:
    messages = await broker.peek(queue, 10)
    return [json.loads(m.body) for m in messages] if len(messages) >= 2 else None


async def test_hand_published_traceparents_are_continued_or_replaced(broker: Broker, broker_url: str):
    tag = uuid.uuid4().hex[:8]
    nome, results = f"listar_{tag}", f"res_{tag}"
    worker = Worker(broker, [Plugin("escavador", nome, listar, "tests")], WorkerOptions(concurrency=2))
    await broker.declare(results)
    await broker.declare(f"escavador_{nome}")
    task = asyncio.create_task(worker.run())
    sent = {"valid": VALID, "garbage": "00-not-a-trace", "zero": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}
    try:
        for n, (case, traceparent) in enumerate(sent.items()):
            body = {
                "correlation_id": case, "tipo_evento": "iniciar_coleta", "payload": {"n": n},
                "timestamp": "2025-10-14T12:00:00Z", "responder_para": results,
                "headers": {"traceparent": traceparent, "tracestate": "vendor=1"},
            }  # fmt: skip
            await broker.publish(f"escavador_{nome}", json.dumps(body).encode())
        consumer = await broker.consume(results, visibility_timeout=30.0, prefetch=10)
        got: dict[str, wire.Envelope] = {}
        try:

            async def receive() -> bool:
                for delivery in await consumer.fetch(10, timeout=0.5):
                    env = wire.decode(delivery.body)
                    got[env.correlation_id] = env
                    await delivery.ack()
                return len(got) == 3

            await eventually(receive, timeout=60)
        finally:
            await consumer.close()
    finally:
        worker.stop()
        await task
        for queue in (f"escavador_{nome}", results):
            await broker.delete(queue)

    assert all(env.status == "ok" for env in got.values()), "a bad traceparent never fails the job"
    valid = parse_traceparent(got["valid"].headers["traceparent"])
    assert valid is not None and valid[0] == VALID.split("-")[1] and valid[1] != VALID.split("-")[2]
    assert got["valid"].headers["tracestate"] == "vendor=1"
    for case in ("garbage", "zero"):
        replaced = parse_traceparent(got[case].headers["traceparent"])
        assert replaced is not None and replaced[0] != "0" * 32
        assert "tracestate" not in got[case].headers, "vendor state of a broken trace is dropped"


def test_workers_and_orchestrators_do_not_import_opentelemetry_themselves():
    # Spans cost nothing unless the application set OpenTelemetry up (and so imported it).
    code = (
        "import sys, orquestrador.worker, orquestrador.orchestrator, orquestrador.pipeline\n"
        "from orquestrador import tracing\n"
        "span = tracing.start('orq.publish q', 'producer', None)\n"
        "assert not span.recording and tracing.parse_traceparent(span.headers['traceparent'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
