"""Cluster suite: a three-node JetStream cluster loses the leader of the job stream mid-batch.

Streams are created with three replicas (``?replicas=3``); the server that leads the job queue's
stream is SIGKILLed while a worker process is half-way through 2,000 jobs. The other two elect a
new leader, publishes are retried across the change with their ``Nats-Msg-Id`` (so none doubles),
and every job must get its result. Duplicated result deliveries, absorbed by the store, are
reported in the chaos summary.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats.errors
import pytest

from orquestrador.brokers.nats import NatsBroker
from orquestrador.brokers.nats.names import stream_name
from tests.chaos.harness import Cenario, Linha, esperar_finais, execucoes, fechar
from tests.servers.nats_cluster import NatsCluster

pytestmark = [pytest.mark.cluster, pytest.mark.nats]

JOBS = 2000


@pytest.fixture
def cluster(tmp_path: Path) -> object:
    started = NatsCluster(tmp_path / "nats-cluster")
    started.start()
    yield started
    started.stop()


async def stream_leader(broker: NatsBroker, queue: str) -> str:
    info = await broker.js.stream_info(stream_name(queue))
    assert info.cluster is not None and info.cluster.leader, "a replicated stream has a leader"
    assert len(info.cluster.replicas or []) == 2, "three replicas: the leader and two followers"
    return info.cluster.leader


async def test_stream_leader_killed_mid_batch(cluster: NatsCluster, suffix: str, run_log: Path, report):
    url = cluster.url + "?replicas=3"
    async with Cenario(url, suffix) as c:
        await c.worker(concurrency=16, visibility_timeout=5)
        broker = c.broker
        assert isinstance(broker, NatsBroker) and broker.replicas == 3
        payloads = [{"i": i, "segundos": 0.005} for i in range(JOBS)]
        ids = [e.message_id or "" for e in await c.orq.iniciar_lote("iniciar_coleta", c.alvo, payloads)]
        leader = await stream_leader(broker, c.fila)
        while c.orq.store.count_by_state(ids).get("ok", 0) < JOBS // 4:
            await asyncio.sleep(0.05)
        done_before = c.orq.store.count_by_state(ids).get("ok", 0)
        cluster.node(leader).kill()
        counts = await esperar_finais(c.orq, ids, timeout=240)
        new_leader = await stream_leader_after(broker, c.fila, leader)
        dead = (await broker.stats(c.fila)).dead_letters

    nota = f"{JOBS - done_before} jobs not yet done; leader {leader} -> {new_leader}"
    linha = Linha("nats", "stream leader SIGKILLed (3-node cluster, R3)", nota=nota)
    report(fechar(linha, c.orq, ids, counts, c.started, runs=execucoes(run_log)))
    linha.mortos = dead

    assert linha.perdidos == 0, counts
    assert counts == {"ok": JOBS}, "one row per job, every one ok"
    assert dead == 0
    assert done_before < JOBS, "the leader died while jobs were still queued"


async def stream_leader_after(broker: NatsBroker, queue: str, old: str) -> str:
    """The leader elected after ``old`` died (the stream answers on the surviving servers)."""
    for _ in range(200):
        try:
            info = await asyncio.wait_for(broker.js.stream_info(stream_name(queue)), 3)
        except (TimeoutError, nats.errors.Error):  # this client may still be failing over
            await asyncio.sleep(0.1)
            continue
        if info.cluster is not None and info.cluster.leader and info.cluster.leader != old:
            return info.cluster.leader
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new leader replaced {old}")
