"""Results an orchestrator holds unrecorded go back to the broker at once, not after a timeout.

The results queue's visibility timeout is 60 s: a result fetched by an orchestrator that closes
without recording it would wait that long before anyone else could record it. On close the
orchestrator releases what it holds; a store that cannot be written is survived the same way.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from orquestrador import AsyncOrquestrador
from orquestrador.brokers import Broker
from orquestrador.envelope import encode, nova
from tests.conftest import eventually


async def _publish_results(broker: Broker, fila: str, n: int) -> None:
    for i in range(n):
        job = nova("iniciar_coleta", {"n": i}, alvo="eco")
        res = nova("resultado_coleta", {"n": i}, alvo="eco", correlation_id=job.correlation_id,
                   causation_id=job.message_id).model_copy(update={"status": "ok"})  # fmt: skip
        await broker.publish(fila, encode(res), message_id=res.message_id)


async def test_close_releases_results_it_could_not_record_yet(broker: Broker, tmp_path: Path) -> None:
    fila = f"res_{uuid.uuid4().hex[:10]}"
    first = AsyncOrquestrador(broker.url, responder_para=fila, home=tmp_path / "a")
    await first.start()
    # Another connection holds the first store's write lock: its collector fetches, then waits.
    lock = sqlite3.connect(first.store.path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        await _publish_results(broker, fila, 20)
        await eventually(lambda: _fetched(broker, fila, 20), timeout=30)
        await first.close()  # gives up on the stuck write after 5 s and hands the results back

        second = AsyncOrquestrador(broker.url, responder_para=fila, home=tmp_path / "b")
        await second.start()
        started = time.monotonic()
        try:
            await eventually(lambda: second.store.count_by_state() == {"ok": 20}, timeout=40)
        finally:
            await second.close()
        assert time.monotonic() - started < 45  # well inside the 60 s visibility timeout
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        await broker.delete(fila)


async def _fetched(broker: Broker, fila: str, published: int) -> bool:
    """The collector holds some of them (NATS hands a fetch what has arrived: maybe only one)."""
    return (await broker.stats(fila)).depth < published


async def test_a_result_the_store_refuses_is_dead_lettered_and_the_rest_recorded(
    broker: Broker, tmp_path: Path
) -> None:
    fila = f"res_{uuid.uuid4().hex[:10]}"
    orq = AsyncOrquestrador(broker.url, responder_para=fila, home=tmp_path)
    await orq.start()
    try:
        job = nova("iniciar_coleta", {}, alvo="eco")
        # A pipeline child without tipo_evento: the jobs table cannot hold it.
        bad = nova("resultado_coleta", {}, alvo="eco", correlation_id=job.correlation_id,
                   causation_id=job.message_id).model_copy(
            update={"status": "ok", "filhos": [{"message_id": str(uuid.uuid4())}]})  # fmt: skip
        await broker.publish(fila, encode(bad), message_id=bad.message_id)
        await _publish_results(broker, fila, 5)

        await eventually(lambda: orq.store.count_by_state() == {"ok": 5}, timeout=30)
        await eventually(lambda: _dead_letters(broker, fila), timeout=30)
        assert orq.store.job(job.message_id) is None
    finally:
        await orq.close()
        await broker.delete(fila)
        await broker.delete(f"{fila}.dlq")


async def _dead_letters(broker: Broker, fila: str) -> bool:
    return (await broker.stats(fila)).dead_letters == 1
