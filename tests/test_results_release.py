"""Results an orchestrator holds unrecorded go back to the broker at once, not after a timeout.

The results queue's visibility timeout is 60 s: a result fetched by an orchestrator that closes
without recording it would wait that long before anyone else could record it. On close the
orchestrator releases what it holds; a store that cannot be written is survived the same way.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orquestrador import AsyncOrquestrador, Orquestrador
from orquestrador.brokers import Broker, connect
from orquestrador.brokers.base import QueueStats
from orquestrador.envelope import encode, nova
from tests.conftest import eventually
from tests.workers import ROOT, start_worker


async def _publish_results(broker: Broker, fila: str, n: int) -> None:
    for i in range(n):
        job = nova("iniciar_coleta", {"n": i}, alvo="eco")
        res = nova("resultado_coleta", {"n": i}, alvo="eco", correlation_id=job.correlation_id,
                   causation_id=job.message_id).with_changes(status="ok")  # fmt: skip
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
                   causation_id=job.message_id).with_changes(
            status="ok", filhos=[{"message_id": str(uuid.uuid4())}])  # fmt: skip
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


KERNEL_EXITS = """
import sys, time
from orquestrador import Orquestrador
url, alvo, fila, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
orq = Orquestrador(url, responder_para=fila)
lote = orq.iniciar_coletas(alvo, ({"segundos": 0.02, "i": i} for i in range(n)), progress=False)
print(lote.id, flush=True)
while lote.contagem().get("ok", 0) < n // 10:  # results are streaming in: exit mid-batch
    time.sleep(0.005)
sys.exit(0)  # a notebook kernel restarting: the interpreter exits with the Orquestrador open
"""


@pytest.mark.nats
def test_an_interpreter_exiting_mid_batch_loses_no_result(nats_url: str, tmp_path: Path) -> None:
    """At interpreter exit the thread pool is gone: results in hand go back, none to the .dlq."""
    suffix, n = uuid.uuid4().hex[:8], 300
    fila = f"res_{suffix}"
    worker = start_worker(nats_url, "lento", suffix, concurrency=16)
    try:
        env = {**os.environ, "ORQ_HOME": str(tmp_path / "home")}
        kernel = subprocess.run(
            [sys.executable, "-c", KERNEL_EXITS, nats_url, f"lento_{suffix}", fila, str(n)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert kernel.returncode == 0, kernel.stderr[-2000:]
        with Orquestrador(nats_url, responder_para=fila, home=tmp_path / "home") as again:
            lote = again.lote(kernel.stdout.strip())
            assert lote is not None
            lote.wait(90)
            assert lote.contagem() == {"ok": n}
        assert asyncio.run(_stats(nats_url, fila)).dead_letters == 0, kernel.stderr[-2000:]
    finally:
        worker.stop()


async def _stats(url: str, fila: str) -> QueueStats:
    broker = await connect(url)
    try:
        return await broker.stats(fila)
    finally:
        await broker.delete(fila)
        await broker.close()
