"""What the contract suite cannot see: how the RabbitMQ adapter uses queues, headers and channels.

Runs against the real RabbitMQ (``ORQ_TEST_RABBITMQ_URL``, default 127.0.0.1:5672); every test
deletes what it created, because the server is shared. Plain pika (as in the interface note)
looks at the queues behind the adapter's back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from orquestrador.brokers import connect, create_broker
from orquestrador.brokers.base import dlq_of
from orquestrador.brokers.rabbitmq import ATTEMPTS_HEADER, REGISTRY, RabbitMQBroker, bucket_name
from orquestrador.errors import BrokerError, BrokerUnavailable
from tests.conftest import broker_url_for, eventually

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def amqp_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for("rabbitmq", request)


@pytest.fixture
def raw(amqp_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A plain pika channel, to look at the queues behind the adapter's back."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield connection.channel()
    connection.close()


def exists(channel: pika.adapters.blocking_connection.BlockingChannel, name: str) -> bool:
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    return True


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[RabbitMQBroker]:
    b = RabbitMQBroker(amqp_url)
    await b.connect()
    yield b
    await b.close()


@pytest.fixture
async def queue(broker: RabbitMQBroker) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    await broker.declare(name)
    yield name
    await broker.delete(name)


async def test_a_queue_declared_by_hand_as_in_the_interface_note_is_used_with_one_warning(
    broker: RabbitMQBroker, amqp_url: str, caplog: pytest.LogCaptureFixture
):
    name = f"escavador_t{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue=name)  # non-durable, exactly as in the note
        mensagem = {
            "correlation_id": "123e4567-e89b-12d3-a456-426614174000",
            "tipo_evento": "iniciar_coleta",
            "payload": {"param": "valor"},
            "timestamp": "2025-10-14T12:00:00Z",
        }
        channel.basic_publish(exchange="", routing_key=name, body=json.dumps(mensagem))

        with caplog.at_level(logging.WARNING, logger="orquestrador.brokers.rabbitmq"):
            await broker.declare(name)
            await broker.publish(name, b"ours")
            await broker.declare(name)
            stats = await broker.stats(name)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert name in warnings[0].getMessage() and "using it as it is" in warnings[0].getMessage()
        assert (stats.depth, stats.dead_letters) == (2, 0)

        consumer = await broker.consume(name, visibility_timeout=5.0)
        got = await consumer.fetch(10, timeout=2)
        assert [json.loads(got[0].body)["tipo_evento"], got[1].body] == ["iniciar_coleta", b"ours"]
        assert [d.attempt for d in got] == [1, 1]
        for delivery in got:
            await delivery.ack()
        await consumer.close()
        assert not channel.queue_declare(name, passive=True).method.message_count
    finally:
        await broker.delete(name)
        connection.close()


KILLED_WORKER = """
import asyncio, sys
from orquestrador.brokers.rabbitmq import RabbitMQBroker

