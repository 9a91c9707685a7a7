"""Idempotency on every broker: one message_id published twice is delivered once (within the
dedup window), and a job delivered twice is recorded once by the orchestrator and saved once.

Where brokers differ (``capabilities.server_dedup``, shown in the README): NATS
(``Nats-Msg-Id``) and Redis (a short-lived key) dedupe on the server, for every client; a
broker without it (RabbitMQ) dedupes per connection, so a second client publishing the same id
is delivered again — the store and ``salvar`` absorb that copy.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pandas as pd
import pytest

from executores import salvar as salvar_mod
from orquestrador import AsyncOrquestrador, Worker, WorkerOptions
from orquestrador import envelope as wire
from orquestrador.brokers import Broker, connect
from orquestrador.plugins import Plugin
from tests.conftest import eventually


async def drain(broker: Broker, queue: str, quiet: float = 1.0) -> list[bytes]:
    """Everything deliverable on ``queue`` (acked), once nothing more arrives for ``quiet`` s."""
    consumer = await broker.consume(queue, visibility_timeout=30)
    bodies: list[bytes] = []
    try:
        while batch := await consumer.fetch(100, timeout=quiet):
            for delivery in batch:
                bodies.append(delivery.body)
                await delivery.ack()
    finally:
        await consumer.close()
    return bodies


async def test_one_message_id_published_twice_is_delivered_once(broker: Broker, queue: str):
    await broker.publish(queue, b"first", message_id="m-1")
    await broker.publish(queue, b"first again", message_id="m-1")
    await asyncio.gather(*(broker.publish(queue, b"racing", message_id="m-2") for _ in range(5)))
    await broker.publish_many(queue, [(b"batch", "m-3"), (b"batch again", "m-3"), (b"other", "m-4")])
    await broker.publish(queue, b"no id")
    await broker.publish(queue, b"no id")

    assert sorted(await drain(broker, queue)) == [b"batch", b"first", b"no id", b"no id", b"other", b"racing"]


async def test_a_second_client_publishing_the_same_id(broker: Broker, broker_url: str, queue: str):
    other = await connect(broker_url)
    try:
        await broker.publish(queue, b"from one", message_id="shared")
        await other.publish(queue, b"from the other", message_id="shared")
    finally:
        await other.close()

    bodies = await drain(broker, queue)
    if broker.capabilities.server_dedup:
        assert bodies == [b"from one"]
    else:  # per-connection dedup only (the documented limitation)
        assert sorted(bodies) == [b"from one", b"from the other"]


async def test_a_deleted_queue_forgets_its_ids(broker: Broker, queue: str):
    await broker.publish(queue, b"before", message_id="again")
    await broker.delete(queue)
    await broker.publish(queue, b"after", message_id="again")
    assert await drain(broker, queue) == [b"after"]


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(salvar_mod.ENV_DATASET_DIR, str(tmp_path / "ds"))
    return tmp_path / "ds"


async def test_a_job_delivered_twice_is_saved_once_and_recorded_once(
    broker: Broker, broker_url: str, dataset
):
    nome = f"salvar_{uuid.uuid4().hex[:8]}"
    plugin = Plugin("executor", nome, salvar_mod.salvar, "tests", takes_context=True)
    worker = Worker(broker, [plugin], WorkerOptions(visibility_timeout=10))
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{nome}")
    await orq.start()
    running = asyncio.create_task(worker.run())
    job = wire.nova("iniciar_execucao", {"registros": [{"n": 1}, {"n": 2}], "alvo": "t"}, alvo=nome,
                    responder_para=orq.responder_para)  # fmt: skip
    try:
        orq.store.record_sent([job], plugin.fila)
        # A redelivered duplicate: the same envelope twice, without a broker-level id to dedupe on.
        await broker.publish(plugin.fila, wire.encode(job))
        await broker.publish(plugin.fila, wire.encode(job))
        row = await orq.esperar(job.message_id or "", 30)
        await eventually(lambda: _results(orq, job.correlation_id, 2), timeout=30)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await orq.close()
        for queue in (plugin.fila, orq.responder_para):
            await broker.delete(queue)

    assert row is not None and row.estado == "ok" and row.resultado["registros"] == 2
    assert len(orq.store.jobs(alvo=nome)) == 1, "one row per job however often its result arrives"
    assert len(list(dataset.rglob("*.parquet"))) == 1
    assert len(pd.read_parquet(dataset)) == 2


def _results(orq: AsyncOrquestrador, correlation_id: str, n: int) -> bool:
    """Both runs answered: their results (two envelopes, one job) reached the store."""
    trace = orq.store.trace(correlation_id)
    return sum(1 for r in trace if r["evento"] == "resultado_execucao") >= n


async def test_the_same_result_arriving_twice_is_recorded_once(broker: Broker, broker_url: str):
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{uuid.uuid4().hex[:10]}")
    await orq.start()
    try:
        job = await orq.iniciar("iniciar_coleta", f"dup_{uuid.uuid4().hex[:8]}", {"n": 1})
        result = wire.nova("resultado_coleta", {"ok": True}, alvo=job.alvo, correlation_id=job.correlation_id,
                           causation_id=job.message_id).with_changes(status="ok")  # fmt: skip
        for _ in range(2):  # no broker-level id: both copies reach the orchestrator
            await broker.publish(orq.responder_para, wire.encode(result))
        row = await orq.esperar(job.message_id or "", 20)
        await eventually(lambda: _drained(orq.broker, orq.responder_para), timeout=20)
        trace = orq.store.trace(job.correlation_id)
    finally:
        await orq.close()
        await broker.delete(orq.responder_para)
        await broker.delete(f"escavador_{job.alvo}")

    assert row is not None and row.estado == "ok" and row.resultado == {"ok": True}
    assert len(orq.store.jobs(alvo=job.alvo)) == 1
    assert [r["evento"] for r in trace if r["tipo"] == "envelope"] == ["iniciar_coleta", "resultado_coleta"]


async def _drained(broker: Broker | None, queue: str) -> bool:
    assert broker is not None
    stats = await broker.stats(queue)
    return stats.depth == 0 and stats.in_flight == 0
