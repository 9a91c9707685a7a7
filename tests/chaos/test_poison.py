"""Chaos: one poison message (its handler fails on every attempt) among 1,000 good ones."""

from __future__ import annotations

import json
from pathlib import Path

from orquestrador.brokers.base import DLQ_ATTEMPTS
from tests.chaos.harness import Cenario, Linha, drenar_dlq, esperar_finais, execucoes, fechar, volume

GOOD = 1000
MAX_TENTATIVAS = 3


async def test_poison_message_among_1000_good_ones(
    broker_name: str, url: str, suffix: str, run_log: Path, report
):
    good = volume(broker_name, GOOD)
    async with Cenario(url, suffix) as c:
        worker = await c.worker("--max-tentativas", str(MAX_TENTATIVAS), concurrency=16)
        payloads = [{"i": i} for i in range(good)]
        payloads.insert(good // 2, {"i": -1, "veneno": True})
        sent = await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)
        ids = [e.message_id or "" for e in sent]
        poison = ids[good // 2]
        counts = await esperar_finais(c.orq, ids, timeout=180)
        mortos = await drenar_dlq(c.broker, c.fila, 1, timeout=30)
        alive = worker.proc.poll() is None

    runs = execucoes(run_log)
    linha = Linha(broker_name, "poison message among 1,000 good")
    report(fechar(linha, c.orq, ids, counts, c.started, runs=runs, mortos=mortos))

    assert linha.perdidos == 0
    assert alive, "the worker survives the poison message"
    assert counts == {"ok": good, "dead-lettered": 1}
    assert c.orq.store.job(poison).estado == "dead-lettered"
    assert c.orq.store.job(poison).erro["tipo"] == "ValueError"
    [dead] = mortos
    assert json.loads(dead.body)["message_id"] == poison
    assert dead.reason == "ValueError: poison: this payload crashes the handler every time"
    assert dead.headers[DLQ_ATTEMPTS] == str(MAX_TENTATIVAS)
    assert runs[poison] == MAX_TENTATIVAS, "retried exactly max_tentativas times, then dead-lettered"
