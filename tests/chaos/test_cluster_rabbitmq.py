"""Cluster suite: three RabbitMQ nodes, quorum queues, and the queue's leader SIGKILLed mid-batch.

The URL lists every node and asks for quorum queues (``?queue_type=quorum``): each queue is a
Raft group on the three nodes, and the attempt number is RabbitMQ's own ``x-delivery-count``.
While a worker process serves 2,000 jobs, the node leading the job queue is killed; the other
two elect a new leader, clients reconnect to a surviving node, and every job must get its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from orquestrador.brokers.rabbitmq import RabbitMQBroker
from tests.chaos.harness import Cenario, Linha, esperar_finais, execucoes, fechar
from tests.servers.rabbitmq_cluster import RabbitCluster

pytestmark = [pytest.mark.cluster, pytest.mark.rabbitmq]

JOBS = 2000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RabbitCluster]:
    started = RabbitCluster(tmp_path / "rabbit-cluster")
    started.start()
    yield started
    started.stop()


async def test_quorum_queue_leader_killed_mid_batch(
    cluster: RabbitCluster, suffix: str, run_log: Path, report
):
    url = cluster.url + "?queue_type=quorum"
    async with Cenario(url, suffix) as c:
        assert isinstance(c.broker, RabbitMQBroker) and c.broker.capabilities.delivery_count
        await c.worker(concurrency=16, visibility_timeout=10)
        payloads = [{"i": i, "segundos": 0.005} for i in range(JOBS)]
        ids = [e.message_id or "" for e in await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)]
        leader = await asyncio.to_thread(cluster.leader, c.fila)
        while c.orq.store.count_by_state(ids).get("ok", 0) < JOBS // 4:
            await asyncio.sleep(0.05)
        done_before = c.orq.store.count_by_state(ids).get("ok", 0)
        await asyncio.to_thread(leader.kill)
        counts = await esperar_finais(c.orq, ids, timeout=300)
        new_leader = await asyncio.to_thread(cluster.leader, c.fila)
        dead = (await c.broker.stats(c.fila)).dead_letters

    nota = f"{JOBS - done_before} jobs not yet done; leader {leader.node} -> {new_leader.node}"
    linha = Linha("rabbitmq", "quorum-queue leader SIGKILLed (3-node cluster)", nota=nota)
    report(fechar(linha, c.orq, ids, counts, c.started, runs=execucoes(run_log)))
    linha.mortos = dead

    assert linha.perdidos == 0, counts
    assert counts == {"ok": JOBS}, "one row per job, every one ok"
    assert dead == 0
    assert new_leader is not leader
    assert done_before < JOBS, "the leader died while jobs were still queued"
