"""Chaos: one poison message (its handler fails on every attempt) among 1,000 good ones."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from orquestrador.brokers import connect
from orquestrador.brokers.base import DLQ_ATTEMPTS
from tests.chaos.harness import Contador, Linha, drenar_dlq, esperar_finais, execucoes, fechar
from tests.workers import start_worker

GOOD = 1000
MAX_TENTATIVAS = 3


async def test_poison_message_among_1000_good_ones(
    broker_name: str, url: str, suffix: str, run_log: Path, report
):
    alvo, fila = f"trabalho_{suffix}", f"escavador_trabalho_{suffix}"
    linha = Linha(broker_name, "poison message among 1,000 good")
    orq = Contador(url, responder_para=f"res_{suffix}")
    await orq.start()
    start = time.monotonic()
    worker = await asyncio.to_thread(
        start_worker, url, "trabalho", suffix, concurrency=16, visibility_timeout=10,
        extra=["--module", "tests.chaos.plugins_caos", "--max-tentativas", str(MAX_TENTATIVAS)],
    )  # fmt: skip
    broker = await connect(url)
    try:
        payloads = [{"i": i} for i in range(GOOD)]
        payloads.insert(GOOD // 2, {"i": -1, "veneno": True})
        sent = await orq.iniciar_lote("iniciar_coleta", alvo, payloads)
        ids = [e.message_id or "" for e in sent]
        poison = ids[GOOD // 2]
        counts = await esperar_finais(orq, ids, timeout=180)
        mortos = await drenar_dlq(broker, fila, 1, timeout=30)
        alive = worker.proc.poll() is None
    finally:
        await asyncio.to_thread(worker.stop)
        for queue in (fila, orq.responder_para):
            await broker.delete(queue)
        await broker.close()
        await orq.close()

    runs = execucoes(run_log)
    report(fechar(linha, orq, ids, counts, start, runs=runs, mortos=mortos))

    assert linha.perdidos == 0
    assert alive, "the worker survives the poison message"
    assert counts == {"ok": GOOD, "dead-lettered": 1}
    assert orq.store.job(poison).estado == "dead-lettered"
    assert orq.store.job(poison).erro["tipo"] == "ValueError"
    [dead] = mortos
    assert json.loads(dead.body)["message_id"] == poison
    assert dead.reason == "ValueError: poison: this payload crashes the handler every time"
    assert dead.headers[DLQ_ATTEMPTS] == str(MAX_TENTATIVAS)
    assert runs[poison] == MAX_TENTATIVAS, "retried exactly max_tentativas times, then dead-lettered"