async def main():
    broker = RabbitMQBroker(sys.argv[1])
    await broker.connect()
    consumer = await broker.consume(sys.argv[2], visibility_timeout=60.0)
    batch = []
    while not batch:
        batch = await consumer.fetch(1, timeout=1.0)
    print("got", batch[0].body.decode(), batch[0].attempt, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_sigkilled_consumers_job_goes_to_another_consumer_with_the_next_attempt(
    broker: RabbitMQBroker, queue: str, amqp_url: str
):
    await broker.publish(queue, b"job-1", message_id="m-1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, amqp_url, queue],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=20)  # type: ignore[union-attr]
        assert line.split() == ["got", "job-1", "1"]
        assert (await broker.stats(queue)).depth == 0, "held by the worker, not waiting"
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)

        survivor = await broker.consume(queue, visibility_timeout=5.0)
        [delivery] = await eventually(lambda: survivor.fetch(1, timeout=0.3), timeout=10)
        assert (delivery.body, delivery.attempt, delivery.message_id) == (b"job-1", 2, "m-1")
        assert ATTEMPTS_HEADER not in delivery.headers
        await delivery.ack()
        await survivor.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stats = await broker.stats(queue)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_every_redelivery_counts_even_when_consumers_keep_dying(broker: RabbitMQBroker, queue: str):
    await broker.publish(queue, b"poison")
    for expected in (1, 2, 3, 4):
        consumer = await broker.consume(queue, visibility_timeout=30.0)
        [delivery] = await eventually(lambda c=consumer: c.fetch(1, timeout=0.3), timeout=10)
        assert delivery.attempt == expected
        await consumer.close()  # like a crash: the channel closes with the message unacked
        with pytest.raises(BrokerError, match="RabbitMQ has it back"):
            await delivery.ack()
    assert (await broker.stats(queue)).depth == 1


async def test_delayed_nack_is_hidden_until_due_and_carries_the_attempt(
    broker: RabbitMQBroker, queue: str, raw: pika.adapters.blocking_connection.BlockingChannel
):
    await broker.publish(queue, b"later", message_id="mid-1", headers={"k": "v"})
    consumer = await broker.consume(queue, visibility_timeout=10.0)
    [first] = await consumer.fetch(1, timeout=2)
    started = time.monotonic()
    await first.nack(delay=1.0)

    bucket = bucket_name(queue, 1.0)
    assert raw.queue_declare(bucket, passive=True).method.message_count == 1
    assert (await broker.stats(queue)).depth == 0, "the original is acked once the copy is confirmed"
    assert await consumer.fetch(1, timeout=0.5) == []

    [second] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert time.monotonic() - started >= 0.95
    assert (second.body, second.attempt) == (b"later", 2)
    assert (second.message_id, second.headers) == ("mid-1", {"k": "v"})

    await second.nack(delay=0.2)
    [third] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert third.attempt == 3, "attempts carried by the copy add up"
    await third.nack()  # no delay: redelivered at once
    [fourth] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert fourth.attempt == 4
    await fourth.ack()
    await consumer.close()

    names = await broker.queues()
    assert queue in names and dlq_of(queue) in names
    assert not any(".retry." in n for n in names) and REGISTRY not in names
    await broker.delete(queue)
    assert not exists(raw, bucket)


async def test_publish_many_pipelines_the_confirms(broker: RabbitMQBroker, queue: str):
    n = 2000
    started = time.monotonic()
    assert await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(n))) == n
    elapsed = time.monotonic() - started
    assert (await broker.stats(queue)).depth == n
    # One blocking confirm per message manages ~1,400/s here; pipelined is several times that.
    assert elapsed < 5, f"{n} confirmed publishes took {elapsed:.2f}s"
    assert await broker.purge(queue) == n


async def test_unreachable_rabbitmq_fails_in_one_line_without_the_password():
    url = "amqp://guest:s3cret-pw@127.0.0.1:1/"
    broker = create_broker(url)
    assert isinstance(broker, RabbitMQBroker)
    assert "s3cret-pw" not in repr(broker)
    with pytest.raises(BrokerUnavailable) as info:
        await broker.connect()
    message = str(info.value)
    assert message.startswith("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/")
    assert "is the server running?" in message
    assert "s3cret-pw" not in message and "\n" not in message
    assert info.value.__cause__ is None

    with pytest.raises(BrokerUnavailable, match="cannot reach RabbitMQ"):
        await connect("amqps://worker:s3cret-pw@127.0.0.1:1/")


async def test_a_wrong_password_is_a_refused_login_not_an_unreachable_server(amqp_url: str):
    host = amqp_url.split("@", 1)[1]
    with pytest.raises(BrokerUnavailable, match="refused the login") as info:
        await connect(f"amqp://guest:not-the-pw@{host}")
    assert "not-the-pw" not in str(info.value)


async def test_a_lost_connection_loses_nothing(broker: RabbitMQBroker, queue: str):
    consumer = await broker.consume(queue, visibility_timeout=30.0)
    await broker.publish(queue, b"before")
    [held] = await consumer.fetch(1, timeout=2)

    # Like a network failure: the socket dies under the client (the server sees it close too).
    broker._link._conn._transport._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    publishing = asyncio.gather(*(broker.publish(queue, f"during-{i}".encode()) for i in range(50)))

    await eventually(lambda: held.raw.channel.closed is not None, timeout=5)
    with pytest.raises(BrokerError, match="channel closed, so RabbitMQ has it back"):
        await held.ack()
    await asyncio.wait_for(publishing, 20)
    seen: dict[bytes, int] = {}

    async def drain() -> bool:
        for delivery in await consumer.fetch(100, timeout=0.3):
            seen[delivery.body] = delivery.attempt
            await delivery.ack()
        return len(seen) >= 51

    await eventually(drain, timeout=20)
    assert seen[b"before"] == 2, "it was delivered once before the connection dropped"
    assert sorted(seen) == sorted([b"before", *(f"during-{i}".encode() for i in range(50))])
    await consumer.close()


