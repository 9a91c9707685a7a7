"""The suite's own Kafka (tests/servers/kafka_node.py) is a real broker: records produced with
``aiokafka`` come back, in order, to a consumer group that commits its offsets, and a second
member of the group resumes after the commit instead of reading them again."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka


def bootstrap(kafka_url: str) -> str:
    return kafka_url.removeprefix("kafka://")


async def consume(servers: str, topic: str, group: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        got: list[tuple[bytes, bytes]] = []
        while len(got) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no record within 10 s after {len(got)} of {count}"
            for records in batches.values():
                got += [(r.key or b"", r.value or b"") for r in records]
        await consumer.commit()
        return got
    finally:
        await consumer.stop()


async def test_produce_and_consume_through_a_consumer_group(kafka_url: str) -> None:
    servers, topic, group = bootstrap(kafka_url), f"t_{uuid.uuid4().hex[:12]}", f"g_{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"job {i}".encode(), key=b"chain-1")
    finally:
        await producer.stop()

    got = await consume(servers, topic, group, 5)
    assert got == [(b"chain-1", f"job {i}".encode()) for i in range(5)]

    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"job 5", key=b"chain-1")
    finally:
        await producer.stop()
    # The group committed offset 5: its next member starts at the new record, not at the first.
    assert await consume(servers, topic, group, 1) == [(b"chain-1", b"job 5")]

    admin_view = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    await admin_view.start()
    try:
        assert await admin_view.committed(TopicPartition(topic, 0)) == 6
    finally:
        await admin_view.stop()
