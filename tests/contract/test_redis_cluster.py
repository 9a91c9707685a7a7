"""The broker contract on a Redis Cluster (three masters, one replica each), and what a cluster
adds: every key of a queue and of its dead letters in one slot, publishes confirmed by a replica.

The contract tests are those of :mod:`tests.contract.test_broker_contract`, run here with the
session's cluster URL (``redis://h1:p1,...?cluster=true``) as the broker.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection

from orquestrador.brokers import connect
from orquestrador.brokers.redis import RedisBroker
from orquestrador.brokers.redis.cluster import cluster_client
from orquestrador.errors import BrokerUnavailable, ConfigError
from tests.certs import TlsFiles
from tests.contract.test_broker_contract import *  # noqa: F403 - the contract, on the cluster

pytestmark = [pytest.mark.cluster, pytest.mark.redis]


@pytest.fixture
def broker_url(redis_cluster_url: str) -> str:
    return redis_cluster_url


async def test_every_key_of_a_queue_and_its_dead_letters_shares_one_slot(broker, queue: str):
    assert isinstance(broker, RedisBroker) and broker.clustered
    await broker.publish(queue, b"a", message_id="m-1")
    await broker.publish(queue, b"b")
    consumer = await broker.consume(queue, visibility_timeout=5)
    first, second = await consumer.fetch(2, timeout=5)
    await first.nack(delay=60)  # a delayed copy: sorted set + hash
    await second.dead_letter("boom")  # the dead letter written and the original acked in one script
    client: aioredis.RedisCluster = broker.redis
    keys = [k.decode() async for k in client.scan_iter(match=f"orq:*{{{queue}}}*")]
    assert len(keys) >= 5, keys  # stream, DLQ stream, delayed set and hash, dedup mark
    assert {client.keyslot(k) for k in keys} == {client.keyslot(queue)}
    assert (await broker.stats(queue)).dead_letters == 1
    await consumer.close()


async def test_a_publish_returns_once_a_replica_has_it(broker, queue: str):
    assert broker.replication.replicas == 1, "cluster URLs wait for one replica by default"
    client: aioredis.RedisCluster = broker.redis
    key = broker.keys.stream(queue)
    replica = client.get_node_from_key(key, replica=True)
    assert replica is not None and replica != client.get_node_from_key(key)
    reader = aioredis.Redis(host=replica.host, port=replica.port)
    try:
        await reader.execute_command("READONLY")
        for i in range(20):
            await broker.publish(queue, b"job", message_id=f"m-{i}")
            assert await reader.xlen(key) == i + 1, "the replica had it before publish returned"
        await broker.publish_many(queue, [(b"x", None)] * 300)
        assert await reader.xlen(key) == 320
    finally:
        await reader.aclose()


async def test_asking_for_more_replicas_than_exist_warns_and_still_publishes(
    redis_cluster_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
):
    broker = await connect(redis_cluster_url + "&wait_replicas=2&wait_timeout=0.2")
    try:
        with caplog.at_level(logging.WARNING, logger="orquestrador.brokers.redis.cluster"):
            for _ in range(5):
                await broker.publish(queue_name, b"job")
        assert (await broker.stats(queue_name)).depth == 5
        warned = [r.getMessage() for r in caplog.records if "replicas" in r.getMessage()]
        assert len(warned) == 1, "warned once, then not waited for while the master lacks them"
        assert "confirmed by 1 of 2 replicas" in warned[0]
    finally:
        await broker.delete(queue_name)
        await broker.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:1,127.0.0.1:2", "add ?cluster=true"),
        ("redis://127.0.0.1:1?cluster=maybe", "must be true or false"),
        ("redis://127.0.0.1:1,127.0.0.1:2?cluster=true&wait_replicas=x", "wait_replicas"),
    ],
)
def test_cluster_url_mistakes_are_refused_with_what_to_fix(url: str, says: str):
    with pytest.raises(ConfigError, match=re.escape(says)):
        RedisBroker(url)


async def test_a_cluster_has_only_database_zero(redis_cluster_url: str):
    broker = RedisBroker(redis_cluster_url.replace("?", "/2?", 1))
    with pytest.raises(ConfigError, match="only database 0"):
        await broker.connect()


async def test_an_unreachable_cluster_fails_at_once_without_its_password():
    url = "redis://:s3cret@127.0.0.1:1,127.0.0.1:2?cluster=true"
    broker = RedisBroker(url)
    assert "s3cret" not in repr(broker)
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis") as caught:
        await broker.connect()
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


async def test_rediss_makes_every_node_connection_tls_with_the_url_ca(tls_files: TlsFiles):
    """``rediss://h1,h2?cluster=true&tls_ca=...``: the cluster client's connections, to the
    seeds and to the nodes found from them, are TLS with the CA given. (No TLS cluster is
    started here: one with a TLS cluster bus did not form within this suite's set-up.)"""
    url = f"rediss://127.0.0.1:1,127.0.0.1:2?cluster=true&tls_ca={quote(str(tls_files.ca))}"
    broker = RedisBroker(url)
    with pytest.raises(BrokerUnavailable):
        await broker.connect()  # nothing listens; what it tried is what matters
    client = cluster_client(broker._client_url, ssl_ca_certs=str(tls_files.ca))
    kwargs = client.get_connection_kwargs()
    assert kwargs["connection_class"] is SSLConnection and kwargs["ssl_ca_certs"] == str(tls_files.ca)
    assert [(n.host, n.port) for n in client.startup_nodes] == [("127.0.0.1", 1), ("127.0.0.1", 2)]
