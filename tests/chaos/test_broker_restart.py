"""Chaos: the broker restarts in the middle of a batch served by a real worker process.

Each broker is a throwaway server of tests/servers.py whose settings keep data across a restart
(JetStream file storage; Redis with appendonly, BullMQ's too; a RabbitMQ node of its own with
durable queues and persistent messages; a one-node KRaft Kafka, whose log is on disk); the shared
servers are never touched. Jobs are published before the restart and while the server is coming
back; every one must get its result.

Only brokers whose test server keeps its data across a restart take part: moto, the tests' SQS,
keeps queues in memory and comes back empty, which would say nothing of SQS itself (a managed
service that is not restarted by its users; its durability is AWS's).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orquestrador.errors import BrokerError
from tests.chaos.harness import Cenario, Contador, Linha, esperar_finais, execucoes, fechar
from tests.contract.test_worker_processes import REAL_BROKERS
from tests.servers import KafkaServer, NatsServer, RabbitServer, RedisServer

BEFORE, DURING = 300, 30
# Test servers that survive a restart (see above).
PERSISTENT = ("nats", "redis", "rabbitmq", "bullmq", "kafka")


@pytest.fixture(params=[p for p in REAL_BROKERS if p.values[0] in PERSISTENT])
def broker_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(
    broker_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> NatsServer | RedisServer | RabbitServer | KafkaServer:
    if broker_name == "rabbitmq":
        return request.getfixturevalue("rabbit_server")
    kinds = {"nats": NatsServer, "redis": RedisServer, "bullmq": RedisServer, "kafka": KafkaServer}
    kind = kinds[broker_name]
    started = kind(tmp_path / broker_name)
    started.start()
    request.addfinalizer(started.stop)
    return started


async def publish_retrying(orq: Contador, alvo: str, i: int) -> str:
    """While the client reconnects, publishing raises; a caller that retries gets through."""
    for _ in range(240):
        try:
            return (await orq.iniciar("iniciar_coleta", alvo, {"i": i, "segundos": 0.02})).message_id or ""
        except BrokerError:
            await asyncio.sleep(0.25)
    raise AssertionError("could not publish while the broker came back")


async def test_broker_restart_mid_batch(broker_name: str, server, suffix: str, run_log: Path, report):
    url = server.url.replace("redis://", "bullmq://", 1) if broker_name == "bullmq" else server.url
    async with Cenario(url, suffix) as c:
        worker = await c.worker(concurrency=8, visibility_timeout=5)
        payloads = [{"i": i, "segundos": 0.05} for i in range(BEFORE)]
        ids = [e.message_id or "" for e in await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)]
        while c.orq.store.count_by_state(ids).get("ok", 0) < BEFORE // 5:
            await asyncio.sleep(0.05)
        in_flight = BEFORE - c.orq.store.count_by_state(ids).get("ok", 0)
        restarting = asyncio.create_task(asyncio.to_thread(server.restart))
        ids += [await publish_retrying(c.orq, c.alvo, BEFORE + i) for i in range(DURING)]
        await restarting
        counts = await esperar_finais(c.orq, ids, timeout=240)
        alive = worker.proc.poll() is None
        dead = (await c.broker.stats(c.fila)).dead_letters

    runs = execucoes(run_log)
    note = "second RabbitMQ node" if broker_name == "rabbitmq" else "throwaway server"
    linha = Linha(broker_name, "broker restart mid-batch", nota=f"{note}, {in_flight} jobs not yet done")
    report(fechar(linha, c.orq, ids, counts, c.started, runs=runs))
    linha.mortos = dead

    assert linha.perdidos == 0, counts
    assert counts == {"ok": BEFORE + DURING}
    assert dead == 0
    assert alive, "the worker process rode out the restart"
