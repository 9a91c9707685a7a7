"""Cluster suite: a Redis Cluster (three masters, one replica each) loses the master of the job
queue's slot mid-batch.

Every key of the job queue shares its hash tag, so one master serves the whole queue; it is
SIGKILLed while a worker process is half-way through 2,000 jobs. Its replica is promoted (the
nodes run with ``cluster-node-timeout`` 2 s), the clients follow the new slot map, and every job
must get its result. Publishes waited for the replica (``WAIT 1``), so no job published before
the kill is lost; acks that had not reached the replica come back as redeliveries, absorbed by
the store and reported in the chaos summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orquestrador.brokers import connect
from orquestrador.brokers.redis import RedisBroker
from orquestrador.errors import BrokerUnavailable
from tests.chaos.cluster import JOBS, after_the_kill, launch_and_wait_for_a_quarter, report_and_check, running
from tests.chaos.harness import Cenario, Linha
from tests.servers.redis_cluster import RedisCluster

pytestmark = [pytest.mark.cluster, pytest.mark.redis]

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    with running(RedisCluster(tmp_path / "redis-cluster")) as started:
        yield started


async def test_master_of_the_queue_killed_mid_batch(
    cluster: RedisCluster, suffix: str, run_log: Path, report
):
    async with Cenario(cluster.url, suffix) as c:
        await c.worker(concurrency=16, visibility_timeout=5)
        broker = c.broker
        assert isinstance(broker, RedisBroker) and broker.clustered and broker.replication.replicas == 1
        ids, done_before = await launch_and_wait_for_a_quarter(c)
        master = cluster.master_of(broker.keys.stream(c.fila))
        master.kill()
        counts, dead = await after_the_kill(c, ids)
        promoted = cluster.master_of(broker.keys.stream(c.fila))

    nota = f"{JOBS - done_before} jobs not yet done; master :{master.port} -> replica :{promoted.port}"
    linha = Linha("redis", "master of the queue's slot SIGKILLed (3 masters + 3 replicas)", nota=nota)
    report_and_check(report, c, linha, ids, counts, dead, done_before, run_log)
    assert promoted is not master and promoted.running, "its replica took the slot over"


async def test_published_jobs_survive_their_master_dying_at_once(cluster: RedisCluster, queue_name: str):
    """``publish`` returned after ``WAIT 1``: the replica holds every job when the master dies
    right after, and the consumer reads them all from it once promoted; a publish sent while the
    master is dead waits for the promotion instead of failing. The queue is chosen on the
    client's default node (its first master), so that node's death is ridden out too."""
    broker = await connect(cluster.url)
    assert isinstance(broker, RedisBroker)
    try:
        client = broker.redis
        resolver = client.get_default_node()
        names = (f"{queue_name}_{i}" for i in range(10_000))
        queue = next(n for n in names if client.get_node_from_key(broker.keys.stream(n)) == resolver)
        await broker.publish_many(queue, [(f"job{i}".encode(), f"m{i}") for i in range(500)])
        next(n for n in cluster.nodes if n.port == resolver.port).kill()
        await broker.publish(queue, b"during", message_id="m-during")  # waits for the promotion

        consumer = await broker.consume(queue, visibility_timeout=30)
        bodies: set[bytes] = set()
        deadline = time.monotonic() + 90
        while len(bodies) < 501 and time.monotonic() < deadline:
            try:
                batch = await consumer.fetch(100, timeout=1)
                await broker.ack_many(batch)
            except BrokerUnavailable:  # while the replica is promoted, as a worker would
                await asyncio.sleep(0.5)
                continue
            bodies.update(d.body for d in batch)
        await consumer.close()
        assert bodies == {f"job{i}".encode() for i in range(500)} | {b"during"}
    finally:
        await broker.close()
