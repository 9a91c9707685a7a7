"""Cluster suite: three KRaft nodes, topics with three replicas, and a partition leader SIGKILLed.

The URL lists every node; the adapter creates each topic with three replicas (as many as the
cluster has, up to three) and the cluster needs two in sync to take a write. While a worker
process serves 2,000 jobs, the node leading the job topic's first partition is killed: the
others take over its partitions (and the group coordinator, if it was there), the worker's
uncommitted jobs are delivered again, and every job must get its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from orquestrador.brokers.kafka import KafkaBroker
from tests.chaos.cluster import JOBS, after_the_kill, launch_and_wait_for_a_quarter, report_and_check, running
from tests.chaos.harness import Cenario, Linha
from tests.servers.kafka_cluster import KafkaCluster

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    with running(KafkaCluster(tmp_path / "kafka-cluster")) as started:
        yield started


async def leaders(cluster: KafkaCluster, topic: str) -> dict[int, int]:
    """Partition -> the node id leading it, asked of any node still running."""
    bootstrap = [n.bootstrap for n in cluster.nodes if n.running]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: p["leader"] for p in described[0]["partitions"]}


async def test_partition_leader_killed_mid_batch(cluster: KafkaCluster, suffix: str, run_log: Path, report):
    async with Cenario(cluster.url, suffix) as c:
        assert isinstance(c.broker, KafkaBroker)
        await c.worker(concurrency=16, visibility_timeout=10)
        ids, done_before = await launch_and_wait_for_a_quarter(c)
        assert c.broker.replication == 3, "a three-node cluster keeps three copies"
        before = await leaders(cluster, c.fila)
        victim = cluster.node(before[0])
        await asyncio.to_thread(victim.kill)
        counts, dead = await after_the_kill(c, ids)
        after = await leaders(cluster, c.fila)

    moved = sum(1 for leader in before.values() if leader == victim.node_id)
    led = f"node {victim.node_id} led {moved} of {len(before)} partitions"
    nota = f"{JOBS - done_before} jobs not yet done; {led}"
    linha = Linha("kafka", "partition leader SIGKILLed (3-node KRaft, 3 replicas)", nota=nota)
    report_and_check(report, c, linha, ids, counts, dead, done_before, run_log)
    assert victim.node_id not in after.values(), "the survivors lead every partition"
