"""Cluster suite: a three-node JetStream cluster loses the leader of the job stream mid-batch.

Streams are created with three replicas (``?replicas=3``); the server that leads the job queue's
stream is SIGKILLed while a worker process is half-way through 2,000 jobs. The other two elect a
new leader, publishes are retried across the change with their ``Nats-Msg-Id`` (so none doubles),
and every job must get its result. Duplicated result deliveries, absorbed by the store, are
reported in the chaos summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest

from orquestrador.brokers.nats import NatsBroker
from orquestrador.brokers.nats.names import stream_name
from tests.chaos.cluster import JOBS, after_the_kill, launch_and_wait_for_a_quarter, report_and_check, running
from tests.chaos.harness import Cenario, Linha
from tests.servers.nats_cluster import NatsCluster

pytestmark = [pytest.mark.cluster, pytest.mark.nats]

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with running(NatsCluster(tmp_path / "nats-cluster")) as started:
        yield started


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
        ids, done_before = await launch_and_wait_for_a_quarter(c)
        leader = await stream_leader(broker, c.fila)
        cluster.node(leader).kill()
        counts, dead = await after_the_kill(c, ids)
        new_leader = await stream_leader_after(broker, c.fila, leader)

    nota = f"{JOBS - done_before} jobs not yet done; leader {leader} -> {new_leader}"
    linha = Linha("nats", "stream leader SIGKILLed (3-node cluster, R3)", nota=nota)
    report_and_check(report, c, linha, ids, counts, dead, done_before, run_log)


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
