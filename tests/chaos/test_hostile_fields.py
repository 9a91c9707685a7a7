"""Chaos: hand-crafted broker-level fields (headers, ids, attempt counters, AMQP properties) among
1,000 good jobs, and poison results among 1,000 good ones on the results queue."""

from __future__ import annotations

import json

from orquestrador import envelope as wire
from orquestrador.brokers.base import DLQ_ERROR_TYPE
from tests.chaos.harness import Cenario, Linha, drenar_dlq, esperar_finais, fechar, volume
from tests.hostile_fields import inject

GOOD = 1000


async def test_hostile_broker_fields_among_1000_good_jobs(broker_name: str, url: str, suffix: str, report):
    good = volume(broker_name, GOOD)
    async with Cenario(url, suffix) as c:
        worker = await c.worker(concurrency=16)
        sent = await c.orq.iniciar_lote("iniciar_coleta", c.alvo, [{"i": i} for i in range(good // 2)])
        hostile = f"hostil-{suffix}"
        bad = await inject(broker_name, url, c.fila, hostile)  # in the middle of the backlog
        sent += await c.orq.iniciar_lote("iniciar_coleta", c.alvo, [{"i": i} for i in range(good // 2, good)])
        ids = [e.message_id or "" for e in sent]
        counts = await esperar_finais(c.orq, ids, timeout=180)
        mortos = await drenar_dlq(c.broker, c.fila, bad, timeout=60)
        alive = worker.proc.poll() is None

    linha = Linha(broker_name, "hostile broker fields among 1,000 good")
    report(fechar(linha, c.orq, ids, counts, c.started, mortos=mortos, enviados=len(ids) + bad))

    assert linha.perdidos == 0
    assert alive, "the worker survives every hostile delivery"
    assert counts == {"ok": good}
    assert len(mortos) == bad, [m.reason for m in mortos]
    for morto in mortos:
        assert morto.reason.startswith("unreadable broker fields: "), morto.reason
        if morto.body.startswith(b"{"):
            assert json.loads(morto.body)["correlation_id"] == hostile


def poison_results(correlation_id: str) -> list[bytes]:
    """Well-formed results the store cannot record, for jobs nobody launched."""

    def result(**extras: object) -> bytes:
        env = wire.Envelope(
            correlation_id=correlation_id, tipo_evento="resultado_coleta", payload={}, timestamp=wire.now(),
            message_id=wire.new_id(), causation_id=wire.new_id(), alvo="veneno", status="ok", **extras,
        )  # fmt: skip
        return wire.encode(env)

    return [
        result(worker={"um": "objeto"}),  # SQLite cannot bind it
        result(filhos=[{"message_id": wire.new_id(), "timestamp": "ontem"}]),  # no such date
        result(tentativa=2**70),  # too large for an SQLite integer
    ]


async def test_poison_results_among_1000_good_ones(broker_name: str, url: str, suffix: str, report):
    good = volume(broker_name, GOOD)
    async with Cenario(url, suffix) as c:
        worker = await c.worker(concurrency=16)
        sent = await c.orq.iniciar_lote("iniciar_coleta", c.alvo, [{"i": i} for i in range(good // 2)])
        poison = poison_results(f"veneno-{suffix}")
        for body in poison:  # among the results the worker is publishing
            await c.broker.publish(c.orq.responder_para, body)
        sent += await c.orq.iniciar_lote("iniciar_coleta", c.alvo, [{"i": i} for i in range(good // 2, good)])
        ids = [e.message_id or "" for e in sent]
        counts = await esperar_finais(c.orq, ids, timeout=180)
        mortos = await drenar_dlq(c.broker, c.orq.responder_para, len(poison), timeout=60)
        collecting = not c.orq._tasks[0].done()
        alive = worker.proc.poll() is None

    linha = Linha(broker_name, "poison results among 1,000 good")
    report(fechar(linha, c.orq, ids, counts, c.started, mortos=mortos, enviados=len(ids) + len(poison)))

    assert linha.perdidos == 0, "every later result is recorded"
    assert collecting and alive, "the collector and the worker are alive"
    assert counts == {"ok": good}
    assert sorted(m.body for m in mortos) == sorted(poison)
    assert all(m.reason.startswith("cannot be recorded in the store: ") for m in mortos)
    assert all(m.headers[DLQ_ERROR_TYPE] == "StoreError" for m in mortos)
