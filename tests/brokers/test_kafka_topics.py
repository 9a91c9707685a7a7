"""What the topics contract suite cannot see on Kafka: the records on ``orq.topicos``, a durable
group's place fixed before subscribe returns, members of one durable name sharing its messages,
and a group in use that cannot be deleted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from orquestrador.brokers import connect
from orquestrador.brokers.kafka import KafkaBroker
from orquestrador.brokers.kafka.names import TOPIC_HEADER, TOPICS_TOPIC, durable_group
from orquestrador.errors import BrokerError, TopicError
from orquestrador.topics import TopicMessage
from tests.conftest import eventually
from tests.contract.test_topics import Inbox, send
from tests.servers import KafkaServer

pytestmark = pytest.mark.kafka


@pytest.fixture
def prefix() -> str:
    return f"k{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def broker(kafka_url: str) -> AsyncIterator[KafkaBroker]:
    b = await connect(kafka_url)
    assert isinstance(b, KafkaBroker)
    yield b
    await b.close()


async def test_a_topic_message_is_a_record_on_orq_topicos_keyed_and_headed_by_its_topic(
    broker: KafkaBroker, kafka_url: str, prefix: str
):
    await send(broker, f"{prefix}.orders.created", {"n": 1})
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_url.removeprefix("kafka://"), group_id=None)
    await reader.start()
    try:
        tps = [TopicPartition(TOPICS_TOPIC, p) for p in await broker.partitions_of(TOPICS_TOPIC)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        mine: list[object] = []

        async def found() -> bool:
            for records in (await reader.getmany(timeout_ms=500)).values():
                mine.extend(r for r in records if r.key == f"{prefix}.orders.created".encode())
            return bool(mine)

        await eventually(found, timeout=20)
    finally:
        await reader.stop()
    [record] = mine
    assert TOPICS_TOPIC not in await broker.queues()  # no job queue
    assert dict(record.headers)[TOPIC_HEADER] == f"{prefix}.orders.created".encode()  # type: ignore[attr-defined]
    assert TopicMessage.decode(record.value).dados == {"n": 1}  # type: ignore[attr-defined]


async def test_a_durable_subscriptions_place_is_kept_from_the_moment_subscribe_returns(
    broker: KafkaBroker, kafka_url: str, prefix: str
):
    """Subscribed and gone at once, before anything arrived: what comes next still waits for it."""
    name = f"d{prefix}"
    stop = await broker.subscribe_topic(f"{prefix}.*", Inbox(), durable=name)
    committed = await broker.committed(durable_group(name), [TopicPartition(TOPICS_TOPIC, p)
                                       for p in await broker.partitions_of(TOPICS_TOPIC)])  # fmt: skip
    assert committed and all(c.offset is not None for c in committed.values())
    await stop()
    await send(broker, f"{prefix}.later", 1)

    inbox = Inbox()
    async with await connect(kafka_url) as back:
        stop = await back.subscribe_topic(f"{prefix}.*", inbox, durable=name)
        await eventually(lambda: inbox.got, timeout=20)
        await stop()
        await back.delete_subscription(name)
    assert inbox.got == [(f"{prefix}.later", 1)]


async def test_members_of_one_durable_name_share_its_messages_each_once(
    broker: KafkaBroker, kafka_url: str, prefix: str
):
    name = f"d{prefix}"
    one, two = Inbox(), Inbox()
    async with await connect(kafka_url) as other:
        stops = [await broker.subscribe_topic(f"{prefix}.>", one, durable=name)]
        stops.append(await other.subscribe_topic(f"{prefix}.>", two, durable=name))
        await asyncio.sleep(1)  # the group settles with two members
        for i in range(24):  # 24 topics: keys spread over the partitions, so over both members
            await send(broker, f"{prefix}.t{i}", i)
        await eventually(lambda: len(one.got) + len(two.got) >= 24, timeout=30)
        await asyncio.sleep(1)
        assert one.got and two.got, "both members got a share"
        assert sorted(d for _, d in one.got + two.got) == list(range(24))  # type: ignore[type-var]
        with pytest.raises(TopicError, match="in use"):
            await broker.delete_subscription(name)
        for stop in stops:
            await stop()
        await broker.delete_subscription(name)


async def test_deleting_an_unknown_durable_subscription_is_quiet(broker: KafkaBroker):
    await broker.delete_subscription(f"never{uuid.uuid4().hex[:8]}")


async def test_live_and_durable_subscriptions_come_back_after_a_kafka_restart(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
):
    """aiokafka reconnects its consumers itself: both subscriptions receive again, the durable
    one from where it was, each message once."""
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        async with await connect(server.url) as broker:
            live, kept = Inbox(), Inbox()
            stops = [await broker.subscribe_topic(f"{prefix}.*", live),
                     await broker.subscribe_topic(f"{prefix}.*", kept, durable=f"d{prefix}")]  # fmt: skip
            await send(broker, f"{prefix}.before", 0)
            await eventually(lambda: live.got and kept.got, timeout=20)

            caplog.set_level(logging.WARNING, "orquestrador.brokers.kafka")
            await asyncio.to_thread(server.stop)
            await eventually(lambda: "receive nothing" in caplog.text, timeout=30)  # said, not silent
            await asyncio.to_thread(server.start)
            for i in range(1, 4):
                await publish_retrying(broker, f"{prefix}.after", i)

            await eventually(lambda: len(live.got) >= 4 and len(kept.got) >= 4, timeout=90)
            await eventually(lambda: "receive again" in caplog.text, timeout=30)
            await asyncio.sleep(1)
            for stop in stops:
                await stop()
        assert [d for _, d in kept.got] == [0, 1, 2, 3]
        assert [d for _, d in live.got] == [0, 1, 2, 3]
    finally:
        server.stop()


async def publish_retrying(broker: KafkaBroker, topic: str, dados: object) -> None:
    """While the client reconnects, publishing raises; a caller that retries gets through."""
    for _ in range(240):
        try:
            return await send(broker, topic, dados)
        except BrokerError:
            await asyncio.sleep(0.25)
    raise AssertionError(f"could not publish on {topic} while Kafka came back")


async def test_a_batch_of_topic_messages_is_pipelined(broker: KafkaBroker, kafka_url: str, prefix: str):
    inbox = Inbox()
    stop = await broker.subscribe_topic(f"{prefix}.>", inbox)
    items = [(f"{prefix}.n{i % 3}", TopicMessage(f"{prefix}.n{i % 3}", i).encode()) for i in range(30)]
    assert await broker.publish_topics(items) == 0
    await eventually(lambda: len(inbox.got) >= 30, timeout=30)
    await stop()
    by_topic = {t: [d for tt, d in inbox.got if tt == t] for t, _ in items}
    assert by_topic[f"{prefix}.n1"] == list(range(1, 30, 3))  # one topic's messages in order

    closed = await connect(kafka_url)
    await closed.close()
    assert await closed.publish_topics(items[:3]) == 3  # counted as failed, never raised