async def test_a_stuck_but_live_consumer_loses_its_lease_and_cannot_settle_late(
    broker: RabbitMQBroker, queue: str
):
    await broker.publish(queue, b"job")
    consumer = await broker.consume(queue, visibility_timeout=0.5)
    [stale] = await consumer.fetch(1, timeout=2)
    [fresh] = await eventually(lambda: consumer.fetch(1, timeout=0.3), timeout=10)
    assert (fresh.body, fresh.attempt) == (b"job", 2)

    with pytest.raises(BrokerError, match="lease expired"):
        await stale.heartbeat()
    await stale.nack()  # a no-op: it is back in the queue already
    with pytest.raises(BrokerError, match="lease expired"):
        await stale.ack()
    await fresh.ack()
    await consumer.close()
    assert (await broker.stats(queue)).depth == 0


async def test_events_use_a_topic_exchange_with_nats_style_wildcards(broker: RabbitMQBroker):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    exact: list[bytes] = []
    wild: list[bytes] = []
    stop_exact = await broker.subscribe_events(f"{prefix}.job.started", exact.append)
    stop_wild = await broker.subscribe_events(f"{prefix}.>", wild.append)

    await broker.publish_event(f"{prefix}.job.started", b"a")
    await broker.publish_event(f"{prefix}.job.done", b"b")

    await eventually(lambda: len(wild) == 2 and len(exact) == 1, timeout=5)
    assert exact == [b"a"] and sorted(wild) == [b"a", b"b"]
    await stop_exact()
    await stop_wild()


async def test_closing_a_consumer_returns_prefetched_messages_without_counting_an_attempt(
    broker: RabbitMQBroker, queue: str
):
    await broker.publish_many(queue, ((f"m{i}".encode(), None) for i in range(3)))
    greedy = await broker.consume(queue, visibility_timeout=30.0, prefetch=10)
    [started] = await greedy.fetch(1, timeout=2)  # the other two wait in its buffer
    await eventually(lambda: greedy.in_flight == 3, timeout=5)
    await greedy.close()

    other = await broker.consume(queue, visibility_timeout=30.0)
    seen: dict[bytes, int] = {}

    async def drain() -> bool:
        for delivery in await other.fetch(10, timeout=0.3):
            seen[delivery.body] = delivery.attempt
            await delivery.ack()
        return len(seen) == 3

    await eventually(drain, timeout=10)
    assert seen.pop(started.body) == 2, "it was handed to a handler once"
    assert list(seen.values()) == [1, 1], "never fetched, so never attempted"
    await other.close()


async def test_queues_are_listed_from_the_shared_registry(amqp_url: str, broker: RabbitMQBroker, queue: str):
    others = [RabbitMQBroker(amqp_url) for _ in range(3)]  # they know nothing of `broker`'s queues
    try:
        for other in others:
            await other.connect()
        # Readers take turns on the registry (a single active consumer) and compact it.
        for names in await asyncio.gather(*(other.queues() for other in others)):
            assert queue in names and dlq_of(queue) in names
        await others[0].delete(queue)
        assert queue not in await broker.queues()
    finally:
        for other in others:
            await other.close()


async def test_rabbitmq_keeps_the_original_when_its_delayed_copy_cannot_be_written(
    broker: RabbitMQBroker, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only RabbitMQ writes a delayed retry as a copy before acking the original."""
    await broker.publish(queue, b"job")
    consumer = await broker.consume(queue, visibility_timeout=1.0)
    [delivery] = await consumer.fetch(1, timeout=5)

    async def unavailable(queue: str, delay: float) -> str:
        raise BrokerError("injected: cannot declare the retry bucket")

    monkeypatch.setattr(broker, "retry_bucket", unavailable)
    with pytest.raises(BrokerError, match="injected"):
        await delivery.nack(5.0)

    [again] = await consumer.fetch(1, timeout=10)  # the lease expired: back in the queue
    assert (again.body, again.attempt) == (b"job", 2)
    await again.ack()
    await consumer.close()
