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
from tests.chaos.cluster import JOBS, after_the_kill, launch_and_wait_for_a_quarter, report_and_check, running
from tests.chaos.harness import Cenario, Linha
from tests.servers.rabbitmq_cluster import RabbitCluster

pytestmark = [pytest.mark.cluster, pytest.mark.rabbitmq]

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RabbitCluster]:
    with running(RabbitCluster(tmp_path / "rabbit-cluster")) as started:
        yield started


async def test_quorum_queue_leader_killed_mid_batch(
    cluster: RabbitCluster, suffix: str, run_log: Path, report
):
    url = cluster.url + "?queue_type=quorum"
    async with Cenario(url, suffix) as c:
        assert isinstance(c.broker, RabbitMQBroker) and c.broker.capabilities.delivery_count
        await c.worker(concurrency=16, visibility_timeout=10)
        ids, done_before = await launch_and_wait_for_a_quarter(c)
        leader = await asyncio.to_thread(cluster.leader, c.fila)
        await asyncio.to_thread(leader.kill)
        counts, dead = await after_the_kill(c, ids)
        new_leader = await asyncio.to_thread(cluster.leader, c.fila)

    nota = f"{JOBS - done_before} jobs not yet done; leader {leader.node} -> {new_leader.node}"
    linha = Linha("rabbitmq", "quorum-queue leader SIGKILLed (3-node cluster)", nota=nota)
    report_and_check(report, c, linha, ids, counts, dead, done_before, run_log)
    assert new_leader is not leader
