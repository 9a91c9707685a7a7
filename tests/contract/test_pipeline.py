"""Pipelines on every broker: 100 coletas fan out to executions, chains complete and linked."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from orquestrador import AsyncOrquestrador, PermanentFailure, Pipeline, Worker, WorkerOptions
from orquestrador.brokers import Broker
from orquestrador.errors import PluginError
from orquestrador.plugins import Plugin


def listar(payload: dict[str, Any]) -> dict[str, Any]:
    n = payload["n"]
    return {"itens": [n * 10, n * 10 + 1]}


def processar(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["item"] == 421:
        raise PermanentFailure("item 421 is corrupt")
    return {"dobro": payload["item"] * 2}


async def test_100_coletas_fan_out_into_200_executions(broker: Broker, broker_url: str):
    tag = uuid.uuid4().hex[:8]
    escavador, executor = f"listar_{tag}", f"processar_{tag}"
    pipeline = Pipeline(f"teste_{tag}").regra(
        f"escavador:{escavador}", f"executor:{executor}",
        lambda r: [{"item": i} for i in r["itens"]],
    )  # fmt: skip
    plugins = [
        Plugin("escavador", escavador, listar, "tests"),
        Plugin("executor", executor, processar, "tests"),
    ]
    worker = Worker(broker, plugins, WorkerOptions(concurrency=16))
    task = asyncio.create_task(worker.run())
    orq = AsyncOrquestrador(broker_url, responder_para=f"res_{tag}")
    await orq.start()
    await orq.run_pipeline(pipeline)
    try:
        launched = await orq.iniciar_lote("iniciar_coleta", escavador, [{"n": n} for n in range(100)],
                                          pipeline=pipeline.nome)  # fmt: skip
        chains = [await orq.esperar_cadeia(env.correlation_id, 60) for env in launched]
        jobs = orq.store.jobs()
        broken = next(e for e in launched if e.payload["n"] == 42)
        trace = orq.store.trace(broken.correlation_id)
    finally:
        worker.stop()
        await task
        await orq.close()
        for queue in (f"escavador_{escavador}", f"executor_{executor}", pipeline.fila, f"res_{tag}"):
            await broker.delete(queue)

    assert sum(sum(c.values()) for c in chains) == 300, "100 coletas + 200 executions"
    assert sum(c == {"ok": 3} for c in chains) == 99
    assert next(c for env, c in zip(launched, chains, strict=True) if env.payload["n"] == 42) == {
        "ok": 2, "dead-lettered": 1,
    }  # fmt: skip
    by_id = {j["message_id"]: j for j in jobs}
    executions = [j for j in jobs if j["tipo_evento"] == "iniciar_execucao"]
    assert len(executions) == 200
    for job in executions:
        parents = [p for p in jobs if p["result_id"] == job["causation_id"]]
        assert len(parents) == 1
        parent = parents[0]
        assert parent["tipo_evento"] == "iniciar_coleta"
        assert parent["correlation_id"] == job["correlation_id"]
        assert by_id[job["message_id"]]["estado"] in ("ok", "dead-lettered")
    # Where the broken chain stopped: its failing execution, answered with status erro.
    stops = [r for r in trace if r["evento"] == "resultado_execucao" and r["status"] == "erro"]
    assert len(stops) == 1
    assert stops[0]["detalhe"]["mensagem"] == "item 421 is corrupt"
    events = [r["evento"] for r in trace if r["tipo"] == "envelope"]
    assert events.count("iniciar_execucao") == 2 and events[0] == "iniciar_coleta"


def test_rules_name_their_steps_clearly():
    with pytest.raises(PluginError, match="escavador:NAME"):
        Pipeline(f"p_{uuid.uuid4().hex[:6]}").regra("sitemap", "escavador:http")
